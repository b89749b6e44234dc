package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/confd/render"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/contract"
)

// These tests run the runner on synctest's fake clock: a render "costs"
// what the test says (it sleeps that long and charges it to a fake CPU
// clock), changes arrive exactly when the test sends them, and
// synctest.Wait returns once the runner has done everything it can do
// until the clock moves. Timings are therefore exact, not measured.

// fakeStore is a datastore with one watch, fed by the test.
type fakeStore struct {
	datastore.Datastore // nil: the runner only watches
	in                  chan datastore.Event
}

func (f *fakeStore) Watch(ctx context.Context, _ string, _ int64) <-chan datastore.Event {
	out := make(chan datastore.Event)
	go func() {
		defer close(out)
		for {
			select {
			case ev := <-f.in:
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// rendering is one render as the fake renderer saw it.
type rendering struct {
	start, end time.Time
	seen       int // changes applied when it started
}

// sim drives a runner on the fake clock.
type sim struct {
	t       *testing.T
	store   *fakeStore
	r       *Runner
	cancel  context.CancelFunc
	done    chan error
	cpu     atomic.Int64
	applied atomic.Int64

	mu      sync.Mutex
	renders []rendering
	sent    []time.Time // when change i was sent
	others  int         // events sent that are not changes
}

// simRender says what render n (0 = the initial one) costs and returns.
type simRender func(n int) (cost time.Duration, res render.Result, err error)

// fixedCost: every render costs cost; with reloaded, its second half is
// BIRD's configure round trip.
func fixedCost(cost time.Duration, reloaded bool) simRender {
	return func(int) (time.Duration, render.Result, error) {
		res := render.Result{Reloaded: reloaded}
		if reloaded {
			res.Timings.Reload = cost / 2
		}
		return cost, res, nil
	}
}

// startSim starts a runner with cfg on a fake store, lets the initial
// list complete and waits for the first render. Call inside synctest.Test.
func startSim(t *testing.T, cfg Config, rf simRender) *sim {
	t.Helper()
	s := &sim{t: t, store: &fakeStore{in: make(chan datastore.Event, 1<<16)}, done: make(chan error, 1)}
	log := logrus.New()
	log.SetOutput(io.Discard)
	cfg.Store, cfg.Prefixes, cfg.Log = s.store, []string{datastore.KindPrefix(api.KindNode)}, log
	cfg.Apply = func(string, api.Resource) { s.applied.Add(1) }
	cfg.CPUTime = func() time.Duration { return time.Duration(s.cpu.Load()) }
	cfg.Render = func(context.Context) (render.Result, error) {
		s.mu.Lock()
		n := len(s.renders)
		s.renders = append(s.renders, rendering{start: time.Now(), seen: int(s.applied.Load())})
		s.mu.Unlock()
		cost, res, err := rf(n)
		time.Sleep(cost)
		s.cpu.Add(int64(cost))
		s.mu.Lock()
		s.renders[n].end = time.Now()
		s.mu.Unlock()
		return res, err
	}
	s.r = New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.done <- s.r.Run(ctx) }()
	t.Cleanup(s.stop)
	s.event(datastore.InSync)
	s.settle()
	if n := s.count(); n != 1 {
		t.Fatalf("initial renders: %d, want 1", n)
	}
	return s
}

func (s *sim) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	if err := <-s.done; err != nil {
		s.t.Errorf("Run: %v", err)
	}
}

// change sends the next change (a Node added).
func (s *sim) change() {
	s.mu.Lock()
	i := len(s.sent)
	s.sent = append(s.sent, time.Now())
	s.mu.Unlock()
	name := fmt.Sprintf("node%d", i)
	s.store.in <- datastore.Event{Type: datastore.Added, Key: datastore.ResourceKey(api.KindNode, "", name), Value: contract.NodeFixture(name, "10.0.0.1")}
}

// event sends an event that is not a change (Resync, InSync).
func (s *sim) event(t datastore.EventType) {
	s.mu.Lock()
	s.others++
	s.mu.Unlock()
	s.store.in <- datastore.Event{Type: t}
}

// settle lets the runner finish whatever it holds: it advances the fake
// clock until every change sent is handled and rendered.
func (s *sim) settle() {
	s.t.Helper()
	for range 10000 {
		synctest.Wait()
		st := s.r.Status()
		s.mu.Lock()
		sent := len(s.sent) + s.others
		s.mu.Unlock()
		if st.Events == sent && !st.PendingRender {
			return
		}
		time.Sleep(time.Millisecond)
	}
	s.t.Fatalf("runner did not settle: %+v", s.r.Status())
}

func (s *sim) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.renders)
}

func (s *sim) snapshot() []rendering {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]rendering(nil), s.renders...)
}

// latencies: change sent -> the end of the first render that saw it.
func (s *sim) latencies() []time.Duration {
	rs := s.snapshot()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]time.Duration, len(s.sent))
	j := 0
	for i, at := range s.sent {
		for j < len(rs) && rs[j].seen < i+1 {
			j++
		}
		if j == len(rs) {
			s.t.Fatalf("change %d never rendered", i)
		}
		out[i] = rs[j].end.Sub(at)
	}
	return out
}

// checkBudget asserts the budget: each render starts no sooner than the
// previous one's cost divided by the share after the previous one began.
func checkBudget(t *testing.T, rs []rendering, cost time.Duration, share float64) {
	t.Helper()
	min := time.Duration(float64(cost) / share)
	for i := 1; i < len(rs); i++ {
		if d := rs[i].start.Sub(rs[i-1].start); d < min {
			t.Fatalf("render %d started %v after render %d; the budget allows no less than %v", i, d, i-1, min)
		}
	}
}

// A change after a quiet spell renders at once, with or without BIRD.
func TestSpacingIsolatedChangesRenderAtOnce(t *testing.T) {
	for _, reloaded := range []bool{false, true} {
		t.Run(fmt.Sprintf("reloaded=%v", reloaded), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const cost = 4 * time.Millisecond
				s := startSim(t, Config{}, fixedCost(cost, reloaded))
				for range 5 {
					time.Sleep(300 * time.Millisecond)
					s.change()
					s.settle()
				}
				for i, l := range s.latencies() {
					if l != cost {
						t.Errorf("change %d: rendered %v after it arrived, want at once (%v, the render itself)", i, l, cost)
					}
				}
				if n := s.count(); n != 6 {
					t.Errorf("%d renders for 5 changes, want 6 (with the initial one)", n)
				}
			})
		})
	}
}

// Steady churn: a change every 25 ms. While renders stay inside the
// budget every change renders at once; when they do not, renders are
// spaced by the budget and each covers several changes.
func TestSpacingSteadyChurn(t *testing.T) {
	tests := []struct {
		name       string
		cost       time.Duration
		maxLatency time.Duration // every change's
		maxRenders int
	}{
		// 100 nodes (~1.5 ms) and 1,000 nodes (3.5 ms; 6 ms on a loaded
		// machine): at once.
		{"cheap", 1500 * time.Microsecond, 1500 * time.Microsecond, 200},
		{"1000 nodes", 3500 * time.Microsecond, 3500 * time.Microsecond, 200},
		{"1000 nodes, loaded", 6 * time.Millisecond, 6 * time.Millisecond, 200},
		// 20 ms renders: the budget allows one per 40 ms, so a change
		// waits at most that long plus its render. Renders cover one or
		// two changes: not a flood, no flood spacing.
		{"over budget", 20 * time.Millisecond, 60 * time.Millisecond, 200*25/40 + 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := startSim(t, Config{}, fixedCost(tc.cost, false))
				time.Sleep(time.Second)
				for range 200 {
					s.change()
					time.Sleep(25 * time.Millisecond)
				}
				s.settle()
				for i, l := range s.latencies() {
					if l > tc.maxLatency {
						t.Fatalf("change %d rendered after %v, want ≤ %v", i, l, tc.maxLatency)
					}
				}
				if n := s.count() - 1; n > tc.maxRenders {
					t.Errorf("%d renders for 200 changes, want ≤ %d", n, tc.maxRenders)
				}
				checkBudget(t, s.snapshot(), tc.cost, DefaultRenderShare)
			})
		})
	}
}

// A stall (one render takes 150 ms, as on an overloaded machine) makes the
// next render cover several changes; that is not a flood, and afterwards
// every change renders at once again.
func TestSpacingSteadyChurnRecoversFromAStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const cost = 3 * time.Millisecond
		s := startSim(t, Config{}, func(n int) (time.Duration, render.Result, error) {
			if n == 20 {
				return 150 * time.Millisecond, render.Result{}, nil
			}
			return cost, render.Result{}, nil
		})
		time.Sleep(time.Second)
		for range 200 {
			s.change()
			time.Sleep(25 * time.Millisecond)
		}
		s.settle()
		ls := s.latencies()
		late := 0
		for i, l := range ls {
			if l != cost {
				late++
				if i < 19 || i > 40 {
					t.Errorf("change %d: %v, want at once (%v)", i, l, cost)
				}
			}
		}
		t.Logf("%d changes waited around the stall", late)
	})
}

// A burst of 1,000 changes (16 writers as fast as etcd takes them: in
// 150 ms on an idle machine, in a second on a loaded one) coalesces into a
// few renders, and the last one sees every change soon after the last
// write.
func TestSpacingBurstCoalesces(t *testing.T) {
	tests := []struct {
		name     string
		cost     time.Duration
		reloaded bool
		over     time.Duration // the burst's length
	}{
		{"sync-only, 1,000 nodes", 4 * time.Millisecond, false, 150 * time.Millisecond},
		{"with check and BIRD, 1,000 nodes", 25 * time.Millisecond, true, 150 * time.Millisecond},
		{"sync-only, a second long", 4 * time.Millisecond, false, time.Second},
		{"with check and BIRD, a second long", 25 * time.Millisecond, true, time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := startSim(t, Config{}, fixedCost(tc.cost, tc.reloaded))
				time.Sleep(time.Second)
				for range 1000 {
					s.change()
					time.Sleep(tc.over / 1000)
				}
				last := time.Now()
				s.settle()
				rs := s.snapshot()
				if n := len(rs) - 1; n > 20 {
					t.Errorf("1,000 changes caused %d renders, want ≤ 20", n)
				}
				final := rs[len(rs)-1]
				if final.seen != 1000 {
					t.Fatalf("last render saw %d changes, want 1000", final.seen)
				}
				if d := final.end.Sub(last); d > 200*time.Millisecond {
					t.Errorf("final state rendered %v after the last change, want ≤ 200ms", d)
				}
				t.Logf("%d renders, final state %v after the last change", len(rs)-1, final.end.Sub(last))
				checkBudget(t, rs, tc.cost, DefaultRenderShare)
				// After a render that covered a flood, the next waits.
				for i := 2; i < len(rs); i++ {
					batch := rs[i-1].seen - rs[i-2].seen
					if rate := float64(batch) / rs[i-1].start.Sub(rs[i-2].start).Seconds(); batch >= FloodBatch && rate > FloodRate {
						if d := rs[i].start.Sub(rs[i-1].start); d < FloodInterval {
							t.Errorf("render %d started %v after one that covered a flood, want ≥ %v", i, d, FloodInterval)
						}
					}
				}
			})
		})
	}
}

// Slow renders: the spacing grows with their cost, so confd never spends
// more than its share of a core; a change after quiet still renders at
// once, and so does the first render after a resync.
func TestSpacingSlowRenders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const cost = time.Second
		s := startSim(t, Config{}, fixedCost(cost, false))
		time.Sleep(10 * time.Second)
		s.change()
		synctest.Wait()
		if n := s.count(); n != 2 {
			t.Fatalf("a lone change after quiet did not render at once (%d renders)", n)
		}
		for range 99 { // 10 s of churn
			time.Sleep(100 * time.Millisecond)
			s.change()
		}
		s.settle()
		rs := s.snapshot()
		checkBudget(t, rs, cost, DefaultRenderShare)
		// From the first change on, renders start every 2 s: at 0, 2, 4,
		// 6, 8 and 10 s.
		if n := len(rs) - 1; n != 6 {
			t.Errorf("%d renders over 10 s of churn with 1 s renders, want 6", n)
		}
		if rs[len(rs)-1].seen != 100 {
			t.Errorf("last render saw %d changes, want 100", rs[len(rs)-1].seen)
		}

		// A resync: the first render after the view is complete again
		// does not wait for the budget.
		time.Sleep(10 * time.Second)
		s.change() // after quiet: at once
		synctest.Wait()
		time.Sleep(cost + time.Millisecond)
		synctest.Wait()
		before := s.count()
		s.event(datastore.Resync)
		synctest.Wait()
		s.change()
		synctest.Wait()
		if n := s.count(); n != before {
			t.Fatalf("rendered from an incomplete view")
		}
		s.event(datastore.InSync)
		synctest.Wait()
		if n := s.count(); n != before+1 {
			t.Fatalf("after a resync: %d renders at once, want 1", n-before)
		}
		s.settle()
	})
}

// BIRD reconfigures never exceed the configured rate, however cheap the
// render; the cap does not apply to renders that do not reconfigure.
func TestSpacingReloadRateCap(t *testing.T) {
	tests := []struct {
		name     string
		rate     float64
		reloaded bool
		gap      time.Duration // reconfigure sent -> next render
	}{
		{"default rate", 0, true, 50 * time.Millisecond},
		{"5 per second", 5, true, 200 * time.Millisecond},
		{"no reconfigure (sync-only)", 0, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const cost, period = time.Millisecond, 20 * time.Millisecond
				s := startSim(t, Config{MaxReloadRate: tc.rate}, fixedCost(cost, tc.reloaded))
				time.Sleep(time.Second)
				for range 100 { // 2 s
					s.change()
					time.Sleep(period)
				}
				s.settle()
				rs := s.snapshot()
				for i := 1; i < len(rs); i++ {
					sent := rs[i-1].end.Add(-cost / 2) // the configure
					if d := rs[i].start.Sub(sent); tc.reloaded && d < tc.gap {
						t.Fatalf("render %d started %v after the previous reconfigure, want ≥ %v", i, d, tc.gap)
					}
				}
				n := len(rs) - 1
				if !tc.reloaded && n != 100 {
					t.Errorf("without reconfigures every change should render at once: %d renders for 100 changes", n)
				}
				// Not held longer than the cap: a render at most a change
				// period after the cap allows one.
				if want := int(2*time.Second/(tc.gap+period)) - 1; tc.reloaded && n < want {
					t.Errorf("%d renders in 2 s, want ≥ %d", n, want)
				}
			})
		})
	}
}

// The explicit --min-render-interval/--render-quiet keep the fixed rule:
// during churn a change waits for the quiet window.
func TestSpacingFixedRule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const cost = 3 * time.Millisecond
		s := startSim(t, Config{MinInterval: 100 * time.Millisecond, Quiet: 20 * time.Millisecond}, fixedCost(cost, false))
		time.Sleep(time.Second)
		for range 50 {
			s.change()
			time.Sleep(25 * time.Millisecond)
		}
		s.settle()
		ls := s.latencies()
		if ls[0] != cost {
			t.Errorf("first change after quiet: %v, want at once (%v)", ls[0], cost)
		}
		for i, l := range ls[1:] {
			if l != 20*time.Millisecond+cost {
				t.Fatalf("change %d: %v, want the quiet window plus the render (%v)", i+1, l, 20*time.Millisecond+cost)
			}
		}
	})
}

// Changes that arrive during a render cause exactly one more render,
// which sees them all.
func TestChangesDuringRenderCauseOneMoreRender(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := startSim(t, Config{}, fixedCost(100*time.Millisecond, false))
		time.Sleep(time.Second)
		s.change()
		time.Sleep(10 * time.Millisecond) // inside that render
		for range 3 {
			s.change()
		}
		s.settle()
		rs := s.snapshot()[1:]
		if len(rs) != 2 || rs[0].seen != 1 || rs[1].seen != 4 {
			t.Errorf("renders saw %v changes, want [1 4]", seenCounts(rs))
		}
		if st := s.r.Status(); st.Events != 5 || st.PendingRender || st.Renders != 3 {
			t.Errorf("status: %+v", st)
		}
	})
}

func seenCounts(rs []rendering) []int {
	out := make([]int, len(rs))
	for i, r := range rs {
		out[i] = r.seen
	}
	return out
}

// A failed render is retried with jittered exponential backoff until it
// succeeds; then retries stop and the status says so.
func TestRetryBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const fails = 4
		s := startSim(t, Config{RetryMin: 100 * time.Millisecond, RetryMax: 300 * time.Millisecond}, func(n int) (time.Duration, render.Result, error) {
			if n < fails {
				return time.Millisecond, render.Result{}, &render.Error{Stage: render.StageTemplate, Err: errors.New("broken")}
			}
			return time.Millisecond, render.Result{Reloaded: true, Changed: []string{"x"}}, nil
		})
		if st := s.r.Status(); st.LastError == nil || !st.PendingRetry {
			t.Fatalf("status after a failure: %+v", st)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		rs := s.snapshot()
		if len(rs) != fails+1 {
			t.Fatalf("%d renders, want %d failures and a success, then nothing", len(rs), fails)
		}
		// Ceilings 100, 200, 300, 300 ms; full jitter keeps each delay in
		// [ceiling/2, ceiling].
		ceil := []time.Duration{100, 200, 300, 300}
		for i := 1; i < len(rs); i++ {
			d, c := rs[i].start.Sub(rs[i-1].end), ceil[i-1]*time.Millisecond
			if d < c/2 || d > c {
				t.Errorf("retry %d after %v, want in [%v, %v]", i, d, c/2, c)
			}
		}
		st := s.r.Status()
		if st.LastError != nil || st.PendingRetry || st.LastGoodReload.IsZero() || st.Renders != fails+1 {
			t.Errorf("status after recovery: %+v", st)
		}
	})
}

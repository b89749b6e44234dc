package runner

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/confd/render"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/contract"
	"github.com/roostnet/roost/datastore/etcd"
	"github.com/roostnet/roost/internal/etcdtest"
)

// view is what the runner's consumers build: the set of known keys.
type view struct {
	mu   sync.Mutex
	keys map[string]api.Resource
}

func (v *view) apply(key string, obj api.Resource) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if obj == nil {
		delete(v.keys, key)
	} else {
		v.keys[key] = obj
	}
}

func (v *view) len() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.keys)
}

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetLevel(logrus.WarnLevel)
	return l
}

func startRunner(t *testing.T, cfg Config) (*Runner, context.CancelFunc, chan error) {
	t.Helper()
	if cfg.Log == nil {
		cfg.Log = quietLog()
	}
	r := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("runner did not stop")
		}
	})
	return r, cancel, done
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newEtcd(t *testing.T) datastore.Datastore {
	e := etcdtest.Start(t)
	s, err := etcd.New(context.Background(), datastore.Config{Type: datastore.TypeEtcd, EtcdEndpoints: e.Endpoint()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func nodeKey(i int) string { return datastore.ResourceKey(api.KindNode, "", fmt.Sprintf("node%d", i)) }

func createNodes(t *testing.T, s datastore.Datastore, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if _, err := s.Create(context.Background(), contract.NodeFixture(fmt.Sprintf("node%d", i), fmt.Sprintf("10.0.%d.%d", i/250, i%250+1))); err != nil {
			t.Fatal(err)
		}
	}
}

// slowInSync delays InSync on one prefix: a slow initial list.
type slowInSync struct {
	datastore.Datastore
	prefix  string
	release chan struct{}
}

func (s *slowInSync) Watch(ctx context.Context, prefix string, rev int64) <-chan datastore.Event {
	in := s.Datastore.Watch(ctx, prefix, rev)
	if prefix != s.prefix {
		return in
	}
	out := make(chan datastore.Event)
	go func() {
		defer close(out)
		for ev := range in {
			if ev.Type == datastore.InSync {
				select {
				case <-s.release:
				case <-ctx.Done():
					return
				}
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// Nothing renders until every prefix is in sync, and the first render
// sees the complete listing.
func TestNoRenderBeforeInSync(t *testing.T) {
	s := newEtcd(t)
	createNodes(t, s, 0, 50)
	slow := &slowInSync{Datastore: s, prefix: datastore.KindPrefix(api.KindNode), release: make(chan struct{})}
	v := &view{keys: map[string]api.Resource{}}
	var renders atomic.Int32
	var sawAtFirst atomic.Int32
	r, _, _ := startRunner(t, Config{
		Store:    slow,
		Prefixes: []string{datastore.KindPrefix(api.KindNode), datastore.KindPrefix(api.KindBGPPeer)},
		Apply:    v.apply,
		Render: func(context.Context) (render.Result, error) {
			if renders.Add(1) == 1 {
				sawAtFirst.Store(int32(v.len()))
			}
			return render.Result{}, nil
		},
	})
	// 50 Node events and the BGPPeer watch's InSync: handled, and held.
	waitFor(t, "the nodes and one InSync handled", func() bool { return r.Status().Events >= 51 })
	if st := r.Status(); renders.Load() != 0 || !st.PendingRender || st.InSync {
		t.Fatalf("rendered before the initial list was complete (renders %d, status %+v)", renders.Load(), st)
	}
	close(slow.release)
	waitFor(t, "first render", func() bool { return renders.Load() == 1 })
	if got := sawAtFirst.Load(); got != 50 {
		t.Errorf("first render saw %d nodes, want all 50", got)
	}
}

// A burst of 1,000 changes coalesces into few renders and ends exact.
func TestBurstCoalesces(t *testing.T) {
	s := newEtcd(t)
	v := &view{keys: map[string]api.Resource{}}
	var renders atomic.Int32
	var last atomic.Int32
	r, _, _ := startRunner(t, Config{
		Store: s, Prefixes: []string{datastore.KindPrefix(api.KindNode)}, Apply: v.apply,
		Render: func(context.Context) (render.Result, error) {
			renders.Add(1)
			last.Store(int32(v.len()))
			time.Sleep(20 * time.Millisecond) // a render with check and reload
			return render.Result{}, nil
		},
	})
	waitFor(t, "initial render", func() bool { return renders.Load() == 1 })
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < 1000; i += 4 {
				createNodes(t, s, i, i+1)
			}
		}(w)
	}
	wg.Wait()
	waitFor(t, "final render with 1000 nodes", func() bool { return last.Load() == 1000 })
	// The InSync and 1,000 Added events handled, nothing left to render.
	waitFor(t, "every event handled and rendered", func() bool {
		st := r.Status()
		return st.Events >= 1001 && !st.PendingRender
	})
	got := renders.Load() - 1
	t.Logf("1000 changes -> %d renders", got)
	if got > 200 {
		t.Errorf("1000 changes caused %d renders; bursts must coalesce", got)
	}
}

// relisting wraps a store and, on demand, restarts a watch as a relist
// from scratch, the way a backend does after compaction.
type relisting struct {
	datastore.Datastore
	restart chan struct{}
}

func (s *relisting) Watch(ctx context.Context, prefix string, rev int64) <-chan datastore.Event {
	out := make(chan datastore.Event)
	go func() {
		defer close(out)
		first := true
		for {
			wctx, cancel := context.WithCancel(ctx)
			in := s.Datastore.Watch(wctx, prefix, 0)
			if !first {
				out <- datastore.Event{Type: datastore.Resync, Relist: true}
			}
			first = false
		loop:
			for {
				select {
				case ev, ok := <-in:
					if !ok {
						cancel()
						return
					}
					select {
					case out <- ev:
					case <-ctx.Done():
						cancel()
						return
					}
				case <-s.restart:
					cancel()
					break loop
				case <-ctx.Done():
					cancel()
					return
				}
			}
		}
	}()
	return out
}

// Keys that vanish while a watch is down are deleted when the relist
// completes, and nothing renders between Resync and InSync.
func TestRelistSweepsVanishedKeys(t *testing.T) {
	s := newEtcd(t)
	createNodes(t, s, 0, 10)
	rs := &relisting{Datastore: s, restart: make(chan struct{})}
	v := &view{keys: map[string]api.Resource{}}
	var seen []int
	var mu sync.Mutex
	startRunner(t, Config{
		Store: rs, Prefixes: []string{datastore.KindPrefix(api.KindNode)}, Apply: v.apply,
		Render: func(context.Context) (render.Result, error) {
			mu.Lock()
			seen = append(seen, v.len())
			mu.Unlock()
			return render.Result{}, nil
		},
	})
	waitFor(t, "10 nodes", func() bool { return v.len() == 10 })
	// Delete three nodes "while the watch is down": the relist must not
	// see them and the runner must drop them.
	for i := 0; i < 3; i++ {
		if err := s.Delete(context.Background(), nodeKey(i), 0); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "7 nodes", func() bool { return v.len() == 7 })
	createNodes(t, s, 0, 3)
	waitFor(t, "10 nodes again, rendered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return v.len() == 10 && len(seen) > 0 && seen[len(seen)-1] == 10
	})
	// Now delete behind a relist. The view holds 10 nodes before the
	// relist too: wait for the relist's own render (it re-adds every key).
	mu.Lock()
	before := len(seen)
	mu.Unlock()
	rs.restart <- struct{}{}
	waitFor(t, "relist", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return v.len() == 10 && len(seen) > before
	})
	mu.Lock()
	seen = nil
	mu.Unlock()
	if err := s.Delete(context.Background(), nodeKey(9), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "9 nodes", func() bool { return v.len() == 9 })
	mu.Lock()
	defer mu.Unlock()
	for _, n := range seen {
		if n != 9 {
			t.Errorf("a render saw %d nodes", n)
		}
	}
}

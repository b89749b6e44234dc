package runner

import (
	"context"
	"errors"
	"fmt"
	"strings"
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

// brokenObserver records what the runner reports about broken objects.
type brokenObserver struct {
	mu   sync.Mutex
	last []*datastore.DecodeError
}

func (o *brokenObserver) SyncState(bool)                               {}
func (o *brokenObserver) Event(datastore.EventType)                    {}
func (o *brokenObserver) Rendered(render.Result, error, time.Duration) {}
func (o *brokenObserver) Broken(objs []*datastore.DecodeError) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.last = objs
}

func (o *brokenObserver) keys() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, de := range o.last {
		out = append(out, de.Key)
	}
	return out
}

// A broken object is present, never deleted: at the first listing, when a
// valid object breaks and across a relist, renders are held (the last
// good configuration stays) and the status names key and field; they
// resume once it is fixed or deleted.
func TestBrokenObjectsHoldRenders(t *testing.T) {
	s := newEtcd(t)
	cli := s.(*etcd.Store).Client()
	put := func(key, val string) {
		t.Helper()
		if _, err := cli.Put(context.Background(), key, val); err != nil {
			t.Fatal(err)
		}
	}
	createNodes(t, s, 0, 5)
	put(nodeKey(5), `{"spec":{"bgp":{"ipv4Address":"10.0.0.300/24"}}}`)
	rs := &relisting{Datastore: s, restart: make(chan struct{})}
	v := &view{keys: map[string]api.Resource{}}
	var renders atomic.Int32
	obs := &brokenObserver{}
	r, _, _ := startRunner(t, Config{
		Store: rs, Prefixes: []string{datastore.KindPrefix(api.KindNode)}, Apply: v.apply, Observer: obs,
		Render: func(context.Context) (render.Result, error) { renders.Add(1); return render.Result{}, nil },
	})
	// Held from the first listing: in sync, a render due, none run.
	waitFor(t, "in sync with node5 broken", func() bool {
		st := r.Status()
		return st.InSync && len(st.Broken) == 1
	})
	if de := r.Status().Broken[0]; de.Key != nodeKey(5) || de.Field != "spec.bgp.ipv4Address" || de.Value != `"10.0.0.300/24"` {
		t.Fatalf("status names %+v", de)
	}
	if got := obs.keys(); len(got) != 1 || got[0] != nodeKey(5) {
		t.Fatalf("observer got %v", got)
	}
	doAndWait := func() {
		ran := make(chan struct{})
		r.Do(context.Background(), func() { close(ran) })
		<-ran
	}
	r.Trigger()
	doAndWait()
	if n := renders.Load(); n != 0 {
		t.Fatalf("%d renders with a broken object", n)
	}

	// node0 breaks while watched: it keeps its last good value, and a
	// relist (which lists it as broken) does not sweep it.
	put(nodeKey(0), `{"spec":{"bgp":{"asNumber":"sixty"}}}`)
	waitFor(t, "node0 broken", func() bool { return len(r.Status().Broken) == 2 })
	rs.restart <- struct{}{}
	waitFor(t, "relisted", func() bool { return r.Status().InSync })
	doAndWait()
	v.mu.Lock()
	_, kept := v.keys[nodeKey(0)]
	v.mu.Unlock()
	if !kept || renders.Load() != 0 {
		t.Fatalf("after a relist: node0 kept %v, %d renders", kept, renders.Load())
	}

	// Fixing one is not enough; deleting the other resumes renders.
	put(nodeKey(5), `{"spec":{"bgp":{"ipv4Address":"10.0.0.6/24"}}}`)
	waitFor(t, "node5 fixed", func() bool { return len(r.Status().Broken) == 1 })
	doAndWait()
	if renders.Load() != 0 {
		t.Fatal("rendered with node0 still broken")
	}
	if err := s.Delete(context.Background(), nodeKey(0), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a render once nothing is broken", func() bool { return renders.Load() > 0 })
	if len(obs.keys()) != 0 || len(r.Status().Broken) != 0 {
		t.Fatalf("still reported broken: %v", obs.keys())
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.keys[nodeKey(0)]; ok || v.keys[nodeKey(5)] == nil || len(v.keys) != 5 {
		t.Fatalf("view after the fix: %d keys", len(v.keys))
	}
}

// With Once, broken objects make Run fail, naming them.
func TestOnceFailsOnBroken(t *testing.T) {
	s := newEtcd(t)
	createNodes(t, s, 0, 2)
	if _, err := s.(*etcd.Store).Client().Put(context.Background(), nodeKey(2), `{"spec":{"bgp":{"asNumber":"sixty"}}}`); err != nil {
		t.Fatal(err)
	}
	r := New(Config{Store: s, Prefixes: []string{datastore.KindPrefix(api.KindNode)}, Apply: func(string, api.Resource) {}, Once: true, Log: quietLog(),
		Render: func(context.Context) (render.Result, error) { t.Error("rendered"); return render.Result{}, nil }})
	err := r.Run(context.Background())
	if !errors.Is(err, ErrHeld) || !strings.Contains(err.Error(), nodeKey(2)) || !strings.Contains(err.Error(), "spec.bgp.asNumber") {
		t.Fatalf("Run = %v", err)
	}
}

// Package contract is the behaviour every datastore.Datastore backend must
// show, as one test suite: backends call Run from their own tests.
//
//	func TestContract(t *testing.T) {
//		contract.Run(t, contract.Harness{New: func(t *testing.T) datastore.Datastore { ... }})
//	}
package contract

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// Harness tells the suite how to drive one backend.
type Harness struct {
	// New returns a new, empty datastore. The suite closes it when the
	// subtest ends (Close must tolerate being called again).
	New func(t *testing.T) datastore.Datastore

	// Optional capabilities; nil skips the tests that need them.

	// Restart kills the backend's server and starts it again (same data),
	// returning once it serves again. Open datastores and their watches
	// must recover by themselves.
	Restart func(t *testing.T)
	// Compact discards the history up to the current revision, so that
	// watching from an older revision needs a relist.
	Compact func(t *testing.T)
	// PutInvalid stores obj at its key without validating it, as another
	// tool or a hand edit would, and returns once ds serves it (the suite
	// passes objects that fail validation).
	PutInvalid func(t *testing.T, ds datastore.Datastore, obj api.Resource)
	// Reopen opens a second datastore over ds's data, as a program that
	// starts afresh does.
	Reopen func(t *testing.T, ds datastore.Datastore) datastore.Datastore

	// Timeout bounds each wait for a watch event or an operation
	// (default 15s).
	Timeout time.Duration
}

type suite struct {
	h       Harness
	timeout time.Duration
}

// Run runs the whole suite as subtests of t.
func Run(t *testing.T, h Harness) {
	if h.New == nil {
		t.Fatal("contract: Harness.New is required")
	}
	s := &suite{h: h, timeout: h.Timeout}
	if s.timeout <= 0 {
		s.timeout = 15 * time.Second
	}
	t.Run("CRUD", s.testCRUD)
	t.Run("NotFound", s.testNotFound)
	t.Run("ResourceVersion", s.testResourceVersion)
	t.Run("Validation", s.testValidation)
	t.Run("Txn", s.testTxn)
	t.Run("ConcurrentCAS", s.testConcurrentCAS)
	t.Run("List", s.testList)
	t.Run("WatchFromZero", s.testWatchFromZero)
	t.Run("WatchFromRevision", s.testWatchFromRevision)
	t.Run("WatchEnds", s.testWatchEnds)
	t.Run("WatchResumeAfterRestart", s.testRestart)
	t.Run("WatchAfterCompaction", s.testCompaction)
	t.Run("PresentAndBroken", s.testBroken)
}

func (s *suite) store(t *testing.T) datastore.Datastore {
	t.Helper()
	ds := s.h.New(t)
	t.Cleanup(func() { _ = ds.Close() })
	return ds
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 4*s.timeout)
	t.Cleanup(cancel)
	return ctx
}

// sameBytes compares two objects by their stored form.
func sameBytes(a, b api.Resource) bool {
	if a == nil || b == nil {
		return a == b
	}
	ea, err1 := datastore.EncodeValue(a)
	eb, err2 := datastore.EncodeValue(b)
	return err1 == nil && err2 == nil && bytes.Equal(ea, eb)
}

func mustSame(t *testing.T, what string, want, got api.Resource) {
	t.Helper()
	// A value written without a UID or creation time comes back with
	// those the datastore stamped (checked by testCRUD): compare the rest.
	if want != nil && got != nil && datastore.StoresMetadata(want.ResourceKind()) {
		wm := want.Meta()
		if wm.UID == "" || wm.CreationTimestamp == nil {
			if got.Meta().UID == "" || got.Meta().CreationTimestamp == nil {
				t.Fatalf("%s: no uid or creationTimestamp stamped: %+v", what, got.Meta())
			}
			got = api.Clone(got)
			if wm.UID == "" {
				got.Meta().UID = ""
			}
			if wm.CreationTimestamp == nil {
				got.Meta().CreationTimestamp = nil
			}
		}
	}
	if !sameBytes(want, got) {
		wb, _ := datastore.EncodeValue(want)
		gb, _ := datastore.EncodeValue(got)
		t.Fatalf("%s: value differs\nwant %s\n got %s", what, wb, gb)
	}
}

// wantKeyErr checks that err wraps sentinel inside a *KeyError for key.
func wantKeyErr(t *testing.T, what string, err, sentinel error, key string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("%s: got error %v, want %v", what, err, sentinel)
	}
	var ke *datastore.KeyError
	if !errors.As(err, &ke) {
		t.Fatalf("%s: error %v is not a *datastore.KeyError", what, err)
	}
	if ke.Key != key {
		t.Fatalf("%s: error names key %q, want %q", what, ke.Key, key)
	}
}

func (s *suite) mustCreate(t *testing.T, ds datastore.Datastore, obj api.Resource) *datastore.KV {
	t.Helper()
	kv, err := ds.Create(s.ctx(t), obj)
	if err != nil {
		t.Fatalf("create %s: %v", keyOf(obj), err)
	}
	return kv
}

func (s *suite) mustGet(t *testing.T, ds datastore.Datastore, key string) *datastore.KV {
	t.Helper()
	kv, err := ds.Get(s.ctx(t), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return kv
}

func (s *suite) testCRUD(t *testing.T) {
	for _, f := range Fixtures() {
		t.Run(f.Name, func(t *testing.T) {
			ds := s.store(t)
			ctx := s.ctx(t)
			obj := f.Object()
			key := keyOf(obj)

			created, err := ds.Create(ctx, obj)
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			if created.Key != key || created.Revision <= 0 {
				t.Fatalf("create returned key %q revision %d, want key %q and a revision", created.Key, created.Revision, key)
			}
			mustSame(t, "create result", f.Object(), created.Value)
			cm := created.Value.Meta()
			if datastore.StoresMetadata(obj.ResourceKind()) && (!uuidRE.MatchString(cm.UID) || cm.CreationTimestamp == nil ||
				cm.CreationTimestamp.Location() != time.UTC || cm.CreationTimestamp.Nanosecond() != 0) {
				t.Fatalf("create: uid %q creationTimestamp %v, want a UUID and a UTC time in whole seconds", cm.UID, cm.CreationTimestamp)
			}

			got := s.mustGet(t, ds, key)
			if got.Key != key || got.Revision != created.Revision {
				t.Fatalf("get: key %q revision %d, want %q %d", got.Key, got.Revision, key, created.Revision)
			}
			mustSame(t, "get", f.Object(), got.Value)
			if got.Value.ResourceKind() != obj.ResourceKind() {
				t.Fatalf("get: kind %s, want %s", got.Value.ResourceKind(), obj.ResourceKind())
			}

			_, err = ds.Create(ctx, f.Object())
			wantKeyErr(t, "duplicate create", err, datastore.ErrExists, key)

			// CAS update at the current revision.
			changed := api.Clone(got.Value)
			f.Mutate(changed)
			updated, err := ds.Update(ctx, &datastore.KV{Key: key, Value: changed, Revision: got.Revision})
			if err != nil {
				t.Fatalf("update: %v", err)
			}
			if updated.Revision <= got.Revision || updated.Key != key {
				t.Fatalf("update returned key %q revision %d after %d", updated.Key, updated.Revision, got.Revision)
			}
			mustSame(t, "update result", changed, updated.Value)
			mustSame(t, "get after update", changed, s.mustGet(t, ds, key).Value)

			// A stale revision conflicts and changes nothing.
			stale := f.Object()
			_, err = ds.Update(ctx, &datastore.KV{Value: stale, Revision: got.Revision})
			wantKeyErr(t, "update with stale revision", err, datastore.ErrConflict, key)
			now := s.mustGet(t, ds, key)
			if now.Revision != updated.Revision {
				t.Fatalf("stale update moved the revision from %d to %d", updated.Revision, now.Revision)
			}
			mustSame(t, "after stale update", changed, now.Value)

			// Revision 0: unconditional update of an existing key (key
			// derived from the value).
			back, err := ds.Update(ctx, &datastore.KV{Value: f.Object()})
			if err != nil {
				t.Fatalf("unconditional update: %v", err)
			}
			after := s.mustGet(t, ds, key).Value
			mustSame(t, "unconditional update", f.Object(), after)
			// The fresh object had no UID or creation time: the stored
			// ones are kept.
			if am := after.Meta(); datastore.StoresMetadata(obj.ResourceKind()) &&
				(am.UID != cm.UID || am.CreationTimestamp == nil || !am.CreationTimestamp.Equal(*cm.CreationTimestamp)) {
				t.Fatalf("update without metadata: uid %q created %v, want those of the creation (%q, %v)", am.UID, am.CreationTimestamp, cm.UID, cm.CreationTimestamp)
			}

			err = ds.Delete(ctx, key, updated.Revision)
			wantKeyErr(t, "delete with stale revision", err, datastore.ErrConflict, key)
			s.mustGet(t, ds, key)

			if err := ds.Delete(ctx, key, back.Revision); err != nil {
				t.Fatalf("delete at current revision: %v", err)
			}
			_, err = ds.Get(ctx, key)
			wantKeyErr(t, "get after delete", err, datastore.ErrNotFound, key)

			// Re-create, then delete unconditionally.
			s.mustCreate(t, ds, f.Object())
			if err := ds.Delete(ctx, key, 0); err != nil {
				t.Fatalf("unconditional delete: %v", err)
			}
			err = ds.Delete(ctx, key, 0)
			wantKeyErr(t, "delete of a deleted key", err, datastore.ErrNotFound, key)
		})
	}
}

func (s *suite) testNotFound(t *testing.T) {
	ds := s.store(t)
	ctx := s.ctx(t)
	n := NodeFixture("ghost", "10.0.0.9")
	key := keyOf(n)
	_, err := ds.Get(ctx, key)
	wantKeyErr(t, "get", err, datastore.ErrNotFound, key)
	_, err = ds.Update(ctx, &datastore.KV{Value: n})
	wantKeyErr(t, "update (revision 0)", err, datastore.ErrNotFound, key)
	_, err = ds.Update(ctx, &datastore.KV{Value: n, Revision: 5})
	wantKeyErr(t, "update (revision 5)", err, datastore.ErrNotFound, key)
	err = ds.Delete(ctx, key, 0)
	wantKeyErr(t, "delete (revision 0)", err, datastore.ErrNotFound, key)
	err = ds.Delete(ctx, key, 5)
	wantKeyErr(t, "delete (revision 5)", err, datastore.ErrNotFound, key)
	if _, err := ds.Get(ctx, key); !errors.Is(err, datastore.ErrNotFound) {
		t.Fatalf("failed writes created the key: %v", err)
	}
}

func (s *suite) testResourceVersion(t *testing.T) {
	ds := s.store(t)
	kv := s.mustCreate(t, ds, NodeFixture("node1", "10.0.0.1"))
	want := strconv.FormatInt(kv.Revision, 10)
	if rv := kv.Value.Meta().ResourceVersion; rv != want {
		t.Errorf("create: metadata.resourceVersion %q, want %q", rv, want)
	}
	got := s.mustGet(t, ds, kv.Key)
	if rv := got.Value.Meta().ResourceVersion; rv != want {
		t.Errorf("get: metadata.resourceVersion %q, want %q", rv, want)
	}
	lr, err := ds.List(s.ctx(t), datastore.KindPrefix(api.KindNode))
	if err != nil || len(lr.KVs) != 1 {
		t.Fatalf("list: %v %v", lr, err)
	}
	if rv := lr.KVs[0].Value.Meta().ResourceVersion; rv != want {
		t.Errorf("list: metadata.resourceVersion %q, want %q", rv, want)
	}
}

// fieldErr finds the api.FieldError naming field inside err.
func fieldErr(err error, field string) *api.FieldError {
	if err == nil {
		return nil
	}
	var list api.ErrorList
	if errors.As(err, &list) {
		for _, fe := range list {
			if fe.Field == field {
				return fe
			}
		}
	}
	var fe *api.FieldError
	if errors.As(err, &fe) && fe.Field == field {
		return fe
	}
	return nil
}

func (s *suite) testValidation(t *testing.T) {
	ds := s.store(t)
	ctx := s.ctx(t)

	bad := NodeFixture("node1", "10.0.0.1")
	bad.Spec.BGP.IPv4Address = "not-an-ip"
	_, err := ds.Create(ctx, bad)
	if fieldErr(err, "spec.bgp.ipv4Address") == nil {
		t.Fatalf("create with a bad address: error %v does not name spec.bgp.ipv4Address", err)
	}
	if _, err := ds.Get(ctx, keyOf(bad)); !errors.Is(err, datastore.ErrNotFound) {
		t.Fatalf("invalid create stored something: %v", err)
	}

	pool := PoolFixture("pool1", "192.168.0.0/16")
	kv := s.mustCreate(t, ds, pool)
	badPool := api.Clone(kv.Value).(*api.IPPool)
	badPool.Spec.IPIPMode = "Sometimes"
	_, err = ds.Update(ctx, &datastore.KV{Key: kv.Key, Value: badPool, Revision: kv.Revision})
	if fieldErr(err, "spec.ipipMode") == nil {
		t.Fatalf("update with a bad ipipMode: error %v does not name spec.ipipMode", err)
	}
	mustSame(t, "after invalid update", pool, s.mustGet(t, ds, kv.Key).Value)

	badPeer := PeerFixture("peer1", "10.0.0.254", 64513)
	badPeer.Spec.PeerIP = "10.0.0.300"
	_, err = ds.Txn(ctx,
		datastore.Op{Type: datastore.OpCreate, Value: FilterFixture("filter1")},
		datastore.Op{Type: datastore.OpCreate, Value: badPeer})
	if fieldErr(err, "spec.peerIP") == nil {
		t.Fatalf("txn with a bad peerIP: error %v does not name spec.peerIP", err)
	}
	if _, err := ds.Get(ctx, keyOf(FilterFixture("filter1"))); !errors.Is(err, datastore.ErrNotFound) {
		t.Fatalf("txn with an invalid op applied another op: %v", err)
	}

	block := BlockFixture("192.168.166.128/26", "node1", 1)
	block.Spec.Allocations = block.Spec.Allocations[:10]
	_, err = ds.Create(ctx, block)
	if fieldErr(err, "spec.allocations") == nil {
		t.Fatalf("create of a short block: error %v does not name spec.allocations", err)
	}

	aff := AffinityFixture("node1", "192.168.166.128/26", "maybe")
	_, err = ds.Create(ctx, aff)
	if fieldErr(err, "spec.state") == nil {
		t.Fatalf("create of an affinity with a bad state: error %v does not name spec.state", err)
	}

	noName := NodeFixture("", "10.0.0.2")
	if _, err := ds.Create(ctx, noName); err == nil {
		t.Fatal("create without a name succeeded")
	}
}

func (s *suite) testTxn(t *testing.T) {
	t.Run("AllOrNothing", func(t *testing.T) {
		ds := s.store(t)
		ctx := s.ctx(t)
		b := s.mustCreate(t, ds, NodeFixture("node-b", "10.0.0.2"))
		c := s.mustCreate(t, ds, NodeFixture("node-c", "10.0.0.3"))
		s.mustCreate(t, ds, NodeFixture("node-c2", "10.0.0.4")) // moves the revision on
		cNow := s.mustGet(t, ds, c.Key)
		// Make c's revision stale.
		cChanged := api.Clone(cNow.Value).(*api.Node)
		cChanged.Metadata.Labels["x"] = "y"
		if _, err := ds.Update(ctx, &datastore.KV{Key: c.Key, Value: cChanged, Revision: cNow.Revision}); err != nil {
			t.Fatal(err)
		}
		a := NodeFixture("node-a", "10.0.0.1")
		bChanged := api.Clone(b.Value).(*api.Node)
		bChanged.Spec.BGP.IPv4Address = "10.0.0.22/24"
		_, err := ds.Txn(ctx,
			datastore.Op{Type: datastore.OpCreate, Value: a},
			datastore.Op{Type: datastore.OpUpdate, Key: b.Key, Value: bChanged, Revision: b.Revision},
			datastore.Op{Type: datastore.OpDelete, Key: c.Key, Revision: c.Revision}, // stale
		)
		wantKeyErr(t, "txn with a stale third op", err, datastore.ErrConflict, c.Key)
		if _, err := ds.Get(ctx, keyOf(a)); !errors.Is(err, datastore.ErrNotFound) {
			t.Fatalf("first op applied: %v", err)
		}
		if got := s.mustGet(t, ds, b.Key); got.Revision != b.Revision {
			t.Fatalf("second op applied: revision %d, want %d", got.Revision, b.Revision)
		}
		s.mustGet(t, ds, c.Key)

		// The error names the first failing key when several fail.
		_, err = ds.Txn(ctx,
			datastore.Op{Type: datastore.OpCreate, Value: NodeFixture("node-b", "10.0.0.2")},
			datastore.Op{Type: datastore.OpDelete, Key: c.Key, Revision: c.Revision})
		wantKeyErr(t, "txn with an existing key first", err, datastore.ErrExists, b.Key)

		_, err = ds.Txn(ctx,
			datastore.Op{Type: datastore.OpCreate, Value: a},
			datastore.Op{Type: datastore.OpUpdate, Value: NodeFixture("node-missing", "10.0.0.9")})
		wantKeyErr(t, "txn updating a missing key", err, datastore.ErrNotFound, keyOf(NodeFixture("node-missing", "10.0.0.9")))
		_, err = ds.Txn(ctx, datastore.Op{Type: datastore.OpDelete, Key: keyOf(NodeFixture("node-missing", "10.0.0.9")), Revision: 3})
		wantKeyErr(t, "txn deleting a missing key", err, datastore.ErrNotFound, keyOf(NodeFixture("node-missing", "10.0.0.9")))
		if _, err := ds.Get(ctx, keyOf(a)); !errors.Is(err, datastore.ErrNotFound) {
			t.Fatalf("failed txn applied its create: %v", err)
		}
	})

	t.Run("Success", func(t *testing.T) {
		ds := s.store(t)
		ctx := s.ctx(t)
		// The IPAM claim sequence of docs/roost-node.md: pending affinity, block
		// CAS create, confirmed affinity.
		cidr := "192.168.166.128/26"
		aff := AffinityFixture("node1", cidr, api.AffinityPending)
		affKV := s.mustCreate(t, ds, aff)
		old := s.mustCreate(t, ds, HandleFixture("old", cidr, 1))
		block := BlockFixture(cidr, "node1", 1)
		confirmed := AffinityFixture("node1", cidr, api.AffinityConfirmed)
		rev, err := ds.Txn(ctx,
			datastore.Op{Type: datastore.OpCreate, Value: block},
			datastore.Op{Type: datastore.OpUpdate, Value: confirmed, Revision: affKV.Revision},
			datastore.Op{Type: datastore.OpPut, Value: HandleFixture("h1", cidr, 1)},
			datastore.Op{Type: datastore.OpDelete, Key: old.Key, Revision: old.Revision},
		)
		if err != nil {
			t.Fatalf("txn: %v", err)
		}
		if rev <= old.Revision {
			t.Fatalf("txn returned revision %d, not after %d", rev, old.Revision)
		}
		for _, want := range []api.Resource{block, confirmed, HandleFixture("h1", cidr, 1)} {
			got := s.mustGet(t, ds, keyOf(want))
			mustSame(t, "after txn", want, got.Value)
			if got.Revision != rev {
				t.Errorf("%s: revision %d, want the txn's %d", got.Key, got.Revision, rev)
			}
		}
		if _, err := ds.Get(ctx, old.Key); !errors.Is(err, datastore.ErrNotFound) {
			t.Fatalf("txn delete: %v", err)
		}

		// OpPut overwrites without a revision, and with one is a CAS.
		h2 := HandleFixture("h1", cidr, 2)
		rev2, err := ds.Txn(ctx, datastore.Op{Type: datastore.OpPut, Value: h2})
		if err != nil {
			t.Fatalf("put over an existing key: %v", err)
		}
		_, err = ds.Txn(ctx, datastore.Op{Type: datastore.OpPut, Value: HandleFixture("h1", cidr, 3), Revision: rev})
		wantKeyErr(t, "put with a stale revision", err, datastore.ErrConflict, keyOf(h2))
		if _, err := ds.Txn(ctx, datastore.Op{Type: datastore.OpPut, Value: HandleFixture("h1", cidr, 3), Revision: rev2}); err != nil {
			t.Fatalf("put at the current revision: %v", err)
		}
		mustSame(t, "after CAS put", HandleFixture("h1", cidr, 3), s.mustGet(t, ds, keyOf(h2)).Value)
	})
}

func (s *suite) testConcurrentCAS(t *testing.T) {
	ds := s.store(t)
	ctx := s.ctx(t)
	const workers = 8
	block := BlockFixture("10.65.0.0/26", "node1", 0)
	block.Spec.SequenceNumber = 0
	kv := s.mustCreate(t, ds, block)

	var wg sync.WaitGroup
	errs := make(chan error, workers)
	conflicts := make(chan int, workers)
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for {
				cur, err := ds.Get(ctx, kv.Key)
				if err != nil {
					errs <- err
					return
				}
				b := api.Clone(cur.Value).(*api.IPAMBlock)
				b.Spec.SequenceNumber++
				_, err = ds.Update(ctx, &datastore.KV{Key: cur.Key, Value: b, Revision: cur.Revision})
				if errors.Is(err, datastore.ErrConflict) {
					n++
					continue
				}
				if err != nil {
					errs <- err
				}
				conflicts <- n
				return
			}
		}()
	}
	wg.Wait()
	close(errs)
	close(conflicts)
	for err := range errs {
		t.Fatalf("worker: %v", err)
	}
	total := 0
	for n := range conflicts {
		total += n
	}
	final := s.mustGet(t, ds, kv.Key).Value.(*api.IPAMBlock)
	if final.Spec.SequenceNumber != workers {
		t.Fatalf("sequenceNumber %d after %d CAS increments (%d conflicts retried)", final.Spec.SequenceNumber, workers, total)
	}
	t.Logf("%d workers, %d conflicts retried", workers, total)
}

func (s *suite) testList(t *testing.T) {
	ds := s.store(t)
	ctx := s.ctx(t)
	var last int64
	create := func(obj api.Resource) *datastore.KV {
		kv := s.mustCreate(t, ds, obj)
		last = max(last, kv.Revision)
		return kv
	}
	n1 := create(NodeFixture("node1", "10.0.0.1"))
	n2 := create(NodeFixture("node2", "10.0.0.2"))
	create(NodeFixture("node10", "10.0.0.10"))
	create(PeerFixture("peer1", "10.0.0.254", 64513))
	create(PoolFixture("pool1", "192.168.0.0/16"))
	create(WorkloadFixture("default", "node1-k8s-pod1-eth0", "node1", "192.168.166.130"))
	create(WorkloadFixture("kube-system", "node1-k8s-dns-eth0", "node1", "192.168.166.131"))
	a1 := create(AffinityFixture("node1", "192.168.166.128/26", api.AffinityConfirmed))
	a2 := create(AffinityFixture("node1", "192.168.166.192/26", api.AffinityPending))
	create(AffinityFixture("node10", "192.168.167.0/26", api.AffinityConfirmed))
	create(AffinityFixture("node2", "192.168.167.64/26", api.AffinityConfirmed))
	create(BlockFixture("192.168.166.128/26", "node1", 1))
	create(HandleFixture("h1", "192.168.166.128/26", 1))

	keysOf := func(prefix string) (map[string]int64, *datastore.ListResult) {
		t.Helper()
		lr, err := ds.List(ctx, prefix)
		if err != nil {
			t.Fatalf("list %s: %v", prefix, err)
		}
		if lr.Revision < last {
			t.Fatalf("list %s: revision %d before the last write %d", prefix, lr.Revision, last)
		}
		if len(lr.Invalid) > 0 {
			t.Fatalf("list %s: invalid entries %v", prefix, lr.Invalid)
		}
		m := map[string]int64{}
		for _, kv := range lr.KVs {
			if _, dup := m[kv.Key]; dup {
				t.Fatalf("list %s: %s twice", prefix, kv.Key)
			}
			if kv.Revision <= 0 || kv.Revision > lr.Revision {
				t.Fatalf("list %s: %s has revision %d (list at %d)", prefix, kv.Key, kv.Revision, lr.Revision)
			}
			if k, err := datastore.KeyFor(kv.Value); err != nil || k != kv.Key {
				t.Fatalf("list %s: value of %s belongs at %q (%v)", prefix, kv.Key, k, err)
			}
			m[kv.Key] = kv.Revision
		}
		return m, lr
	}
	expect := func(prefix string, want ...string) {
		t.Helper()
		got, _ := keysOf(prefix)
		if len(got) != len(want) {
			t.Fatalf("list %s: %d keys %v, want %v", prefix, len(got), got, want)
		}
		for _, k := range want {
			if _, ok := got[k]; !ok {
				t.Fatalf("list %s: missing %s (got %v)", prefix, k, got)
			}
		}
	}

	nodes := datastore.KindPrefix(api.KindNode)
	expect(nodes, n1.Key, n2.Key, datastore.ResourceKey(api.KindNode, "", "node10"))
	expect(datastore.KindPrefix(api.KindBGPPeer), datastore.ResourceKey(api.KindBGPPeer, "", "peer1"))
	expect(datastore.KindPrefix(api.KindBGPFilter))
	expect(datastore.KindPrefix(api.KindWorkloadEndpoint),
		datastore.ResourceKey(api.KindWorkloadEndpoint, "default", "node1-k8s-pod1-eth0"),
		datastore.ResourceKey(api.KindWorkloadEndpoint, "kube-system", "node1-k8s-dns-eth0"))
	expect(datastore.KindPrefix(api.KindWorkloadEndpoint)+"default/",
		datastore.ResourceKey(api.KindWorkloadEndpoint, "default", "node1-k8s-pod1-eth0"))
	expect(datastore.HostAffinityPrefix("node1"), a1.Key, a2.Key)
	if got, _ := keysOf(datastore.KindPrefix(api.KindBlockAffinity)); len(got) != 4 {
		t.Fatalf("all affinities: %v", got)
	}
	if got, _ := keysOf(datastore.IPAMPrefix); len(got) != 6 {
		t.Fatalf("all IPAM: %v", got)
	}
	if got, _ := keysOf(datastore.ResourcePrefix); len(got) != 7 {
		t.Fatalf("all v3 resources: %v", got)
	}

	// Values listed equal values read one by one.
	_, lr := keysOf(datastore.HostAffinityPrefix("node1"))
	for _, kv := range lr.KVs {
		got := s.mustGet(t, ds, kv.Key)
		if got.Revision != kv.Revision {
			t.Fatalf("%s: list revision %d, get %d", kv.Key, kv.Revision, got.Revision)
		}
		mustSame(t, "list vs get "+kv.Key, got.Value, kv.Value)
	}
	a := lr.KVs[0].Value.(*api.BlockAffinity)
	if a.Spec.Node != "node1" || a.Spec.CIDR == "" {
		t.Fatalf("affinity from list: %+v", a.Spec)
	}

	// A write moves the listing revision on.
	if err := ds.Delete(ctx, n2.Key, 0); err != nil {
		t.Fatal(err)
	}
	got, lr2 := keysOf(nodes)
	if lr2.Revision <= lr.Revision || len(got) != 2 {
		t.Fatalf("after delete: revision %d (before %d), keys %v", lr2.Revision, lr.Revision, got)
	}
}

func (s *suite) testWatchFromZero(t *testing.T) {
	ds := s.store(t)
	ctx := s.ctx(t)
	n1 := s.mustCreate(t, ds, NodeFixture("node1", "10.0.0.1"))
	n2 := s.mustCreate(t, ds, NodeFixture("node2", "10.0.0.2"))
	nodes := datastore.KindPrefix(api.KindNode)

	w := NewRecorder(t, ds, nodes, 0, nil, s.timeout)
	// The listing: Added for each existing key, then InSync.
	added := map[string]int64{}
	for {
		ev := w.Next()
		if ev.Type == datastore.InSync {
			break
		}
		if ev.Type != datastore.Added {
			t.Fatalf("before InSync: %s; events:\n%s", fmtEvent(ev), w.Dump())
		}
		added[ev.Key] = ev.Revision
	}
	if len(added) != 2 || added[n1.Key] != n1.Revision || added[n2.Key] != n2.Revision {
		t.Fatalf("initial listing %v, want %s@%d %s@%d", added, n1.Key, n1.Revision, n2.Key, n2.Revision)
	}
	inSync := w.Events[len(w.Events)-1]
	if inSync.Revision < n2.Revision {
		t.Fatalf("InSync revision %d before the last write %d", inSync.Revision, n2.Revision)
	}
	mustSame(t, "listed node1", NodeFixture("node1", "10.0.0.1"), w.View[n1.Key].Value)

	// Changes, in order; a peer (other prefix) is not seen.
	s.mustCreate(t, ds, PeerFixture("peer1", "10.0.0.254", 64513))
	n3 := s.mustCreate(t, ds, NodeFixture("node3", "10.0.0.3"))
	changed := api.Clone(n1.Value).(*api.Node)
	changed.Spec.BGP.IPv4Address = "10.0.0.11/24"
	u1, err := ds.Update(ctx, &datastore.KV{Key: n1.Key, Value: changed, Revision: n1.Revision})
	if err != nil {
		t.Fatal(err)
	}
	if err := ds.Delete(ctx, n2.Key, n2.Revision); err != nil {
		t.Fatal(err)
	}
	d := s.mustCreate(t, ds, NodeFixture("node4", "10.0.0.4"))
	if err := ds.Delete(ctx, d.Key, 0); err != nil {
		t.Fatal(err)
	}

	type want struct {
		typ datastore.EventType
		key string
		rev int64 // 0: any later revision
	}
	wants := []want{
		{datastore.Added, n3.Key, n3.Revision},
		{datastore.Modified, n1.Key, u1.Revision},
		{datastore.Deleted, n2.Key, 0},
		{datastore.Added, d.Key, d.Revision},
		{datastore.Deleted, d.Key, 0},
	}
	prev := int64(0)
	for i, wt := range wants {
		var ev datastore.Event
		for {
			ev = w.Next()
			if ev.Type != datastore.InSync {
				break
			}
		}
		if ev.Type != wt.typ || ev.Key != wt.key || (wt.rev != 0 && ev.Revision != wt.rev) || ev.Revision <= prev {
			t.Fatalf("change %d: got %s, want %s %s rev=%d (after %d); events:\n%s", i, fmtEvent(ev), wt.typ, wt.key, wt.rev, prev, w.Dump())
		}
		prev = ev.Revision
	}
	mustSame(t, "modified value", changed, w.View[n1.Key].Value)
	if diff := w.Diff(ds, nodes); diff != "" {
		t.Fatalf("view differs from the store:\n%s", diff)
	}
	w.ExpectQuiet(300 * time.Millisecond)

	// An empty prefix: just InSync.
	e := NewRecorder(t, ds, datastore.KindPrefix(api.KindBGPFilter), 0, nil, s.timeout)
	if ev := e.Next(); ev.Type != datastore.InSync {
		t.Fatalf("empty prefix: first event %s, want in-sync", fmtEvent(ev))
	}
}

func (s *suite) testWatchFromRevision(t *testing.T) {
	ds := s.store(t)
	ctx := s.ctx(t)
	nodes := datastore.KindPrefix(api.KindNode)
	n1 := s.mustCreate(t, ds, NodeFixture("node1", "10.0.0.1"))
	n2 := s.mustCreate(t, ds, NodeFixture("node2", "10.0.0.2"))

	t.Run("Current", func(t *testing.T) {
		lr, err := ds.List(ctx, nodes)
		if err != nil {
			t.Fatal(err)
		}
		w := NewRecorder(t, ds, nodes, lr.Revision, lr.KVs, s.timeout)
		w.WaitSynced()
		if c := w.Changes(); len(c) != 0 {
			t.Fatalf("watch from the current revision replayed %d changes:\n%s", len(c), w.Dump())
		}
		changed := api.Clone(n1.Value).(*api.Node)
		changed.Metadata.Labels["rack"] = "r2"
		u, err := ds.Update(ctx, &datastore.KV{Key: n1.Key, Value: changed})
		if err != nil {
			t.Fatal(err)
		}
		w.Until("modified node1", func() bool { return w.View[n1.Key].Revision == u.Revision })
		if c := w.Changes(); len(c) != 1 || c[0].Type != datastore.Modified {
			t.Fatalf("want one Modified event:\n%s", w.Dump())
		}
		w.UntilMatches(ds, nodes)
	})

	t.Run("Past", func(t *testing.T) {
		// The consumer knows the store at `at`; later changes made before
		// the watch starts must reach it (as events, or by a relist).
		lr, err := ds.List(ctx, nodes)
		if err != nil {
			t.Fatal(err)
		}
		at := lr.Revision
		n3 := s.mustCreate(t, ds, NodeFixture("node3", "10.0.0.3"))
		if err := ds.Delete(ctx, n2.Key, 0); err != nil {
			t.Fatal(err)
		}
		s.mustCreate(t, ds, PeerFixture("peer1", "10.0.0.254", 64513))

		w := NewRecorder(t, ds, nodes, at, lr.KVs, s.timeout)
		w.UntilMatches(ds, nodes)
		for _, ev := range w.Changes() {
			if ev.Revision <= at && w.Count(datastore.Resync, true) == 0 {
				t.Fatalf("watch from %d replayed %s", at, fmtEvent(ev))
			}
		}
		if _, ok := w.View[n3.Key]; !ok {
			t.Fatalf("node3 not delivered:\n%s", w.Dump())
		}
		n4 := s.mustCreate(t, ds, NodeFixture("node4", "10.0.0.4"))
		w.Until("node4 added", func() bool { return w.View[n4.Key].Revision == n4.Revision })
	})
}

func (s *suite) testWatchEnds(t *testing.T) {
	t.Run("ContextCancel", func(t *testing.T) {
		ds := s.store(t)
		w := NewRecorder(t, ds, datastore.KindPrefix(api.KindNode), 0, nil, s.timeout)
		w.WaitSynced()
		w.Stop()
		s.waitClosed(t, w)
	})
	t.Run("ContextCancelWithUnreadEvents", func(t *testing.T) {
		ds := s.store(t)
		for i := 0; i < 20; i++ {
			s.mustCreate(t, ds, NodeFixture(fmt.Sprintf("node%d", i), fmt.Sprintf("10.0.0.%d", i+1)))
		}
		w := NewRecorder(t, ds, datastore.KindPrefix(api.KindNode), 0, nil, s.timeout)
		time.Sleep(100 * time.Millisecond) // let the backend block on a send
		w.Stop()
		s.waitClosed(t, w)
	})
	t.Run("Close", func(t *testing.T) {
		ds := s.store(t)
		w := NewRecorder(t, ds, datastore.KindPrefix(api.KindNode), 0, nil, s.timeout)
		w.WaitSynced()
		if err := ds.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		s.waitClosed(t, w)
	})
}

func (s *suite) waitClosed(t *testing.T, w *Recorder) {
	t.Helper()
	deadline := time.After(s.timeout)
	for {
		select {
		case _, ok := <-w.ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("watch channel not closed within %s", s.timeout)
		}
	}
}

func (s *suite) testRestart(t *testing.T) {
	if s.h.Restart == nil {
		t.Skip("backend has no server to restart")
	}
	ds := s.store(t)
	ctx := s.ctx(t)
	nodes := datastore.KindPrefix(api.KindNode)
	n1 := s.mustCreate(t, ds, NodeFixture("node1", "10.0.0.1"))
	w := NewRecorder(t, ds, nodes, 0, nil, s.timeout)
	w.WaitSynced()
	synced := len(w.Events)

	// Written just before the outage: delivered exactly once, before or
	// after it.
	n2 := s.mustCreate(t, ds, NodeFixture("node2", "10.0.0.2"))
	s.h.Restart(t)

	// Written as soon as the server is back, likely before the watch is.
	n3 := s.mustCreate(t, ds, NodeFixture("node3", "10.0.0.3"))
	if err := ds.Delete(ctx, n1.Key, 0); err != nil {
		t.Fatalf("delete after restart: %v", err)
	}
	w.UntilMatches(ds, nodes)
	if _, ok := w.View[n2.Key]; !ok {
		t.Fatalf("node2 missing:\n%s", w.Dump())
	}
	if _, ok := w.View[n3.Key]; !ok {
		t.Fatalf("node3 missing:\n%s", w.Dump())
	}
	resync := w.Index(synced, func(ev datastore.Event) bool { return ev.Type == datastore.Resync })
	if resync < 0 {
		t.Fatalf("no Resync after the restart:\n%s", w.Dump())
	}
	if ev := w.Events[resync]; ev.Relist {
		t.Fatalf("restart without compaction relisted (Resync{Relist:true}):\n%s", w.Dump())
	}
	if w.Index(resync, func(ev datastore.Event) bool { return ev.Type == datastore.InSync }) < 0 {
		t.Fatalf("no InSync after the Resync:\n%s", w.Dump())
	}

	// And the watch keeps working.
	n4 := s.mustCreate(t, ds, NodeFixture("node4", "10.0.0.4"))
	w.Until("node4 added", func() bool { return w.View[n4.Key].Revision == n4.Revision })
	w.UntilMatches(ds, nodes)
}

func (s *suite) testCompaction(t *testing.T) {
	if s.h.Compact == nil {
		t.Skip("backend keeps no history to compact")
	}
	ds := s.store(t)
	ctx := s.ctx(t)
	nodes := datastore.KindPrefix(api.KindNode)
	n1 := s.mustCreate(t, ds, NodeFixture("node1", "10.0.0.1"))
	n2 := s.mustCreate(t, ds, NodeFixture("node2", "10.0.0.2"))
	old, err := ds.List(ctx, nodes)
	if err != nil {
		t.Fatal(err)
	}

	// An established watch is not disturbed by a compaction. (It must
	// have caught up: etcd, for one, relists watchers still replaying.)
	live := NewRecorder(t, ds, nodes, 0, nil, s.timeout)
	live.WaitSynced()
	marker := s.mustCreate(t, ds, NodeFixture("marker", "10.0.0.99"))
	live.Until("marker added", func() bool { return live.View[marker.Key].Revision == marker.Revision })

	changed := api.Clone(n1.Value).(*api.Node)
	changed.Metadata.Labels["rack"] = "r9"
	if _, err := ds.Update(ctx, &datastore.KV{Key: n1.Key, Value: changed}); err != nil {
		t.Fatal(err)
	}
	if err := ds.Delete(ctx, n2.Key, 0); err != nil {
		t.Fatal(err)
	}
	s.mustCreate(t, ds, NodeFixture("node3", "10.0.0.3"))
	s.h.Compact(t)

	w := NewRecorder(t, ds, nodes, old.Revision, old.KVs, s.timeout)
	w.UntilMatches(ds, nodes)
	if i := w.Index(0, func(ev datastore.Event) bool { return ev.Type == datastore.Resync && ev.Relist }); i < 0 {
		t.Fatalf("watch from a compacted revision: no Resync{Relist:true}:\n%s", w.Dump())
	}
	n4 := s.mustCreate(t, ds, NodeFixture("node4", "10.0.0.4"))
	w.Until("node4 added", func() bool { return w.View[n4.Key].Revision == n4.Revision })

	live.UntilMatches(ds, nodes)
	if live.Count(datastore.Resync, true) != 0 {
		t.Fatalf("an established watch relisted after a compaction:\n%s", live.Dump())
	}
}

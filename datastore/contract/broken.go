package contract

import (
	"errors"
	"testing"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

// testBroken: a key whose value cannot be decoded or validated is present
// and broken in every operation, before and after a fresh start: never
// listed as absent, never announced as deleted.
func (s *suite) testBroken(t *testing.T) {
	if s.h.PutInvalid == nil || s.h.Reopen == nil {
		t.Skip("backend cannot store invalid values or reopen")
	}
	ds := s.store(t)
	ctx := s.ctx(t)
	pools := datastore.KindPrefix(api.KindIPPool)
	good := s.mustCreate(t, ds, PoolFixture("good", "10.10.0.0/16"))
	bad := PoolFixture("bad", "10.20.0.0/16")
	bad.Spec.CIDR = "300.20.0.0/16"
	s.h.PutInvalid(t, ds, bad)
	badKey := keyOf(bad)

	checkBroken := func(ds datastore.Datastore, what string) *datastore.DecodeError {
		t.Helper()
		_, err := ds.Get(ctx, badKey)
		var de *datastore.DecodeError
		if !errors.As(err, &de) || de.Key != badKey || de.Field != "spec.cidr" || de.Value != `"300.20.0.0/16"` || de.Revision <= 0 {
			t.Fatalf("%s: get of a broken object: %v (%+v)", what, err, de)
		}
		lr, err := ds.List(ctx, pools)
		if err != nil {
			t.Fatal(err)
		}
		if len(lr.KVs) != 1 || lr.KVs[0].Key != good.Key {
			t.Fatalf("%s: list holds %d values, want only %s", what, len(lr.KVs), good.Key)
		}
		if len(lr.Invalid) != 1 || lr.Invalid[0].Key != badKey || lr.Invalid[0].Field != "spec.cidr" || lr.Invalid[0].Revision != de.Revision {
			t.Fatalf("%s: list reports invalid %v, want %s", what, lr.Invalid, badKey)
		}
		return de
	}
	de := checkBroken(ds, "after the write")

	// A watch lists it as Broken, in sync with List.
	rec := NewRecorder(t, ds, pools, 0, nil, s.timeout)
	rec.WaitSynced()
	if ev, ok := rec.View[badKey]; !ok || ev.Type != datastore.Broken {
		t.Fatalf("watch listing lacks the broken pool:\n%s", rec.Dump())
	}
	if d := rec.Diff(ds, pools); d != "" {
		t.Fatalf("watch view and list differ:\n%s", d)
	}

	// A fresh start sees it broken too.
	ds2 := s.h.Reopen(t, ds)
	t.Cleanup(func() { _ = ds2.Close() })
	checkBroken(ds2, "after a fresh start")
	rec2 := NewRecorder(t, ds2, pools, 0, nil, s.timeout)
	rec2.WaitSynced()
	if ev, ok := rec2.View[badKey]; !ok || ev.Type != datastore.Broken {
		t.Fatalf("watch listing after a fresh start lacks the broken pool:\n%s", rec2.Dump())
	}

	// A valid object that becomes invalid is a Broken event, not a deletion.
	worse := PoolFixture("good", "10.10.0.0/16")
	worse.Spec.BlockSize = 99
	s.h.PutInvalid(t, ds, worse)
	rec.Until("the good pool broken", func() bool { return rec.View[good.Key].Type == datastore.Broken })
	if n := rec.Count(datastore.Deleted, false); n != 0 {
		t.Fatalf("a broken object was announced as deleted:\n%s", rec.Dump())
	}

	// Writes treat it as existing: Create fails; Update (with its
	// revision) and Delete work and are ordinary events.
	_, err := ds.Create(ctx, PoolFixture("bad", "10.20.0.0/16"))
	wantKeyErr(t, "create over a broken object", err, datastore.ErrExists, badKey)
	fixed, err := ds.Update(ctx, &datastore.KV{Key: badKey, Value: PoolFixture("bad", "10.20.0.0/16"), Revision: de.Revision})
	if err != nil {
		t.Fatalf("update of a broken object: %v", err)
	}
	rec.Until("the fixed pool", func() bool {
		ev := rec.View[badKey]
		return ev.Type == datastore.Modified && ev.Revision == fixed.Revision
	})
	if err := ds.Delete(ctx, good.Key, 0); err != nil {
		t.Fatalf("delete of a broken object: %v", err)
	}
	rec.Until("the broken pool deleted", func() bool { _, ok := rec.View[good.Key]; return !ok })
	rec.UntilMatches(ds, pools)
}

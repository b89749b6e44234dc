package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/contract"
	"github.com/roostnet/roost/node/names"
)

// TestReleaseNode: n1 holds workload and tunnel addresses in two blocks
// and has workload endpoints; its release, while n2 keeps allocating,
// leaves no record of n1 and the IPAM tree consistent, and n2 keeps every
// address it holds.
func TestReleaseNode(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ds datastore.Datastore, raw func(string) []byte) {
		ctx := ctxT(t)
		mkPool(t, ds, "p1", "10.70.0.0/24", 29, api.EncapNever, api.EncapAlways)
		mkNode(t, ds, "n1", "192.0.2.1/24")
		c1 := New(ds, "n1", WithLogger(quietLog()))
		ta, err := c1.ReconcileTunnels(ctx, nil)
		if err != nil || !ta.VXLAN.IsValid() {
			t.Fatalf("tunnel: %+v %v", ta, err)
		}
		for i := range 10 {
			ip, err := c1.AutoAssign(ctx, Request{Handle: fmt.Sprintf("n1-h%d", i), Attrs: map[string]string{AttrNode: "n1"}})
			if err != nil {
				t.Fatal(err)
			}
			if i < 3 {
				w := contract.WorkloadFixture("default", fmt.Sprintf("n1-k8s-pod%d-eth0", i), "n1", ip.String())
				if _, err := ds.Create(ctx, w); err != nil {
					t.Fatal(err)
				}
			}
		}

		// n2 allocates at the same time.
		c2 := New(ds, "n2", WithLogger(quietLog()))
		var wg sync.WaitGroup
		n2 := map[string]netip.Addr{}
		var n2err error
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 12 {
				h := fmt.Sprintf("n2-h%d", i)
				ip, err := c2.AutoAssign(ctx, Request{Handle: h, Attrs: map[string]string{AttrNode: "n2"}})
				if err != nil {
					n2err = err
					return
				}
				n2[h] = ip
			}
		}()
		rel, err := c1.ReleaseNode(ctx, getNode(t, ds, "n1"), ReleaseOptions{})
		wg.Wait()
		if err != nil || n2err != nil {
			t.Fatalf("release: %v; n2: %v", err, n2err)
		}
		// 11 addresses in /29 blocks: two blocks.
		if rel.Node != "n1" || len(rel.Blocks) != 2 || rel.Addresses != 11 || rel.WorkloadEndpoints != 3 || rel.Affinities != 0 {
			t.Errorf("release: %+v", rel)
		}

		checkConsistent(t, ds)
		if blocks, _ := c1.AffineBlocks(ctx, 4); len(blocks) != 0 {
			t.Errorf("n1 still has blocks %v", blocks)
		}
		for _, prefix := range []string{datastore.HostAffinityPrefix("n1"), datastore.HandleKey("n1-"), datastore.HandleKey(names.VXLANTunnelHandle("n1")),
			datastore.KindPrefix(api.KindWorkloadEndpoint)} {
			res, err := ds.List(ctx, prefix)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.KVs) != 0 {
				t.Errorf("%s: %d records left, first %s", prefix, len(res.KVs), res.KVs[0].Key)
			}
		}
		usage, err := c1.BlockUsage(ctx, 4)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range usage {
			if u.Affinity != "n2" {
				t.Errorf("block %s affine to %q", u.CIDR, u.Affinity)
			}
		}
		for h, ip := range n2 {
			if got, err := c2.AddrsByHandle(ctx, h); err != nil || len(got) != 1 || got[0] != ip {
				t.Errorf("n2 handle %s holds %v (%v), want %s", h, got, err, ip)
			}
		}
		// Nothing left: a second release frees nothing.
		if again, err := c1.ReleaseNode(ctx, nil, ReleaseOptions{}); err != nil || again.Addresses+again.WorkloadEndpoints+again.Affinities+len(again.Blocks) != 0 {
			t.Errorf("second release: %+v %v", again, err)
		}
	})
}

// alwaysConflicting loses every transaction, as if another writer always
// got there first.
type alwaysConflicting struct {
	datastore.Datastore
	txns int
}

func (a *alwaysConflicting) Txn(context.Context, ...datastore.Op) (int64, error) {
	a.txns++
	return 0, &datastore.KeyError{Key: "k", Err: datastore.ErrConflict}
}

// TestReleaseNodeGivesUp: conflicts are retried as often as the client's
// attempts allow, then the release stops with an error naming the step
// and what was released before is reported.
func TestReleaseNodeGivesUp(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ds datastore.Datastore, raw func(string) []byte) {
		ctx := ctxT(t)
		mkPool(t, ds, "p1", "10.80.0.0/24", 29, api.EncapNever, api.EncapNever)
		if _, err := New(ds, "n1", WithLogger(quietLog())).AutoAssign(ctx, wreq("h1")); err != nil {
			t.Fatal(err)
		}
		cds := &alwaysConflicting{Datastore: ds}
		rel, err := New(cds, "n1", WithLogger(quietLog()), WithAttempts(3)).ReleaseNode(ctx, nil, ReleaseOptions{})
		if !errors.Is(err, datastore.ErrConflict) || !strings.Contains(err.Error(), "release block 10.80.0.") ||
			!strings.Contains(err.Error(), "still modified concurrently after 3 attempts") {
			t.Fatalf("release: %v", err)
		}
		if cds.txns != 3 || rel.Addresses != 0 || len(rel.Blocks) != 0 {
			t.Errorf("%d transactions, release %+v", cds.txns, rel)
		}
		checkConsistent(t, ds)
	})
}

package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/internal/dstest"
	"github.com/roostnet/roost/node/names"
)

// backend is a datastore under test plus a way to read raw stored bytes.
type backend struct {
	name string
	open func(t *testing.T) (datastore.Datastore, func(key string) []byte)
}

// extraBackends is filled by backend files (etcd).
var extraBackends []backend

func backends() []backend {
	file := backend{"file", func(t *testing.T) (datastore.Datastore, func(string) []byte) {
		s := dstest.NewFile(t)
		return s, dstest.Raw(s)
	}}
	return append([]backend{file}, extraBackends...)
}

func forEachBackend(t *testing.T, f func(t *testing.T, ds datastore.Datastore, raw func(string) []byte)) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ds, raw := b.open(t)
			f(t, ds, raw)
		})
	}
}

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetLevel(logrus.WarnLevel)
	return l
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mkPool(t *testing.T, ds datastore.Datastore, name, cidr string, blockSize int, ipip, vxlan string) *api.IPPool {
	t.Helper()
	p := &api.IPPool{}
	p.Metadata.Name = name
	p.Spec = api.IPPoolSpec{CIDR: cidr, BlockSize: blockSize, IPIPMode: ipip, VXLANMode: vxlan}
	api.Default(p)
	if _, err := ds.Create(ctxT(t), p); err != nil {
		t.Fatal(err)
	}
	return p
}

func setPool(t *testing.T, ds datastore.Datastore, name string, f func(*api.IPPool)) {
	t.Helper()
	kv, err := ds.Get(ctxT(t), datastore.ResourceKey(api.KindIPPool, "", name))
	if err != nil {
		t.Fatal(err)
	}
	p := kv.Value.(*api.IPPool)
	f(p)
	p.Metadata.ResourceVersion = ""
	if _, err := ds.Update(ctxT(t), &datastore.KV{Key: kv.Key, Value: p, Revision: kv.Revision}); err != nil {
		t.Fatal(err)
	}
}

func mkNode(t *testing.T, ds datastore.Datastore, name, ip string) {
	t.Helper()
	n := &api.Node{}
	n.Metadata.Name = name
	n.Metadata.Labels = map[string]string{"kubernetes.io/hostname": name}
	n.Spec.BGP = &api.NodeBGPSpec{IPv4Address: ip}
	if _, err := ds.Create(ctxT(t), n); err != nil {
		t.Fatal(err)
	}
}

func getNode(t *testing.T, ds datastore.Datastore, name string) *api.Node {
	t.Helper()
	kv, err := ds.Get(ctxT(t), datastore.ResourceKey(api.KindNode, "", name))
	if err != nil {
		t.Fatal(err)
	}
	return kv.Value.(*api.Node)
}

func wreq(handle string) Request {
	return Request{Handle: handle, Attrs: map[string]string{AttrNode: "n1", AttrNamespace: "default", AttrPod: handle}}
}

func TestClaimAssignNextBlockRelease(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ds datastore.Datastore, raw func(string) []byte) {
		ctx := ctxT(t)
		mkPool(t, ds, "p1", "10.10.0.0/24", 30, api.EncapNever, api.EncapAlways)
		c := New(ds, "n1", WithLogger(quietLog()))
		var got []netip.Addr
		for i := range 5 {
			ip, err := c.AutoAssign(ctx, wreq(fmt.Sprintf("h%d", i)))
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, ip)
		}
		blocks, err := c.AffineBlocks(ctx, 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(blocks) != 2 {
			t.Fatalf("affine blocks after 5 addresses in /30 blocks: %v", blocks)
		}
		first := blocks[0]
		for _, b := range blocks {
			if b.Contains(got[0]) {
				first = b
			}
		}
		for i := 0; i < 4; i++ {
			if !first.Contains(got[i]) {
				t.Errorf("address %d = %s not in the first block %s", i, got[i], first)
			}
		}
		if first.Contains(got[4]) {
			t.Errorf("5th address %s should come from a new block", got[4])
		}
		seen := map[netip.Addr]bool{}
		for _, a := range got {
			if seen[a] {
				t.Fatalf("duplicate %s", a)
			}
			seen[a] = true
		}

		// Calico's JSON shapes, read raw.
		var blk struct {
			CIDR        string  `json:"cidr"`
			Affinity    *string `json:"affinity"`
			Allocations []*int  `json:"allocations"`
			Unallocated []int   `json:"unallocated"`
			Attributes  []struct {
				HandleID  *string           `json:"handle_id"`
				Secondary map[string]string `json:"secondary"`
			} `json:"attributes"`
			StrictAffinity bool   `json:"strictAffinity"`
			Deleted        *bool  `json:"deleted"`
			Seq            uint64 `json:"sequenceNumber"`
			ClaimTime      string `json:"affinity_claim_time"`
		}
		b := raw(datastore.BlockKey(first))
		if err := json.Unmarshal(b, &blk); err != nil {
			t.Fatalf("block JSON %s: %v", b, err)
		}
		if blk.CIDR != first.String() || blk.Affinity == nil || *blk.Affinity != "host:n1" || len(blk.Allocations) != 4 ||
			len(blk.Unallocated) != 0 || len(blk.Attributes) != 4 || blk.Deleted == nil || *blk.Deleted || blk.Seq == 0 ||
			!regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`).MatchString(blk.ClaimTime) {
			t.Fatalf("block JSON not in Calico's shape: %s", b)
		}
		for i, a := range blk.Allocations {
			if a == nil || blk.Attributes[*a].HandleID == nil || *blk.Attributes[*a].HandleID != fmt.Sprintf("h%d", i) {
				t.Fatalf("allocation %d wrong in %s", i, b)
			}
		}
		if blk.Attributes[0].Secondary["namespace"] != "default" {
			t.Fatalf("secondary attributes lost: %s", b)
		}
		aff := raw(datastore.AffinityKey("n1", first))
		var av map[string]any
		if err := json.Unmarshal(aff, &av); err != nil || av["state"] != "confirmed" || av["deleted"] != false || len(av) != 2 {
			t.Fatalf("affinity JSON %s", aff)
		}
		hb := raw(datastore.HandleKey("h0"))
		var hv map[string]any
		if err := json.Unmarshal(hb, &hv); err != nil || hv["deleted"] != false {
			t.Fatalf("handle JSON %s", hb)
		}
		if m, ok := hv["block"].(map[string]any); !ok || m[first.String()] != float64(1) {
			t.Fatalf("handle JSON %s", hb)
		}

		// Release one address; its attribute goes, the others renumber.
		rel, err := c.ReleaseByHandle(ctx, "h1")
		if err != nil || len(rel) != 1 || rel[0] != got[1] {
			t.Fatalf("release h1: %v %v", rel, err)
		}
		if raw(datastore.HandleKey("h1")) != nil {
			t.Fatal("handle h1 still stored")
		}
		if err := json.Unmarshal(raw(datastore.BlockKey(first)), &blk); err != nil {
			t.Fatal(err)
		}
		if blk.Allocations[1] != nil || len(blk.Attributes) != 3 || len(blk.Unallocated) != 1 || blk.Unallocated[0] != 1 {
			t.Fatalf("after release: %s", raw(datastore.BlockKey(first)))
		}
		for i, a := range blk.Allocations {
			if i == 1 {
				continue
			}
			if *blk.Attributes[*a].HandleID != fmt.Sprintf("h%d", i) {
				t.Fatalf("attribute renumbering broke allocation %d", i)
			}
		}
		// Releasing again is a no-op.
		if rel, err := c.ReleaseByHandle(ctx, "h1"); err != nil || len(rel) != 0 {
			t.Fatalf("second release: %v %v", rel, err)
		}
		// The freed address is reused by the next request (first block has room).
		ip, err := c.AutoAssign(ctx, wreq("h9"))
		if err != nil || ip != got[1] {
			t.Fatalf("reuse: got %s %v, want %s", ip, err, got[1])
		}
		addrs, err := c.AddrsByHandle(ctx, "h9")
		if err != nil || len(addrs) != 1 || addrs[0] != ip {
			t.Fatalf("AddrsByHandle: %v %v", addrs, err)
		}
	})
}

func TestExhaustion(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ds datastore.Datastore, raw func(string) []byte) {
		ctx := ctxT(t)
		mkPool(t, ds, "p1", "10.20.0.0/28", 30, api.EncapNever, api.EncapNever)
		c := New(ds, "n1", WithLogger(quietLog()))
		for i := range 16 {
			if _, err := c.AutoAssign(ctx, wreq(fmt.Sprintf("h%d", i))); err != nil {
				t.Fatalf("address %d: %v", i, err)
			}
		}
		_, err := c.AutoAssign(ctx, wreq("h16"))
		if !errors.Is(err, ErrExhausted) {
			t.Fatalf("17th address in a /28: %v, want ErrExhausted", err)
		}
		// Another node finds no block either.
		c2 := New(ds, "n2", WithLogger(quietLog()))
		if _, err := c2.AutoAssign(ctx, wreq("x")); !errors.Is(err, ErrExhausted) {
			t.Fatalf("n2: %v", err)
		}
		// No pool at all for IPv6.
		if _, err := c.AutoAssign(ctx, Request{Handle: "v6", Family: 6}); !errors.Is(err, ErrNoPool) {
			t.Fatalf("v6: %v", err)
		}
		// Freeing one address makes room again.
		if _, err := c.ReleaseByHandle(ctx, "h3"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.AutoAssign(ctx, wreq("h17")); err != nil {
			t.Fatal(err)
		}
	})
}

func TestAssignIP(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ds datastore.Datastore, raw func(string) []byte) {
		ctx := ctxT(t)
		mkPool(t, ds, "p1", "10.30.0.0/24", 28, api.EncapNever, api.EncapNever)
		c1 := New(ds, "n1", WithLogger(quietLog()))
		c2 := New(ds, "n2", WithLogger(quietLog()))
		ip := netip.MustParseAddr("10.30.0.37")
		if err := c1.AssignIP(ctx, ip, wreq("a")); err != nil {
			t.Fatal(err)
		}
		// Its block was claimed for n1.
		if b, _ := c1.AffineBlocks(ctx, 4); len(b) != 1 || b[0] != netip.MustParsePrefix("10.30.0.32/28") {
			t.Fatalf("blocks %v", b)
		}
		if err := c1.AssignIP(ctx, ip, wreq("a")); err != nil {
			t.Fatalf("same handle again: %v", err)
		}
		if err := c1.AssignIP(ctx, ip, wreq("b")); !errors.Is(err, ErrInUse) {
			t.Fatalf("other handle: %v", err)
		}
		// An address in n1's block: n2 borrows it (strict affinity is
		// off by default) and it is recorded as n2's; with strictAffinity
		// it is refused.
		borrowed := netip.MustParseAddr("10.30.0.38")
		if err := c2.AssignIP(ctx, borrowed, Request{Handle: "c"}); err != nil {
			t.Fatalf("n2 borrowing %s: %v", borrowed, err)
		}
		if bk, err := c2.getBlock(ctx, netip.MustParsePrefix("10.30.0.32/28")); err != nil || len(bk.b.Borrowed()) != 1 ||
			bk.b.Borrowed()[0] != (api.BorrowedAddr{Ordinal: 6, Node: "n2"}) {
			t.Fatalf("borrowed allocation not recorded for n2: %+v %v", bk, err)
		}
		setIPAMConfig(t, ds, api.IPAMConfigurationSpec{StrictAffinity: true})
		if err := c2.AssignIP(ctx, netip.MustParseAddr("10.30.0.39"), wreq("c2")); !errors.Is(err, ErrStrictAffinity) {
			t.Fatalf("strict affinity: %v", err)
		}
		if err := c1.AssignIP(ctx, netip.MustParseAddr("10.99.0.1"), wreq("d")); !errors.Is(err, ErrNoPool) {
			t.Fatalf("outside pools: %v", err)
		}
		if ok, err := c1.ReleaseIP(ctx, ip, "zzz"); err != nil || ok {
			t.Fatalf("release by wrong handle: %v %v", ok, err)
		}
		if ok, err := c1.ReleaseIP(ctx, ip, "a"); err != nil || !ok {
			t.Fatalf("release: %v %v", ok, err)
		}
		if raw(datastore.HandleKey("a")) != nil {
			t.Fatal("handle a left behind")
		}
	})
}

func TestLeftoverPendingAffinity(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ds datastore.Datastore, raw func(string) []byte) {
		ctx := ctxT(t)
		mkPool(t, ds, "p1", "10.40.0.0/29", 30, api.EncapNever, api.EncapNever)
		// n2 crashed after writing pending affinities for both blocks; one
		// of them it even created. n1 must get the other one, n2's
		// pending affinity on it is not an obstacle.
		for _, cidr := range []string{"10.40.0.0/30", "10.40.0.4/30"} {
			if _, err := ds.Create(ctx, affinityObj("n2", netip.MustParsePrefix(cidr), api.AffinityPending)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := ds.Create(ctx, blockObj(netip.MustParsePrefix("10.40.0.4/30"), api.NewAllocationBlock(netip.MustParsePrefix("10.40.0.4/30"), "n2"))); err != nil {
			t.Fatal(err)
		}
		c1 := New(ds, "n1", WithLogger(quietLog()))
		ip, err := c1.AutoAssign(ctx, wreq("a"))
		if err != nil || !netip.MustParsePrefix("10.40.0.0/30").Contains(ip) {
			t.Fatalf("n1 got %s %v", ip, err)
		}
		// n2 restarts: its pending affinity on 10.40.0.4/30 gets
		// confirmed (the block is its own), the other one is n1's.
		c2 := New(ds, "n2", WithLogger(quietLog()))
		ip2, err := c2.AutoAssign(ctx, wreq("b"))
		if err != nil || !netip.MustParsePrefix("10.40.0.4/30").Contains(ip2) {
			t.Fatalf("n2 got %s %v", ip2, err)
		}
		b2, _ := c2.AffineBlocks(ctx, 4)
		if len(b2) != 1 || b2[0] != netip.MustParsePrefix("10.40.0.4/30") {
			t.Fatalf("n2 blocks %v", b2)
		}
	})
}

// concurrentAssign runs nodes×perNode goroutines, each taking count
// addresses, and checks that no address or block is handed out twice.
func concurrentAssign(t *testing.T, ds datastore.Datastore, nodes, perNode, count int) {
	ctx := ctxT(t)
	type res struct {
		node string
		ip   netip.Addr
	}
	var mu sync.Mutex
	var all []res
	var wg sync.WaitGroup
	errs := make(chan error, nodes*perNode)
	for n := range nodes {
		node := fmt.Sprintf("n%d", n)
		c := New(ds, node, WithLogger(quietLog()), WithAttempts(1000))
		for g := range perNode {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range count {
					h := fmt.Sprintf("%s-g%d-%d", node, g, i)
					ip, err := c.AutoAssign(ctx, Request{Handle: h, Attrs: map[string]string{AttrNode: node}})
					if err != nil {
						errs <- fmt.Errorf("%s: %w", h, err)
						return
					}
					mu.Lock()
					all = append(all, res{node, ip})
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checkConsistent(t, ds)
	seen := map[netip.Addr]string{}
	for _, r := range all {
		if prev, dup := seen[r.ip]; dup {
			t.Fatalf("%s handed out twice (%s and %s)", r.ip, prev, r.node)
		}
		seen[r.ip] = r.node
	}
	if len(seen) != nodes*perNode*count {
		t.Fatalf("got %d addresses, want %d", len(seen), nodes*perNode*count)
	}
}

// checkConsistent verifies the whole IPAM tree: every block is affine to
// exactly the node holding a confirmed affinity, addresses come from the
// node's own blocks, handles count exactly what blocks record.
func checkConsistent(t *testing.T, ds datastore.Datastore) {
	t.Helper()
	ctx := ctxT(t)
	blocks, err := ds.List(ctx, datastore.BlockPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks.Invalid) > 0 {
		t.Fatalf("undecodable blocks: %v", blocks.Invalid[0])
	}
	affs, err := ds.List(ctx, datastore.HostPrefix)
	if err != nil {
		t.Fatal(err)
	}
	owner := map[string]string{}
	for _, kv := range affs.KVs {
		a := kv.Value.(*api.BlockAffinity)
		if !a.Confirmed() {
			continue
		}
		if prev, dup := owner[a.Spec.CIDR]; dup {
			t.Fatalf("block %s affine to %s and %s", a.Spec.CIDR, prev, a.Spec.Node)
		}
		owner[a.Spec.CIDR] = a.Spec.Node
	}
	counts := map[string]map[string]int{}
	for _, kv := range blocks.KVs {
		b := &kv.Value.(*api.IPAMBlock).Spec
		if owner[b.CIDR] != b.AffinityNode() {
			t.Fatalf("block %s: affinity %q, confirmed affinity key of %q", b.CIDR, b.AffinityNode(), owner[b.CIDR])
		}
		free := map[int]bool{}
		for _, u := range b.Unallocated {
			if free[u] {
				t.Fatalf("block %s: %d listed twice as free", b.CIDR, u)
			}
			free[u] = true
		}
		for ord, a := range b.Allocations {
			if (a == nil) != free[ord] {
				t.Fatalf("block %s: ordinal %d allocated=%v but free-listed=%v", b.CIDR, ord, a != nil, free[ord])
			}
			if a != nil {
				h := *b.Attributes[*a].HandleID
				if counts[h] == nil {
					counts[h] = map[string]int{}
				}
				counts[h][b.CIDR]++
			}
		}
	}
	handles, err := ds.List(ctx, datastore.HandlePrefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(handles.KVs) != len(counts) {
		t.Fatalf("%d handles stored, %d in use", len(handles.KVs), len(counts))
	}
	for _, kv := range handles.KVs {
		h := kv.Value.(*api.IPAMHandle)
		for cidr, n := range h.Spec.Block {
			if counts[h.Metadata.Name][cidr] != n {
				t.Fatalf("handle %s counts %d in %s, block has %d", h.Metadata.Name, n, cidr, counts[h.Metadata.Name][cidr])
			}
		}
	}
}

func TestConcurrentGoroutines(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ds datastore.Datastore, raw func(string) []byte) {
		// Small blocks so that claims race all the time.
		mkPool(t, ds, "p1", "10.50.0.0/22", 29, api.EncapNever, api.EncapNever)
		concurrentAssign(t, ds, 3, 4, 10)
	})
}

func TestTunnelAddressLifecycle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ds datastore.Datastore, raw func(string) []byte) {
		ctx := ctxT(t)
		mkPool(t, ds, "p1", "10.60.0.0/24", 28, api.EncapAlways, api.EncapNever)
		mkNode(t, ds, "n1", "192.0.2.1/24")
		c := New(ds, "n1", WithLogger(quietLog()))
		ta, err := c.ReconcileTunnels(ctx, nil)
		if err != nil || !ta.IPIP.IsValid() || ta.VXLAN.IsValid() {
			t.Fatalf("ipip pool: %+v %v", ta, err)
		}
		n := getNode(t, ds, "n1")
		if n.Spec.BGP.IPv4IPIPTunnelAddr != ta.IPIP.String() || n.Spec.BGP.IPv4Address != "192.0.2.1/24" {
			t.Fatalf("node: %+v", n.Spec.BGP)
		}
		raw1 := raw(datastore.ResourceKey(api.KindNode, "", "n1"))
		var nj map[string]any
		if err := json.Unmarshal(raw1, &nj); err != nil {
			t.Fatal(err)
		}
		if nj["spec"].(map[string]any)["bgp"].(map[string]any)["ipv4IPIPTunnelAddr"] != ta.IPIP.String() {
			t.Fatalf("node JSON: %s", raw1)
		}
		addrs, _ := c.AddrsByHandle(ctx, names.IPIPTunnelHandle("n1"))
		if len(addrs) != 1 || addrs[0] != ta.IPIP {
			t.Fatalf("ipip handle holds %v", addrs)
		}
		// Idempotent: same address again.
		if again, err := c.ReconcileTunnels(ctx, nil); err != nil || again != ta {
			t.Fatalf("again: %+v %v", again, err)
		}
		// Block JSON carries Calico's tunnel attributes.
		cidr, _ := ta.IPIP.Prefix(28)
		var blk api.AllocationBlock
		if err := json.Unmarshal(raw(datastore.BlockKey(cidr)), &blk); err != nil {
			t.Fatal(err)
		}
		if len(blk.Attributes) != 1 || blk.Attributes[0].Secondary["type"] != "ipipTunnelAddress" || blk.Attributes[0].Secondary["node"] != "n1" {
			t.Fatalf("tunnel attributes: %+v", blk.Attributes)
		}

		// IPIP off, VXLAN on: the IPIP address goes, a VXLAN one comes.
		setPool(t, ds, "p1", func(p *api.IPPool) { p.Spec.IPIPMode = api.EncapNever; p.Spec.VXLANMode = api.EncapCrossSubnet })
		ta2, err := c.ReconcileTunnels(ctx, nil)
		if err != nil || ta2.IPIP.IsValid() || !ta2.VXLAN.IsValid() {
			t.Fatalf("vxlan pool: %+v %v", ta2, err)
		}
		n = getNode(t, ds, "n1")
		if n.Spec.BGP.IPv4IPIPTunnelAddr != "" || n.Spec.IPv4VXLANTunnelAddr != ta2.VXLAN.String() || n.Spec.VXLANTunnelMACAddr != names.VXLANMAC("n1").String() {
			t.Fatalf("node after switch: %+v %+v", n.Spec, n.Spec.BGP)
		}
		if raw(datastore.HandleKey(names.IPIPTunnelHandle("n1"))) != nil {
			t.Fatal("IPIP handle kept after IPIP was turned off")
		}
		// The node record lost its tunnel address (e.g. restored from an
		// old backup) while IPAM still holds it: the same address is used.
		kv, _ := ds.Get(ctx, datastore.ResourceKey(api.KindNode, "", "n1"))
		nn := kv.Value.(*api.Node)
		nn.Spec.IPv4VXLANTunnelAddr = ""
		nn.Metadata.ResourceVersion = ""
		if _, err := ds.Update(ctx, &datastore.KV{Key: kv.Key, Value: nn, Revision: kv.Revision}); err != nil {
			t.Fatal(err)
		}
		if ta3, err := c.ReconcileTunnels(ctx, nil); err != nil || ta3.VXLAN != ta2.VXLAN {
			t.Fatalf("recovery: %+v %v", ta3, err)
		}
		// A pool that does not apply to this node does not count.
		setPool(t, ds, "p1", func(p *api.IPPool) { p.Spec.NodeSelector = "rack == 'other'" })
		if ta4, err := c.ReconcileTunnels(ctx, nil); err != nil || ta4.VXLAN.IsValid() {
			t.Fatalf("selector: %+v %v", ta4, err)
		}
		n = getNode(t, ds, "n1")
		if n.Spec.IPv4VXLANTunnelAddr != "" || n.Spec.VXLANTunnelMACAddr != "" {
			t.Fatalf("vxlan fields kept: %+v", n.Spec)
		}
		checkConsistent(t, ds)
		// Blocks of a pool that no longer applies can be given back.
		rel, err := c.ReleaseEmptyBlocks(ctx, func(netip.Prefix) bool { return false })
		if err != nil || len(rel) != 1 {
			t.Fatalf("release empty blocks: %v %v", rel, err)
		}
		if bl, _ := ds.List(ctx, datastore.BlockPrefix); len(bl.KVs) != 0 {
			t.Fatalf("blocks left: %d", len(bl.KVs))
		}
	})
}

// racer runs a hook before each transaction of a real store, so a test
// can let "another node" write first.
type racer struct {
	datastore.Datastore
	before func(ops []datastore.Op)
}

func (r *racer) Txn(ctx context.Context, ops ...datastore.Op) (int64, error) {
	if hook := r.before; hook != nil {
		r.before = nil // the hook's own writes do not recurse
		hook(ops)
		r.before = hook
	}
	return r.Datastore.Txn(ctx, ops...)
}

// TestClaimRace makes another node win the block a claim is about to
// create: the loser must drop its pending affinity and take another block.
func TestClaimRace(t *testing.T) {
	ctx := ctxT(t)
	ds := &racer{Datastore: dstest.NewFile(t)}
	mkPool(t, ds, "p1", "10.80.0.0/29", 30, api.EncapNever, api.EncapNever)
	var stolen netip.Prefix
	ds.before = func(ops []datastore.Op) {
		if stolen.IsValid() || len(ops) != 2 || ops[0].Type != datastore.OpCreate {
			return
		}
		b, ok := ops[0].Value.(*api.IPAMBlock)
		if !ok {
			return
		}
		// n2 gets there first, the way Calico claims: affinity then block.
		stolen = netip.MustParsePrefix(b.Spec.CIDR)
		if _, err := ds.Create(ctx, affinityObj("n2", stolen, api.AffinityConfirmed)); err != nil {
			t.Error(err)
		}
		if _, err := ds.Create(ctx, blockObj(stolen, api.NewAllocationBlock(stolen, "n2"))); err != nil {
			t.Error(err)
		}
	}
	c := New(ds, "n1", WithLogger(quietLog()))
	ip, err := c.AutoAssign(ctx, wreq("a"))
	if err != nil {
		t.Fatal(err)
	}
	if !stolen.IsValid() || stolen.Contains(ip) {
		t.Fatalf("got %s, stolen block %s", ip, stolen)
	}
	if dstest.Raw(ds)(datastore.AffinityKey("n1", stolen)) != nil {
		t.Fatal("n1's pending affinity for the lost block was not removed")
	}
	blocks, _ := c.AffineBlocks(ctx, 4)
	if len(blocks) != 1 || !blocks[0].Contains(ip) {
		t.Fatalf("n1 blocks %v", blocks)
	}
	checkConsistent(t, ds)
}

package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/node/names"
)

// setIPAMConfig writes the IPAMConfiguration (Calico's
// /calico/ipam/v2/config).
func setIPAMConfig(t *testing.T, ds datastore.Datastore, spec api.IPAMConfigurationSpec) {
	t.Helper()
	c := &api.IPAMConfiguration{Spec: spec}
	c.Metadata.Name = api.DefaultIPAMConfigName
	if _, err := ds.Txn(ctxT(t), datastore.Op{Type: datastore.OpPut, Value: c}); err != nil {
		t.Fatal(err)
	}
}

func blockOf(t *testing.T, c *Client, cidr string) *api.AllocationBlock {
	t.Helper()
	bk, err := c.getBlock(ctxT(t), netip.MustParsePrefix(cidr))
	if err != nil {
		t.Fatalf("block %s: %v", cidr, err)
	}
	return bk.b
}

// TestBorrowWhenPoolExhausted: two nodes, a pool of two /30 blocks, one
// each. When n1's block is full and no block is free, n1 borrows from
// n2's block (the allocation names n1), unless strictAffinity is set;
// releasing gives the address back to n2's block.
func TestBorrowWhenPoolExhausted(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ds datastore.Datastore, raw func(string) []byte) {
		ctx := ctxT(t)
		mkPool(t, ds, "p1", "10.50.0.0/29", 30, api.EncapNever, api.EncapNever)
		c1 := New(ds, "n1", WithLogger(quietLog()))
		c2 := New(ds, "n2", WithLogger(quietLog()))
		first, err := c2.AutoAssign(ctx, Request{Handle: "n2-a", Attrs: map[string]string{AttrNode: "n2"}})
		if err != nil {
			t.Fatal(err)
		}
		n2block, _ := first.Prefix(30)
		var mine []netip.Addr
		for i := range 4 {
			ip, err := c1.AutoAssign(ctx, wreq(fmt.Sprintf("h%d", i)))
			if err != nil {
				t.Fatalf("address %d: %v", i, err)
			}
			mine = append(mine, ip)
		}
		n1block, _ := mine[0].Prefix(30)
		for _, ip := range mine {
			if !n1block.Contains(ip) {
				t.Fatalf("n1's first four addresses %v are not all in its block %s", mine, n1block)
			}
		}
		// The pool has no free block: n1 borrows from n2's, without the
		// node attribute in its request (it is filled in).
		b, err := c1.AutoAssign(ctx, Request{Handle: "borrower", Attrs: map[string]string{AttrPod: "x"}})
		if err != nil {
			t.Fatalf("borrowing: %v", err)
		}
		if !n2block.Contains(b) {
			t.Fatalf("borrowed %s, want an address of n2's block %s", b, n2block)
		}
		blk := blockOf(t, c1, n2block.String())
		if blk.AffinityNode() != "n2" {
			t.Fatalf("n2's block changed affinity: %v", blk.Affinity)
		}
		bor := blk.Borrowed()
		if ord, _ := api.Ordinal(n2block, b); len(bor) != 1 || bor[0] != (api.BorrowedAddr{Ordinal: ord, Node: "n1"}) {
			t.Fatalf("borrowed allocations %+v", bor)
		}
		if got, _ := c1.AddrsByHandle(ctx, "borrower"); len(got) != 1 || got[0] != b {
			t.Fatalf("handle holds %v", got)
		}
		if blocks, _ := c1.AffineBlocks(ctx, 4); len(blocks) != 1 {
			t.Fatalf("n1 claimed %v", blocks)
		}
		checkConsistent(t, ds)

		// strictAffinity: no borrowing, a clear error.
		setIPAMConfig(t, ds, api.IPAMConfigurationSpec{StrictAffinity: true})
		if _, err := c1.AutoAssign(ctx, wreq("strict")); !errors.Is(err, ErrExhausted) {
			t.Fatalf("strict affinity: %v, want ErrExhausted", err)
		}
		if raw(datastore.HandleKey("strict")) != nil {
			t.Fatal("a failed assignment left its handle")
		}
		setIPAMConfig(t, ds, api.IPAMConfigurationSpec{})

		// Every address taken: exhausted, by either node.
		for i := 0; ; i++ {
			_, err := c1.AutoAssign(ctx, wreq(fmt.Sprintf("fill%d", i)))
			if errors.Is(err, ErrExhausted) {
				break
			}
			if err != nil || i > 4 {
				t.Fatalf("filling: %v after %d", err, i)
			}
		}
		n2req := Request{Handle: "late", Attrs: map[string]string{AttrNode: "n2"}}
		if _, err := c2.AutoAssign(ctx, n2req); !errors.Is(err, ErrExhausted) {
			t.Fatalf("n2 in a full pool: %v", err)
		}
		// Releasing the borrowed address frees it in n2's block.
		if rel, err := c1.ReleaseByHandle(ctx, "borrower"); err != nil || len(rel) != 1 || rel[0] != b {
			t.Fatalf("release: %v %v", rel, err)
		}
		if got, err := c2.AutoAssign(ctx, n2req); err != nil || got != b {
			t.Fatalf("n2 after the release: %s %v, want %s", got, err, b)
		}
		if len(blockOf(t, c1, n2block.String()).Borrowed()) != 2 { // fill* borrowed the other two
			t.Fatalf("borrowed after release: %+v", blockOf(t, c1, n2block.String()).Borrowed())
		}
		checkConsistent(t, ds)
	})
}

// TestBlockLimitAndAutoAllocate: maxBlocksPerHost stops claims (and, as
// in Calico, borrowing); autoAllocateBlocks false stops both too.
func TestBlockLimitAndAutoAllocate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ds datastore.Datastore, raw func(string) []byte) {
		ctx := ctxT(t)
		mkPool(t, ds, "p1", "10.51.0.0/24", 30, api.EncapNever, api.EncapNever)
		c := New(ds, "n1", WithLogger(quietLog()))
		setIPAMConfig(t, ds, api.IPAMConfigurationSpec{StrictAffinity: true, MaxBlocksPerHost: 2})
		for i := range 8 {
			if _, err := c.AutoAssign(ctx, wreq(fmt.Sprintf("h%d", i))); err != nil {
				t.Fatalf("address %d: %v", i, err)
			}
		}
		if _, err := c.AutoAssign(ctx, wreq("h8")); !errors.Is(err, ErrBlockLimit) {
			t.Fatalf("third block: %v, want ErrBlockLimit", err)
		}
		off := false
		setIPAMConfig(t, ds, api.IPAMConfigurationSpec{AutoAllocateBlocks: &off, StrictAffinity: true})
		if _, err := c.AutoAssign(ctx, wreq("h8")); !errors.Is(err, ErrExhausted) {
			t.Fatalf("autoAllocateBlocks false: %v, want ErrExhausted", err)
		}
		// Freed space in an own block is used without a claim.
		if _, err := c.ReleaseByHandle(ctx, "h3"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.AutoAssign(ctx, wreq("h8")); err != nil {
			t.Fatal(err)
		}
	})
}

// TestReleaseEmptyBlock: an empty block goes back when the node keeps
// another block of the family; a block in use, or the last one, stays.
func TestReleaseEmptyBlock(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ds datastore.Datastore, raw func(string) []byte) {
		ctx := ctxT(t)
		mkPool(t, ds, "p1", "10.52.0.0/24", 30, api.EncapNever, api.EncapNever)
		c := New(ds, "n1", WithLogger(quietLog()))
		var ips []netip.Addr
		for i := range 5 {
			ip, err := c.AutoAssign(ctx, wreq(fmt.Sprintf("h%d", i)))
			if err != nil {
				t.Fatal(err)
			}
			ips = append(ips, ip)
		}
		b1, _ := ips[0].Prefix(30)
		b2, _ := ips[4].Prefix(30)
		if ok, err := c.ReleaseEmptyBlock(ctx, b2); err != nil || ok {
			t.Fatalf("block in use released: %v %v", ok, err)
		}
		if _, err := c.ReleaseByHandle(ctx, "h4"); err != nil {
			t.Fatal(err)
		}
		if ok, err := c.ReleaseEmptyBlock(ctx, b2); err != nil || !ok {
			t.Fatalf("empty second block: %v %v", ok, err)
		}
		if raw(datastore.BlockKey(b2)) != nil || raw(datastore.AffinityKey("n1", b2)) != nil {
			t.Fatal("block or affinity left")
		}
		for i := range 4 {
			if _, err := c.ReleaseByHandle(ctx, fmt.Sprintf("h%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		if ok, err := c.ReleaseEmptyBlock(ctx, b1); err != nil || ok {
			t.Fatalf("the node's last block released: %v %v", ok, err)
		}
		// Another node's block is not ours to release.
		c2 := New(ds, "n2", WithLogger(quietLog()))
		if ok, err := c2.ReleaseEmptyBlock(ctx, b1); err != nil || ok {
			t.Fatalf("n2 released n1's block: %v %v", ok, err)
		}
	})
}

// TestBlockWithoutAffinityGoes: a block whose affinity was dropped while
// addresses were in use is deleted with its last address, as Calico does.
func TestBlockWithoutAffinityGoes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ds datastore.Datastore, raw func(string) []byte) {
		ctx := ctxT(t)
		mkPool(t, ds, "p1", "10.53.0.0/24", 30, api.EncapNever, api.EncapNever)
		c := New(ds, "n1", WithLogger(quietLog()))
		ip, err := c.AutoAssign(ctx, wreq("a"))
		if err != nil {
			t.Fatal(err)
		}
		cidr, _ := ip.Prefix(30)
		bk, _ := c.getBlock(ctx, cidr)
		bk.b.Affinity = nil
		if _, err := ds.Update(ctx, &datastore.KV{Key: datastore.BlockKey(cidr), Value: blockObj(cidr, bk.b), Revision: bk.rev}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ReleaseByHandle(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if raw(datastore.BlockKey(cidr)) != nil {
			t.Fatal("empty block without affinity kept")
		}
	})
}

// TestAssignDualStack: the API a CNI plugin uses: one address per
// wanted family for one handle, converging, and all or nothing.
func TestAssignDualStack(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ds datastore.Datastore, raw func(string) []byte) {
		ctx := ctxT(t)
		mkPool(t, ds, "v4", "10.54.0.0/24", 28, api.EncapNever, api.EncapNever)
		c := New(ds, "n1", WithLogger(quietLog()))
		attrs := map[string]string{AttrNode: "n1", AttrNamespace: "default", AttrPod: "web"}

		// Only IPv4 pools: auto gives IPv4 only; IPv6 required fails and
		// gives back the IPv4 address it took.
		a, err := c.Assign(ctx, AssignArgs{Handle: "web", Attrs: attrs})
		if err != nil || !a.IPv4.IsValid() || a.IPv6.IsValid() {
			t.Fatalf("auto, IPv4 pool only: %+v %v", a, err)
		}
		if _, err := c.Assign(ctx, AssignArgs{Handle: "db", Attrs: attrs, IPv6: FamilyOn}); !errors.Is(err, ErrNoPool) {
			t.Fatalf("IPv6 required without a pool: %v", err)
		}
		if raw(datastore.HandleKey("db")) != nil {
			t.Fatal("the failed assignment kept its IPv4 address")
		}

		mkPool(t, ds, "v6", "fd00:54::/120", 124, api.EncapNever, api.EncapNever)
		b, err := c.Assign(ctx, AssignArgs{Handle: "web", Attrs: attrs})
		if err != nil || b.IPv4 != a.IPv4 || !b.IPv6.Is6() {
			t.Fatalf("dual stack, converging on the held IPv4: %+v %v (had %+v)", b, err, a)
		}
		if again, err := c.Assign(ctx, AssignArgs{Handle: "web", Attrs: attrs}); err != nil || again != b {
			t.Fatalf("again: %+v %v, want %+v", again, err, b)
		}
		if held, _ := c.AddrsByHandle(ctx, "web"); len(held) != 2 {
			t.Fatalf("handle holds %v", held)
		}
		if blocks, _ := c.AffineBlocks(ctx, 6); len(blocks) != 1 || blocks[0].Bits() != 124 {
			t.Fatalf("IPv6 blocks %v", blocks)
		}
		// Specific addresses, one per family; a second one of a family is
		// refused; IPv4 off.
		want6 := netip.MustParseAddr("fd00:54::77")
		c6, err := c.Assign(ctx, AssignArgs{Handle: "cache", Attrs: attrs, IPv4: FamilyOff, IPs: []netip.Addr{want6}})
		if err != nil || c6.IPv4.IsValid() || c6.IPv6 != want6 {
			t.Fatalf("specific IPv6, IPv4 off: %+v %v", c6, err)
		}
		if _, err := c.Assign(ctx, AssignArgs{Handle: "cache", IPs: []netip.Addr{netip.MustParseAddr("fd00:54::78")}}); err == nil {
			t.Fatal("a second IPv6 address for the handle was accepted")
		}
		if _, err := c.Assign(ctx, AssignArgs{Handle: "x", IPs: []netip.Addr{netip.MustParseAddr("10.54.0.9"), netip.MustParseAddr("10.54.0.10")}}); err == nil {
			t.Fatal("two IPv4 addresses requested and accepted")
		}
		// All or nothing: IPv6 exhausted after IPv4 was taken.
		setPool(t, ds, "v6", func(p *api.IPPool) { p.Spec.Disabled = true })
		mkPool(t, ds, "v6small", "fd00:55::/127", 127, api.EncapNever, api.EncapNever)
		for i := range 2 {
			if _, err := c.Assign(ctx, AssignArgs{Handle: fmt.Sprintf("fill%d", i), IPv4: FamilyOff, IPv6: FamilyOn}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.Assign(ctx, AssignArgs{Handle: "late", Attrs: attrs}); !errors.Is(err, ErrExhausted) {
			t.Fatalf("IPv6 exhausted: %v", err)
		}
		if raw(datastore.HandleKey("late")) != nil {
			t.Fatal("a failed dual-stack assignment kept its IPv4 address")
		}
		if rel, err := c.ReleaseByHandle(ctx, "web"); err != nil || len(rel) != 2 {
			t.Fatalf("release by handle: %v %v", rel, err)
		}
		checkConsistent(t, ds)
	})
}

// TestVXLANV6TunnelAddress: an IPv6 pool with vxlanMode gives the node
// an IPv6 VXLAN tunnel address and Felix's IPv6 VTEP MAC, under Calico's
// handle and attribute type.
func TestVXLANV6TunnelAddress(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ds datastore.Datastore, raw func(string) []byte) {
		ctx := ctxT(t)
		mkPool(t, ds, "v4", "10.56.0.0/24", 26, api.EncapNever, api.EncapAlways)
		mkPool(t, ds, "v6", "fd00:56::/64", 122, api.EncapNever, api.EncapAlways)
		mkNode(t, ds, "n1", "192.0.2.1/24")
		c := New(ds, "n1", WithLogger(quietLog()))
		ta, err := c.ReconcileTunnels(ctx, nil)
		if err != nil || !ta.VXLAN.Is4() || !ta.VXLANV6.Is6() || ta.IPIP.IsValid() {
			t.Fatalf("tunnels: %+v %v", ta, err)
		}
		n := getNode(t, ds, "n1")
		if n.Spec.IPv6VXLANTunnelAddr != ta.VXLANV6.String() || n.Spec.VXLANTunnelMACAddrV6 != names.VXLANMACV6("n1").String() {
			t.Fatalf("node: %+v", n.Spec)
		}
		if names.VXLANMACV6("n1").String() == names.VXLANMAC("n1").String() {
			t.Fatal("IPv4 and IPv6 VTEP MACs are equal")
		}
		cidr, _ := ta.VXLANV6.Prefix(122)
		blk := blockOf(t, c, cidr.String())
		if len(blk.Attributes) != 1 || blk.Attributes[0].Secondary["type"] != "vxlanV6TunnelAddress" || *blk.Attributes[0].HandleID != "vxlan-v6-tunnel-addr-n1" {
			t.Fatalf("attributes %+v", blk.Attributes)
		}
		setPool(t, ds, "v6", func(p *api.IPPool) { p.Spec.VXLANMode = api.EncapNever })
		if ta, err := c.ReconcileTunnels(ctx, nil); err != nil || ta.VXLANV6.IsValid() || !ta.VXLAN.IsValid() {
			t.Fatalf("v6 VXLAN off: %+v %v", ta, err)
		}
		n = getNode(t, ds, "n1")
		if n.Spec.IPv6VXLANTunnelAddr != "" || n.Spec.VXLANTunnelMACAddrV6 != "" {
			t.Fatalf("node kept IPv6 VXLAN fields: %+v", n.Spec)
		}
		checkConsistent(t, ds)
	})
}

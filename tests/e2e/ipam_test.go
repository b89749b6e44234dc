package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/roostnet/roost/tests/lab"
)

var (
	tagGrowBGP   = tag("grb")
	tagGrowVXLAN = tag("grx")
)

// TestIPAMGrowthBGP: /30 blocks in a /28 pool without encapsulation.
// host1's five workloads fill one block and claim a second, and all stay
// reachable. Once every block of the pool is taken, host2 borrows an
// address from another host's block: host2's BIRD advertises it as a /32
// (it lies outside host2's own blocks), every other host's BIRD programs
// that /32 to host2, more specific than the owner's block, and the
// borrowed workload pings and is pinged by everyone, the block owner's
// workloads included. When it is deleted, the /32 is withdrawn.
func TestIPAMGrowthBGP(t *testing.T) {
	ipamGrowth(t, tagGrowBGP, "Never")
}

// TestIPAMGrowthVXLAN: the same with vxlanMode Always: roost-node routes
// the borrowed /32 through vxlan.calico to host2's tunnel address.
func TestIPAMGrowthVXLAN(t *testing.T) {
	ipamGrowth(t, tagGrowVXLAN, "Always")
}

func ipamGrowth(t *testing.T, tag, vxlanMode string) {
	c := newLab(t, tag, lab.Options{Hosts: 3})
	c.apply(lab.ClusterYAML(lab.Pool{Name: "e2e-small", CIDR: "10.244.0.0/28", BlockSize: 30, VXLANMode: vxlanMode}))
	h1, h2, h3 := c.Hosts[0], c.Hosts[1], c.Hosts[2]
	start := time.Now()
	c.start(c.Hosts)
	c.waitSessions(mesh(c.Hosts))

	// host1: five workloads (and, with VXLAN, its tunnel address) need a
	// second /30 block.
	var ws1 []*lab.Workload
	for i := 1; i <= 5; i++ {
		ws1 = append(ws1, c.addWorkload(h1, fmt.Sprintf("h1-w%d", i)))
	}
	blocks, err := c.blocks()
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks[h1.Name]) != 2 {
		t.Fatalf("host1 has blocks %v, want 2", blocks[h1.Name])
	}
	w2 := c.addWorkload(h2, "h2-w1")
	w3 := c.addWorkload(h3, "h3-w1")
	want := noEncap
	if vxlanMode != "Never" {
		want = c.vxlanTo
	}
	c.waitBlockRoutes(c.Hosts, want)
	record(t, "grown in %s (host1: 2 blocks for 5 workloads)", time.Since(start).Round(time.Millisecond))
	pairs := []pingPair{}
	for _, w := range ws1 {
		pairs = append(pairs, pingPair{w2, w}, pingPair{w, w3})
	}
	c.pingPairs(pairs...)

	// Every block of the pool is taken now: host2's next addresses fill
	// its block, then one is borrowed.
	if blocks, _ := c.blocks(); len(blocks[h1.Name])+len(blocks[h2.Name])+len(blocks[h3.Name]) != 4 {
		t.Fatalf("blocks %v, want the pool's four", blocks)
	}
	var borrowed *lab.Workload
	own := map[netip.Prefix]bool{}
	blocks, _ = c.blocks()
	for _, b := range blocks[h2.Name] {
		own[b] = true
	}
	for i := 2; i <= 5 && borrowed == nil; i++ {
		w := c.addWorkload(h2, fmt.Sprintf("h2-w%d", i))
		if b, _ := w.IP.Prefix(30); !own[b] {
			borrowed = w
		}
	}
	if borrowed == nil {
		t.Fatal("host2 never got an address outside its own block")
	}
	var list struct {
		Borrowed []struct {
			IP, BorrowingNode, Block, BlockOwner string
		} `json:"borrowed"`
	}
	if err := json.Unmarshal([]byte(c.birdctl(nil, "ipam", "show", "--show-borrowed", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Borrowed) != 1 || list.Borrowed[0].IP != borrowed.IP.String() || list.Borrowed[0].BorrowingNode != h2.Name {
		t.Fatalf("ipam show --show-borrowed: %+v, want %s borrowed by host2", list.Borrowed, borrowed.IP)
	}
	owner := h1
	if list.Borrowed[0].BlockOwner == h3.Name {
		owner = h3
	}
	t.Logf("host2 borrowed %s from %s's block %s", borrowed.IP, owner.Name, list.Borrowed[0].Block)
	t.Log(c.birdctl(nil, "ipam", "show", "--show-borrowed"))

	host32 := netip.PrefixFrom(borrowed.IP, 32)
	routeTo := func(from *lab.Host) (routeWant, error) {
		if vxlanMode == "Never" {
			return routeWant{via: h2.IP, dev: "eth0", proto: "bird"}, nil
		}
		a, err := c.vxlanAddr(h2)
		return routeWant{via: a, dev: "vxlan.calico", proto: "80", onlink: true}, err
	}
	start = time.Now()
	c.eventually(convergeTimeout, "the borrowed /32 routed to host2 everywhere", func() error {
		for _, h := range []*lab.Host{h1, h3} {
			rs, err := c.routes(h)
			if err != nil {
				return err
			}
			r, ok := rs[host32]
			if !ok {
				return fmt.Errorf("%s has no route to %s", h.Name, host32)
			}
			w, err := routeTo(h)
			if err != nil {
				return err
			}
			if err := w.check(r); err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
		}
		rs, err := c.routes(h2)
		if err != nil {
			return err
		}
		if r := rs[host32]; r.Dev == "" || r.Protocol != "80" || r.Gateway != "" {
			return fmt.Errorf("host2's route to its workload %s: %s", host32, r)
		}
		return nil
	})
	record(t, "borrowed /32 routed in %s", time.Since(start).Round(time.Millisecond))
	pairs = pairs[:0]
	for _, w := range append(append([]*lab.Workload{}, ws1...), w2, w3) {
		if w != borrowed {
			pairs = append(pairs, pingPair{borrowed, w}, pingPair{w, borrowed})
		}
	}
	c.pingPairs(pairs...)

	// Given back: the /32 disappears everywhere.
	if err := c.DelWorkload(c.ctx, borrowed); err != nil {
		t.Fatal(err)
	}
	c.eventually(convergeTimeout, "the borrowed /32 withdrawn", func() error {
		for _, h := range c.Hosts {
			rs, err := c.routes(h)
			if err != nil {
				return err
			}
			if r, ok := rs[host32]; ok {
				return fmt.Errorf("%s still routes %s", h.Name, r)
			}
		}
		return nil
	})
}

// addWorkload attaches one workload and fails t on error.
func (c *cluster) addWorkload(h *lab.Host, name string) *lab.Workload {
	c.t.Helper()
	w, err := c.AddWorkload(c.ctx, h, name)
	if err != nil {
		c.t.Fatalf("workload %s on %s: %v", name, h.Name, err)
	}
	c.workloads = append(c.workloads, w)
	return w
}

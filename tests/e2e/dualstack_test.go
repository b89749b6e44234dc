package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roostnet/roost/tests/lab"
)

var (
	tagDSBGP   = tag("dsb")
	tagDSVXLAN = tag("dsx")
)

// dualStackYAML is the lab's BGP configuration and an IPv4 and an IPv6
// pool with the given vxlanMode.
func dualStackYAML(vxlanMode string) string {
	return poolYAML(true, vxlanMode) + fmt.Sprintf(`---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: e2e-pool-v6}
spec: {cidr: "fd00:244::/64", blockSize: 122, vxlanMode: %s, ipipMode: Never, natOutgoing: false}
`, vxlanMode)
}

// TestDualStackBGP: three dual-stack hosts (IPv4 and IPv6 on eth0, IP6
// set), an IPv4 and an IPv6 pool without encapsulation. Every Node
// registers its ipv6Address, BIRD runs an IPv4 and an IPv6 mesh (checked
// with bird -p), BIRD programs the other hosts' IPv6 blocks, and every
// workload pings every other one over IPv4 and IPv6.
func TestDualStackBGP(t *testing.T) {
	dualStack(t, tagDSBGP, "Never")
}

// TestDualStackVXLAN: the same with vxlanMode Always: roost-node routes
// the IPv6 blocks through vxlan-v6.calico to the owners' IPv6 tunnel
// addresses; workloads get VXLAN over IPv6's MTU (1430), and full-size
// DF pings cross over both families.
func TestDualStackVXLAN(t *testing.T) {
	dualStack(t, tagDSVXLAN, "Always")
}

func dualStack(t *testing.T, tag, vxlanMode string) {
	c := newLab(t, tag, lab.Options{Hosts: 3, IPv6: true})
	c.apply(dualStackYAML(vxlanMode))
	start := time.Now()
	c.start(c.Hosts)
	ws := c.addWorkloads(c.Hosts, 1)
	for _, w := range ws {
		if len(w.IPs) != 2 || !w.IPs[0].Is4() || !w.IPs[1].Is6() {
			t.Fatalf("%s: addresses %v, want one IPv4 and one IPv6", w.Name, w.IPs)
		}
	}
	c.waitSessions(dualMesh(c.Hosts))
	for _, h := range c.Hosts {
		if got := c.nodeField(h, "bgp", "ipv6Address"); got != h.Prefix6.String() {
			t.Fatalf("%s: Node ipv6Address %q, want %s", h.Name, got, h.Prefix6)
		}
	}
	want := func(_, owner *lab.Host) (routeWant, error) {
		return routeWant{via: owner.IP6, dev: "eth0", proto: "bird"}, nil
	}
	if vxlanMode != "Never" {
		want = func(_, owner *lab.Host) (routeWant, error) {
			a, err := netip.ParseAddr(c.nodeField(owner, "ipv6VXLANTunnelAddr"))
			if err != nil {
				return routeWant{}, fmt.Errorf("%s has no IPv6 VXLAN tunnel address yet", owner.Name)
			}
			return routeWant{via: a, dev: "vxlan-v6.calico", proto: "80", onlink: true}, nil
		}
	}
	want4 := noEncap
	if vxlanMode != "Never" {
		want4 = c.vxlanTo
	}
	c.waitBlockRoutes(c.Hosts, want4)
	var n int
	c.eventually(convergeTimeout, "routes to every IPv6 block", func() (err error) {
		n, err = c.checkBlockRoutesFam(c.Hosts, 6, want)
		return err
	})
	record(t, "converged in %s (%d hosts, %d sessions, %d IPv6 block routes)", time.Since(start).Round(time.Millisecond),
		len(c.Hosts), 2*len(c.Hosts)*(len(c.Hosts)-1), n)
	c.checkBirdConfig(c.Hosts[0])
	c.pingAll(ws)
	c.pingAll6(ws)

	// MTUs: with VXLAN pools of both families the workloads get the
	// smaller tunnel MTU, VXLAN over IPv6's (host - 70).
	mtu, vx := 1500, 0
	if vxlanMode != "Never" {
		mtu, vx = 1430, 1450
		for _, h := range c.Hosts {
			if m, err := c.linkMTU(h.NS, "vxlan-v6.calico"); err != nil || m != 1430 {
				t.Fatalf("%s: vxlan-v6.calico MTU %d (%v), want 1430", h.Name, m, err)
			}
		}
	}
	c.checkMTU(c.Hosts, ws, mtu, vx)
	w6 := *ws[2]
	w6.IP = ws[2].IP6()
	c.dfPings(mtu, pingPair{ws[0], ws[1]}, pingPair{ws[1], &w6})
}

// dualMesh expects a session from every host to every other, per family.
func dualMesh(hosts []*lab.Host) sessions {
	want := mesh(hosts)
	for _, h := range hosts {
		for _, o := range hosts {
			if o != h {
				want[h] = append(want[h], o.IP6)
			}
		}
	}
	return want
}

// nodeField reads a string field of h's Node spec (path below spec).
func (c *cluster) nodeField(h *lab.Host, path ...string) string {
	c.t.Helper()
	out := c.birdctl(nil, "get", "node", h.Name, "-o", "json")
	var items []map[string]any
	if err := decodeList(out, &items); err != nil || len(items) != 1 {
		c.t.Fatalf("node %s: %v: %s", h.Name, err, out)
	}
	var v any = items[0]["spec"]
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = m[p]
	}
	s, _ := v.(string)
	return s
}

// checkBirdConfig checks h's rendered BIRD configuration with the real
// BIRD (bird -p) and that it holds the IPv6 mesh sessions and IPv6 blocks.
func (c *cluster) checkBirdConfig(h *lab.Host) {
	c.t.Helper()
	cfg := filepath.Join(h.BirdDir(), "bird.cfg")
	if out, err := exec.Command("bird", "-p", "-c", cfg).CombinedOutput(); err != nil {
		c.t.Fatalf("%s: bird -p -c %s: %v: %s", h.Name, cfg, err, out)
	}
	peers, err := os.ReadFile(filepath.Join(h.BirdDir(), "peers.cfg"))
	if err != nil {
		c.t.Fatal(err)
	}
	for _, o := range c.Hosts {
		if o == h {
			continue
		}
		name := "Mesh_" + strings.NewReplacer(":", "_", ".", "_").Replace(o.IP6.String())
		if !strings.Contains(string(peers), "protocol bgp "+name+" ") || !strings.Contains(string(peers), "neighbor "+o.IP6.String()+" ") {
			c.t.Errorf("%s: peers.cfg has no IPv6 session %s to %s:\n%s", h.Name, name, o.IP6, peers)
		}
	}
	aggr, _ := os.ReadFile(filepath.Join(h.BirdDir(), "bird_aggr.cfg"))
	if !strings.Contains(string(aggr), "protocol static roost_blocks_v6") || !strings.Contains(string(aggr), "fd00:244:") {
		c.t.Errorf("%s: bird_aggr.cfg has no IPv6 block:\n%s", h.Name, aggr)
	}
}

// routesFam returns h's main table of a family by destination (host
// routes, which ip writes without a length, keyed with it).
func (c *cluster) routesFam(h *lab.Host, fam int) (map[netip.Prefix]kroute, error) {
	if fam == 4 {
		return c.routes(h)
	}
	out, err := c.Exec(c.ctx, h.NS, nil, "ip", "-j", "-6", "route", "show", "table", "main")
	if err != nil {
		return nil, err
	}
	var rs []kroute
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		return nil, fmt.Errorf("ip -j -6 route: %w: %s", err, out)
	}
	m := map[netip.Prefix]kroute{}
	for _, r := range rs {
		if r.Dst == "default" {
			continue
		}
		dst := r.Dst
		if !strings.Contains(dst, "/") {
			dst += "/128"
		}
		if p, err := netip.ParsePrefix(dst); err == nil {
			m[p] = r
		}
	}
	return m, nil
}

// checkBlockRoutesFam is checkBlockRoutes for the blocks of one family.
func (c *cluster) checkBlockRoutesFam(hosts []*lab.Host, fam int, want func(from, owner *lab.Host) (routeWant, error)) (int, error) {
	blocks, err := c.blocks()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, from := range hosts {
		rs, err := c.routesFam(from, fam)
		if err != nil {
			return 0, err
		}
		for _, owner := range hosts {
			if owner == from {
				continue
			}
			found := 0
			for _, b := range blocks[owner.Name] {
				if b.Addr().Is4() != (fam == 4) {
					continue
				}
				found++
				w, err := want(from, owner)
				if err != nil {
					return 0, err
				}
				r, ok := rs[b]
				if !ok {
					return 0, fmt.Errorf("%s has no route to %s's block %s", from.Name, owner.Name, b)
				}
				if err := w.check(r); err != nil {
					return 0, fmt.Errorf("%s, to %s's block: %w", from.Name, owner.Name, err)
				}
				n++
			}
			if found == 0 {
				return 0, fmt.Errorf("%s has no IPv%d block yet", owner.Name, fam)
			}
		}
	}
	return n, nil
}

// pingAll6 is pingAll over IPv6.
func (c *cluster) pingAll6(ws []*lab.Workload) {
	c.t.Helper()
	var v6 []*lab.Workload
	for _, w := range ws {
		w6 := *w
		w6.IP = w.IP6()
		v6 = append(v6, &w6)
	}
	c.pingAll(v6)
}

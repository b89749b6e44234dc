package e2e

import (
	"encoding/json"
	"fmt"
	"time"

	"testing"

	"github.com/roostnet/roost/tests/lab"
)

var (
	tagBGP   = tag("bgp")
	tagVXLAN = tag("vx")
	tagCross = tag("cs")
	tagPool  = tag("pool")
)

// TestFullMeshBGP: three hosts in a node-to-node mesh with a no-encap
// pool: every session Established, BIRD programs every remote block
// straight to its node, every workload pair pings; workloads get the
// host MTU (1500) and full-size DF pings cross between hosts.
func TestFullMeshBGP(t *testing.T) {
	fullMesh(t, tagBGP, "Never")
}

// TestFullMeshVXLAN: the same with vxlanMode Always: roost-node programs
// the remote blocks through vxlan.calico; vxlan.calico and the workloads
// get MTU 1450 and a 1422-byte DF ping crosses between hosts.
func TestFullMeshVXLAN(t *testing.T) {
	fullMesh(t, tagVXLAN, "Always")
}

func fullMesh(t *testing.T, tag, vxlanMode string) {
	c := newLab(t, tag, lab.Options{Hosts: 3})
	c.apply(poolYAML(true, vxlanMode))
	start := time.Now()
	c.start(c.Hosts)
	ws := c.addWorkloads(c.Hosts, 2)
	c.waitSessions(mesh(c.Hosts))
	want := noEncap
	if vxlanMode != "Never" {
		want = c.vxlanTo
	}
	n := c.waitBlockRoutes(c.Hosts, want)
	record(t, "converged in %s (%d hosts, %d sessions, %d block routes)", time.Since(start).Round(time.Millisecond), len(c.Hosts), len(c.Hosts)*(len(c.Hosts)-1), n)
	c.pingAll(ws)
	mtu, vxlan := 1500, 0
	if vxlanMode != "Never" {
		mtu, vxlan = 1450, 1450
	}
	c.checkMTU(c.Hosts, ws, mtu, vxlan)
	c.dfPings(mtu, pingPair{ws[0], ws[2]}, pingPair{ws[2], ws[4]}, pingPair{ws[5], ws[1]})
}

// TestCrossSubnet: hosts on two L3 subnets joined by a router namespace,
// pool vxlanMode CrossSubnet. Blocks of same-subnet hosts are routed
// straight over eth0, the others through vxlan.calico; traffic follows
// (the VXLAN device's counters move only for cross-subnet pings).
func TestCrossSubnet(t *testing.T) {
	c := newLab(t, tagCross, lab.Options{Hosts: 3, Segments: []string{"10.99.0.0/24", "10.99.1.0/24"}})
	h1, h2, h3 := c.Hosts[0], c.Hosts[1], c.Hosts[2]
	if h1.Segment != h2.Segment || h1.Segment == h3.Segment {
		t.Fatalf("want host1 and host2 on one subnet, host3 on the other: %s %s %s", h1.Prefix, h2.Prefix, h3.Prefix)
	}
	c.apply(poolYAML(true, "CrossSubnet"))
	start := time.Now()
	c.start(c.Hosts)
	ws := c.addWorkloads(c.Hosts, 1)
	c.waitSessions(mesh(c.Hosts))
	n := c.waitBlockRoutes(c.Hosts, c.crossSubnet)
	record(t, "converged in %s (%d hosts on 2 subnets, %d block routes)", time.Since(start).Round(time.Millisecond), len(c.Hosts), n)

	// The routes, spelled out for host1.
	rs, err := c.routes(h1)
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := c.blocks()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []*lab.Host{h2, h3} {
		for _, b := range blocks[o.Name] {
			t.Logf("%s: %s", h1.Name, rs[b])
		}
	}

	w1, w2, w3 := ws[0], ws[1], ws[2]
	// A ping both ways between every pair.
	c.pingAll(ws)
	// VXLAN is in use (across the router): every workload gets its MTU,
	// also those whose traffic goes straight.
	c.checkMTU(c.Hosts, ws, 1450, 1450)
	c.dfPings(1450, pingPair{w1, w2}, pingPair{w1, w3}, pingPair{w3, w2})

	// Which way the traffic goes: count what vxlan.calico sends while
	// the workloads exchange a burst of echoes. The device may send a
	// stray packet of its own (IPv6 neighbour discovery), never a burst.
	const burst = 5
	tx := func(h *lab.Host) uint64 {
		t.Helper()
		n, err := c.vxlanTxPackets(h)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Same subnet: unencapsulated both ways.
	before1, before2 := tx(h1), tx(h2)
	c.pingBurst(burst, pingPair{w1, w2}, pingPair{w2, w1})
	d1, d2 := tx(h1)-before1, tx(h2)-before2
	t.Logf("same subnet, %d echoes each way: vxlan.calico sent %d packets on host1, %d on host2", burst, d1, d2)
	if d1 >= burst || d2 >= burst {
		t.Errorf("same-subnet echoes went through vxlan.calico: it sent %d packets on host1, %d on host2 during %d echoes each way", d1, d2, burst)
	}
	// Across the router: encapsulated both ways (requests and replies).
	before1, before3 := tx(h1), tx(h3)
	c.pingBurst(burst, pingPair{w1, w3}, pingPair{w3, w1})
	d1, d3 := tx(h1)-before1, tx(h3)-before3
	t.Logf("across subnets, %d echoes each way: vxlan.calico sent %d packets on host1, %d on host3", burst, d1, d3)
	if d1 < 2*burst || d3 < 2*burst {
		t.Errorf("cross-subnet echoes did not go through vxlan.calico: it sent %d packets on host1, %d on host3 during %d echoes each way", d1, d3, burst)
	}
}

// pingBurst sends n echoes for every pair at once and fails t unless
// every echo is answered.
func (c *cluster) pingBurst(n int, pairs ...pingPair) {
	c.t.Helper()
	errs := make(chan error, len(pairs))
	for _, p := range pairs {
		go func() {
			_, err := c.Exec(c.ctx, p.from.NS, nil, "ping", "-c", fmt.Sprint(n), "-i", "0.1", "-W", "1", "-q", p.to.IP.String())
			if err != nil {
				err = fmt.Errorf("%s -> %s: %w", p.from.Name, p.to.Name, err)
			}
			errs <- err
		}()
	}
	for range pairs {
		if err := <-errs; err != nil {
			c.t.Fatal(err)
		}
	}
}

// vxlanTxPackets is the transmit counter of h's vxlan.calico.
func (c *cluster) vxlanTxPackets(h *lab.Host) (uint64, error) {
	out, err := c.Exec(c.ctx, h.NS, nil, "ip", "-j", "-s", "link", "show", "dev", "vxlan.calico")
	if err != nil {
		return 0, err
	}
	var links []struct {
		Stats struct {
			TX struct {
				Packets uint64 `json:"packets"`
			} `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		return 0, fmt.Errorf("ip -s link: %v: %s", err, out)
	}
	return links[0].Stats.TX.Packets, nil
}

// TestPoolVXLANToNoEncap: a converged VXLAN cluster; the pool is switched
// to no encapsulation with birdctl apply. Every host drops its
// vxlan.calico routes and BIRD programs the blocks straight to the nodes,
// while every BGP session stays up (no flap: the sessions' Since do not
// change). The MTU files go from 1450 to 1500: workloads attached after
// the switch get the full host MTU (the running ones keep theirs, as
// with Calico, and still work).
func TestPoolVXLANToNoEncap(t *testing.T) {
	c := newLab(t, tagPool, lab.Options{Hosts: 3})
	c.apply(poolYAML(true, "Always"))
	c.start(c.Hosts)
	ws := c.addWorkloads(c.Hosts, 1)
	before := c.waitSessions(mesh(c.Hosts))
	c.waitBlockRoutes(c.Hosts, c.vxlanTo)
	c.pingAll(ws)
	c.checkMTU(c.Hosts, ws, 1450, 1450)

	start := time.Now()
	c.apply(poolYAML(true, "Never"))
	n := c.waitBlockRoutes(c.Hosts, noEncap)
	c.eventually(convergeTimeout, "no route left on vxlan.calico", func() error {
		for _, h := range c.Hosts {
			rs, err := c.routes(h)
			if err != nil {
				return err
			}
			for _, r := range rs {
				if r.Dev == "vxlan.calico" {
					return fmt.Errorf("%s: %s", h.Name, r)
				}
			}
		}
		return nil
	})
	record(t, "reprogrammed in %s (%d block routes from vxlan.calico to eth0)", time.Since(start).Round(time.Millisecond), n)
	after, err := c.checkSessions(mesh(c.Hosts))
	if err != nil {
		t.Fatalf("sessions after the switch: %v", err)
	}
	for _, h := range c.Hosts {
		for addr, p := range before[h] {
			if q := after[h][addr]; !sameInstant(q.Since, p.Since) {
				t.Errorf("%s: session %s flapped: up since %s before the switch, since %s after (%s)", h.Name, p.Protocol, p.Since, q.Since, q.Info)
			}
		}
	}
	c.pingAll(ws)
	c.waitMTUFiles(c.Hosts, 1500)
	var fresh []*lab.Workload
	for _, h := range c.Hosts[:2] {
		w, err := c.AddWorkload(c.ctx, h, h.Name+"-after")
		if err != nil {
			t.Fatal(err)
		}
		fresh = append(fresh, w)
	}
	c.checkMTU(c.Hosts, fresh, 1500, 0)
	c.dfPings(1500, pingPair{fresh[0], fresh[1]}, pingPair{fresh[1], fresh[0]})
	c.pingAll(append(ws, fresh...))
}

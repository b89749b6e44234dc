package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/roostnet/roost/tests/lab"
)

var (
	tagJoinBGP    = tag("jb")
	tagJoinVXLAN  = tag("jv")
	tagLeaveBGP   = tag("lb")
	tagLeaveVXLAN = tag("lv")
)

// modes are the pool modes the membership tests run in: BGP routes
// (BIRD programs them) and VXLAN routes (roost-node programs them).
var modes = []struct {
	name, vxlanMode, joinTag, leaveTag string
}{
	{"bgp", "Never", tagJoinBGP, tagLeaveBGP},
	{"vxlan", "Always", tagJoinVXLAN, tagLeaveVXLAN},
}

func (c *cluster) routeWant(vxlanMode string) func(from, owner *lab.Host) (routeWant, error) {
	if vxlanMode == "Never" {
		return noEncap
	}
	return c.vxlanTo
}

// TestHostJoins: a running two-host cluster; a third host (a new
// namespace, then its agents) joins. Every host gets a session to it and
// its routes, it gets everyone's, and its workload reaches the others.
func TestHostJoins(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			c := newLab(t, m.joinTag, lab.Options{Hosts: 2})
			c.apply(poolYAML(true, m.vxlanMode))
			c.start(c.Hosts)
			c.addWorkloads(c.Hosts, 1)
			c.waitSessions(mesh(c.Hosts))
			c.waitBlockRoutes(c.Hosts, c.routeWant(m.vxlanMode))

			start := time.Now()
			h3, err := c.AddHost(c.ctx, "host3")
			if err != nil {
				t.Fatal(err)
			}
			c.start([]*lab.Host{h3})
			w3 := c.addWorkloads([]*lab.Host{h3}, 1)[0]
			c.waitSessions(mesh(c.Hosts))
			n := c.waitBlockRoutes(c.Hosts, c.routeWant(m.vxlanMode))
			record(t, "joined in %s (%d block routes on %d hosts)", time.Since(start).Round(time.Millisecond), n, len(c.Hosts))
			var pairs []pingPair
			for _, w := range c.workloads {
				if w != w3 {
					pairs = append(pairs, pingPair{w3, w}, pingPair{w, w3})
				}
			}
			c.pingPairs(pairs...)
		})
	}
}

// TestHostLeaves: in a converged three-host cluster, host3's agents stop
// and its Node is deleted with birdctl. Its sessions and its blocks'
// routes disappear from every other host (kernel and BIRD), and nothing
// else changes.
func TestHostLeaves(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			c := newLab(t, m.leaveTag, lab.Options{Hosts: 3})
			c.apply(poolYAML(true, m.vxlanMode))
			c.start(c.Hosts)
			c.addWorkloads(c.Hosts, 1)
			c.waitSessions(mesh(c.Hosts))
			c.waitBlockRoutes(c.Hosts, c.routeWant(m.vxlanMode))
			leaver, stay := c.Hosts[2], c.Hosts[:2]
			blocks, err := c.blocks()
			if err != nil {
				t.Fatal(err)
			}
			gone := blocks[leaver.Name]
			var vtep netip.Addr
			if m.vxlanMode != "Never" {
				if vtep, err = c.vxlanAddr(leaver); err != nil {
					t.Fatal(err)
				}
			}

			start := time.Now()
			leaver.StopAgents()
			c.birdctl(nil, "delete", "node", leaver.Name)
			c.waitSessions(mesh(stay))
			c.eventually(convergeTimeout, "routes to the leaver's blocks gone", func() error {
				for _, h := range stay {
					if err := c.noTrace(h, leaver, gone, vtep); err != nil {
						return err
					}
				}
				return nil
			})
			record(t, "left in %s (sessions and routes gone on %d hosts)", time.Since(start).Round(time.Millisecond), len(stay))
			if _, err := c.checkBlockRoutes(stay, c.routeWant(m.vxlanMode)); err != nil {
				t.Errorf("the remaining hosts' routes: %v", err)
			}
			var ws []*lab.Workload
			for _, w := range c.workloads {
				if w.Host != leaver {
					ws = append(ws, w)
				}
			}
			c.pingAll(ws)
		})
	}
}

// noTrace checks that h has no route (kernel or BIRD) to the blocks of
// a host that left, and no VXLAN neighbour or FDB entry for it.
func (c *cluster) noTrace(h, left *lab.Host, blocks []netip.Prefix, vtep netip.Addr) error {
	rs, err := c.routes(h)
	if err != nil {
		return err
	}
	for _, b := range blocks {
		if r, ok := rs[b]; ok {
			return fmt.Errorf("%s still routes %s's block: %s", h.Name, left.Name, r)
		}
	}
	for _, r := range rs {
		if r.Gateway == left.IP.String() || (vtep.IsValid() && r.Gateway == vtep.String()) {
			return fmt.Errorf("%s still routes via %s: %s", h.Name, left.Name, r)
		}
	}
	out, err := c.Birdctl(c.ctx, h, "show", "route", "-o", "json")
	if err != nil {
		return err
	}
	var brs []struct {
		Prefix string `json:"prefix"`
	}
	if err := decodeList(out, &brs); err != nil {
		return err
	}
	for _, r := range brs {
		for _, b := range blocks {
			if r.Prefix == b.String() {
				return fmt.Errorf("BIRD on %s still has %s's block %s", h.Name, left.Name, b)
			}
		}
	}
	if vtep.IsValid() {
		neigh, err := c.Exec(c.ctx, h.NS, nil, "ip", "neigh", "show", "dev", "vxlan.calico")
		if err != nil {
			return err
		}
		if strings.Contains(neigh, vtep.String()+" ") {
			return fmt.Errorf("%s still has a VXLAN neighbour for %s: %s", h.Name, left.Name, neigh)
		}
		fdb, err := c.Exec(c.ctx, h.NS, nil, "bridge", "fdb", "show", "dev", "vxlan.calico")
		if err != nil {
			return err
		}
		if strings.Contains(fdb, "dst "+left.IP.String()+" ") {
			return fmt.Errorf("%s still has a VXLAN FDB entry for %s: %s", h.Name, left.Name, fdb)
		}
	}
	return nil
}

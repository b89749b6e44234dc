package dataplane

import (
	"errors"
	"maps"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/node/dataplane/fakenl"
	"github.com/roostnet/roost/node/internal/nldump"
)

// kernelWrites are the calls that change the fake kernel.
var kernelWrites = []string{
	"LinkAdd", "LinkDel", "LinkSetUp", "LinkSetMTU", "LinkSetHardwareAddr", "AddrAdd", "AddrDel",
	"RouteAdd", "RouteReplace", "RouteDel", "NeighSet", "NeighDel",
}

func writes(k *fakenl.Kernel) int {
	n := 0
	for _, m := range kernelWrites {
		n += k.Calls[m]
	}
	return n
}

// steadyVXLAN programs a CrossSubnet VXLAN cluster on a fake kernel and
// resyncs once, so that any further write is a reaction to what a resync
// reads: n2 shares the subnet (direct route through the parent eth0), n3
// does not (through vxlan.calico, with neighbour and FDB entries).
func steadyVXLAN(t *testing.T) (*fakenl.Kernel, *Dataplane, *counter) {
	t.Helper()
	k := fakeHost(t)
	k.AddLink(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "cali1", Flags: net.FlagUp}})
	obs := newCounter()
	d := New(Config{NodeName: "n1"}, k, quiet(), obs)
	d.SetNode(Node{Name: "n1", IPv4: pfx("10.0.0.1/24"), VXLANAddr: addr("10.244.0.0")})
	d.SetNode(Node{Name: "n2", IPv4: pfx("10.0.0.2/24"), VXLANAddr: addr("10.244.1.0")})
	d.SetNode(Node{Name: "n3", IPv4: pfx("10.1.0.3/24"), VXLANAddr: addr("10.244.2.0")})
	d.SetPool(Pool{CIDR: pfx("10.244.0.0/16"), IPIPMode: api.EncapNever, VXLANMode: api.EncapCrossSubnet})
	d.SetBlock(pfx("10.244.0.0/26"), "n1")
	d.SetBlock(pfx("10.244.1.0/26"), "n2")
	d.SetBlock(pfx("10.244.2.0/26"), "n3")
	d.SetWorkload(Workload{Key: "default/w1", Iface: "cali1", Addrs: []netip.Prefix{pfx("10.244.0.5/32")}})
	if err := d.Apply(); err != nil {
		t.Fatal(err)
	}
	if err := d.Resync(); err != nil {
		t.Fatal(err)
	}
	return k, d, obs
}

var steadyRoutes = []string{
	"blackhole 10.244.0.0/26 proto 80",
	"10.244.0.5/32 dev cali1 scope link proto 80",
	"10.244.1.0/26 via 10.0.0.2 dev eth0 onlink proto 80",
	"10.244.2.0/26 via 10.244.2.0 dev vxlan.calico onlink proto 80",
}

// TestResyncRetriesInterruptedDumps: every dump a resync makes may come
// back interrupted, with entries missing. Used as it is, each would make
// the resync "repair" what is in place (re-add routes, lose the parent
// interface and reroute the same-subnet node, re-set neighbours); retried,
// the resync changes nothing.
func TestResyncRetriesInterruptedDumps(t *testing.T) {
	for _, dump := range []string{"LinkList", "AddrList", "RouteListFiltered", "NeighList"} {
		t.Run(dump, func(t *testing.T) {
			k, d, obs := steadyVXLAN(t)
			expectRoutes(t, k, steadyRoutes...)
			status := d.Status()

			calls := maps.Clone(k.Calls)
			if err := d.Resync(); err != nil {
				t.Fatal(err)
			}
			plain := k.Calls[dump] - calls[dump]

			calls = maps.Clone(k.Calls)
			w := writes(k)
			k.InterruptDumps(dump, 1)
			if err := d.Resync(); err != nil {
				t.Fatal(err)
			}
			if got := k.Calls[dump] - calls[dump]; got != plain+1 {
				t.Errorf("%d %s calls, want %d (one interrupted, retried)", got, dump, plain+1)
			}
			if n := writes(k) - w; n != 0 {
				t.Errorf("%d kernel writes after an interrupted %s", n, dump)
			}
			for _, kind := range []string{"route", "link", "neigh", "fdb"} {
				if n := obs.get(obs.drift, kind); n != 0 {
					t.Errorf("%d %s drift repairs reported", n, kind)
				}
			}
			if st := d.Status(); st != status {
				t.Errorf("status %+v, was %+v", st, status)
			}
			expectRoutes(t, k, steadyRoutes...)
		})
	}
}

// TestResyncFailsOnEndlessInterruptions: a table that changes during
// every try of a dump fails the resync, which then changes nothing and is
// due again; once the dump completes, the next resync finds all in place.
func TestResyncFailsOnEndlessInterruptions(t *testing.T) {
	for _, tc := range []struct{ dump, msg string }{
		{"LinkList", "listing links"},
		{"RouteListFiltered", "listing routes"},
	} {
		t.Run(tc.dump, func(t *testing.T) {
			k, d, obs := steadyVXLAN(t)
			w := writes(k)
			k.InterruptDumps(tc.dump, nldump.Attempts)
			err := d.Resync()
			if !errors.Is(err, netlink.ErrDumpInterrupted) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("resync: %v", err)
			}
			if n := writes(k) - w; n != 0 {
				t.Errorf("%d kernel writes after a failed %s", n, tc.dump)
			}
			d.mu.Lock()
			due := d.needResync
			d.mu.Unlock()
			if !due {
				t.Error("no resync due after the failed one")
			}
			if err := d.Apply(); err != nil {
				t.Fatal(err)
			}
			if n := writes(k) - w; n != 0 || obs.get(obs.drift, "route") != 0 {
				t.Errorf("%d kernel writes, %d route repairs", n, obs.get(obs.drift, "route"))
			}
			expectRoutes(t, k, steadyRoutes...)
		})
	}
}

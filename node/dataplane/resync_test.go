package dataplane_test

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/roostnet/roost/node/dataplane"
	"github.com/roostnet/roost/node/internal/nstest"
)

// A resync on the real kernel keeps correct routes, rewrites a route
// changed behind the agent's back, restores a deleted one and removes one
// of ours at a metric the agent never uses.
func TestResyncRepairsOnKernel(t *testing.T) {
	ns := nstest.New(t, "resync")
	ns.Dummy(t, "eth0")
	ns.Addr(t, "eth0", "10.0.0.1/16")
	ifaces := []string{"cali00000000000", "cali00000000001", "cali00000000002"}
	for _, n := range ifaces {
		ns.Dummy(t, n)
	}
	d := dataplane.New(dataplane.Config{NodeName: "n1"}, dataplane.Kernel(ns.NL), quiet(), nil)
	d.SetNode(dataplane.Node{Name: "n1", IPv4: netip.MustParsePrefix("10.0.0.1/16")})
	for i := range 3 {
		d.SetWorkload(dataplane.Workload{Key: "default/w" + string(rune('a'+i)), Iface: ifaces[i], Addrs: []netip.Prefix{workloadAddr(i)}})
	}
	if err := d.Apply(); err != nil {
		t.Fatal(err)
	}
	own := func() map[string]netlink.Route {
		rs, err := ns.NL.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: 80, Table: unix.RT_TABLE_MAIN},
			netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]netlink.Route{}
		for _, r := range rs {
			key := r.Dst.String()
			if r.Priority != 0 {
				key += " metric"
			}
			m[key] = r
		}
		return m
	}
	before := own()
	if len(before) != 3 {
		t.Fatalf("%d routes programmed, want 3: %v", len(before), before)
	}
	link := func(name string) int {
		l, err := ns.NL.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		return l.Attrs().Index
	}
	// w0 moved to another device, w1 deleted, a stray route at metric 100.
	r0 := before[workloadAddr(0).String()]
	r0.LinkIndex = link(ifaces[2])
	if err := ns.NL.RouteReplace(&r0); err != nil {
		t.Fatal(err)
	}
	r1 := before[workloadAddr(1).String()]
	if err := ns.NL.RouteDel(&r1); err != nil {
		t.Fatal(err)
	}
	_, stray, _ := net.ParseCIDR("10.99.0.0/24")
	if err := ns.NL.RouteAdd(&netlink.Route{Dst: stray, LinkIndex: link(ifaces[0]), Protocol: 80, Priority: 100, Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second resync reuses the first one's maps
		if err := d.Resync(); err != nil {
			t.Fatal(err)
		}
		after := own()
		if len(after) != 3 {
			t.Fatalf("after resync: %v", after)
		}
		for i := range 3 {
			r, ok := after[workloadAddr(i).String()]
			if !ok || r.LinkIndex != link(ifaces[i]) || r.Scope != netlink.SCOPE_LINK {
				t.Errorf("route %d after resync: %+v (present %v)", i, r, ok)
			}
		}
		if st := d.Status(); st.Routes != 3 {
			t.Errorf("status says %d routes", st.Routes)
		}
	}
}

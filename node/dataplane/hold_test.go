package dataplane

import (
	"net/netip"
	"sort"
	"strings"
	"testing"

	"github.com/roostnet/roost/api"
)

// While removals are held (an input is broken), a fresh dataplane that
// does not know a pool — a broken pool after a restart — removes nothing
// the previous one programmed: routes, vxlan.calico, its address and the
// VTEP entries stay; additions still happen. Resuming removes what is
// no longer wanted.
func TestHoldKeepsWhatBrokenInputsMayNeed(t *testing.T) {
	k := fakeHost(t)
	vxlanCluster := func(d *Dataplane, withPool bool) {
		d.SetNode(Node{Name: "n1", IPv4: pfx("10.0.0.1/24"), VXLANAddr: addr("10.245.0.1")})
		d.SetNode(Node{Name: "n2", IPv4: pfx("10.1.0.2/24"), VXLANAddr: addr("10.245.1.1")})
		if withPool {
			d.SetPool(Pool{CIDR: pfx("10.245.0.0/16"), IPIPMode: api.EncapNever, VXLANMode: api.EncapAlways})
		}
		d.SetBlock(pfx("10.245.0.0/26"), "n1")
		d.SetBlock(pfx("10.245.1.0/26"), "n2")
	}
	want := []string{
		"blackhole 10.245.0.0/26 proto 80",
		"10.245.1.0/26 via 10.245.1.1 dev vxlan.calico onlink proto 80",
	}
	d := New(Config{NodeName: "n1"}, k, quiet(), nil)
	vxlanCluster(d, true)
	if err := d.Resync(); err != nil {
		t.Fatal(err)
	}
	expectRoutes(t, k, want...)
	neighs := func() string {
		idx := k.Link("vxlan.calico")
		if idx == nil {
			return ""
		}
		ns, _ := k.NeighList(idx.Attrs().Index, 0)
		var out []string
		for _, n := range ns {
			out = append(out, n.IP.String()+"="+n.HardwareAddr.String())
		}
		sort.Strings(out)
		return strings.Join(out, ",")
	}
	before := neighs()
	if before == "" {
		t.Fatal("no VTEP entries")
	}

	// The agent restarts; the pool is broken, so the new dataplane never
	// learns it. Held: nothing is removed, a new workload is added.
	d2 := New(Config{NodeName: "n1", WaitForInputs: true}, k, quiet(), nil)
	d2.SetHold(true)
	vxlanCluster(d2, false)
	d2.SetWorkload(Workload{Key: "default/w", Iface: "eth0", Addrs: []netip.Prefix{pfx("10.245.0.5/32")}})
	d2.InputsReady()
	for range 2 {
		if err := d2.Resync(); err != nil {
			t.Fatal(err)
		}
	}
	expectRoutes(t, k, append(want, "10.245.0.5/32 dev eth0 scope link proto 80")...)
	if k.Link("vxlan.calico") == nil || len(k.Addrs("vxlan.calico")) != 1 || neighs() != before {
		t.Fatalf("vxlan.calico, its address or VTEP entries changed: %v %v %q (before %q)", k.Link("vxlan.calico") != nil, k.Addrs("vxlan.calico"), neighs(), before)
	}
	if st := d2.Status(); !st.Held || st.HeldRoutes != 1 {
		t.Fatalf("status %+v", st)
	}

	// Fixed (the pool arrives): nothing to remove, the hold ends.
	d2.SetPool(Pool{CIDR: pfx("10.245.0.0/16"), IPIPMode: api.EncapNever, VXLANMode: api.EncapAlways})
	d2.SetHold(false)
	if err := d2.Apply(); err != nil {
		t.Fatal(err)
	}
	expectRoutes(t, k, append(want, "10.245.0.5/32 dev eth0 scope link proto 80")...)
	if st := d2.Status(); st.Held || st.HeldRoutes != 0 {
		t.Fatalf("status %+v", st)
	}

	// Deleted instead (held again, then resumed without it): the pool's
	// state goes.
	d2.SetHold(true)
	d2.DeletePool(pfx("10.245.0.0/16"))
	if err := d2.Apply(); err != nil {
		t.Fatal(err)
	}
	if k.Link("vxlan.calico") == nil {
		t.Fatal("vxlan.calico removed while held")
	}
	d2.SetHold(false)
	if err := d2.Apply(); err != nil {
		t.Fatal(err)
	}
	expectRoutes(t, k, "blackhole 10.245.0.0/26 proto 80", "10.245.0.5/32 dev eth0 scope link proto 80")
	if k.Link("vxlan.calico") != nil {
		t.Fatal("vxlan.calico kept after the hold ended")
	}
}

package dataplane

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/node/names"
)

// TestRoutesByFamilyAndMode: the route to another node's block, and to
// an address it borrowed, for each pool mode and family, through the
// fake kernel (n1 local on 10.0.0.1/24 and fd00:99::1/64; n2 on the same
// subnets, n3 on others).
func TestRoutesByFamilyAndMode(t *testing.T) {
	cases := []struct {
		name, mode string
		want       []string
	}{
		{"no encapsulation: BIRD's job", api.EncapNever, []string{
			"blackhole 10.244.0.0/26 proto 80", "blackhole fd00:244::/122 proto 80",
		}},
		{"VXLAN always", api.EncapAlways, []string{
			"blackhole 10.244.0.0/26 proto 80", "blackhole fd00:244::/122 proto 80",
			"10.244.1.0/26 via 10.244.1.1 dev vxlan.calico onlink proto 80", "10.244.2.0/26 via 10.244.1.33 dev vxlan.calico onlink proto 80",
			"fd00:244::40/122 via fd00:244::41 dev vxlan-v6.calico onlink proto 80", "fd00:244::80/122 via fd00:244::61 dev vxlan-v6.calico onlink proto 80",
			// n2 borrowed 10.244.0.9 and fd00:244::9 from n1's blocks.
			"10.244.0.9/32 via 10.244.1.1 dev vxlan.calico onlink proto 80", "fd00:244::9/128 via fd00:244::41 dev vxlan-v6.calico onlink proto 80",
			// n3's tunnel addresses were borrowed from n2's blocks: a
			// device route each (the neighbour entry resolves them).
			"10.244.1.33/32 dev vxlan.calico scope link proto 80", "fd00:244::61/128 dev vxlan-v6.calico proto 80",
		}},
		{"VXLAN cross-subnet", api.EncapCrossSubnet, []string{
			"blackhole 10.244.0.0/26 proto 80", "blackhole fd00:244::/122 proto 80",
			"10.244.1.0/26 via 10.0.0.2 dev eth0 onlink proto 80", "10.244.2.0/26 via 10.244.1.33 dev vxlan.calico onlink proto 80",
			"fd00:244::40/122 via fd00:99::2 dev eth0 onlink proto 80", "fd00:244::80/122 via fd00:244::61 dev vxlan-v6.calico onlink proto 80",
			"10.244.0.9/32 via 10.0.0.2 dev eth0 onlink proto 80", "fd00:244::9/128 via fd00:99::2 dev eth0 onlink proto 80",
			"10.244.1.33/32 dev vxlan.calico scope link proto 80", "fd00:244::61/128 dev vxlan-v6.calico proto 80",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := fakeHost(t)
			eth := k.Link("eth0")
			if err := k.AddrAdd(eth, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("fd00:99::1"), Mask: net.CIDRMask(64, 128)}}); err != nil {
				t.Fatal(err)
			}
			d := New(Config{NodeName: "n1"}, k, quiet(), nil)
			d.SetNode(Node{Name: "n1", IPv4: pfx("10.0.0.1/24"), IPv6: pfx("fd00:99::1/64"), VXLANAddr: addr("10.244.0.1"), VXLANV6Addr: addr("fd00:244::1")})
			d.SetNode(Node{Name: "n2", IPv4: pfx("10.0.0.2/24"), IPv6: pfx("fd00:99::2/64"), VXLANAddr: addr("10.244.1.1"), VXLANV6Addr: addr("fd00:244::41")})
			d.SetNode(Node{Name: "n3", IPv4: pfx("10.1.0.3/24"), IPv6: pfx("fd00:98::3/64"), VXLANAddr: addr("10.244.1.33"), VXLANV6Addr: addr("fd00:244::61")})
			d.SetPool(Pool{CIDR: pfx("10.244.0.0/16"), IPIPMode: api.EncapNever, VXLANMode: tc.mode})
			d.SetPool(Pool{CIDR: pfx("fd00:244::/64"), IPIPMode: api.EncapNever, VXLANMode: tc.mode})
			for _, b := range []Block{
				{CIDR: pfx("10.244.0.0/26"), Node: "n1", Borrowed: map[netip.Addr]string{addr("10.244.0.9"): "n2", addr("10.244.0.10"): "n1"}},
				{CIDR: pfx("10.244.1.0/26"), Node: "n2", Borrowed: map[netip.Addr]string{addr("10.244.1.33"): "n3"}},
				{CIDR: pfx("10.244.2.0/26"), Node: "n3"},
				{CIDR: pfx("fd00:244::/122"), Node: "n1", Borrowed: map[netip.Addr]string{addr("fd00:244::9"): "n2"}},
				{CIDR: pfx("fd00:244::40/122"), Node: "n2", Borrowed: map[netip.Addr]string{addr("fd00:244::61"): "n3"}},
				{CIDR: pfx("fd00:244::80/122"), Node: "n3"},
			} {
				d.SetBlock(b.CIDR, b.Node)
				d.SetBorrowed(b.CIDR, b.Borrowed)
			}
			if err := d.Apply(); err != nil {
				t.Fatal(err)
			}
			want := tc.want
			if tc.mode == api.EncapNever {
				// Without a VXLAN pool, n3's tunnel address needs no route.
				want = want[:2]
			}
			expectRoutes(t, k, want...)
			st := d.Status()
			if wantUp := tc.mode != api.EncapNever; st.VXLANReady != wantUp || st.VXLANV6Ready != wantUp || st.ParentV6 != "eth0" {
				t.Fatalf("status %+v", st)
			}
			if tc.mode == api.EncapNever {
				return
			}
			v6 := k.Link(names.VXLANV6Device).(*netlink.Vxlan)
			if v6.MTU != 1430 || v6.HardwareAddr.String() != names.VXLANMACV6("n1").String() || v6.VxlanId != 4096 {
				t.Fatalf("vxlan-v6.calico: mtu %d mac %s vni %d", v6.MTU, v6.HardwareAddr, v6.VxlanId)
			}
			if got := k.Addrs(names.VXLANV6Device); len(got) != 1 || got[0] != "fd00:244::1/128" {
				t.Fatalf("vxlan-v6.calico addresses %v", got)
			}
			// The borrowed address is given back: its route goes, the
			// block route stays.
			d.SetBorrowed(pfx("fd00:244::/122"), nil)
			d.DeleteBlock(pfx("10.244.0.0/26"))
			if err := d.Apply(); err != nil {
				t.Fatal(err)
			}
			for _, r := range routeTable(k) {
				if r == "fd00:244::9/128 via fd00:244::41 dev vxlan-v6.calico onlink proto 80" || len(r) > 12 && r[:12] == "10.244.0.9/3" {
					t.Fatalf("route to a returned address kept: %s", r)
				}
			}
			// No IPv6 VXLAN pool any more: the device and its routes go.
			d.SetPool(Pool{CIDR: pfx("fd00:244::/64"), IPIPMode: api.EncapNever, VXLANMode: api.EncapNever})
			if err := d.Apply(); err != nil {
				t.Fatal(err)
			}
			if k.Link(names.VXLANV6Device) != nil || d.Status().VXLANV6Ready || k.Link(names.VXLANDevice) == nil {
				t.Fatal("vxlan-v6.calico kept (or vxlan.calico removed) after IPv6 VXLAN was turned off")
			}
		})
	}
}

// TestFromAPIDualStack: Node, block and workload endpoint conversions
// carry IPv6.
func TestFromAPIDualStack(t *testing.T) {
	n := &api.Node{}
	n.Metadata.Name = "n1"
	n.Spec.BGP = &api.NodeBGPSpec{IPv4Address: "10.0.0.1/24", IPv6Address: "fd00:99::1"}
	n.Spec.IPv6VXLANTunnelAddr = "fd00:244::1"
	n.Spec.VXLANTunnelMACAddrV6 = "66:aa:bb:cc:dd:ee"
	dn := NodeFromAPI(n)
	if dn.IPv6 != pfx("fd00:99::1/128") || dn.VXLANV6Addr != addr("fd00:244::1") || dn.vxlanMAC(6).String() != "66:aa:bb:cc:dd:ee" {
		t.Fatalf("node %+v", dn)
	}
	w := &api.WorkloadEndpoint{}
	w.Metadata.Name, w.Metadata.Namespace = "web", "default"
	w.Spec.IPNetworks = []string{"10.244.0.5/32", "fd00:244::5/128", "fd00:244::6", "bogus"}
	if wl := WorkloadFromAPI(w); len(wl.Addrs) != 3 || wl.Addrs[1] != pfx("fd00:244::5/128") || wl.Addrs[2] != pfx("fd00:244::6/128") {
		t.Fatalf("workload %+v", wl)
	}
	blk := api.NewAllocationBlock(pfx("fd00:244::/122"), "n1")
	blk.AssignOrdinal(9, "h1", map[string]string{"node": "n2"})
	blk.AssignOrdinal(10, "h2", map[string]string{"node": "n1"})
	blk.AssignOrdinal(11, "h3", nil)
	b, ok := BlockFromAPI(blk)
	if !ok || b.Node != "n1" || len(b.Borrowed) != 1 || b.Borrowed[addr("fd00:244::9")] != "n2" {
		t.Fatalf("block %+v", b)
	}
	if p, ok := PoolFromAPI(&api.IPPool{Spec: api.IPPoolSpec{CIDR: "fd00:244::/64", IPIPMode: api.EncapAlways, VXLANMode: api.EncapCrossSubnet}}); !ok || p.IPIPMode != api.EncapNever || p.VXLANMode != api.EncapCrossSubnet {
		t.Fatalf("IPv6 pool %+v %v", p, ok)
	}
}

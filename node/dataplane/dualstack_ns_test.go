package dataplane_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/internal/dstest"
	"github.com/roostnet/roost/node/dataplane"
	"github.com/roostnet/roost/node/internal/nstest"
	"github.com/roostnet/roost/node/ipam"
	"github.com/roostnet/roost/node/names"
	"github.com/roostnet/roost/node/workload"
)

// dsHost is a dual-stack host of dsCluster.
type dsHost struct {
	name   string
	ns     *nstest.NS
	node   dataplane.Node
	dp     *dataplane.Dataplane
	wh     *workload.Host
	wls    map[string]*dsWorkload
	v4, v6 netip.Prefix // host addresses
	b4, b6 netip.Prefix // its blocks
}

type dsWorkload struct {
	ns  *nstest.NS
	res *workload.Result
}

// dsCluster: two hosts on one wire, IPv4 and IPv6, both pools VXLAN
// Always; the dataplanes are fed from IPAM (the datastore) the way the
// agent feeds them.
type dsCluster struct {
	ds   datastore.Datastore
	a, b *dsHost
	ctx  context.Context
}

func newDSCluster(t *testing.T) *dsCluster {
	ds := dstest.NewFile(t)
	ctx, cancel := context.WithCancel(context.Background())
	for _, p := range []struct{ name, cidr string }{{"v4", "10.244.0.0/16"}, {"v6", "fd00:244::/64"}} {
		pool := &api.IPPool{}
		pool.Metadata.Name = p.name
		pool.Spec = api.IPPoolSpec{CIDR: p.cidr, VXLANMode: api.EncapAlways}
		api.Default(pool)
		if _, err := ds.Create(ctx, pool); err != nil {
			t.Fatal(err)
		}
	}
	c := &dsCluster{ds: ds, ctx: ctx}
	mk := func(name string, n byte) *dsHost {
		h := &dsHost{name: name, ns: nstest.New(t, name), wls: map[string]*dsWorkload{},
			v4: netip.MustParsePrefix(fmt.Sprintf("10.0.0.%d/24", n)), v6: netip.MustParsePrefix(fmt.Sprintf("fd00:99::%d/64", n)),
			b4: netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/26", n)), b6: netip.MustParsePrefix(fmt.Sprintf("fd00:244::%x/122", int(n)*64))}
		h.node = dataplane.Node{Name: name, IPv4: h.v4, IPv6: h.v6, VXLANAddr: h.b4.Addr().Next(), VXLANV6Addr: h.b6.Addr().Next()}
		return h
	}
	c.a, c.b = mk("a", 1), mk("b", 2)
	nstest.Veth(t, c.a.ns, "eth0", c.b.ns, "eth0")
	for _, h := range []*dsHost{c.a, c.b} {
		h.ns.Addr(t, "eth0", h.v4.String())
		h.ns.Addr(t, "eth0", h.v6.String())
		h.ns.Sysctl(t, "net.ipv4.ip_forward", "1")
		h.ns.Sysctl(t, "net.ipv6.conf.all.forwarding", "1")
		h.ns.Route(t, "0.0.0.0/0", "eth0", "10.0.0.254")
		h.wh = &workload.Host{NodeName: h.name, DS: ds, IPAM: ipam.New(ds, h.name, ipam.WithLogger(quiet())), NL: h.ns.NL, NS: h.ns.Handle, Log: quiet()}
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	// Each host's first workload takes the first addresses after the
	// tunnel address of its blocks, claiming them for the host.
	for _, h := range []*dsHost{c.a, c.b} {
		c.attach(t, h, "w"+h.name, h.b4.Addr().Next().Next().Next().Next().Next().String(), h.b6.Addr().Next().Next().Next().Next().Next().String())
		h.dp = dataplane.New(dataplane.Config{NodeName: h.name, ResyncInterval: time.Hour, RetryInterval: 50 * time.Millisecond},
			dataplane.Kernel(h.ns.NL), quiet(), nil)
		for _, p := range []dataplane.Pool{
			{CIDR: netip.MustParsePrefix("10.244.0.0/16"), IPIPMode: api.EncapNever, VXLANMode: api.EncapAlways},
			{CIDR: netip.MustParsePrefix("fd00:244::/64"), IPIPMode: api.EncapNever, VXLANMode: api.EncapAlways},
		} {
			h.dp.SetPool(p)
		}
		wg.Add(1)
		go func(h *dsHost) {
			defer wg.Done()
			h.dp.Run(ctx, dataplane.NetlinkSubscriber{NS: h.ns.Handle})
		}(h)
	}
	for _, h := range []*dsHost{c.a, c.b} {
		h.dp.SetNode(c.a.node)
		h.dp.SetNode(c.b.node)
	}
	c.feed(t)
	return c
}

// attach adds a dual-stack workload with the given addresses to h.
func (c *dsCluster) attach(t *testing.T, h *dsHost, name string, ips ...string) *dsWorkload {
	t.Helper()
	w := &dsWorkload{ns: nstest.New(t, name)}
	res, err := h.wh.Attach(c.ctx, workload.Request{Name: name, NetNS: w.ns.Path, IPs: ips})
	if err != nil {
		t.Fatalf("%s: attach %s: %v", h.name, name, err)
	}
	w.res = res
	h.wls[name] = w
	return w
}

// feed gives both dataplanes every IPAM block (owner and borrowed
// addresses) and each its own workloads, as the agent does from its
// watches.
func (c *dsCluster) feed(t *testing.T) {
	t.Helper()
	res, err := c.ds.List(c.ctx, datastore.BlockPrefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range res.KVs {
		b, ok := dataplane.BlockFromAPI(&kv.Value.(*api.IPAMBlock).Spec)
		if !ok {
			t.Fatalf("block %s", kv.Key)
		}
		for _, h := range []*dsHost{c.a, c.b} {
			h.dp.SetBlock(b.CIDR, b.Node)
			h.dp.SetBorrowed(b.CIDR, b.Borrowed)
		}
	}
	for _, h := range []*dsHost{c.a, c.b} {
		for name, w := range h.wls {
			var addrs []netip.Prefix
			for _, ip := range w.res.IPs {
				addrs = append(addrs, netip.PrefixFrom(ip, ip.BitLen()))
			}
			h.dp.SetWorkload(dataplane.Workload{Key: "default/" + name, Iface: w.res.Iface, Addrs: addrs})
		}
	}
}

// routes returns h's routes of the family with protocol 80 as `ip
// route`-like strings.
func (h *dsHost) routes(t *testing.T, family int) []string {
	rs, err := h.ns.NL.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_MAIN, Protocol: names.RouteProtocol},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		s := r.Dst.String()
		if r.Type == unix.RTN_BLACKHOLE {
			s = "blackhole " + s
		} else {
			if r.Gw != nil {
				s += " via " + r.Gw.String()
			}
			if l, _ := h.ns.NL.LinkByIndex(r.LinkIndex); l != nil {
				s += " dev " + l.Attrs().Name
			}
			if r.Flags&int(netlink.FLAG_ONLINK) != 0 {
				s += " onlink"
			}
		}
		out = append(out, s)
	}
	return out
}

func (h *dsHost) has(t *testing.T, family int, want ...string) error {
	rs := h.routes(t, family)
	for _, w := range want {
		found := false
		for _, r := range rs {
			found = found || r == w
		}
		if !found {
			return fmt.Errorf("%s: no route %q in\n  %s", h.name, w, strings.Join(rs, "\n  "))
		}
	}
	return nil
}

func (h *dsHost) lacks(t *testing.T, family int, prefix string) error {
	for _, r := range h.routes(t, family) {
		if strings.HasPrefix(r, prefix) {
			return fmt.Errorf("%s: unexpected route %q", h.name, r)
		}
	}
	return nil
}

func pingAll(t *testing.T, from *dsWorkload, to ...netip.Addr) {
	t.Helper()
	for _, ip := range to {
		if err := from.ns.Ping(ip, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDualStackVXLAN: IPv4 over vxlan.calico and IPv6 over
// vxlan-v6.calico (Felix's name, VNI 4096, MAC of "<node>-v6", MTU host
// - 70, the node's IPv6 address as source), /128 workload routes and
// IPv6 blackholes; workloads ping across hosts in both families; a
// deleted IPv6 route and neighbour are put back.
func TestDualStackVXLAN(t *testing.T) {
	c := newDSCluster(t)
	a, b := c.a, c.b
	wa, wb := a.wls["wa"], b.wls["wb"]
	eventually(t, 5*time.Second, "routes", func() error {
		return errors.Join(
			a.has(t, netlink.FAMILY_V4, "10.244.2.0/26 via 10.244.2.1 dev vxlan.calico onlink", "blackhole 10.244.1.0/26"),
			a.has(t, netlink.FAMILY_V6, "fd00:244::80/122 via fd00:244::81 dev vxlan-v6.calico onlink", "blackhole fd00:244::40/122",
				wa.res.IPs[1].String()+"/128 dev "+wa.res.Iface),
			b.has(t, netlink.FAMILY_V6, "fd00:244::40/122 via fd00:244::41 dev vxlan-v6.calico onlink"),
		)
	})
	l, err := a.ns.NL.LinkByName(names.VXLANV6Device)
	if err != nil {
		t.Fatal(err)
	}
	v := l.(*netlink.Vxlan)
	eth, _ := a.ns.NL.LinkByName("eth0")
	if v.VxlanId != 4096 || v.Port != 4789 || v.Learning || v.MTU != 1430 || v.HardwareAddr.String() != names.VXLANMACV6("a").String() ||
		!v.SrcAddr.Equal(net.ParseIP("fd00:99::1")) || v.VtepDevIndex != eth.Attrs().Index || v.Flags&net.FlagUp == 0 {
		t.Fatalf("vxlan-v6.calico: vni %d port %d learning %v mtu %d mac %s src %s parent %d up %v",
			v.VxlanId, v.Port, v.Learning, v.MTU, v.HardwareAddr, v.SrcAddr, v.VtepDevIndex, v.Flags&net.FlagUp != 0)
	}
	addrs, _ := a.ns.NL.AddrList(v, netlink.FAMILY_V6)
	var global []string
	for _, x := range addrs {
		if !x.IP.IsLinkLocalUnicast() {
			global = append(global, x.IPNet.String())
		}
	}
	if len(global) != 1 || global[0] != "fd00:244::41/128" {
		t.Fatalf("vxlan-v6.calico addresses %v", addrs)
	}
	neighOK := func() error {
		var n6, fdb bool
		ns, _ := a.ns.NL.NeighList(v.Index, netlink.FAMILY_V6)
		for _, n := range ns {
			n6 = n6 || (n.IP.String() == "fd00:244::81" && n.HardwareAddr.String() == names.VXLANMACV6("b").String() && n.State&netlink.NUD_PERMANENT != 0)
		}
		fs, _ := a.ns.NL.NeighList(v.Index, unix.AF_BRIDGE)
		for _, n := range fs {
			fdb = fdb || (n.IP.String() == "fd00:99::2" && n.HardwareAddr.String() == names.VXLANMACV6("b").String())
		}
		if !n6 || !fdb {
			return fmt.Errorf("IPv6 VTEP of b on a: neighbour %v, FDB %v", n6, fdb)
		}
		return nil
	}
	eventually(t, 5*time.Second, "IPv6 VTEP", neighOK)
	pingAll(t, wa, wb.res.IPs...)
	pingAll(t, wb, wa.res.IPs...)

	// Drift: the route to b's IPv6 block and b's IPv6 neighbour go.
	_, dst, _ := net.ParseCIDR("fd00:244::80/122")
	if err := a.ns.NL.RouteDel(&netlink.Route{Dst: dst, Table: unix.RT_TABLE_MAIN, Protocol: names.RouteProtocol, Priority: 1024}); err != nil {
		t.Fatal(err)
	}
	if err := a.ns.NL.NeighDel(&netlink.Neigh{LinkIndex: v.Index, Family: netlink.FAMILY_V6, IP: net.ParseIP("fd00:244::81")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "repair", func() error {
		return errors.Join(a.has(t, netlink.FAMILY_V6, "fd00:244::80/122 via fd00:244::81 dev vxlan-v6.calico onlink"), neighOK())
	})
	pingAll(t, wa, wb.res.IPs[1])
	// A resync finds nothing to change: the metric the kernel keeps for
	// IPv6 routes is the one the agent writes.
	before := len(a.routes(t, netlink.FAMILY_V6))
	if err := a.dp.Resync(); err != nil {
		t.Fatal(err)
	}
	if after := len(a.routes(t, netlink.FAMILY_V6)); after != before {
		t.Fatalf("resync changed the IPv6 routes: %d -> %d", before, after)
	}
}

// TestBorrowedAddressRoutes: a workload on b holds addresses borrowed
// from a's blocks (IPv4 and IPv6). a routes each to b through the tunnel
// (more specific than its own blackhole), b to its workload; both ways
// ping. When the address is given back, a's route goes.
func TestBorrowedAddressRoutes(t *testing.T) {
	c := newDSCluster(t)
	a, b := c.a, c.b
	wa := a.wls["wa"]
	bor4, bor6 := a.b4.Addr().Next().Next().Next().Next().Next().Next().Next().Next().Next(), netip.MustParseAddr("fd00:244::49")
	wbor := c.attach(t, b, "borrower", bor4.String(), bor6.String())
	c.feed(t)
	eventually(t, 5*time.Second, "routes to the borrowed addresses", func() error {
		return errors.Join(
			a.has(t, netlink.FAMILY_V4, bor4.String()+"/32 via 10.244.2.1 dev vxlan.calico onlink", "blackhole 10.244.1.0/26"),
			a.has(t, netlink.FAMILY_V6, bor6.String()+"/128 via fd00:244::81 dev vxlan-v6.calico onlink", "blackhole fd00:244::40/122"),
			b.has(t, netlink.FAMILY_V4, bor4.String()+"/32 dev "+wbor.res.Iface),
			b.has(t, netlink.FAMILY_V6, bor6.String()+"/128 dev "+wbor.res.Iface),
		)
	})
	pingAll(t, wa, bor4, bor6)
	pingAll(t, wbor, wa.res.IPs...)

	if _, err := b.wh.Detach(c.ctx, workload.Request{Name: "borrower"}); err != nil {
		t.Fatal(err)
	}
	delete(b.wls, "borrower")
	for _, h := range []*dsHost{a, b} {
		h.dp.DeleteWorkload("default/borrower")
	}
	c.feed(t)
	eventually(t, 5*time.Second, "routes gone", func() error {
		return errors.Join(a.lacks(t, netlink.FAMILY_V4, bor4.String()+"/32"), a.lacks(t, netlink.FAMILY_V6, bor6.String()+"/128"))
	})
}

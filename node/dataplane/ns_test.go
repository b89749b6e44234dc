package dataplane_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/internal/dstest"
	"github.com/roostnet/roost/node/dataplane"
	"github.com/roostnet/roost/node/internal/nstest"
	"github.com/roostnet/roost/node/ipam"
	"github.com/roostnet/roost/node/mtu"
	"github.com/roostnet/roost/node/names"
	"github.com/roostnet/roost/node/workload"
)

func quiet() logrus.FieldLogger {
	l := logrus.New()
	l.SetLevel(logrus.WarnLevel)
	return l
}

type counter struct {
	mu    sync.Mutex
	drift map[string]int
	errs  map[string]int
}

func (c *counter) RouteOp(string)                 {}
func (c *counter) RoutesProgrammed(int)           {}
func (c *counter) Reconciled(bool, time.Duration) {}
func (c *counter) DriftRepaired(k string)         { c.mu.Lock(); c.drift[k]++; c.mu.Unlock() }
func (c *counter) Error(k string)                 { c.mu.Lock(); c.errs[k]++; c.mu.Unlock() }
func (c *counter) drifts(k string) int            { c.mu.Lock(); defer c.mu.Unlock(); return c.drift[k] }

// host is a network namespace acting as a node, with one workload.
type host struct {
	name   string
	ns     *nstest.NS
	node   dataplane.Node
	block  netip.Prefix
	dp     *dataplane.Dataplane
	obs    *counter
	wl     *nstest.NS
	wlIP   netip.Addr
	wlIfc  string
	hostIP netip.Prefix
	attach *workload.Host
	wlReq  workload.Request
	mtu    string // the MTU file
}

type cluster struct {
	a, b *host
	pool dataplane.Pool
}

func eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: still failing after %s: %v", what, d, err)
}

// newCluster builds two hosts joined by a veth "wire", each with one
// workload, and starts a dataplane on each (events on, periodic resync
// effectively off so that repairs must come from events).
func newCluster(t *testing.T, aIP, bIP string, pool dataplane.Pool) *cluster {
	ds := dstest.NewFile(t)
	ctx, cancel := context.WithCancel(context.Background())
	p := &api.IPPool{}
	p.Metadata.Name = "p1"
	p.Spec = api.IPPoolSpec{CIDR: pool.CIDR.String(), IPIPMode: pool.IPIPMode, VXLANMode: pool.VXLANMode}
	api.Default(p)
	if _, err := ds.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	c := &cluster{pool: pool}
	mk := func(name, ip string, third byte) *host {
		ns := nstest.New(t, name)
		h := &host{name: name, ns: ns, hostIP: netip.MustParsePrefix(ip), obs: &counter{drift: map[string]int{}, errs: map[string]int{}}}
		h.block = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, third, 0}), 26)
		h.node = dataplane.Node{Name: name, IPv4: h.hostIP, VXLANAddr: netip.AddrFrom4([4]byte{10, 244, third, 1})}
		return h
	}
	c.a = mk("a", aIP, 0)
	c.b = mk("b", bIP, 1)
	nstest.Veth(t, c.a.ns, "eth0", c.b.ns, "eth0")
	for _, h := range []*host{c.a, c.b} {
		h.ns.Addr(t, "eth0", h.hostIP.String())
		h.ns.Sysctl(t, "net.ipv4.ip_forward", "1")
	}
	for _, pair := range [][2]*host{{c.a, c.b}, {c.b, c.a}} {
		h, o := pair[0], pair[1]
		if !h.hostIP.Masked().Contains(o.hostIP.Addr()) {
			h.ns.Route(t, o.hostIP.Masked().String(), "eth0", "")
		}
		gw := h.hostIP.Masked().Addr().Next().Next() // .2 of the host's subnet is unused: a fake gateway
		if gw == h.hostIP.Addr() {
			gw = gw.Next()
		}
		h.ns.Route(t, "0.0.0.0/0", "eth0", gw.String())
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, h := range []*host{c.a, c.b} {
		h.wl = nstest.New(t, "w"+h.name)
		wh := &workload.Host{NodeName: h.name, DS: ds, IPAM: ipam.New(ds, h.name, ipam.WithLogger(quiet())), NL: h.ns.NL, NS: h.ns.Handle, Log: quiet()}
		h.attach = wh
		h.wlReq = workload.Request{Name: "w" + h.name, NetNS: h.wl.Path, IPs: []string{h.block.Addr().Next().Next().Next().Next().Next().String()}}
		res, err := wh.Attach(ctx, h.wlReq)
		if err != nil {
			t.Fatal(err)
		}
		h.wlIP, h.wlIfc = res.IP, res.Iface
		h.mtu = filepath.Join(t.TempDir(), "mtu")
		h.dp = dataplane.New(dataplane.Config{NodeName: h.name, ResyncInterval: time.Hour, RetryInterval: 50 * time.Millisecond, MTUFile: h.mtu},
			dataplane.Kernel(h.ns.NL), quiet(), h.obs)
		h.dp.SetPool(pool)
		h.dp.SetNode(c.a.node)
		h.dp.SetNode(c.b.node)
		h.dp.SetBlock(c.a.block, "a")
		h.dp.SetBlock(c.b.block, "b")
		h.dp.SetWorkload(dataplane.Workload{Key: "default/w" + h.name, Iface: res.Iface, Addrs: []netip.Prefix{netip.PrefixFrom(res.IP, 32)}})
		wg.Add(1)
		go func(h *host) {
			defer wg.Done()
			h.dp.Run(ctx, dataplane.NetlinkSubscriber{NS: h.ns.Handle})
		}(h)
	}
	for _, h := range []*host{c.a, c.b} {
		eventually(t, 5*time.Second, h.name+" synced", func() error {
			if !h.dp.Synced() {
				return errors.New("not yet")
			}
			return nil
		})
	}
	return c
}

// routes returns h's main-table IPv4 routes as `ip route`-like strings.
func (h *host) routes(t *testing.T) []string {
	rs, err := h.ns.NL.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		s := "default"
		if r.Dst != nil {
			s = r.Dst.String()
		}
		if r.Type == unix.RTN_BLACKHOLE {
			s = "blackhole " + s
		}
		if r.Gw != nil {
			s += " via " + r.Gw.String()
		}
		if r.LinkIndex != 0 {
			l, _ := h.ns.NL.LinkByIndex(r.LinkIndex)
			if l != nil {
				s += " dev " + l.Attrs().Name
			}
		}
		if r.Flags&int(netlink.FLAG_ONLINK) != 0 {
			s += " onlink"
		}
		s += fmt.Sprintf(" proto %d", r.Protocol)
		out = append(out, s)
	}
	return out
}

func (h *host) hasRoute(t *testing.T, want string) error {
	rs := h.routes(t)
	for _, r := range rs {
		if r == want {
			return nil
		}
	}
	return fmt.Errorf("%s: no route %q in\n  %s", h.name, want, strings.Join(rs, "\n  "))
}

func (h *host) lacksRoute(t *testing.T, prefix string) error {
	for _, r := range h.routes(t) {
		if strings.Contains(r, prefix) {
			return fmt.Errorf("%s: unexpected route %q", h.name, r)
		}
	}
	return nil
}

func (h *host) vxlan(t *testing.T) *netlink.Vxlan {
	l, err := h.ns.NL.LinkByName(names.VXLANDevice)
	if err != nil {
		t.Fatalf("%s: %v", h.name, err)
	}
	v, ok := l.(*netlink.Vxlan)
	if !ok {
		t.Fatalf("%s: %s is a %s", h.name, names.VXLANDevice, l.Type())
	}
	return v
}

func (h *host) neigh(t *testing.T, family int) []netlink.Neigh {
	v := h.vxlan(t)
	ns, err := h.ns.NL.NeighList(v.Index, family)
	if err != nil {
		t.Fatal(err)
	}
	var out []netlink.Neigh
	for _, n := range ns {
		if n.LinkIndex == v.Index && n.State&netlink.NUD_PERMANENT != 0 && len(n.IP) > 0 {
			out = append(out, n)
		}
	}
	return out
}

func (h *host) vtepOK(t *testing.T, o *host) error {
	mac := names.VXLANMAC(o.name).String()
	var nOK, fOK bool
	for _, n := range h.neigh(t, netlink.FAMILY_V4) {
		if n.IP.String() == o.node.VXLANAddr.String() && n.HardwareAddr.String() == mac {
			nOK = true
		}
	}
	for _, n := range h.neigh(t, unix.AF_BRIDGE) {
		if n.HardwareAddr.String() == mac && n.IP.String() == o.hostIP.Addr().String() {
			fOK = true
		}
	}
	if !nOK || !fOK {
		return fmt.Errorf("%s: VTEP of %s: neighbour %v, fdb %v", h.name, o.name, nOK, fOK)
	}
	return nil
}

func pingBoth(t *testing.T, c *cluster) {
	t.Helper()
	if err := c.a.wl.Ping(c.b.wlIP, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.b.wl.Ping(c.a.wlIP, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func vxlanPool(mode string) dataplane.Pool {
	return dataplane.Pool{CIDR: netip.MustParsePrefix("10.244.0.0/16"), IPIPMode: api.EncapNever, VXLANMode: mode}
}

func TestVXLANTwoHosts(t *testing.T) {
	c := newCluster(t, "10.0.0.1/24", "10.0.0.2/24", vxlanPool(api.EncapAlways))
	a, b := c.a, c.b
	eventually(t, 5*time.Second, "routes", func() error {
		for _, err := range []error{
			a.hasRoute(t, "10.244.1.0/26 via 10.244.1.1 dev vxlan.calico onlink proto 80"),
			b.hasRoute(t, "10.244.0.0/26 via 10.244.0.1 dev vxlan.calico onlink proto 80"),
			a.hasRoute(t, "blackhole 10.244.0.0/26 proto 80"),
			b.hasRoute(t, "blackhole 10.244.1.0/26 proto 80"),
			a.hasRoute(t, a.wlIP.String()+"/32 dev "+a.wlIfc+" proto 80"),
			a.vtepOK(t, b), b.vtepOK(t, a),
		} {
			if err != nil {
				return err
			}
		}
		return nil
	})
	v := a.vxlan(t)
	if v.VxlanId != 4096 || v.Port != 4789 || v.Learning || v.MTU != 1450 || v.Flags&net.FlagUp == 0 ||
		v.HardwareAddr.String() != names.VXLANMAC("a").String() || !v.SrcAddr.Equal(net.ParseIP("10.0.0.1")) {
		t.Fatalf("vxlan.calico: vni %d port %d learning %v mtu %d flags %v mac %s src %s", v.VxlanId, v.Port, v.Learning, v.MTU, v.Flags, v.HardwareAddr, v.SrcAddr)
	}
	eth, _ := a.ns.NL.LinkByName("eth0")
	if v.VtepDevIndex != eth.Attrs().Index {
		t.Fatalf("parent %d, want eth0 (%d)", v.VtepDevIndex, eth.Attrs().Index)
	}
	addrs, _ := a.ns.NL.AddrList(v, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "10.244.0.1/32" {
		t.Fatalf("vxlan.calico addresses %v", addrs)
	}
	pingBoth(t, c)
}

func TestCrossSubnet(t *testing.T) {
	t.Run("same-subnet-direct", func(t *testing.T) {
		c := newCluster(t, "10.0.0.1/24", "10.0.0.2/24", vxlanPool(api.EncapCrossSubnet))
		eventually(t, 5*time.Second, "direct routes", func() error {
			if err := c.a.hasRoute(t, "10.244.1.0/26 via 10.0.0.2 dev eth0 onlink proto 80"); err != nil {
				return err
			}
			return c.b.hasRoute(t, "10.244.0.0/26 via 10.0.0.1 dev eth0 onlink proto 80")
		})
		pingBoth(t, c)
	})
	t.Run("other-subnet-encapsulated", func(t *testing.T) {
		c := newCluster(t, "10.0.0.1/24", "10.0.1.2/24", vxlanPool(api.EncapCrossSubnet))
		eventually(t, 5*time.Second, "tunnel routes", func() error {
			if err := c.a.hasRoute(t, "10.244.1.0/26 via 10.244.1.1 dev vxlan.calico onlink proto 80"); err != nil {
				return err
			}
			return c.b.hasRoute(t, "10.244.0.0/26 via 10.244.0.1 dev vxlan.calico onlink proto 80")
		})
		pingBoth(t, c)
	})
}

func TestDriftRepair(t *testing.T) {
	c := newCluster(t, "10.0.0.1/24", "10.0.0.2/24", vxlanPool(api.EncapAlways))
	a, b := c.a, c.b
	remote := "10.244.1.0/26 via 10.244.1.1 dev vxlan.calico onlink proto 80"
	eventually(t, 5*time.Second, "initial", func() error {
		if err := a.hasRoute(t, remote); err != nil {
			return err
		}
		return a.vtepOK(t, b)
	})
	nl := a.ns.NL
	// A route deleted by hand comes back.
	if err := nl.RouteDel(&netlink.Route{Dst: &net.IPNet{IP: net.IP{10, 244, 1, 0}, Mask: net.CIDRMask(26, 32)}, Table: unix.RT_TABLE_MAIN, Protocol: 80}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "deleted route repaired", func() error { return a.hasRoute(t, remote) })
	// So does a workload route.
	if err := nl.RouteDel(&netlink.Route{Dst: &net.IPNet{IP: a.wlIP.AsSlice(), Mask: net.CIDRMask(32, 32)}, Table: unix.RT_TABLE_MAIN, Protocol: 80, Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "workload route repaired", func() error {
		return a.hasRoute(t, a.wlIP.String()+"/32 dev "+a.wlIfc+" proto 80")
	})
	// MTU changed.
	if err := nl.LinkSetMTU(a.vxlan(t), 1400); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "MTU repaired", func() error {
		if m := a.vxlan(t).MTU; m != 1450 {
			return fmt.Errorf("MTU %d", m)
		}
		return nil
	})
	// FDB entry and neighbour removed.
	v := a.vxlan(t)
	mac := names.VXLANMAC("b")
	if err := nl.NeighDel(&netlink.Neigh{LinkIndex: v.Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, IP: net.IP{10, 0, 0, 2}, HardwareAddr: mac}); err != nil {
		t.Fatal(err)
	}
	if err := nl.NeighDel(&netlink.Neigh{LinkIndex: v.Index, Family: netlink.FAMILY_V4, IP: net.IP{10, 244, 1, 1}, HardwareAddr: mac}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "VTEP repaired", func() error { return a.vtepOK(t, b) })
	// Device down: routes flushed by the kernel, all restored.
	if err := nl.LinkSetDown(v); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "device up again with its routes", func() error {
		if a.vxlan(t).Flags&net.FlagUp == 0 {
			return errors.New("still down")
		}
		if err := a.hasRoute(t, remote); err != nil {
			return err
		}
		return a.vtepOK(t, b)
	})
	// Device deleted: recreated.
	if err := nl.LinkDel(a.vxlan(t)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "device recreated", func() error {
		if _, err := nl.LinkByName(names.VXLANDevice); err != nil {
			return err
		}
		if err := a.hasRoute(t, remote); err != nil {
			return err
		}
		return a.vtepOK(t, b)
	})
	pingBoth(t, c)
	if a.obs.drifts("route") < 2 || a.obs.drifts("link") < 2 || a.obs.drifts("fdb") < 1 || a.obs.drifts("neigh") < 1 {
		t.Fatalf("drift counters %v", a.obs.drift)
	}
	// Routes that are not ours are never touched, even by a resync.
	eth, _ := nl.LinkByName("eth0")
	bird := &netlink.Route{Dst: &net.IPNet{IP: net.IP{10, 99, 0, 0}, Mask: net.CIDRMask(24, 32)}, Gw: net.IP{10, 0, 0, 2}, LinkIndex: eth.Attrs().Index, Protocol: 12}
	if err := nl.RouteAdd(bird); err != nil {
		t.Fatal(err)
	}
	if err := a.dp.Resync(); err != nil {
		t.Fatal(err)
	}
	if err := a.hasRoute(t, "10.99.0.0/24 via 10.0.0.2 dev eth0 proto 12"); err != nil {
		t.Fatal(err)
	}
}

func TestBlackholesAndCleanup(t *testing.T) {
	c := newCluster(t, "10.0.0.1/24", "10.0.0.2/24", vxlanPool(api.EncapAlways))
	a := c.a
	eventually(t, 5*time.Second, "initial", func() error { return a.hasRoute(t, "blackhole 10.244.0.0/26 proto 80") })
	// A second local block gets its blackhole; released, it goes.
	a.dp.SetBlock(netip.MustParsePrefix("10.244.7.0/26"), "a")
	eventually(t, 3*time.Second, "new blackhole", func() error { return a.hasRoute(t, "blackhole 10.244.7.0/26 proto 80") })
	a.dp.DeleteBlock(netip.MustParsePrefix("10.244.7.0/26"))
	eventually(t, 3*time.Second, "blackhole removed", func() error { return a.lacksRoute(t, "10.244.7.0/26") })
	// The other node is deleted: its routes and VTEP go.
	a.dp.DeleteNode("b")
	eventually(t, 3*time.Second, "node removed", func() error {
		if err := a.lacksRoute(t, "10.244.1.0/26"); err != nil {
			return err
		}
		if n := len(a.neigh(t, netlink.FAMILY_V4)) + len(a.neigh(t, unix.AF_BRIDGE)); n != 0 {
			return fmt.Errorf("%d VTEP entries left", n)
		}
		return nil
	})
	// Pool deleted: no more VXLAN anywhere; local block still blackholed
	// (its addresses are still allocated).
	a.dp.DeletePool(c.pool.CIDR)
	eventually(t, 3*time.Second, "pool removed", func() error {
		if _, err := a.ns.NL.LinkByName(names.VXLANDevice); err == nil {
			return errors.New("vxlan.calico still there")
		}
		return a.hasRoute(t, "blackhole 10.244.0.0/26 proto 80")
	})
	// Cleanup removes every route the agent owns and nothing else.
	if err := a.dp.Cleanup(); err != nil {
		t.Fatal(err)
	}
	for _, r := range a.routes(t) {
		if strings.HasSuffix(r, "proto 80") {
			t.Fatalf("owned route left after cleanup: %s", r)
		}
	}
	if err := a.hasRoute(t, "0.0.0.0/0 via 10.0.0.2 dev eth0 proto 3"); err != nil {
		// the test's own default route (proto boot) must remain
		t.Fatal(err)
	}
}

// TestIPIPRealKernel runs the IPIP path against the real kernel where it
// has ipip; here it reports why it cannot.
func TestIPIPRealKernel(t *testing.T) {
	probe := nstest.New(t, "probe")
	if err := probe.NL.LinkAdd(&netlink.Iptun{LinkAttrs: netlink.LinkAttrs{Name: "tunl0"}}); err != nil && !errors.Is(err, unix.EEXIST) {
		// `ip link add type ipip` says "Unknown device type" for this.
		t.Skipf("kernel without ipip (`ip link add type ipip`: Unknown device type; netlink: %v)", err)
	}
	pool := dataplane.Pool{CIDR: netip.MustParsePrefix("10.244.0.0/16"), IPIPMode: api.EncapAlways, VXLANMode: api.EncapNever}
	c := newClusterIPIP(t, pool)
	eventually(t, 5*time.Second, "ipip routes", func() error {
		return c.a.hasRoute(t, "10.244.1.0/26 via 10.0.0.2 dev tunl0 onlink proto 80")
	})
	pingBoth(t, c)
}

func newClusterIPIP(t *testing.T, pool dataplane.Pool) *cluster {
	c := newCluster(t, "10.0.0.1/24", "10.0.0.2/24", pool)
	for _, h := range []*host{c.a, c.b} {
		n := h.node
		n.IPIPAddr, n.VXLANAddr = n.VXLANAddr, netip.Addr{}
		for _, o := range []*host{c.a, c.b} {
			o.dp.SetNode(n)
		}
	}
	return c
}

// TestIPIPMissingOnThisKernel: with an IPIP pool on a kernel without
// ipip, the dataplane names the missing support once and programs
// everything else.
func TestIPIPMissingOnThisKernel(t *testing.T) {
	probe := nstest.New(t, "probe")
	if err := probe.NL.LinkAdd(&netlink.Iptun{LinkAttrs: netlink.LinkAttrs{Name: "tunl0"}}); err == nil || errors.Is(err, unix.EEXIST) {
		t.Skip("this kernel has ipip")
	}
	pool := dataplane.Pool{CIDR: netip.MustParsePrefix("10.244.0.0/16"), IPIPMode: api.EncapAlways, VXLANMode: api.EncapNever}
	c := newClusterIPIP(t, pool)
	eventually(t, 5*time.Second, "status", func() error {
		st := c.a.dp.Status()
		if !strings.Contains(st.IPIPError, "no IPIP support") {
			return fmt.Errorf("status %+v", st)
		}
		return c.a.hasRoute(t, "blackhole 10.244.0.0/26 proto 80")
	})
	t.Logf("reported: %s", c.a.dp.Status().IPIPError)
	if err := c.a.hasRoute(t, c.a.wlIP.String()+"/32 dev "+c.a.wlIfc+" proto 80"); err != nil {
		t.Fatal(err)
	}
	if c.a.obs.errs["ipip"] != 1 {
		t.Fatalf("ipip error counted %d times", c.a.obs.errs["ipip"])
	}
}

// TestMTUNamespaces: per pool mode, the MTUs the dataplane works out on a
// real kernel (vxlan.calico, the MTU file); the workloads, attached again
// with the file's MTU as `roost-node workload add` does, get it on both
// veth ends; where the pool encapsulates, a full-size (1422-byte payload,
// 1450-byte packet) ping with DF set crosses between the hosts, and one
// byte more is refused inside the workload instead of being dropped on
// the way.
func TestMTUNamespaces(t *testing.T) {
	for _, tc := range []struct {
		name     string
		bIP      string
		mode     string
		vxlanMTU int // 0: no vxlan.calico
		workload int
		ping     bool // the dataplane routes between the hosts (no-encap routes are BIRD's)
	}{
		{"no encapsulation", "10.0.0.2/24", api.EncapNever, 0, 1500, false},
		{"VXLAN", "10.0.0.2/24", api.EncapAlways, 1450, 1450, true},
		{"CrossSubnet, same subnet", "10.0.0.2/24", api.EncapCrossSubnet, 1450, 1450, true},
		{"CrossSubnet, other subnet", "10.0.1.2/24", api.EncapCrossSubnet, 1450, 1450, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, "10.0.0.1/24", tc.bIP, vxlanPool(tc.mode))
			for _, h := range []*host{c.a, c.b} {
				var v int
				eventually(t, 5*time.Second, h.name+": MTU file", func() (err error) {
					v, err = mtu.ReadFile(h.mtu)
					return err
				})
				if v != tc.workload || h.dp.Status().MTU.Workload != tc.workload {
					t.Fatalf("%s: MTU file %d, status %+v; want %d", h.name, v, h.dp.Status().MTU, tc.workload)
				}
				l, err := h.ns.NL.LinkByName(names.VXLANDevice)
				switch {
				case tc.vxlanMTU == 0 && err == nil:
					t.Fatalf("%s: vxlan.calico exists without a VXLAN pool", h.name)
				case tc.vxlanMTU != 0 && err != nil:
					t.Fatalf("%s: %v", h.name, err)
				case tc.vxlanMTU != 0 && l.Attrs().MTU != tc.vxlanMTU:
					t.Fatalf("%s: vxlan.calico MTU %d, want %d", h.name, l.Attrs().MTU, tc.vxlanMTU)
				}
				h.attach.MTU = v
				if _, err := h.attach.Attach(context.Background(), h.wlReq); err != nil {
					t.Fatal(err)
				}
				for _, end := range []struct {
					nl   *netlink.Handle
					name string
				}{{h.ns.NL, h.wlIfc}, {h.wl.NL, "eth0"}} {
					l, err := end.nl.LinkByName(end.name)
					if err != nil || l.Attrs().MTU != tc.workload {
						t.Fatalf("%s: %s MTU: %v %v, want %d", h.name, end.name, l, err, tc.workload)
					}
				}
			}
			if !tc.ping {
				return
			}
			eventually(t, 5*time.Second, "routes", func() error { return c.a.wl.Ping(c.b.wlIP, 200*time.Millisecond) })
			for _, p := range [][2]*host{{c.a, c.b}, {c.b, c.a}} {
				if err := p[0].wl.PingDF(p[1].wlIP, tc.workload-28, 5*time.Second); err != nil {
					t.Fatalf("%d-byte DF ping %s -> %s: %v", tc.workload-28, p[0].name, p[1].name, err)
				}
				if err := p[0].wl.PingDF(p[1].wlIP, tc.workload-27, time.Second); !errors.Is(err, unix.EMSGSIZE) {
					t.Fatalf("DF ping one byte over the MTU %s -> %s: %v, want EMSGSIZE in the workload", p[0].name, p[1].name, err)
				}
			}
		})
	}
}

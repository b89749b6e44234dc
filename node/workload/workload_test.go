package workload

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/internal/dstest"
	"github.com/roostnet/roost/node/internal/nstest"
	"github.com/roostnet/roost/node/ipam"
	"github.com/roostnet/roost/node/names"
)

func quiet() logrus.FieldLogger {
	l := logrus.New()
	l.SetLevel(logrus.WarnLevel)
	return l
}

type env struct {
	host *nstest.NS
	h    *Host
	ds   datastore.Datastore
}

func setup(t *testing.T) *env {
	host := nstest.New(t, "host")
	// The host's own address and a default route, so that proxy ARP
	// answers for 169.254.1.1.
	host.Dummy(t, "eth0")
	host.Addr(t, "eth0", "10.0.0.1/24")
	host.Route(t, "0.0.0.0/0", "eth0", "10.0.0.254")
	ds := dstest.NewFile(t)
	p := &api.IPPool{}
	p.Metadata.Name = "p1"
	p.Spec.CIDR = "10.244.0.0/16"
	api.Default(p)
	if _, err := ds.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	h := &Host{NodeName: "n1", DS: ds, IPAM: ipam.New(ds, "n1", ipam.WithLogger(quiet())), NL: host.NL, NS: host.Handle, Log: quiet()}
	return &env{host: host, h: h, ds: ds}
}

func readSysctl(t *testing.T, ns *nstest.NS, path string) string {
	var v []byte
	if err := ns.Do(func() error {
		var err error
		v, err = os.ReadFile("/proc/sys/" + path)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(v))
}

func checkAttached(t *testing.T, e *env, w *nstest.NS, res *Result) {
	t.Helper()
	host := e.host
	l, err := host.NL.LinkByName(res.Iface)
	if err != nil {
		t.Fatalf("host side %s: %v", res.Iface, err)
	}
	if l.Attrs().HardwareAddr.String() != names.HostVethMAC || l.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("host side: mac %s flags %v", l.Attrs().HardwareAddr, l.Attrs().Flags)
	}
	for _, s := range []string{"net/ipv4/conf/" + res.Iface + "/proxy_arp", "net/ipv4/conf/" + res.Iface + "/forwarding"} {
		if v := readSysctl(t, host, s); v != "1" {
			t.Fatalf("%s = %s", s, v)
		}
	}
	if v := readSysctl(t, host, "net/ipv4/neigh/"+res.Iface+"/proxy_delay"); v != "0" {
		t.Fatalf("proxy_delay = %s", v)
	}
	routes, _ := host.NL.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: l.Attrs().Index}, netlink.RT_FILTER_OIF)
	found := false
	for _, r := range routes {
		if r.Dst != nil && r.Dst.String() == res.IP.String()+"/32" && r.Scope == netlink.SCOPE_LINK && r.Protocol == names.RouteProtocol {
			found = true
		}
	}
	if !found {
		t.Fatalf("no %s/32 scope link proto 80 route via %s: %v", res.IP, res.Iface, routes)
	}
	neighs, _ := host.NL.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
	found = false
	for _, n := range neighs {
		if n.IP.String() == res.IP.String() && n.State == netlink.NUD_PERMANENT && n.HardwareAddr.String() == res.MAC {
			found = true
		}
	}
	if !found {
		t.Fatalf("no permanent neighbour %s -> %s: %v", res.IP, res.MAC, neighs)
	}
	in, err := w.NL.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	addrs, _ := w.NL.AddrList(in, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != res.IP.String()+"/32" {
		t.Fatalf("inside addresses %v", addrs)
	}
	wr, _ := w.NL.RouteList(in, netlink.FAMILY_V4)
	var gwRoute, def bool
	for _, r := range wr {
		if r.Dst != nil && r.Dst.String() == "169.254.1.1/32" && r.Scope == netlink.SCOPE_LINK {
			gwRoute = true
		}
		if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.String() == "169.254.1.1" {
			def = true
		}
	}
	if !gwRoute || !def {
		t.Fatalf("inside routes: %v", wr)
	}
	kv, err := e.ds.Get(context.Background(), datastore.ResourceKey(api.KindWorkloadEndpoint, "default", "n1-roost-web-eth0"))
	if err != nil {
		t.Fatal(err)
	}
	wep := kv.Value.(*api.WorkloadEndpoint)
	if wep.Spec.Node != "n1" || wep.Spec.InterfaceName != res.Iface || wep.Spec.MAC != res.MAC ||
		len(wep.Spec.IPNetworks) != 1 || wep.Spec.IPNetworks[0] != res.IP.String()+"/32" {
		t.Fatalf("WorkloadEndpoint %+v", wep.Spec)
	}
	// Traffic: the workload reaches the host through proxy ARP.
	if err := w.Ping(netip.MustParseAddr("10.0.0.1"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestAttachDetach(t *testing.T) {
	e := setup(t)
	w := nstest.New(t, "wl")
	ctx := context.Background()
	req := Request{Name: "web", NetNS: w.Path}
	res, err := e.h.Attach(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Iface != names.WorkloadInterface("default", "web") || len(res.Iface) != 15 || !strings.HasPrefix(res.Iface, "cali") {
		t.Fatalf("iface %q", res.Iface)
	}
	if !netip.MustParsePrefix("10.244.0.0/16").Contains(res.IP) {
		t.Fatalf("ip %s", res.IP)
	}
	checkAttached(t, e, w, res)

	// Idempotent: same address, same interface.
	res2, err := e.h.Attach(ctx, req)
	if err != nil || res2.IP != res.IP || res2.Iface != res.Iface || res2.MAC != res.MAC || len(res2.IPs) != 1 {
		t.Fatalf("second attach: %+v %v", res2, err)
	}
	// Half-done states are completed: the host route, the inside default
	// route and the WorkloadEndpoint disappear, attach again repairs.
	_ = e.host.NL.RouteDel(&netlink.Route{Dst: &net.IPNet{IP: res.IP.AsSlice(), Mask: net.CIDRMask(32, 32)}, Protocol: names.RouteProtocol, Table: unix.RT_TABLE_MAIN})
	_ = w.NL.RouteDel(&netlink.Route{Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}})
	if err := e.ds.Delete(ctx, datastore.ResourceKey(api.KindWorkloadEndpoint, "default", "n1-roost-web-eth0"), 0); err != nil {
		t.Fatal(err)
	}
	res3, err := e.h.Attach(ctx, req)
	if err != nil || res3.IP != res.IP || res3.Iface != res.Iface || res3.MAC != res.MAC {
		t.Fatalf("repairing attach: %+v %v", res3, err)
	}
	checkAttached(t, e, w, res)
	// Asking for another address while one is held is refused.
	if _, err := e.h.Attach(ctx, Request{Name: "web", NetNS: w.Path, IPs: []string{"10.244.9.9"}}); err == nil {
		t.Fatal("address change accepted")
	}

	released, err := e.h.Detach(ctx, Request{Name: "web"})
	if err != nil || len(released) != 1 || released[0] != res.IP {
		t.Fatalf("detach: %v %v", released, err)
	}
	if _, err := e.host.NL.LinkByName(res.Iface); err == nil {
		t.Fatal("host side still there")
	}
	if _, err := w.NL.LinkByName("eth0"); err == nil {
		t.Fatal("eth0 still in the workload")
	}
	if dstest.Raw(e.ds)(datastore.ResourceKey(api.KindWorkloadEndpoint, "default", "n1-roost-web-eth0")) != nil || dstest.Raw(e.ds)(datastore.HandleKey(names.WorkloadHandle("default", "web"))) != nil {
		t.Fatal("endpoint or handle left")
	}
	// Again: nothing to do, no error.
	if released, err := e.h.Detach(ctx, Request{Name: "web"}); err != nil || len(released) != 0 {
		t.Fatalf("second detach: %v %v", released, err)
	}
}

func TestAttachRequestedIPAndStaleVeth(t *testing.T) {
	e := setup(t)
	w := nstest.New(t, "wl")
	other := nstest.New(t, "old")
	ctx := context.Background()
	// A crash left the host end behind, paired with a namespace that is
	// not the workload's.
	iface := names.WorkloadInterface("prod", "db")
	if err := e.host.NL.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: iface}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(other.Handle))}); err != nil {
		t.Fatal(err)
	}
	res, err := e.h.Attach(ctx, Request{Name: "db", Namespace: "prod", NetNS: w.Path, IPs: []string{"10.244.3.7"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.IP.String() != "10.244.3.7" || res.Iface != iface {
		t.Fatalf("%+v", res)
	}
	if _, err := other.NL.LinkByName("eth0"); err == nil {
		t.Fatal("stale pair not replaced")
	}
	if _, err := w.NL.LinkByName("eth0"); err != nil {
		t.Fatal(err)
	}
	// A taken address is refused for another workload.
	w2 := nstest.New(t, "wl2")
	if _, err := e.h.Attach(ctx, Request{Name: "db2", Namespace: "prod", NetNS: w2.Path, IPs: []string{"10.244.3.7"}}); err == nil {
		t.Fatal("duplicate address accepted")
	}
	// Bad names are rejected before anything happens.
	if _, err := e.h.Attach(ctx, Request{Name: "x", Namespace: "Bad_NS", NetNS: w2.Path}); err == nil {
		t.Fatal("bad namespace accepted")
	}
	if _, err := e.h.Detach(ctx, Request{Name: "db", Namespace: "prod"}); err != nil {
		t.Fatal(err)
	}
}

// A workload name attached on another node is refused, not shared: the
// handle and address belong to that node's workload.
func TestAttachRefusesNameOnAnotherNode(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	w1 := nstest.New(t, "wl1")
	res, err := e.h.Attach(ctx, Request{Name: "web", NetNS: w1.Path})
	if err != nil {
		t.Fatal(err)
	}
	other := &Host{NodeName: "n2", DS: e.ds, IPAM: ipam.New(e.ds, "n2", ipam.WithLogger(quiet())), NL: e.host.NL, NS: e.host.Handle, Log: quiet()}
	w2 := nstest.New(t, "wl2")
	_, err = other.Attach(ctx, Request{Name: "web", NetNS: w2.Path})
	if err == nil || !strings.Contains(err.Error(), "already attached on node n1") {
		t.Fatalf("want a refusal naming n1, got %v", err)
	}
	// n1's workload is untouched.
	checkAttached(t, e, w1, res)
}

// TestAttachMTU: both ends of the veth get the MTU; attaching again with
// another MTU changes both; a full-size packet with DF set leaves the
// workload and one byte more is refused inside it (EMSGSIZE), not left
// to ICMP from the host.
func TestAttachMTU(t *testing.T) {
	e := setup(t)
	w := nstest.New(t, "wl")
	ctx := context.Background()
	mtus := func(res *Result) (int, int) {
		t.Helper()
		hl, err := e.host.NL.LinkByName(res.Iface)
		if err != nil {
			t.Fatal(err)
		}
		il, err := w.NL.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		return hl.Attrs().MTU, il.Attrs().MTU
	}
	for _, mtu := range []int{1450, 1400, 1480} {
		e.h.MTU = mtu
		res, err := e.h.Attach(ctx, Request{Name: "web", NetNS: w.Path})
		if err != nil {
			t.Fatal(err)
		}
		if h, i := mtus(res); h != mtu || i != mtu {
			t.Fatalf("MTU %d: host end %d, workload end %d", mtu, h, i)
		}
		// To the host's address: IP header 20 + ICMP 8 + payload.
		if err := w.PingDF(netip.MustParseAddr("10.0.0.1"), mtu-28, 5*time.Second); err != nil {
			t.Fatalf("full-size DF ping at MTU %d: %v", mtu, err)
		}
		if err := w.PingDF(netip.MustParseAddr("10.0.0.1"), mtu-27, time.Second); !errors.Is(err, unix.EMSGSIZE) {
			t.Fatalf("DF ping one byte over MTU %d: %v, want EMSGSIZE", mtu, err)
		}
	}
}

// TestAttachDualStack: with an IPv6 pool too, the workload gets one
// address of each family, set up as Calico's CNI plugin does for IPv6
// (a /128 without duplicate address detection, the default route via
// the host end's link-local address, proxy NDP and forwarding on the host
// end, a /128 route and a permanent neighbour on the host), and reaches
// the host over IPv6 at once.
func TestAttachDualStack(t *testing.T) {
	e := setup(t)
	e.host.Addr(t, "eth0", "fd00:99::1/64")
	e.host.Sysctl(t, "net.ipv6.conf.all.forwarding", "1")
	p := &api.IPPool{}
	p.Metadata.Name = "p6"
	p.Spec.CIDR = "fd00:244::/64"
	api.Default(p)
	if _, err := e.ds.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	w := nstest.New(t, "wl")
	ctx := context.Background()
	res, err := e.h.Attach(ctx, Request{Name: "web", NetNS: w.Path})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.IPs) != 2 || !res.IPs[0].Is4() || !netip.MustParsePrefix("fd00:244::/64").Contains(res.IPs[1]) {
		t.Fatalf("addresses %v", res.IPs)
	}
	v6 := res.IPs[1]
	host := e.host
	for path, want := range map[string]string{
		"net/ipv6/conf/" + res.Iface + "/proxy_ndp":    "1",
		"net/ipv6/conf/" + res.Iface + "/forwarding":   "1",
		"net/ipv6/conf/" + res.Iface + "/accept_dad":   "0",
		"net/ipv6/conf/" + res.Iface + "/disable_ipv6": "0",
	} {
		if v := readSysctl(t, host, path); v != want {
			t.Errorf("host %s = %s, want %s", path, v, want)
		}
	}
	if v := readSysctl(t, w, "net/ipv6/conf/eth0/accept_dad"); v != "0" {
		t.Errorf("workload eth0 accept_dad = %s", v)
	}
	l, _ := host.NL.LinkByName(res.Iface)
	haddrs, _ := host.NL.AddrList(l, netlink.FAMILY_V6)
	if !slicesContainsAddr(haddrs, names.WorkloadGatewayV6+"/64") {
		t.Fatalf("host end lacks %s: %v", names.WorkloadGatewayV6, haddrs)
	}
	routes, _ := host.NL.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{LinkIndex: l.Attrs().Index}, netlink.RT_FILTER_OIF)
	found := false
	for _, r := range routes {
		if r.Dst != nil && r.Dst.String() == v6.String()+"/128" && r.Protocol == names.RouteProtocol && r.Priority == 1024 {
			found = true
		}
	}
	if !found {
		t.Fatalf("no %s/128 proto 80 metric 1024 route on %s: %v", v6, res.Iface, routes)
	}
	neighs, _ := host.NL.NeighList(l.Attrs().Index, netlink.FAMILY_V6)
	found = false
	for _, n := range neighs {
		if n.IP.String() == v6.String() && n.State == netlink.NUD_PERMANENT && n.HardwareAddr.String() == res.MAC {
			found = true
		}
	}
	if !found {
		t.Fatalf("no permanent neighbour %s: %v", v6, neighs)
	}
	in, _ := w.NL.LinkByName("eth0")
	waddrs, _ := w.NL.AddrList(in, netlink.FAMILY_V6)
	if !slicesContainsAddr(waddrs, v6.String()+"/128") {
		t.Fatalf("inside IPv6 addresses %v", waddrs)
	}
	for _, a := range waddrs {
		if a.Flags&unix.IFA_F_TENTATIVE != 0 {
			t.Fatalf("address %s is tentative (duplicate address detection ran)", a.IPNet)
		}
	}
	wr, _ := w.NL.RouteList(in, netlink.FAMILY_V6)
	def := false
	for _, r := range wr {
		if (r.Dst == nil || r.Dst.String() == "::/0") && r.Gw.String() == names.WorkloadGatewayV6 {
			def = true
		}
	}
	if !def {
		t.Fatalf("no IPv6 default route via %s: %v", names.WorkloadGatewayV6, wr)
	}
	kv, err := e.ds.Get(ctx, datastore.ResourceKey(api.KindWorkloadEndpoint, "default", "n1-roost-web-eth0"))
	if err != nil {
		t.Fatal(err)
	}
	if nets := kv.Value.(*api.WorkloadEndpoint).Spec.IPNetworks; len(nets) != 2 || nets[0] != res.IPs[0].String()+"/32" || nets[1] != v6.String()+"/128" {
		t.Fatalf("ipNetworks %v", nets)
	}
	if err := w.Ping(netip.MustParseAddr("fd00:99::1"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// Converging: the same two addresses again. IPv6 only for another
	// workload, with a requested address.
	if again, err := e.h.Attach(ctx, Request{Name: "web", NetNS: w.Path}); err != nil || len(again.IPs) != 2 || again.IPs[1] != v6 {
		t.Fatalf("again: %+v %v", again, err)
	}
	w2 := nstest.New(t, "wl2")
	only6, err := e.h.Attach(ctx, Request{Name: "db", NetNS: w2.Path, IPv4: ipam.FamilyOff, IPs: []string{"fd00:244::99"}})
	if err != nil || len(only6.IPs) != 1 || only6.IP.String() != "fd00:244::99" {
		t.Fatalf("IPv6 only: %+v %v", only6, err)
	}
	if err := w2.Ping(netip.MustParseAddr("fd00:99::1"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if rel, err := e.h.Detach(ctx, Request{Name: "web"}); err != nil || len(rel) != 2 {
		t.Fatalf("detach: %v %v", rel, err)
	}
}

func slicesContainsAddr(addrs []netlink.Addr, cidr string) bool {
	for _, a := range addrs {
		if a.IPNet.String() == cidr {
			return true
		}
	}
	return false
}

// ipamState is every IPAM key with its value (revisions aside). Of a
// block, what is allocated to whom: a release puts the address at the end
// of the free list and counts a sequence number, as every release does.
func ipamState(t *testing.T, ds datastore.Datastore) map[string]string {
	t.Helper()
	res, err := ds.List(context.Background(), datastore.IPAMPrefix)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range res.KVs {
		v := kv.Value
		if b, ok := v.(*api.IPAMBlock); ok {
			b = api.Clone(b)
			slices.Sort(b.Spec.Unallocated)
			b.Spec.SequenceNumber = 0
			v = b
		}
		enc, err := datastore.EncodeValue(v)
		if err != nil {
			t.Fatal(err)
		}
		out[kv.Key] = string(enc)
	}
	return out
}

// failingWEPs is the real datastore, except that writing a
// WorkloadEndpoint fails (a datastore outage at the last step of Attach).
type failingWEPs struct{ datastore.Datastore }

func (f failingWEPs) Create(ctx context.Context, obj api.Resource) (*datastore.KV, error) {
	if obj.ResourceKind() == api.KindWorkloadEndpoint {
		return nil, errors.New("injected: datastore unavailable")
	}
	return f.Datastore.Create(ctx, obj)
}

// A failed Attach leaves IPAM exactly as it was (no address, handle or
// block kept for it) and nothing on the host (no veth, route or
// WorkloadEndpoint), whichever step failed, also when its address needed a
// new block.
func TestFailedAttachLeavesNothing(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		firstWL   bool // a workload attached before (the node has a block)
		dual      bool // an IPv6 pool too: an address of each family
		breakIt   func(e *env, w *nstest.NS)
		wantError string
	}{
		{"namespace has another eth0", true, false, func(e *env, w *nstest.NS) { w.Dummy(t, "eth0") }, "already has an eth0"},
		{"veth cannot be created", true, false, func(e *env, _ *nstest.NS) { e.h.MTU = 70000 }, "creating veth"},
		{"veth cannot be created, first block", false, false, func(e *env, _ *nstest.NS) { e.h.MTU = 70000 }, "creating veth"},
		{"WorkloadEndpoint cannot be written", true, false, func(e *env, _ *nstest.NS) { e.h.DS = failingWEPs{e.ds} }, "injected: datastore unavailable"},
		{"WorkloadEndpoint cannot be written, first block", false, false, func(e *env, _ *nstest.NS) { e.h.DS = failingWEPs{e.ds} }, "injected: datastore unavailable"},
		{"dual-stack, WorkloadEndpoint cannot be written", true, true, func(e *env, _ *nstest.NS) { e.h.DS = failingWEPs{e.ds} }, "injected: datastore unavailable"},
		{"dual-stack, WorkloadEndpoint cannot be written, first blocks", false, true, func(e *env, _ *nstest.NS) { e.h.DS = failingWEPs{e.ds} }, "injected: datastore unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t)
			if tc.dual {
				e.host.Addr(t, "eth0", "fd00:99::1/64")
				p := &api.IPPool{}
				p.Metadata.Name = "p6"
				p.Spec.CIDR = "fd00:244::/64"
				api.Default(p)
				if _, err := e.ds.Create(ctx, p); err != nil {
					t.Fatal(err)
				}
			}
			if tc.firstWL {
				if _, err := e.h.Attach(ctx, Request{Name: "first", NetNS: nstest.New(t, "wl0").Path}); err != nil {
					t.Fatal(err)
				}
			}
			before := ipamState(t, e.ds)
			w := nstest.New(t, "wl")
			tc.breakIt(e, w)
			res, err := e.h.Attach(ctx, Request{Name: "web", Namespace: "prod", NetNS: w.Path})
			if err == nil || !strings.Contains(err.Error(), tc.wantError) || !strings.Contains(err.Error(), "workload prod/web") {
				t.Fatalf("Attach = %+v, %v; want an error naming the workload with %q", res, err, tc.wantError)
			}
			if after := ipamState(t, e.ds); !reflect.DeepEqual(after, before) {
				t.Errorf("IPAM changed:\n before %v\n after  %v", before, after)
			}
			iface := names.WorkloadInterface("prod", "web")
			if _, err := e.host.NL.LinkByName(iface); err == nil {
				t.Errorf("veth %s left on the host", iface)
			}
			routes, _ := e.host.NL.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: names.RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
			for _, r := range routes {
				if r.Dst != nil && strings.HasPrefix(r.Dst.String(), "10.244.") && (!tc.firstWL || r.LinkIndex != linkIndex(t, e, "first")) {
					t.Errorf("route left: %v", r)
				}
			}
			routes, _ = e.host.NL.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Protocol: names.RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
			for _, r := range routes {
				if r.Dst != nil && strings.HasPrefix(r.Dst.String(), "fd00:244:") && (!tc.firstWL || r.LinkIndex != linkIndex(t, e, "first")) {
					t.Errorf("route left: %v", r)
				}
			}
			if _, err := e.ds.Get(ctx, datastore.ResourceKey(api.KindWorkloadEndpoint, "prod", "n1-roost-web-eth0")); !errors.Is(err, datastore.ErrNotFound) {
				t.Errorf("WorkloadEndpoint: %v", err)
			}
			// The failure is gone: the same request succeeds.
			e.h.MTU, e.h.DS = 0, e.ds
			if tc.name == "namespace has another eth0" {
				return
			}
			if _, err := e.h.Attach(ctx, Request{Name: "web", Namespace: "prod", NetNS: w.Path}); err != nil {
				t.Fatalf("retry: %v", err)
			}
		})
	}
}

func linkIndex(t *testing.T, e *env, workload string) int {
	l, err := e.host.NL.LinkByName(names.WorkloadInterface("default", workload))
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Index
}

// TestAttachRefusesAddressListedByEndpoint: --ip refuses an address that
// another WorkloadEndpoint still lists even though IPAM shows it free,
// naming that endpoint; nothing is allocated or created.
func TestAttachRefusesAddressListedByEndpoint(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	ghost := &api.WorkloadEndpoint{}
	ghost.Metadata.Name, ghost.Metadata.Namespace = "ghost", "prod"
	ghost.Spec = api.WorkloadEndpointSpec{Orchestrator: Orchestrator, Workload: "ghost", Node: "n2", IPNetworks: []string{"10.244.4.4/32"}}
	if _, err := e.ds.Create(ctx, ghost); err != nil {
		t.Fatal(err)
	}
	w := nstest.New(t, "wl")
	_, err := e.h.Attach(ctx, Request{Name: "db", Namespace: "dev", NetNS: w.Path, IPs: []string{"10.244.4.4"}})
	if err == nil || !strings.Contains(err.Error(), "WorkloadEndpoint prod/ghost (node n2) still lists it") {
		t.Fatalf("err = %v; want a refusal naming prod/ghost", err)
	}
	if held, err := e.h.IPAM.AddrsByHandle(ctx, names.WorkloadHandle("dev", "db")); err != nil || len(held) != 0 {
		t.Fatalf("IPAM holds %v, %v after the refusal", held, err)
	}
	if _, err := e.host.NL.LinkByName(names.WorkloadInterface("dev", "db")); err == nil {
		t.Fatal("a veth was created for a refused workload")
	}
	// Another address is fine, and re-attaching the same workload with the
	// address its own endpoint lists is too.
	res, err := e.h.Attach(ctx, Request{Name: "db", Namespace: "dev", NetNS: w.Path, IPs: []string{"10.244.4.5"}})
	if err != nil || res.IP.String() != "10.244.4.5" {
		t.Fatalf("attach: %+v, %v", res, err)
	}
	if _, err := e.h.Attach(ctx, Request{Name: "db", Namespace: "dev", NetNS: w.Path, IPs: []string{"10.244.4.5"}}); err != nil {
		t.Fatalf("re-attach with its own address: %v", err)
	}
}

// TestAttachNamespaceSelector: workload add uses node/ipam's pool choice,
// so a pool restricted to another namespace gives it nothing, and the
// error names the pool and why.
func TestAttachNamespaceSelector(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	kv, err := e.ds.Get(ctx, datastore.ResourceKey(api.KindIPPool, "", "p1"))
	if err != nil {
		t.Fatal(err)
	}
	kv.Value.(*api.IPPool).Spec.NamespaceSelector = "projectcalico.org/name == 'prod'"
	if _, err := e.ds.Update(ctx, kv); err != nil {
		t.Fatal(err)
	}
	w := nstest.New(t, "wl")
	_, err = e.h.Attach(ctx, Request{Name: "web", Namespace: "default", NetNS: w.Path})
	if err == nil || !strings.Contains(err.Error(), `p1 (10.244.0.0/16): namespaceSelector "projectcalico.org/name == 'prod'" does not match namespace default`) {
		t.Fatalf("err = %v; want the pool named with its namespaceSelector", err)
	}
	res, err := e.h.Attach(ctx, Request{Name: "web", Namespace: "prod", NetNS: w.Path})
	if err != nil || !netip.MustParsePrefix("10.244.0.0/16").Contains(res.IP) {
		t.Fatalf("attach in prod: %+v, %v", res, err)
	}
}

// WorkloadEndpoints under their old names ("web") are renamed to Calico's
// ("n1-roost-web-eth0"): by MigrateNames at roost-node's start, and by
// the Attach or Detach that touches one; another node's stay.
func TestMigrateNames(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	old := func(name, node string) {
		t.Helper()
		w := &api.WorkloadEndpoint{}
		w.Metadata.Name, w.Metadata.Namespace = name, "default"
		w.Spec = api.WorkloadEndpointSpec{Orchestrator: "roost", Workload: name, Node: node, Endpoint: "eth0", InterfaceName: names.WorkloadInterface("default", name), IPNetworks: []string{"10.244.7.7/32"}}
		if _, err := e.ds.Create(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	key := func(name string) string { return datastore.ResourceKey(api.KindWorkloadEndpoint, "default", name) }
	old("host1-w1", "n1")
	old("other", "n2")
	n, err := MigrateNames(ctx, e.ds, "n1")
	if err != nil || n != 1 {
		t.Fatalf("migrated %d, %v", n, err)
	}
	if _, err := e.ds.Get(ctx, key("host1-w1")); !errors.Is(err, datastore.ErrNotFound) {
		t.Fatalf("old name still there: %v", err)
	}
	kv, err := e.ds.Get(ctx, key("n1-roost-host1--w1-eth0"))
	if err != nil {
		t.Fatal(err)
	}
	if w := kv.Value.(*api.WorkloadEndpoint); w.Spec.Workload != "host1-w1" || w.Spec.IPNetworks[0] != "10.244.7.7/32" {
		t.Fatalf("renamed endpoint %+v", w.Spec)
	}
	if _, err := e.ds.Get(ctx, key("other")); err != nil {
		t.Fatalf("another node's endpoint: %v", err)
	}
	if n, err := MigrateNames(ctx, e.ds, "n1"); err != nil || n != 0 {
		t.Fatalf("second run: %d %v", n, err)
	}

	// First touch: Attach writes the new name and removes the old one;
	// Detach removes both.
	old("web", "n1")
	w := nstest.New(t, "wl")
	if _, err := e.h.Attach(ctx, Request{Name: "web", NetNS: w.Path}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ds.Get(ctx, key("web")); !errors.Is(err, datastore.ErrNotFound) {
		t.Fatalf("old name after attach: %v", err)
	}
	if _, err := e.ds.Get(ctx, key("n1-roost-web-eth0")); err != nil {
		t.Fatal(err)
	}
	old("web", "n1")
	if _, err := e.h.Detach(ctx, Request{Name: "web"}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"web", "n1-roost-web-eth0"} {
		if _, err := e.ds.Get(ctx, key(k)); !errors.Is(err, datastore.ErrNotFound) {
			t.Fatalf("%s after detach: %v", k, err)
		}
	}
}

// The CNI plugin's path: addresses an IPAM plugin already allocated
// (Assigned), another orchestrator, interface and handle. A failure takes
// back the veth and writes no endpoint, and leaves the allocation to the
// IPAM plugin; a success records Calico's name for the orchestrator and
// Check accepts it, then reports a missing host route.
func TestAttachAssigned(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	ip := netip.MustParseAddr("10.244.3.3")
	if _, err := e.h.IPAM.Assign(ctx, ipam.AssignArgs{Handle: names.PodHandle("cid0123456789"), IPs: []netip.Addr{ip}}); err != nil {
		t.Fatal(err)
	}
	w := nstest.New(t, "wl")
	req := Request{Name: "cid0123456789", NetNS: w.Path, Orchestrator: names.OrchestratorCNI, ContainerID: "cid0123456789",
		IfName: "net1", HostIface: names.ContainerInterface("cid0123456789"), Handle: names.PodHandle("cid0123456789"), Assigned: []netip.Addr{ip}}
	before := ipamState(t, e.ds)
	e.h.DS = failingWEPs{e.ds}
	if _, err := e.h.Attach(ctx, req); err == nil {
		t.Fatal("attach with a failing datastore succeeded")
	}
	e.h.DS = e.ds
	if _, err := e.host.NL.LinkByName(req.HostIface); err == nil {
		t.Fatal("veth left")
	}
	if after := ipamState(t, e.ds); !reflect.DeepEqual(after, before) {
		t.Fatalf("IPAM changed: %v -> %v", before, after)
	}
	res, err := e.h.Attach(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Endpoint != "n1-cni-cid0123456789-net1" || res.Iface != "calicid01234567" || len(res.IPs) != 1 || res.IPs[0] != ip {
		t.Fatalf("result %+v", res)
	}
	if _, err := w.NL.LinkByName("net1"); err != nil {
		t.Fatal(err)
	}
	if err := e.h.Check(ctx, req, []netip.Addr{ip}); err != nil {
		t.Fatal(err)
	}
	if err := e.h.Check(ctx, req, []netip.Addr{netip.MustParseAddr("10.244.3.4")}); err == nil {
		t.Fatal("Check accepted another address")
	}
	if err := e.host.NL.RouteDel(&netlink.Route{Dst: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)}, Protocol: names.RouteProtocol, Table: unix.RT_TABLE_MAIN, Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatal(err)
	}
	if err := e.h.Check(ctx, req, nil); err == nil || !strings.Contains(err.Error(), "host route") {
		t.Fatalf("Check without the host route: %v", err)
	}
	req.External = true
	if _, err := e.h.Detach(ctx, req); err != nil {
		t.Fatal(err)
	}
	if held, _ := e.h.IPAM.AddrsByHandle(ctx, req.Handle); len(held) != 1 {
		t.Fatalf("Detach with External released %v", held)
	}
}

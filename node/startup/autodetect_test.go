package startup

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/roostnet/roost/node/dataplane/fakenl"
	"github.com/roostnet/roost/node/internal/nstest"
)

// hostNS builds a namespace with interfaces of every kind autodetection
// must tell apart (created in this order, so index order is this order).
func hostNS(t *testing.T) (*nstest.NS, *Detector) {
	ns := nstest.New(t, "det")
	ns.Dummy(t, "docker0")
	ns.Addr(t, "docker0", "172.17.0.1/16")
	ns.Dummy(t, "cali12345678901")
	ns.Addr(t, "cali12345678901", "10.9.9.9/32")
	ns.Dummy(t, "eth0")
	ns.Addr(t, "eth0", "10.0.0.5/24")
	addr6(t, ns, "eth0", "2001:db8::5/64")
	ns.Dummy(t, "ens4")
	ns.Addr(t, "ens4", "192.168.50.7/24")
	addr6(t, ns, "ens4", "2001:db8:1::7/64")
	ns.Dummy(t, "dummy0")
	ns.Addr(t, "dummy0", "10.1.1.1/24")
	ns.Dummy(t, "vxlan.calico")
	ns.Addr(t, "vxlan.calico", "10.2.2.2/32")
	// A down interface never counts.
	if err := ns.NL.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth9"}, PeerName: "veth9"}); err != nil {
		t.Fatal(err)
	}
	ns.Addr(t, "eth9", "10.3.3.3/24")
	det := &Detector{NL: ns.NL, Dial: func(network, address string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() error {
			var err error
			c, err = net.Dial(network, address)
			return err
		})
		return c, err
	}}
	return ns, det
}

func addr6(t *testing.T, ns *nstest.NS, dev, cidr string) {
	t.Helper()
	l, err := ns.NL.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := netlink.ParseAddr(cidr)
	a.Flags = 0x02 // IFA_F_NODAD
	if err := ns.NL.AddrAdd(l, a); err != nil {
		t.Fatalf("add %s: %v", cidr, err)
	}
}

func TestAutodetectMethods(t *testing.T) {
	ns, det := hostNS(t)
	cases := []struct {
		method string
		family int
		want   string // "" = not found
		iface  string
	}{
		{"first-found", 4, "10.0.0.5/24", "eth0"},
		{"", 4, "10.0.0.5/24", "eth0"},
		{"first-found", 6, "2001:db8::5/64", "eth0"},
		{"interface=ens.*", 4, "192.168.50.7/24", "ens4"},
		{"interface=nomatch.*,ens4", 6, "2001:db8:1::7/64", "ens4"},
		{"interface=docker0", 4, "172.17.0.1/16", "docker0"},
		{"interface=nomatch", 4, "", ""},
		{"interface=eth9", 4, "", ""}, // down
		{"skip-interface=docker.*,cali.*,eth0", 4, "192.168.50.7/24", "ens4"},
		{"skip-interface=docker.*, cali.*, eth.*, ens.*", 4, "10.1.1.1/24", "dummy0"},
		{"skip-interface=.*", 4, "", ""},
		{"skip-interface=eth.*", 6, "2001:db8:1::7/64", "ens4"},
		{"skip-interface=eth.*,ens.*", 6, "", ""},
		{"cidr=192.168.0.0/16", 4, "192.168.50.7/24", "ens4"},
		{"cidr=10.1.0.0/16,172.16.0.0/12", 4, "172.17.0.1/16", "docker0"},
		{"cidr=2001:db8:1::/48", 6, "2001:db8:1::7/64", "ens4"},
		{"cidr=8.8.8.0/24", 4, "", ""},
		{"cidr=10.3.3.0/24", 4, "", ""}, // only on the down interface
		{"can-reach=192.168.50.99", 4, "192.168.50.7/24", "ens4"},
		{"can-reach=10.0.0.77", 4, "10.0.0.5/24", "eth0"},
		{"can-reach=2001:db8:1::99", 6, "2001:db8:1::7/64", "ens4"},
	}
	for _, c := range cases {
		m, err := ParseMethod(c.method)
		if err != nil {
			t.Fatalf("%q: %v", c.method, err)
		}
		got, err := det.Detect(m, c.family)
		if c.want == "" {
			if err == nil {
				t.Errorf("%q v%d: found %s on %s, want nothing", c.method, c.family, got.Addr, got.Iface)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q v%d: %v", c.method, c.family, err)
			continue
		}
		if got.Addr.String() != c.want || got.Iface != c.iface {
			t.Errorf("%q v%d: got %s on %s, want %s on %s", c.method, c.family, got.Addr, got.Iface, c.want, c.iface)
		}
	}

	// can-reach without a route fails clearly; with a default route it
	// picks the interface the route uses.
	m, _ := ParseMethod("can-reach=198.51.100.1")
	if _, err := det.Detect(m, 4); err == nil {
		t.Fatal("can-reach without a route succeeded")
	}
	ns.Route(t, "0.0.0.0/0", "ens4", "192.168.50.1")
	got, err := det.Detect(m, 4)
	if err != nil || got.Addr.String() != "192.168.50.7/24" {
		t.Fatalf("can-reach via default route: %v %v", got, err)
	}
	// Host names are resolved.
	det.Resolve = func(string) ([]net.IP, error) { return []net.IP{net.ParseIP("10.0.0.99")}, nil }
	m, _ = ParseMethod("can-reach=gateway.example")
	if got, err := det.Detect(m, 4); err != nil || got.Iface != "eth0" {
		t.Fatalf("can-reach host name: %v %v", got, err)
	}
	// Nothing matching is ErrNotFound.
	m, _ = ParseMethod("interface=nope")
	if _, err := det.Detect(m, 4); !errors.Is(err, ErrNotFound) {
		t.Fatalf("want ErrNotFound, got %v", err)
	}
}

func TestParseMethodErrors(t *testing.T) {
	for _, s := range []string{"first-found=x", "interface=", "interface=(", "cidr=10.0.0.0", "cidr=", "can-reach=", "magic"} {
		if _, err := ParseMethod(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestResolveAddrs(t *testing.T) {
	_, det := hostNS(t)
	cases := []struct {
		ip, ip6, method string
		v4, v6          string
		iface           string
		bad             bool
	}{
		{ip: "", v4: "10.0.0.5/24", iface: "eth0"},
		{ip: "autodetect", method: "interface=ens4", ip6: "autodetect", v4: "192.168.50.7/24", v6: "2001:db8::5/64", iface: "ens4"},
		{ip: "10.0.0.5", v4: "10.0.0.5/24", iface: "eth0"},    // prefix from the interface
		{ip: "10.0.0.5/16", v4: "10.0.0.5/16", iface: "eth0"}, // explicit prefix wins
		{ip: "203.0.113.9", v4: "203.0.113.9/32"},             // not local: host prefix
		{ip: "none", ip6: "2001:db8:1::7", v6: "2001:db8:1::7/64"},
		{ip: "fe80::1", bad: true},
		{ip: "banana", bad: true},
		{ip: "autodetect", method: "cidr=8.8.8.0/24", bad: true},
	}
	for _, c := range cases {
		cfg := &Config{IP: c.ip, IP6: c.ip6, IPMethod: c.method}
		got, err := ResolveAddrs(cfg, det)
		if c.bad {
			if err == nil {
				t.Errorf("IP=%q accepted: %+v", c.ip, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("IP=%q: %v", c.ip, err)
			continue
		}
		if s := prefixString(got.V4); s != c.v4 {
			t.Errorf("IP=%q: v4 %q, want %q", c.ip, s, c.v4)
		}
		if s := prefixString(got.V6); s != c.v6 {
			t.Errorf("IP6=%q: v6 %q, want %q", c.ip6, s, c.v6)
		}
		if got.V4Iface != c.iface {
			t.Errorf("IP=%q: interface %q, want %q", c.ip, got.V4Iface, c.iface)
		}
	}
	_ = netip.Prefix{}
}

// TestAutodetectRetriesInterruptedDumps: an interrupted dump misses
// entries (the fake drops the first half): used as it is, first-found
// would pick eth1 instead of eth0. It is retried instead; a dump that
// never completes fails the detection rather than picking another address.
func TestAutodetectRetriesInterruptedDumps(t *testing.T) {
	host := func() *fakenl.Kernel {
		k := fakenl.New()
		k.SetDown("lo") // the first AddrList is eth0's
		for _, d := range []struct{ name, cidr string }{{"eth0", "10.0.0.5/24"}, {"eth1", "10.1.0.5/24"}} {
			l := k.AddLink(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: d.name, Flags: net.FlagUp}})
			a, _ := netlink.ParseAddr(d.cidr)
			if err := k.AddrAdd(l, a); err != nil {
				t.Fatal(err)
			}
		}
		return k
	}
	for _, dump := range []string{"LinkList", "AddrList"} {
		t.Run(dump, func(t *testing.T) {
			k := host()
			k.InterruptDumps(dump, 1)
			got, err := (&Detector{NL: k}).Detect(Method{}, 4)
			if err != nil || got.Iface != "eth0" || got.Addr != netip.MustParsePrefix("10.0.0.5/24") {
				t.Fatalf("detected %+v, %v; want eth0 10.0.0.5/24", got, err)
			}
			if k.Calls[dump] < 2 {
				t.Errorf("%d %s calls: not retried", k.Calls[dump], dump)
			}
			k.InterruptDumps(dump, 1000)
			if got, err := (&Detector{NL: k}).Detect(Method{}, 4); !errors.Is(err, netlink.ErrDumpInterrupted) {
				t.Errorf("endless interruptions: detected %+v, %v", got, err)
			}
		})
	}
}

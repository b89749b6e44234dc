package dataplane

import (
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/node/dataplane/fakenl"
)

func quiet() logrus.FieldLogger {
	l := logrus.New()
	l.SetLevel(logrus.WarnLevel)
	return l
}

// counter is an Observer that counts.
type counter struct {
	mu     sync.Mutex
	ops    map[string]int
	drift  map[string]int
	errors map[string]int
	routes int
}

func newCounter() *counter {
	return &counter{ops: map[string]int{}, drift: map[string]int{}, errors: map[string]int{}}
}
func (c *counter) RouteOp(op string) { c.mu.Lock(); c.ops[op]++; c.mu.Unlock() }
func (c *counter) RoutesProgrammed(n int) {
	c.mu.Lock()
	c.routes = n
	c.mu.Unlock()
}
func (c *counter) DriftRepaired(k string)             { c.mu.Lock(); c.drift[k]++; c.mu.Unlock() }
func (c *counter) Error(k string)                     { c.mu.Lock(); c.errors[k]++; c.mu.Unlock() }
func (c *counter) Reconciled(bool, time.Duration)     {}
func (c *counter) get(m map[string]int, k string) int { c.mu.Lock(); defer c.mu.Unlock(); return m[k] }

// fakeHost is a fake kernel with eth0 = 10.0.0.1/24.
func fakeHost(t *testing.T) *fakenl.Kernel {
	k := fakenl.New()
	eth := k.AddLink(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1500, Flags: net.FlagUp}})
	if err := k.AddrAdd(eth, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("10.0.0.1").To4(), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	return k
}

// routeTable renders the fake's routes like `ip route`, sorted.
func routeTable(k *fakenl.Kernel) []string {
	names := map[int]string{}
	links, _ := k.LinkList()
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	var out []string
	for _, r := range k.Routes() {
		s := r.Dst.String()
		if r.Type == unix.RTN_BLACKHOLE {
			s = "blackhole " + s
		} else {
			if r.Gw != nil {
				s += " via " + r.Gw.String()
			}
			s += " dev " + names[r.LinkIndex]
			if r.Flags&int(netlink.FLAG_ONLINK) != 0 {
				s += " onlink"
			}
			if r.Scope == netlink.SCOPE_LINK {
				s += " scope link"
			}
		}
		s += " proto " + strconv.Itoa(int(r.Protocol))
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

func expectRoutes(t *testing.T, k *fakenl.Kernel, want ...string) {
	t.Helper()
	got := routeTable(k)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("routes:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// ipipCluster: n1 (local, 10.0.0.1/24), n2 in the same subnet, n3 in
// another; one block each.
func ipipCluster(d *Dataplane, mode string) {
	d.SetNode(Node{Name: "n1", IPv4: pfx("10.0.0.1/24"), IPIPAddr: addr("10.244.0.1")})
	d.SetNode(Node{Name: "n2", IPv4: pfx("10.0.0.2/24"), IPIPAddr: addr("10.244.1.1")})
	d.SetNode(Node{Name: "n3", IPv4: pfx("10.1.0.3/24"), IPIPAddr: addr("10.244.2.1")})
	d.SetPool(Pool{CIDR: pfx("10.244.0.0/16"), IPIPMode: mode, VXLANMode: api.EncapNever})
	d.SetBlock(pfx("10.244.0.0/26"), "n1")
	d.SetBlock(pfx("10.244.1.0/26"), "n2")
	d.SetBlock(pfx("10.244.2.0/26"), "n3")
}

func TestIPIPThroughSeam(t *testing.T) {
	k := fakeHost(t)
	// Routes that are not ours must survive everything.
	eth, _ := k.LinkByName("eth0")
	_ = k.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: net.ParseIP("10.99.0.0").To4(), Mask: net.CIDRMask(24, 32)}, Gw: net.ParseIP("10.0.0.254").To4(), LinkIndex: eth.Attrs().Index, Protocol: 12})
	_ = k.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: net.ParseIP("10.98.0.0").To4(), Mask: net.CIDRMask(24, 32)}, Gw: net.ParseIP("10.0.0.254").To4(), LinkIndex: eth.Attrs().Index, Protocol: 4})
	foreign := []string{"10.99.0.0/24 via 10.0.0.254 dev eth0 proto 12", "10.98.0.0/24 via 10.0.0.254 dev eth0 proto 4"}
	d := New(Config{NodeName: "n1"}, k, quiet(), nil)
	ipipCluster(d, api.EncapAlways)
	if err := d.Apply(); err != nil {
		t.Fatal(err)
	}
	tunl := k.Link("tunl0")
	if tunl == nil || tunl.Type() != "ipip" || tunl.Attrs().MTU != 1480 || tunl.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("tunl0: %+v", tunl)
	}
	if a := k.Addrs("tunl0"); len(a) != 1 || a[0] != "10.244.0.1/32" {
		t.Fatalf("tunl0 addresses %v", a)
	}
	expectRoutes(t, k, append(foreign,
		"blackhole 10.244.0.0/26 proto 80",
		"10.244.1.0/26 via 10.0.0.2 dev tunl0 onlink proto 80",
		"10.244.2.0/26 via 10.1.0.3 dev tunl0 onlink proto 80")...)

	// CrossSubnet: the same-subnet node goes direct over eth0.
	d.SetPool(Pool{CIDR: pfx("10.244.0.0/16"), IPIPMode: api.EncapCrossSubnet, VXLANMode: api.EncapNever})
	if err := d.Apply(); err != nil {
		t.Fatal(err)
	}
	expectRoutes(t, k, append(foreign,
		"blackhole 10.244.0.0/26 proto 80",
		"10.244.1.0/26 via 10.0.0.2 dev eth0 onlink proto 80",
		"10.244.2.0/26 via 10.1.0.3 dev tunl0 onlink proto 80")...)

	// A node moves into our subnet: only its routes change.
	before := k.Calls["RouteReplace"] + k.Calls["RouteAdd"]
	d.SetNode(Node{Name: "n3", IPv4: pfx("10.0.0.3/24"), IPIPAddr: addr("10.244.2.1")})
	if err := d.Apply(); err != nil {
		t.Fatal(err)
	}
	if n := k.Calls["RouteReplace"] + k.Calls["RouteAdd"] - before; n != 1 {
		t.Fatalf("moving one node wrote %d routes", n)
	}
	expectRoutes(t, k, append(foreign,
		"blackhole 10.244.0.0/26 proto 80",
		"10.244.1.0/26 via 10.0.0.2 dev eth0 onlink proto 80",
		"10.244.2.0/26 via 10.0.0.3 dev eth0 onlink proto 80")...)

	// Node deleted: its block route goes.
	d.DeleteNode("n2")
	if err := d.Apply(); err != nil {
		t.Fatal(err)
	}
	expectRoutes(t, k, append(foreign,
		"blackhole 10.244.0.0/26 proto 80",
		"10.244.2.0/26 via 10.0.0.3 dev eth0 onlink proto 80")...)

	// Encapsulation off: remote routes go (BIRD's job now), tunl0 loses
	// its address, the local blackhole stays.
	d.SetPool(Pool{CIDR: pfx("10.244.0.0/16"), IPIPMode: api.EncapNever, VXLANMode: api.EncapNever})
	if err := d.Apply(); err != nil {
		t.Fatal(err)
	}
	expectRoutes(t, k, append(foreign, "blackhole 10.244.0.0/26 proto 80")...)
	if a := k.Addrs("tunl0"); len(a) != 0 {
		t.Fatalf("tunl0 kept %v", a)
	}
	// Block released: the blackhole goes too.
	d.DeleteBlock(pfx("10.244.0.0/26"))
	if err := d.Apply(); err != nil {
		t.Fatal(err)
	}
	expectRoutes(t, k, foreign...)
}

func TestIPIPMissingKernelSupport(t *testing.T) {
	k := fakeHost(t)
	k.Unsupported["ipip"] = true
	obs := newCounter()
	d := New(Config{NodeName: "n1"}, k, quiet(), obs)
	d.SetNode(Node{Name: "n1", IPv4: pfx("10.0.0.1/24"), IPIPAddr: addr("10.244.0.1"), VXLANAddr: addr("10.245.0.1")})
	d.SetNode(Node{Name: "n2", IPv4: pfx("10.1.0.2/24"), IPIPAddr: addr("10.244.1.1"), VXLANAddr: addr("10.245.1.1")})
	d.SetPool(Pool{CIDR: pfx("10.244.0.0/16"), IPIPMode: api.EncapAlways, VXLANMode: api.EncapNever})
	d.SetPool(Pool{CIDR: pfx("10.245.0.0/16"), IPIPMode: api.EncapNever, VXLANMode: api.EncapAlways})
	d.SetBlock(pfx("10.244.0.0/26"), "n1")
	d.SetBlock(pfx("10.244.1.0/26"), "n2")
	d.SetBlock(pfx("10.245.0.0/26"), "n1")
	d.SetBlock(pfx("10.245.1.0/26"), "n2")
	d.SetWorkload(Workload{Key: "default/w", Iface: "eth0", Addrs: []netip.Prefix{pfx("10.245.0.5/32")}})
	if err := d.Apply(); err != nil {
		t.Fatalf("apply must not fail because of missing ipip: %v", err)
	}
	st := d.Status()
	if st.IPIPReady || !strings.Contains(st.IPIPError, "no IPIP support") || !strings.Contains(st.IPIPError, "ipip") {
		t.Fatalf("status %+v", st)
	}
	t.Logf("reported: %s", st.IPIPError)
	// Everything else works.
	expectRoutes(t, k,
		"blackhole 10.244.0.0/26 proto 80",
		"blackhole 10.245.0.0/26 proto 80",
		"10.245.1.0/26 via 10.245.1.1 dev vxlan.calico onlink proto 80",
		"10.245.0.5/32 dev eth0 scope link proto 80")
	// Reported once, not on every pass.
	for range 3 {
		if err := d.Resync(); err != nil {
			t.Fatal(err)
		}
	}
	if n := obs.get(obs.errors, "ipip"); n != 1 {
		t.Fatalf("ipip error reported %d times", n)
	}
	// When the kernel gains ipip (module loaded), the next resync uses it.
	delete(k.Unsupported, "ipip")
	if err := d.Resync(); err != nil {
		t.Fatal(err)
	}
	if st := d.Status(); !st.IPIPReady || st.IPIPError != "" {
		t.Fatalf("after loading ipip: %+v", st)
	}
	if got := routeTable(k); !strings.Contains(strings.Join(got, "\n"), "10.244.1.0/26 via 10.1.0.2 dev tunl0 onlink proto 80") {
		t.Fatalf("no IPIP route: %v", got)
	}
}

func TestForeignRouteConflictAndDrift(t *testing.T) {
	k := fakeHost(t)
	obs := newCounter()
	d := New(Config{NodeName: "n1"}, k, quiet(), obs)
	ipipCluster(d, api.EncapAlways)
	// BIRD (proto 12) already holds n3's block.
	eth, _ := k.LinkByName("eth0")
	birdRoute := &netlink.Route{Dst: &net.IPNet{IP: net.ParseIP("10.244.2.0").To4(), Mask: net.CIDRMask(26, 32)}, Gw: net.ParseIP("10.0.0.254").To4(), LinkIndex: eth.Attrs().Index, Protocol: 12}
	if err := k.RouteAdd(birdRoute); err != nil {
		t.Fatal(err)
	}
	if err := d.Apply(); err != nil {
		t.Fatal(err)
	}
	expectRoutes(t, k,
		"blackhole 10.244.0.0/26 proto 80",
		"10.244.1.0/26 via 10.0.0.2 dev tunl0 onlink proto 80",
		"10.244.2.0/26 via 10.0.0.254 dev eth0 proto 12")
	if d.Status().Conflicts != 1 || obs.get(obs.errors, "route_conflict") != 1 {
		t.Fatalf("conflict not reported: %+v", d.Status())
	}
	// Drift: our route deleted, the blackhole replaced by someone using
	// our protocol, tunl0 MTU changed, tunl0 down. A resync repairs all.
	k.DeleteRoute("10.244.1.0/26")
	tl, _ := k.LinkByName("tunl0")
	_ = k.LinkSetMTU(tl, 1300)
	if err := d.Resync(); err != nil {
		t.Fatal(err)
	}
	if obs.get(obs.drift, "route") != 1 || obs.get(obs.drift, "link") != 1 {
		t.Fatalf("drift counts %v", obs.drift)
	}
	if k.Link("tunl0").Attrs().MTU != 1480 {
		t.Fatal("MTU not repaired")
	}
	k.SetDown("tunl0")
	if err := d.Resync(); err != nil {
		t.Fatal(err)
	}
	if k.Link("tunl0").Attrs().Flags&net.FlagUp == 0 {
		t.Fatal("tunl0 left down")
	}
	// The BIRD route goes away: ours takes its place at the next resync.
	_ = k.RouteDel(birdRoute)
	if err := d.Resync(); err != nil {
		t.Fatal(err)
	}
	expectRoutes(t, k,
		"blackhole 10.244.0.0/26 proto 80",
		"10.244.1.0/26 via 10.0.0.2 dev tunl0 onlink proto 80",
		"10.244.2.0/26 via 10.1.0.3 dev tunl0 onlink proto 80")
	// A route with our protocol that we do not want is removed.
	_ = k.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: net.ParseIP("10.50.0.0").To4(), Mask: net.CIDRMask(24, 32)}, Type: unix.RTN_BLACKHOLE, Protocol: 80})
	if err := d.Resync(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.Join(routeTable(k), "\n"), "10.50.0.0") {
		t.Fatal("stale owned route kept")
	}
	// Nothing to do: a resync writes nothing.
	before := k.Calls["RouteAdd"] + k.Calls["RouteReplace"] + k.Calls["RouteDel"] + k.Calls["LinkSetMTU"] + k.Calls["AddrAdd"]
	if err := d.Resync(); err != nil {
		t.Fatal(err)
	}
	if after := k.Calls["RouteAdd"] + k.Calls["RouteReplace"] + k.Calls["RouteDel"] + k.Calls["LinkSetMTU"] + k.Calls["AddrAdd"]; after != before {
		t.Fatalf("no-op resync wrote %d times", after-before)
	}
}

func TestWorkloadRoutesWaitForInterface(t *testing.T) {
	k := fakeHost(t)
	d := New(Config{NodeName: "n1"}, k, quiet(), nil)
	d.SetNode(Node{Name: "n1", IPv4: pfx("10.0.0.1/24")})
	d.SetWorkload(Workload{Key: "default/a", Iface: "caliaaaaaaaaaaa", Addrs: []netip.Prefix{pfx("10.244.0.5/32")}})
	if err := d.Apply(); err != nil {
		t.Fatal(err)
	}
	expectRoutes(t, k)
	if d.Status().Pending != 1 {
		t.Fatalf("status %+v", d.Status())
	}
	l := k.AddLink(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "caliaaaaaaaaaaa", Flags: net.FlagUp}})
	d.HandleEvent(Event{Link: &netlink.LinkUpdate{Link: l, Header: unix.NlMsghdr{Type: unix.RTM_NEWLINK}}})
	if err := d.Apply(); err != nil {
		t.Fatal(err)
	}
	expectRoutes(t, k, "10.244.0.5/32 dev caliaaaaaaaaaaa scope link proto 80")
	d.DeleteWorkload("default/a")
	if err := d.Apply(); err != nil {
		t.Fatal(err)
	}
	expectRoutes(t, k)
}

// TestProgramClusterRoutes: unencapsulated pools' routes are BIRD's by
// default (EnabledNoEncapOnly); with Disabled or EnabledIPIPOnly the agent
// programs them, straight to nodes in its subnet (none beyond it), and
// gives them back when the setting returns. IPIP routes stay the agent's
// under every setting.
func TestProgramClusterRoutes(t *testing.T) {
	k := fakeHost(t)
	d := New(Config{NodeName: "n1"}, k, quiet(), nil)
	ipipCluster(d, api.EncapNever)
	steps := []struct {
		name   string
		policy string
		ipip   string
		want   []string
	}{
		{"default: BIRD's", "", api.EncapNever, []string{"blackhole 10.244.0.0/26 proto 80"}},
		{"Disabled: the agent's", api.ClusterRoutesDisabled, api.EncapNever, []string{
			"blackhole 10.244.0.0/26 proto 80",
			"10.244.1.0/26 via 10.0.0.2 dev eth0 onlink proto 80"}},
		{"EnabledIPIPOnly: the agent's", api.ClusterRoutesEnabledIPIPOnly, api.EncapNever, []string{
			"blackhole 10.244.0.0/26 proto 80",
			"10.244.1.0/26 via 10.0.0.2 dev eth0 onlink proto 80"}},
		{"Enabled: BIRD's again", api.ClusterRoutesEnabled, api.EncapNever, []string{"blackhole 10.244.0.0/26 proto 80"}},
		{"Enabled, IPIP pool: still the agent's", api.ClusterRoutesEnabled, api.EncapAlways, []string{
			"blackhole 10.244.0.0/26 proto 80",
			"10.244.1.0/26 via 10.0.0.2 dev tunl0 onlink proto 80",
			"10.244.2.0/26 via 10.1.0.3 dev tunl0 onlink proto 80"}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			var cfg *api.BGPConfiguration
			if s.policy != "" {
				cfg = &api.BGPConfiguration{Spec: api.BGPConfigurationSpec{ProgramClusterRoutes: &s.policy}}
			}
			d.SetClusterRoutes(api.ClusterRoutes(cfg))
			d.SetPool(Pool{CIDR: pfx("10.244.0.0/16"), IPIPMode: s.ipip, VXLANMode: api.EncapNever})
			if err := d.Apply(); err != nil {
				t.Fatal(err)
			}
			expectRoutes(t, k, s.want...)
		})
	}
}

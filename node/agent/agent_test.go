package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/etcd"
	"github.com/roostnet/roost/datastore/file"
	"github.com/roostnet/roost/internal/etcdtest"
	"github.com/roostnet/roost/node/dataplane"
	"github.com/roostnet/roost/node/heartbeat"
	"github.com/roostnet/roost/node/internal/nstest"
	"github.com/roostnet/roost/node/ipam"
	"github.com/roostnet/roost/node/names"
	"github.com/roostnet/roost/node/startup"
	"github.com/roostnet/roost/node/workload"
)

func quiet() *logrus.Logger {
	l := logrus.New()
	l.SetLevel(logrus.WarnLevel)
	return l
}

func eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s: still failing after %s: %v", what, d, err)
}

type node struct {
	name  string
	ns    *nstest.NS
	agent *Agent
	wl    *nstest.NS
	wlIP  netip.Addr
	errc  chan error
}

func backends(t *testing.T) map[string]func(t *testing.T) datastore.Datastore {
	return map[string]func(t *testing.T) datastore.Datastore{
		"file": func(t *testing.T) datastore.Datastore {
			ds, err := file.New(context.Background(), t.TempDir(), file.WithLogger(quiet()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ds.Close() })
			return ds
		},
		"etcd": func(t *testing.T) datastore.Datastore {
			e := etcdtest.Start(t)
			ds, err := etcd.New(context.Background(), datastore.Config{Type: datastore.TypeEtcd, EtcdEndpoints: e.Endpoint()},
				etcd.WithLogger(logrus.NewEntry(quiet())))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ds.Close() })
			return ds
		},
	}
}

func startAgent(t *testing.T, ctx context.Context, ds datastore.Datastore, n *node, ip string, pool startup.PoolConfig, more ...func(*Options)) error {
	o := Options{
		Startup:            startup.Config{NodeName: n.name, IP: ip, IPMethod: "interface=eth0", Pool: pool},
		Dataplane:          dataplane.Config{ResyncInterval: time.Hour, RetryInterval: 100 * time.Millisecond},
		AutodetectInterval: 200 * time.Millisecond,
		Listen:             "127.0.0.1:0",
		IPForward:          true,
		DS:                 ds, NL: dataplane.Kernel(n.ns.NL), Sub: dataplane.NetlinkSubscriber{NS: n.ns.Handle},
		Detector: &startup.Detector{NL: n.ns.NL}, HostNS: n.ns.Handle, Log: quiet(),
	}
	for _, f := range more {
		f(&o)
	}
	n.agent = New(o)
	n.errc = make(chan error, 1)
	go func() { n.errc <- n.agent.Run(ctx) }()
	// Run fails fast on startup errors; otherwise wait for the listener.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-n.errc:
			return err
		default:
		}
		if n.agent.ListenAddr() != "" {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errors.New("agent did not start")
}

func httpGet(t *testing.T, n *node, path string) (int, string) {
	resp, err := http.Get("http://" + n.agent.ListenAddr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func getNode(t *testing.T, ds datastore.Datastore, name string) *api.Node {
	kv, err := ds.Get(context.Background(), datastore.ResourceKey(api.KindNode, "", name))
	if err != nil {
		t.Fatal(err)
	}
	return kv.Value.(*api.Node)
}

// hasRoute looks for roost-node's route to dst (IPv4 or IPv6) via dev.
func hasRoute(n *node, dst, dev string) error {
	family := netlink.FAMILY_V4
	if strings.Contains(dst, ":") {
		family = netlink.FAMILY_V6
	}
	rs, err := n.ns.NL.RouteListFiltered(family, &netlink.Route{Protocol: names.RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return err
	}
	var seen []string
	for _, r := range rs {
		l, _ := n.ns.NL.LinkByIndex(r.LinkIndex)
		d := ""
		if l != nil {
			d = l.Attrs().Name
		}
		seen = append(seen, r.Dst.String()+" dev "+d)
		if r.Dst.String() == dst && d == dev {
			return nil
		}
	}
	return fmt.Errorf("%s: no route %s dev %s in %v", n.name, dst, dev, seen)
}

// TestAgentEndToEnd runs two agents in two namespaced hosts against one
// datastore: registration, default pool, tunnel addresses, workloads,
// routes, a ping through vxlan.calico, health and metrics, a pool switch,
// a duplicate address, re-detection and node removal.
func TestAgentEndToEnd(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) { agentEndToEnd(t, open(t)) })
	}
}

func agentEndToEnd(t *testing.T, ds datastore.Datastore) {
	ctx, cancel := context.WithCancel(context.Background())
	a := &node{name: "a", ns: nstest.New(t, "a")}
	b := &node{name: "b", ns: nstest.New(t, "b")}
	nstest.Veth(t, a.ns, "eth0", b.ns, "eth0")
	a.ns.Addr(t, "eth0", "10.0.0.1/24")
	b.ns.Addr(t, "eth0", "10.0.0.2/24")
	a.ns.Route(t, "0.0.0.0/0", "eth0", "10.0.0.254")
	b.ns.Route(t, "0.0.0.0/0", "eth0", "10.0.0.254")
	pool := startup.PoolConfig{CIDR: "10.244.0.0/16", IPIP: api.EncapNever, VXLAN: api.EncapAlways, BlockSize: 26, NATOutgoing: true}
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	nameFiles := map[string]string{}
	for _, n := range []*node{a, b} {
		nameFiles[n.name] = filepath.Join(t.TempDir(), "calico", "nodename")
		if err := startAgent(t, ctx, ds, n, "autodetect", pool, func(o *Options) { o.Startup.NodenameFile = nameFiles[n.name] }); err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
		wg.Add(1)
		go func(n *node) { defer wg.Done(); <-n.errc }(n)
	}
	// The node name file, for CNI plugin configurations without a node
	// name, as calico-node writes it.
	for name, f := range nameFiles {
		if b, err := os.ReadFile(f); err != nil || string(b) != name {
			t.Fatalf("node name file %s: %q %v, want %q", f, b, err, name)
		}
	}
	// Registration with the detected address and prefix; the default pool.
	if got := getNode(t, ds, "a").Spec.BGP.IPv4Address; got != "10.0.0.1/24" {
		t.Fatalf("node a address %q", got)
	}
	kv, err := ds.Get(ctx, datastore.ResourceKey(api.KindIPPool, "", startup.DefaultPoolName))
	if err != nil || kv.Value.(*api.IPPool).Spec.VXLANMode != api.EncapAlways {
		t.Fatalf("default pool: %v", err)
	}
	// Tunnel addresses appear in both Nodes.
	eventually(t, 10*time.Second, "VXLAN tunnel addresses", func() error {
		for _, n := range []string{"a", "b"} {
			nd := getNode(t, ds, n)
			if nd.Spec.IPv4VXLANTunnelAddr == "" || nd.Spec.VXLANTunnelMACAddr != names.VXLANMAC(n).String() {
				return fmt.Errorf("node %s: %+v", n, nd.Spec)
			}
		}
		return nil
	})
	// Workloads.
	for _, n := range []*node{a, b} {
		n.wl = nstest.New(t, "w"+n.name)
		h := &workload.Host{NodeName: n.name, DS: ds, IPAM: ipam.New(ds, n.name, ipam.WithLogger(quiet())), NL: n.ns.NL, NS: n.ns.Handle, Log: quiet()}
		res, err := h.Attach(ctx, workload.Request{Name: "web-" + n.name, NetNS: n.wl.Path})
		if err != nil {
			t.Fatal(err)
		}
		n.wlIP = res.IP
	}
	// Ready, with routes to the other node's block through the tunnel.
	for _, n := range []*node{a, b} {
		eventually(t, 10*time.Second, n.name+" ready", func() error {
			code, body := httpGet(t, n, "/readyz")
			if code != 200 {
				return fmt.Errorf("readyz %d: %s", code, body)
			}
			return nil
		})
	}
	bBlock, _ := b.wlIP.Prefix(26)
	aBlock, _ := a.wlIP.Prefix(26)
	eventually(t, 10*time.Second, "routes", func() error {
		if err := hasRoute(a, bBlock.String(), names.VXLANDevice); err != nil {
			return err
		}
		return hasRoute(b, aBlock.String(), names.VXLANDevice)
	})
	if err := a.wl.Ping(b.wlIP, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.wl.Ping(a.wlIP, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if code, body := httpGet(t, a, "/healthz"); code != 200 || !strings.Contains(body, `"node": "a"`) {
		t.Fatalf("healthz %d %s", code, body)
	}
	// The agent reports that it is alive (birdctl delete node reads it).
	if st, err := heartbeat.Check(ctx, ds, "a", time.Now()); err != nil || !st.Alive {
		t.Errorf("node a's heartbeat: %+v %v", st, err)
	}
	_, metrics := httpGet(t, a, "/metrics")
	for _, m := range []string{"roost_node_routes_programmed", "roost_node_route_operations_total", "roost_node_reconcile_duration_seconds",
		"roost_node_in_sync 1", `roost_node_tunnel_ready{device="vxlan.calico"} 1`, "roost_node_nat_outgoing_programmed 1"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("metrics lack %q", m)
		}
	}

	// The default pool has natOutgoing: NAT outgoing is programmed, and
	// follows the pool without a restart.
	if st := a.agent.Status().NAT; st == nil || !st.Programmed || st.NATPools != 1 {
		t.Fatalf("NAT outgoing status %+v", st)
	}
	setPool(t, ds, func(p *api.IPPool) { p.Spec.NATOutgoing = false })
	eventually(t, 10*time.Second, "natOutgoing off", func() error {
		if st := a.agent.Status().NAT; st.NATPools != 0 || !st.Programmed {
			return fmt.Errorf("NAT outgoing status %+v", st)
		}
		return nil
	})

	// Another node claiming a's address is refused.
	c := &node{name: "c", ns: nstest.New(t, "c")}
	c.ns.Dummy(t, "eth0")
	c.ns.Addr(t, "eth0", "10.0.0.1/24")
	err = startAgent(t, ctx, ds, c, "autodetect", pool)
	if !errors.Is(err, startup.ErrDuplicateAddress) {
		t.Fatalf("duplicate address: %v", err)
	}

	// Switch the pool to IPIP: VXLAN addresses are released, vxlan.calico
	// goes, and on this kernel the missing ipip support is reported.
	setPool(t, ds, func(p *api.IPPool) { p.Spec.VXLANMode = api.EncapNever; p.Spec.IPIPMode = api.EncapAlways })
	eventually(t, 10*time.Second, "switch to IPIP", func() error {
		nd := getNode(t, ds, "a")
		if nd.Spec.IPv4VXLANTunnelAddr != "" || nd.Spec.BGP.IPv4IPIPTunnelAddr == "" {
			return fmt.Errorf("node a: %+v %+v", nd.Spec, nd.Spec.BGP)
		}
		if _, err := a.ns.NL.LinkByName(names.VXLANDevice); err == nil {
			return errors.New("vxlan.calico still there")
		}
		st := a.agent.Dataplane().Status()
		if !st.IPIPReady && st.IPIPError == "" {
			return fmt.Errorf("neither tunl0 nor an IPIP error: %+v", st)
		}
		return nil
	})
	setPool(t, ds, func(p *api.IPPool) { p.Spec.VXLANMode = api.EncapAlways; p.Spec.IPIPMode = api.EncapNever })
	eventually(t, 10*time.Second, "back to VXLAN", func() error {
		if err := hasRoute(a, bBlock.String(), names.VXLANDevice); err != nil {
			return err
		}
		return a.wl.Ping(b.wlIP, time.Second)
	})

	// a's address changes: re-detection updates its Node, b follows.
	l, _ := a.ns.NL.LinkByName("eth0")
	na, _ := netlink.ParseAddr("10.0.0.11/24")
	oa, _ := netlink.ParseAddr("10.0.0.1/24")
	if err := a.ns.NL.AddrDel(l, oa); err != nil {
		t.Fatal(err)
	}
	if err := a.ns.NL.AddrAdd(l, na); err != nil {
		t.Fatal(err)
	}
	a.ns.Route(t, "0.0.0.0/0", "eth0", "10.0.0.254")
	eventually(t, 10*time.Second, "re-detected address", func() error {
		if got := getNode(t, ds, "a").Spec.BGP.IPv4Address; got != "10.0.0.11/24" {
			return fmt.Errorf("node a address %q", got)
		}
		return a.wl.Ping(b.wlIP, time.Second)
	})

	// b leaves: a drops its routes.
	if err := ds.Delete(ctx, datastore.ResourceKey(api.KindNode, "", "b"), 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "node b's routes removed", func() error {
		if hasRoute(a, bBlock.String(), names.VXLANDevice) == nil {
			return errors.New("still routed")
		}
		return nil
	})
}

func setPool(t *testing.T, ds datastore.Datastore, f func(*api.IPPool)) {
	t.Helper()
	for {
		kv, err := ds.Get(context.Background(), datastore.ResourceKey(api.KindIPPool, "", startup.DefaultPoolName))
		if err != nil {
			t.Fatal(err)
		}
		p := kv.Value.(*api.IPPool)
		f(p)
		p.Metadata.ResourceVersion = ""
		_, err = ds.Update(context.Background(), &datastore.KV{Key: kv.Key, Value: p, Revision: kv.Revision})
		if err == nil {
			return
		}
		if !errors.Is(err, datastore.ErrConflict) {
			t.Fatal(err)
		}
	}
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/node/internal/nstest"
	"github.com/roostnet/roost/node/ipam"
	"github.com/roostnet/roost/node/names"
	"github.com/roostnet/roost/node/startup"
	"github.com/roostnet/roost/node/workload"
)

// TestAgentDualStackAndGrowth: two agents with IPv4 and autodetected
// IPv6 addresses. The default IPv6 pool is created, each node gets an
// IPv6 VXLAN tunnel address and vxlan-v6.calico, workloads ping across in
// both families. a's workloads outgrow its first /30 block and a second
// is claimed (b routes both); when the second empties, it goes back to
// the pool after the grace period and b's route to it goes.
func TestAgentDualStackAndGrowth(t *testing.T) {
	ds := backends(t)["file"](t)
	ctx, cancel := context.WithCancel(context.Background())
	a := &node{name: "a", ns: nstest.New(t, "a")}
	b := &node{name: "b", ns: nstest.New(t, "b")}
	nstest.Veth(t, a.ns, "eth0", b.ns, "eth0")
	for i, n := range []*node{a, b} {
		n.ns.Addr(t, "eth0", fmt.Sprintf("10.0.0.%d/24", i+1))
		n.ns.Addr(t, "eth0", fmt.Sprintf("fd00:99::%d/64", i+1))
		n.ns.Route(t, "0.0.0.0/0", "eth0", "10.0.0.254")
	}
	pool := startup.PoolConfig{CIDR: "10.244.0.0/16", IPIP: api.EncapNever, VXLAN: api.EncapAlways, BlockSize: 30,
		V6: startup.PoolConfigV6{CIDR: "fd00:244::/64", VXLAN: api.EncapAlways, BlockSize: 126, Supported: true}}
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, n := range []*node{a, b} {
		err := startAgent(t, ctx, ds, n, "autodetect", pool, func(o *Options) {
			o.Startup.IP6, o.Startup.IP6Method = "autodetect", "interface=eth0"
			o.BlockReleaseGrace = 300 * time.Millisecond
		})
		if err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
		wg.Add(1)
		go func(n *node) { defer wg.Done(); <-n.errc }(n)
	}
	if got := getNode(t, ds, "a").Spec.BGP.IPv6Address; got != "fd00:99::1/64" {
		t.Fatalf("node a IPv6 address %q", got)
	}
	if kv, err := ds.Get(ctx, datastore.ResourceKey(api.KindIPPool, "", startup.DefaultPoolNameV6)); err != nil || kv.Value.(*api.IPPool).Spec.CIDR != "fd00:244::/64" {
		t.Fatalf("default IPv6 pool: %v", err)
	}
	eventually(t, 10*time.Second, "IPv6 VXLAN tunnel addresses", func() error {
		for _, n := range []string{"a", "b"} {
			nd := getNode(t, ds, n)
			if nd.Spec.IPv6VXLANTunnelAddr == "" || nd.Spec.VXLANTunnelMACAddrV6 != names.VXLANMACV6(n).String() {
				return fmt.Errorf("node %s: %+v", n, nd.Spec)
			}
		}
		return nil
	})
	if v, err := readSysctlIn(a.ns, "net/ipv6/conf/all/forwarding"); err != nil || v != "1" {
		t.Fatalf("IPv6 forwarding on a: %q %v", v, err)
	}

	attach := func(n *node, name string) *workload.Result {
		t.Helper()
		w := nstest.New(t, name)
		h := &workload.Host{NodeName: n.name, DS: ds, IPAM: ipam.New(ds, n.name, ipam.WithLogger(quiet())), NL: n.ns.NL, NS: n.ns.Handle, Log: quiet()}
		res, err := h.Attach(ctx, workload.Request{Name: name, NetNS: w.Path})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(res.IPs) != 2 {
			t.Fatalf("%s: addresses %v, want one per family", name, res.IPs)
		}
		if n.wl == nil {
			n.wl = w
		}
		return res
	}
	detach := func(n *node, name string) {
		t.Helper()
		h := &workload.Host{NodeName: n.name, DS: ds, IPAM: ipam.New(ds, n.name, ipam.WithLogger(quiet())), NL: n.ns.NL, NS: n.ns.Handle, Log: quiet()}
		if _, err := h.Detach(ctx, workload.Request{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	rb := attach(b, "wb")
	// a: a tunnel address and four workloads do not fit one /30 block.
	var ra []*workload.Result
	for i := range 4 {
		ra = append(ra, attach(a, fmt.Sprintf("wa%d", i)))
	}
	blocks, err := ipam.New(ds, "a").AffineBlocks(ctx, 4)
	if err != nil || len(blocks) != 2 {
		t.Fatalf("a's IPv4 blocks %v %v, want 2", blocks, err)
	}
	eventually(t, 10*time.Second, "routes to every block of a, both families", func() error {
		var errs []error
		for _, blk := range blocks {
			errs = append(errs, hasRoute(b, blk.String(), names.VXLANDevice))
		}
		for _, r := range ra {
			blk6, _ := r.IPs[1].Prefix(126)
			errs = append(errs, hasRoute(b, blk6.String(), names.VXLANV6Device))
		}
		return errors.Join(errs...)
	})
	for _, r := range ra {
		for _, ip := range r.IPs {
			if err := b.wl.Ping(ip, 5*time.Second); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, ip := range rb.IPs {
		if err := a.wl.Ping(ip, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}

	// The workloads of a's second IPv4 block go: it is released after
	// the grace period, the first one (a's last) stays.
	second := blocks[1]
	if second.Contains(ra[0].IPs[0]) {
		second = blocks[0]
	}
	for i, r := range ra {
		if second.Contains(r.IPs[0]) {
			detach(a, fmt.Sprintf("wa%d", i))
		}
	}
	eventually(t, 10*time.Second, "the empty block released", func() error {
		if _, err := ds.Get(ctx, datastore.BlockKey(second)); !errors.Is(err, datastore.ErrNotFound) {
			return fmt.Errorf("block %s still there (%v)", second, err)
		}
		if hasRoute(b, second.String(), names.VXLANDevice) == nil {
			return fmt.Errorf("b still routes %s", second)
		}
		return nil
	})
	if left, _ := ipam.New(ds, "a").AffineBlocks(ctx, 4); len(left) != 1 || left[0] == second {
		t.Fatalf("a's blocks after the release: %v", left)
	}
	_, metrics := httpGet(t, a, "/metrics")
	if !strings.Contains(metrics, `roost_node_tunnel_ready{device="vxlan-v6.calico"} 1`) {
		t.Error("metrics lack vxlan-v6.calico ready")
	}
	if st := a.agent.Status(); st.VXLANV6 == "" || !netip.MustParsePrefix("fd00:244::/64").Contains(netip.MustParseAddr(st.VXLANV6)) {
		t.Errorf("status %+v", st)
	}
}

func readSysctlIn(ns *nstest.NS, path string) (string, error) {
	var v []byte
	err := ns.Do(func() error {
		var err error
		v, err = os.ReadFile("/proc/sys/" + path)
		return err
	})
	return strings.TrimSpace(string(v)), err
}

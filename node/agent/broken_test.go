package agent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/etcd"
	"github.com/roostnet/roost/internal/etcdtest"
	"github.com/roostnet/roost/node/internal/nstest"
	"github.com/roostnet/roost/node/ipam"
	"github.com/roostnet/roost/node/names"
	"github.com/roostnet/roost/node/startup"
	"github.com/roostnet/roost/node/workload"
)

// ipamState is what a node holds in IPAM: its affinities and the blocks
// affine to it, with their revisions.
func ipamState(t *testing.T, ds datastore.Datastore, node string) string {
	t.Helper()
	var lines []string
	for _, prefix := range []string{datastore.HostAffinityPrefix(node), datastore.BlockPrefix, datastore.HandlePrefix} {
		res, err := ds.List(context.Background(), prefix)
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range res.KVs {
			if b, ok := kv.Value.(*api.IPAMBlock); ok && b.Spec.AffinityNode() != node {
				continue
			}
			lines = append(lines, fmt.Sprintf("%s@%d", kv.Key, kv.Revision))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// An IP pool that becomes invalid is present and broken, for a running
// agent and across its restart: the tunnel address, the blocks, the
// handles, vxlan.calico and the routes stay as they were (the fault run
// saw a restarted agent release them and delete vxlan.calico); /readyz
// and the metric name key, field and value; a fix resumes normal work.
func TestBrokenPoolAcrossRestart(t *testing.T) {
	nstest.RequireRoot(t)
	e := etcdtest.Start(t)
	ds, err := etcd.New(context.Background(), datastore.Config{Type: datastore.TypeEtcd, EtcdEndpoints: e.Endpoint()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ds.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	a := &node{name: "a", ns: nstest.New(t, "a")}
	b := &node{name: "b", ns: nstest.New(t, "b")}
	nstest.Veth(t, a.ns, "eth0", b.ns, "eth0")
	a.ns.Addr(t, "eth0", "10.0.0.1/24")
	b.ns.Addr(t, "eth0", "10.0.0.2/24")
	pool := startup.PoolConfig{CIDR: "10.244.0.0/16", IPIP: api.EncapNever, VXLAN: api.EncapAlways, BlockSize: 26, NATOutgoing: true}
	// a's agent runs under its own context, so that it can be restarted.
	actx, acancel := context.WithCancel(ctx)
	for _, n := range []*node{a, b} {
		c := ctx
		if n == a {
			c = actx
		}
		if err := startAgent(t, c, ds, n, "autodetect", pool); err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
		if n == b {
			wg.Add(1)
			go func() { defer wg.Done(); <-n.errc }()
		}
	}
	firstA := a.errc
	t.Cleanup(func() { acancel(); <-firstA })
	for _, n := range []*node{a, b} {
		n.wl = nstest.New(t, "w"+n.name)
		h := &workload.Host{NodeName: n.name, DS: ds, IPAM: ipam.New(ds, n.name, ipam.WithLogger(quiet())), NL: n.ns.NL, NS: n.ns.Handle, Log: quiet()}
		res, err := h.Attach(ctx, workload.Request{Name: "web-" + n.name, NetNS: n.wl.Path})
		if err != nil {
			t.Fatal(err)
		}
		n.wlIP = res.IP
	}
	bBlock, _ := b.wlIP.Prefix(26)
	eventually(t, 15*time.Second, "a ready and routed to b", func() error {
		if code, body := httpGet(t, a, "/readyz"); code != 200 {
			return fmt.Errorf("readyz %d: %s", code, body)
		}
		if err := hasRoute(a, bBlock.String(), names.VXLANDevice); err != nil {
			return err
		}
		return a.wl.Ping(b.wlIP, time.Second)
	})
	tunnel := getNode(t, ds, "a").Spec.IPv4VXLANTunnelAddr
	ipamBefore := ipamState(t, ds, "a")
	vxlanAddrs := func() string {
		l, err := a.ns.NL.LinkByName(names.VXLANDevice)
		if err != nil {
			return "no " + names.VXLANDevice
		}
		as, _ := a.ns.NL.AddrList(l, netlink.FAMILY_V4)
		var out []string
		for _, x := range as {
			out = append(out, x.IPNet.String())
		}
		return strings.Join(out, ",")
	}
	vxBefore := vxlanAddrs()
	if tunnel == "" || vxBefore != tunnel+"/32" || !strings.Contains(ipamBefore, "/block/") {
		t.Fatalf("setup: tunnel %q, vxlan.calico %q, IPAM\n%s", tunnel, vxBefore, ipamBefore)
	}
	unchanged := func(what string) {
		t.Helper()
		if got := getNode(t, ds, "a").Spec.IPv4VXLANTunnelAddr; got != tunnel {
			t.Errorf("%s: tunnel address %q, was %q", what, got, tunnel)
		}
		if got := ipamState(t, ds, "a"); got != ipamBefore {
			t.Errorf("%s: IPAM changed:\n%s\nwas\n%s", what, got, ipamBefore)
		}
		if got := vxlanAddrs(); got != vxBefore {
			t.Errorf("%s: vxlan.calico %q, was %q", what, got, vxBefore)
		}
		if err := hasRoute(a, bBlock.String(), names.VXLANDevice); err != nil {
			t.Errorf("%s: %v", what, err)
		}
		if err := a.wl.Ping(b.wlIP, 2*time.Second); err != nil {
			t.Errorf("%s: cross-host traffic: %v", what, err)
		}
	}

	// The pool is broken behind the agents' backs.
	poolKey := datastore.ResourceKey(api.KindIPPool, "", startup.DefaultPoolName)
	kv, err := ds.Get(ctx, poolKey)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := datastore.EncodeValue(kv.Value)
	bad := strings.Replace(string(raw), `"spec":{`, `"spec":{"disableBGPExport":"notabool",`, 1)
	if _, err := e.Client(t).Put(ctx, poolKey, bad); err != nil {
		t.Fatal(err)
	}
	heldOn := func(n *node) error {
		st := n.agent.Status()
		if len(st.Broken) != 1 || !strings.Contains(st.Broken[0], poolKey) || !strings.Contains(st.Broken[0], "spec.disableBGPExport") {
			return fmt.Errorf("broken %v", st.Broken)
		}
		if st.IPAMHeld == "" || st.Dataplane == nil || !st.Dataplane.Held {
			return fmt.Errorf("not held: %+v", st)
		}
		for k, v := range st.InSync {
			if !v {
				return fmt.Errorf("%s not in sync", k)
			}
		}
		if !n.agent.Dataplane().Synced() {
			return errors.New("dataplane not synced")
		}
		return nil
	}
	eventually(t, 10*time.Second, "running agent a holds", func() error { return heldOn(a) })
	unchanged("running agent")

	// Restart a: a fresh agent that never saw the pool valid.
	acancel()
	select {
	case <-firstA:
		firstA = make(chan error, 1)
		firstA <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("agent a did not stop")
	}
	if err := startAgent(t, ctx, ds, a, "autodetect", pool); err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); <-a.errc }()
	// In sync, the dataplane's first full resync done and IPAM looked at:
	// everything that could remove state has run.
	eventually(t, 10*time.Second, "restarted agent a holds", func() error { return heldOn(a) })
	if err := a.agent.Dataplane().Resync(); err != nil {
		t.Fatal(err)
	}
	unchanged("after a restart")
	code, body := httpGet(t, a, "/readyz")
	if code != 503 || !strings.Contains(body, poolKey) || !strings.Contains(body, "notabool") {
		t.Errorf("/readyz %d: %s", code, body)
	}
	_, m := httpGet(t, a, "/metrics")
	if !strings.Contains(m, `roost_node_broken_objects{field="spec.disableBGPExport",key="`+poolKey+`",resource="ippools"`) {
		t.Errorf("metrics lack roost_node_broken_objects:\n%s", grepLines(m, "broken"))
	}

	// Fixed: ready again, nothing lost.
	if _, err := e.Client(t).Put(ctx, poolKey, string(raw)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a ready after the fix", func() error {
		if code, body := httpGet(t, a, "/readyz"); code != 200 {
			return fmt.Errorf("readyz %d: %s", code, body)
		}
		if st := a.agent.Status(); st.IPAMHeld != "" || st.Dataplane.Held {
			return fmt.Errorf("still held: %+v", st)
		}
		return nil
	})
	unchanged("after the fix")
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

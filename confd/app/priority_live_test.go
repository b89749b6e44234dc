package app

import (
	"context"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/roostnet/roost/birdctl/birdsock"
	"github.com/roostnet/roost/node/dataplane"
)

const priorityCluster = `apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 64512, nodeToNodeMeshEnabled: false}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node-a}
spec: {bgp: {ipv4Address: 10.211.0.1/24}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node-b}
spec: {bgp: {ipv4Address: 10.211.0.2/24}}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: live}
spec: {cidr: 10.246.0.0/16}
---
apiVersion: projectcalico.org/v3
kind: BlockAffinity
metadata: {name: b1}
spec: {node: node-b, cidr: 10.246.2.0/26}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: b-to-a}
spec: {node: node-b, peerIP: 10.211.0.1, asNumber: 64512, filters: [migration]}
`

const priorityFilterNone = `---
apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata: {name: migration}
spec: {}
`

const priorityFilterSet = `---
apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata: {name: migration}
spec:
  exportV4:
  - {action: Accept, cidr: 10.246.3.5/32, matchOperator: Equal, operations: [{setPriority: {value: 300}}]}
`

// Route priority crosses iBGP as bgp_local_pref and lands in the other
// node's kernel as the route metric: a /32 of normal priority (no metric)
// at 1024; a /32 with metric 512 inside B's own block escapes the block
// aggregation and arrives at 512; a BGPFilter setPriority on B's export
// turns a route's metric on A into 300, replacing the 1024 route. A BIRD
// that ran a config from before route priority (kernel metric 32) drops
// its metric-32 routes when reconfigured.
func TestLiveRoutePriority(t *testing.T) {
	bin := requireRootAndBird(t)
	dir := t.TempDir()
	ds := filepath.Join(dir, "cluster.yaml")
	write := func(filter string) {
		if err := os.WriteFile(ds, []byte(priorityCluster+filter), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(priorityFilterNone)
	hosts := map[string]*birdNS{}
	for _, name := range []string{"node-a", "node-b"} {
		out := filepath.Join(dir, name)
		renderOnce(t, ds, name, out)
		hosts[name] = newBirdNS(t, bin, filepath.Join(out, "bird.cfg"), filepath.Join(out, "bird.ctl"))
	}
	a, b := hosts["node-a"], hosts["node-b"]
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("ip", "-n", a.ns, "route", "show").CombinedOutput()
			t.Logf("A's routes:\n%s", out)
		}
	})
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	ip("link", "add", "rp"+a.ns[3:], "netns", a.ns, "type", "veth", "peer", "name", "eth0", "netns", b.ns)
	ip("-n", a.ns, "link", "set", "rp"+a.ns[3:], "name", "eth0")
	ip("-n", a.ns, "addr", "add", "10.211.0.1/24", "dev", "eth0")
	ip("-n", b.ns, "addr", "add", "10.211.0.2/24", "dev", "eth0")
	ip("-n", a.ns, "link", "set", "eth0", "up")
	ip("-n", b.ns, "link", "set", "eth0", "up")
	// B's workloads: routes the kernel protocol learns (as roost-node's
	// would be): 10.246.2.7 elevated (metric 512) inside B's block,
	// 10.246.3.5 normal (no metric) outside it.
	ip("-n", b.ns, "link", "add", "wl0", "type", "veth", "peer", "name", "wl1")
	ip("-n", b.ns, "link", "set", "wl1", "up")
	ip("-n", b.ns, "link", "set", "wl0", "up")
	ip("-n", b.ns, "route", "add", "10.246.2.7/32", "dev", "wl0", "metric", "512")
	ip("-n", b.ns, "route", "add", "10.246.3.5/32", "dev", "wl0")

	// A starts with a config from before route priority: no `metric 0`,
	// so BIRD installs every route with its default metric 32.
	aCfg := filepath.Join(dir, "node-a", "bird.cfg")
	newCfg, err := os.ReadFile(aCfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(newCfg), "  metric 0;\n") {
		t.Fatal("rendered bird.cfg lacks metric 0")
	}
	oldCfg := filepath.Join(dir, "node-a", "bird-old.cfg")
	os.WriteFile(oldCfg, []byte(strings.ReplaceAll(string(newCfg), "  metric 0;\n", "")), 0o644)
	a.cfg = oldCfg
	a.start()
	b.start()

	routeOnA := func(prefix string) string {
		out, _ := exec.Command("ip", "-n", a.ns, "route", "show", prefix).Output()
		return strings.TrimSpace(string(out))
	}
	has := func(prefix, want string) func() bool {
		return func() bool {
			r := routeOnA(prefix)
			return strings.Contains(r, "via 10.211.0.2") && strings.Contains(r, "proto bird") && strings.Contains(r, want) && strings.Count(r, "\n") == 0
		}
	}
	waitFor(t, "A installs B's block with the old metric 32", has("10.246.2.0/26", "metric 32"))

	// The upgrade: A is reconfigured with the new config. BIRD installs
	// the routes with their priority as metric but leaves its metric-32
	// copies (its kernel protocol restarts and keeps what it had
	// installed); roost-node's resync removes those duplicates.
	a.configure(aCfg)
	also := func(prefix, want string) func() bool {
		return func() bool {
			return strings.Contains(routeOnA(prefix), "proto bird "+want)
		}
	}
	waitFor(t, "A's block route at the normal metric 1024", also("10.246.2.0/26", "metric 1024"))
	waitFor(t, "elevated /32 from inside B's block at metric 512", also("10.246.2.7", "metric 512"))
	waitFor(t, "normal /32 at metric 1024", also("10.246.3.5", "metric 1024"))
	if !also("10.246.2.0/26", "metric 32")() {
		t.Log("BIRD removed its metric-32 copy itself")
	}
	pruneLikeRoostNode(t, a.ns, a.socket)
	waitFor(t, "A's block route at metric 1024 only", has("10.246.2.0/26", "metric 1024"))
	waitFor(t, "normal /32 at metric 1024 only", has("10.246.3.5", "metric 1024"))
	waitFor(t, "elevated /32 at metric 512 only", has("10.246.2.7", "metric 512"))
	if out, _ := exec.Command("ip", "-n", a.ns, "route", "show", "proto", "bird", "metric", "32").Output(); strings.TrimSpace(string(out)) != "" {
		t.Errorf("metric-32 routes left from the old config:\n%s", out)
	}

	// A BGPFilter on B's export raises 10.246.3.5 to priority 300; A
	// replaces its route.
	write(priorityFilterSet)
	renderOnce(t, ds, "node-b", filepath.Join(dir, "node-b"))
	b.configure(filepath.Join(dir, "node-b", "bird.cfg"))
	// BIRD 2.0 deletes the old kernel route naming the new metric, so the
	// 1024 route stays next to the new one until roost-node removes it.
	waitFor(t, "setPriority 300 reaches A's kernel", also("10.246.3.5", "metric 300"))
	pruneLikeRoostNode(t, a.ns, a.socket)
	waitFor(t, "A's route at metric 300 only", has("10.246.3.5", "metric 300"))
	waitFor(t, "the block stays normal", has("10.246.2.0/26", "metric 1024"))

	// BIRD on A prefers nothing else: its best route carries the priority.
	c, err := birdsock.Dial(context.Background(), a.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rep, err := c.Exec(context.Background(), "show route for 10.246.3.5/32 all")
	if err != nil {
		t.Fatal(err)
	}
	if txt := rep.Text(); !strings.Contains(txt, "BGP.local_pref: 2147483347") {
		t.Errorf("A's route to 10.246.3.5 lacks local_pref 2147483647-300:\n%s", txt)
	}

	// Back to normal: the elevated route must not outlive its priority.
	write(priorityFilterNone)
	renderOnce(t, ds, "node-b", filepath.Join(dir, "node-b"))
	b.configure(filepath.Join(dir, "node-b", "bird.cfg"))
	waitFor(t, "normal priority again on A", also("10.246.3.5", "metric 1024"))
	pruneLikeRoostNode(t, a.ns, a.socket)
	waitFor(t, "A's route at metric 1024 only, the 300 one gone", has("10.246.3.5", "metric 1024"))
}

// pruneLikeRoostNode runs roost-node's dataplane in namespace ns until its
// first resync is done: it removes BIRD's stale duplicate routes, asking
// BIRD which metric it wants, as roost-node does.
func pruneLikeRoostNode(t *testing.T, ns, birdSocket string) {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	log := logrus.New()
	log.SetOutput(io.Discard)
	birdMetric := func(ctx context.Context, dst netip.Prefix) (int, bool) {
		c, err := birdsock.Dial(ctx, birdSocket)
		if err != nil {
			return 0, false
		}
		defer c.Close()
		m, ok, err := c.KernelMetric(ctx, dst.String(), "kernel_v4")
		return m, ok && err == nil
	}
	dp := dataplane.New(dataplane.Config{NodeName: "node-a", ResyncInterval: time.Hour, BirdMetric: birdMetric}, dataplane.Kernel(nl), log, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); dp.Run(ctx, dataplane.NetlinkSubscriber{NS: h}) }()
	waitFor(t, "roost-node's dataplane synced", dp.Synced)
	cancel()
	<-done
}

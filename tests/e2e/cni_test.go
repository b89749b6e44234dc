package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/vishvananda/netlink"

	"github.com/roostnet/roost/tests/lab"
)

// cniPackage is the CNI plugin's main package (bin/roost-cni).
const cniPackage = "github.com/roostnet/roost/cni"

var tagCNI = tag("cni")

// requirePodman skips t (fails it with CI=true) when containers cannot
// run here: podman, runc, nsenter or a static busybox missing.
func requirePodman(t *testing.T) {
	t.Helper()
	err := lab.CheckPodman()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("the CNI end-to-end test cannot run: %v (CI=true: failing instead of skipping)", err)
	}
	t.Skipf("skipping: the CNI end-to-end test cannot run: %v", err)
}

// TestCNIPodman: a real container runtime on two lab hosts. host1's
// plugin is installed by `roost-node install-cni` (a second run changes
// nothing), host2's by `roost-node run --install-cni` at start (the same
// files: install-cni then finds nothing to write); podman, with its CNI backend and runc, runs busybox
// containers inside the hosts' network namespaces on the "roost" network.
// Containers on different hosts ping each other over plain BGP, then,
// after the pool switches to vxlanMode Always, over VXLAN (a container
// started after the switch too). `podman rm` runs the plugin's DEL: the
// address goes back to its block, the WorkloadEndpoint and the IPAM
// handle are deleted and the host's route and veth are gone.
func TestCNIPodman(t *testing.T) {
	requirePodman(t)
	c := newLab(t, tagCNI, lab.Options{Hosts: 2})
	h1, h2 := c.Hosts[0], c.Hosts[1]
	c.apply(poolYAML(true, "Never"))
	// host2's plugin is installed by `roost-node run --install-cni` at
	// start, host1's by `roost-node install-cni` (NewPodman).
	start := time.Now()
	_, bin2, net2 := lab.PodmanDirs(h2)
	for _, x := range []struct {
		h    *lab.Host
		opts []lab.StartOption
	}{{h1, nil}, {h2, []lab.StartOption{lab.WithEnv(c.CNIEnv(h2, bin2, net2)...)}}} {
		if _, err := c.StartNode(c.ctx, x.h, x.opts...); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range c.Hosts {
		if err := c.WaitNode(c.ctx, h, convergeTimeout); err != nil {
			t.Fatal(err)
		}
		if err := c.StartConfdAndBird(c.ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	c.waitSessions(mesh(c.Hosts))
	c.waitMTUFiles(c.Hosts, 1500)
	// roost-node run wrote the node name file (ROOST_NODENAME_FILE), as
	// calico-node writes /var/lib/calico/nodename for CNI configurations
	// that name no node.
	for _, h := range c.Hosts {
		if b, err := os.ReadFile(h.NodenameFile()); err != nil || string(b) != h.Name {
			t.Fatalf("%s: node name file %s: %q %v", h.Name, h.NodenameFile(), b, err)
		}
	}

	p1, p2 := c.podman(h1), c.podman(h2)
	// install-cni wrote host1's files; on host2 it found what run
	// --install-cni had written, byte for byte. A second run writes
	// nothing.
	for _, x := range []struct {
		p    *lab.Podman
		want string
	}{{p1, ": written"}, {p2, ": unchanged"}} {
		if strings.Count(x.p.Installed, x.want) != 3 {
			t.Fatalf("install-cni on %s: want 3 files%s:\n%s", x.p.Host.Name, x.want, x.p.Installed)
		}
	}
	out, err := p1.InstallCNI(c.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, ": written") || strings.Count(out, ": unchanged") != 3 {
		t.Fatalf("a second install-cni wrote files:\n%s", out)
	}

	// Plain BGP.
	t0 := time.Now()
	c1 := c.run(p1, "c1")
	c2 := c.run(p2, "c2")
	t.Logf("two containers started in %s: c1 %s on %s, c2 %s on %s", time.Since(t0).Round(time.Millisecond), c1.IP, h1.Name, c2.IP, h2.Name)
	c.waitBlockRoutes(c.Hosts, noEncap)
	c.containerPings(pair{p1, c1, c2}, pair{p2, c2, c1})
	for _, ct := range []*lab.Container{c1, c2} {
		c.eventually(convergeTimeout, ct.Name+" recorded", func() error { return c.cniState(ct, true) })
	}
	record(t, "BGP: containers on 2 hosts ping in %s from start", time.Since(start).Round(time.Millisecond))

	// VXLAN: the same containers, and a new one.
	c.apply(poolYAML(true, "Always"))
	c.waitBlockRoutes(c.Hosts, c.vxlanTo)
	c.waitMTUFiles(c.Hosts, 1450)
	c3 := c.run(p2, "c3")
	// The plugin took the MTU from the host's MTU file (mtu_file in the
	// conflist): 1500 before the switch, 1450 for VXLAN after it.
	for _, x := range []struct {
		p    *lab.Podman
		ct   *lab.Container
		want string
	}{{p1, c1, "1500"}, {p2, c3, "1450"}} {
		out, err := x.p.Podman(c.ctx, "exec", x.ct.Name, "/bin/cat", "/sys/class/net/eth0/mtu")
		if err != nil || strings.TrimSpace(out) != x.want {
			t.Fatalf("%s: eth0 MTU %q (%v), want %s", x.ct.Name, strings.TrimSpace(out), err, x.want)
		}
	}
	c.containerPings(pair{p1, c1, c2}, pair{p2, c2, c1}, pair{p1, c1, c3}, pair{p2, c3, c1})
	record(t, "VXLAN: containers ping over vxlan.calico")

	// podman rm releases everything.
	for _, x := range []struct {
		p  *lab.Podman
		ct *lab.Container
	}{{p1, c1}, {p2, c3}} {
		if err := x.p.Rm(c.ctx, x.ct); err != nil {
			t.Fatal(err)
		}
		c.eventually(convergeTimeout, x.ct.Name+" released", func() error { return c.cniState(x.ct, false) })
	}
	// c2 still works.
	if err := c.cniState(c2, true); err != nil {
		t.Fatal(err)
	}
	record(t, "podman rm released address, WorkloadEndpoint, handle and route")
}

// podman prepares podman on h (install-cni, containers.conf, image).
func (c *cluster) podman(h *lab.Host) *lab.Podman {
	c.t.Helper()
	p, err := c.NewPodman(c.ctx, h)
	if err != nil {
		c.t.Fatalf("podman on %s: %v", h.Name, err)
	}
	return p
}

// run starts a container on p's host.
func (c *cluster) run(p *lab.Podman, name string) *lab.Container {
	c.t.Helper()
	ct, err := p.Run(c.ctx, name)
	if err != nil {
		c.t.Fatalf("podman run %s on %s: %v\nplugin log:\n%s", name, p.Host.Name, err, tailFile(p.Host.Dir+"/cni.log", 30))
	}
	return ct
}

// pair is a ping from one container (run by p) to another.
type pair struct {
	p        *lab.Podman
	from, to *lab.Container
}

func (c *cluster) containerPings(pairs ...pair) {
	c.t.Helper()
	start := time.Now()
	for _, x := range pairs {
		if err := x.p.Ping(c.ctx, x.from, x.to.IP, pingTimeout); err != nil {
			c.t.Fatal(err)
		}
	}
	c.t.Logf("%d container pings answered in %s", len(pairs), time.Since(start).Round(time.Millisecond))
}

// cniState checks what the plugin recorded for ct: with present, a
// WorkloadEndpoint naming the container, the IPAM handle
// k8s-pod-network.<id>, the address allocated in its block and a route
// to it on its host through a cali* veth; without, none of them.
func (c *cluster) cniState(ct *lab.Container, present bool) error {
	check := func(what string, got bool) error {
		if got != present {
			return fmt.Errorf("%s/%s (%s): %s present=%t, want %t", ct.Host.Name, ct.Name, ct.IP, what, got, present)
		}
		return nil
	}
	// WorkloadEndpoint.
	out, err := c.Birdctl(c.ctx, nil, "get", "workloadendpoints", "--all-namespaces", "-o", "json")
	if err != nil {
		return err
	}
	var weps []json.RawMessage
	if strings.TrimSpace(out) != "" {
		if err := decodeList(out, &weps); err != nil {
			return fmt.Errorf("workloadendpoints: %w", err)
		}
	}
	found := false
	for _, w := range weps {
		if strings.Contains(string(w), ct.ID) {
			found = true
		}
	}
	if err := check("WorkloadEndpoint", found); err != nil {
		return err
	}
	// IPAM handle.
	_, err = c.Birdctl(c.ctx, nil, "get", "ipamhandle", "k8s-pod-network."+ct.ID, "-o", "json")
	if err := check("IPAM handle k8s-pod-network.<id>", err == nil); err != nil {
		return err
	}
	// The address in its block.
	allocated, err := c.allocated(ct.IP)
	if err != nil {
		return err
	}
	if err := check("block allocation", allocated); err != nil {
		return err
	}
	// The host's route (netlink) through a cali* device.
	var routes []netlink.Route
	err = lab.InNS(ct.Host.NS, func() error {
		var err error
		routes, err = netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: &net.IPNet{IP: ct.IP.AsSlice(), Mask: net.CIDRMask(32, 32)}}, netlink.RT_FILTER_DST)
		if err != nil {
			return err
		}
		for _, r := range routes {
			l, err := netlink.LinkByIndex(r.LinkIndex)
			if err != nil || !strings.HasPrefix(l.Attrs().Name, "cali") {
				return fmt.Errorf("route to %s via %v (%v), want a cali* veth", ct.IP, r, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return check("host route /32", len(routes) > 0)
}

// allocated says whether ip is allocated in its IPAM block.
func (c *cluster) allocated(ip netip.Addr) (bool, error) {
	out, err := c.Birdctl(c.ctx, nil, "get", "ipamblocks", "-o", "json")
	if err != nil {
		return false, err
	}
	var blocks []struct {
		Spec struct {
			CIDR        string `json:"cidr"`
			Allocations []*int `json:"allocations"`
		} `json:"spec"`
	}
	if err := decodeList(out, &blocks); err != nil {
		return false, err
	}
	for _, b := range blocks {
		p, err := netip.ParsePrefix(b.Spec.CIDR)
		if err != nil || !p.Contains(ip) {
			continue
		}
		base, a := p.Addr().As4(), ip.As4()
		off := int(a[2]-base[2])<<8 | int(a[3]-base[3])
		if off >= len(b.Spec.Allocations) {
			return false, fmt.Errorf("block %s has %d allocations, %s is at %d", p, len(b.Spec.Allocations), ip, off)
		}
		return b.Spec.Allocations[off] != nil, nil
	}
	return false, nil
}

// tailFile returns the last n lines of a file (for failure messages).
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var tagCNIBench = tag("cnib")

// BenchmarkCNIAddDel: one ADD and one DEL of a container through libcni
// (as a runtime calls the plugin, without the runtime) on a lab host
// running roost-node, confd and BIRD against the lab's etcd; reports
// each call's mean as add-ms/op and del-ms/op. `make bench` measures
// percentiles on a host with 100 containers (docs/performance.md).
//
//	go test ./tests/e2e -run '^$' -bench CNI -benchtime 50x
func BenchmarkCNIAddDel(b *testing.B) {
	requireLab(b)
	ctx := b.Context()
	name := fmt.Sprintf("e%s%d", tagCNIBench, os.Getpid())
	dir := filepath.Join(runRoot, name)
	defer os.RemoveAll(dir)
	l, err := lab.New(ctx, lab.Options{Name: name, Hosts: 1, BinDir: binDir, Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	h := l.Hosts[0]
	if err := l.Apply(ctx, poolYAML(true, "Never")); err != nil {
		b.Fatal(err)
	}
	if err := l.StartHosts(ctx, l.Hosts); err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(convergeTimeout); ; {
		if _, err := os.Stat(h.MTUFile()); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("roost-node wrote no MTU file")
		}
		time.Sleep(100 * time.Millisecond)
	}
	cni, err := l.NewCNI(ctx, h, "ROOST_CNI_LOG_LEVEL=warning")
	if err != nil {
		b.Fatal(err)
	}
	ns := name + "-c1" // removed with the lab (Teardown's prefix) if left
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		b.Fatalf("ip netns add: %v: %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	var add, del time.Duration
	i := 0
	for b.Loop() {
		i++
		rt := &libcni.RuntimeConf{ContainerID: fmt.Sprintf("benchcontainer%08d", i), NetNS: "/var/run/netns/" + ns, IfName: "eth0"}
		t0 := time.Now()
		if _, err := cni.Add(ctx, rt); err != nil {
			b.Fatalf("ADD: %v\n%s", err, tailFile(filepath.Join(h.Dir, "cni.log"), 20))
		}
		t1 := time.Now()
		if err := cni.Del(ctx, rt); err != nil {
			b.Fatalf("DEL: %v", err)
		}
		add += t1.Sub(t0)
		del += time.Since(t1)
	}
	b.ReportMetric(float64(add.Microseconds())/1000/float64(i), "add-ms/op")
	b.ReportMetric(float64(del.Microseconds())/1000/float64(i), "del-ms/op")
}

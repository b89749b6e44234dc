package app

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/birdctl/birdsock"
	"github.com/roostnet/roost/confd/config"
	"github.com/roostnet/roost/datastore"
)

const liveCluster = `apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 64512, nodeToNodeMeshEnabled: true}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node-a}
spec: {bgp: {ipv4Address: 10.210.0.1/24}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node-b}
spec: {bgp: {ipv4Address: 10.210.0.2/24}}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: live}
spec: {cidr: 10.245.0.0/16}
---
apiVersion: projectcalico.org/v3
kind: BlockAffinity
metadata: {name: a1}
spec: {node: node-a, cidr: 10.245.1.0/26}
---
apiVersion: projectcalico.org/v3
kind: BlockAffinity
metadata: {name: b1}
spec: {node: node-b, cidr: 10.245.2.0/26}
`

// renderOnce renders node's config from a file datastore, as
// `confd --onetime --sync-only` does.
func renderOnce(t *testing.T, datastoreFile, nodeName, out string) {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	cfg := &config.Config{NodeName: nodeName, OutputDir: out, Onetime: true, SyncOnly: true,
		Datastore: datastore.Config{Type: datastore.TypeFile, File: datastoreFile}}
	a, err := New(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Run(context.Background()); err != nil {
		t.Fatalf("render for %s: %v", nodeName, err)
	}
}

// Two hosts (network namespaces joined by a veth), each running BIRD on a
// config rendered from the same datastore, reach Established and learn
// each other's blocks into their kernels.
func TestLiveTwoHostsExchangeBlocks(t *testing.T) {
	bin := requireRootAndBird(t)
	dir := t.TempDir()
	ds := filepath.Join(dir, "cluster.yaml")
	os.WriteFile(ds, []byte(liveCluster), 0o644)
	hosts := map[string]*birdNS{}
	for _, h := range []struct{ name, ip string }{{"node-a", "10.210.0.1/24"}, {"node-b", "10.210.0.2/24"}} {
		out := filepath.Join(dir, h.name)
		renderOnce(t, ds, h.name, out)
		hosts[h.name] = newBirdNS(t, bin, filepath.Join(out, "bird.cfg"), filepath.Join(out, "bird.ctl"))
	}
	a, b := hosts["node-a"], hosts["node-b"]
	vethA := "rv" + a.ns[3:]
	steps := [][]string{
		{"link", "add", vethA, "netns", a.ns, "type", "veth", "peer", "name", "eth0", "netns", b.ns},
		{"-n", a.ns, "link", "set", vethA, "name", "eth0"},
		{"-n", a.ns, "addr", "add", "10.210.0.1/24", "dev", "eth0"},
		{"-n", b.ns, "addr", "add", "10.210.0.2/24", "dev", "eth0"},
		{"-n", a.ns, "link", "set", "eth0", "up"},
		{"-n", b.ns, "link", "set", "eth0", "up"},
	}
	for _, s := range steps {
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", s, err, out)
		}
	}
	a.start()
	b.start()
	established := func(h *birdNS, proto string) bool {
		c, err := birdsock.Dial(context.Background(), h.socket)
		if err != nil {
			return false
		}
		defer c.Close()
		d, err := c.ProtocolDetail(context.Background(), proto)
		return err == nil && d.BGPState == "Established"
	}
	waitFor(t, "A's session to B Established", func() bool { return established(a, meshName("10.210.0.2")) })
	waitFor(t, "B's session to A Established", func() bool { return established(b, meshName("10.210.0.1")) })
	kernelRoute := func(h *birdNS, prefix, via string) bool {
		out, _ := exec.Command("ip", "-n", h.ns, "route", "show", prefix).Output()
		return strings.Contains(string(out), "via "+via) && strings.Contains(string(out), "proto bird")
	}
	waitFor(t, "A learns B's block", func() bool { return kernelRoute(a, "10.245.2.0/26", "10.210.0.2") })
	waitFor(t, "B learns A's block", func() bool { return kernelRoute(b, "10.245.1.0/26", "10.210.0.1") })
	// A originates its own block as a blackhole static (the kernel's
	// blackhole is roost-node's job) and never installs it from BGP.
	out, _ := exec.Command("ip", "-n", a.ns, "route", "show", "10.245.1.0/26").Output()
	if strings.Contains(string(out), "proto bird") {
		t.Errorf("A installed its own block from BIRD: %q", out)
	}
	c, err := birdsock.Dial(context.Background(), a.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	routes, err := c.Routes(context.Background(), "for 10.245.1.0/26")
	if err != nil || len(routes) == 0 || routes[0].Type != "blackhole" {
		t.Errorf("BIRD on A should hold its block as a blackhole: %+v %v", routes, err)
	}
}

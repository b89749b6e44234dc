package file

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

// calicoYAML is what an admin feeds `calicoctl apply -f`, plus IPAM data.
const calicoYAML = `# cluster-wide BGP settings
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  logSeverityScreen: Info
  nodeToNodeMeshEnabled: true
  asNumber: 63400
---
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: node1
  labels:
    rack: r1
spec:
  bgp:
    ipv4Address: 10.0.0.1/24
---
apiVersion: projectcalico.org/v3
kind: List
items:
- apiVersion: projectcalico.org/v3
  kind: IPPool
  metadata:
    name: pool1
  spec:
    cidr: 192.168.0.0/16
    ipipMode: Always
    natOutgoing: true
- apiVersion: projectcalico.org/v3
  kind: Node
  metadata:
    name: node2
  spec:
    bgp:
      ipv4Address: 10.0.0.2/24
---
apiVersion: projectcalico.org/v3
kind: BGPPeerList
items:
- metadata:
    name: peer-tor
  spec:
    peerIP: 10.0.0.254
    asNumber: 64513
- metadata:
    name: peer-rack1
  spec:
    nodeSelector: rack == 'r1'
    peerIP: 10.0.1.254
    asNumber: 64514
---
# this one has a typo and must be skipped
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: typo-peer
spec:
  peerIp: 10.0.0.9
  asNumber: 64515
---
apiVersion: projectcalico.org/v3
kind: BlockAffinity
metadata:
  name: node1-192-168-10-0-26
spec:
  node: node1
  cidr: 192.168.10.0/26
  state: confirmed
---
apiVersion: projectcalico.org/v3
kind: IPAMHandle
metadata:
  name: k8s-pod-network.abc
spec:
  block:
    192.168.10.0/26: 1
---
apiVersion: projectcalico.org/v3
kind: IPAMBlock
metadata:
  name: block-192-168-20-0-30
spec:
  cidr: 192.168.20.0/30
  affinity: host:node1
  allocations: [0, null, null, null]
  unallocated: [1, 2, 3]
  attributes:
  - handle_id: k8s-pod-network.abc
    secondary:
      node: node1
`

var calicoKeys = []string{
	datastore.BlockKey(netip.MustParsePrefix("192.168.20.0/30")),
	datastore.HandleKey("k8s-pod-network.abc"),
	datastore.AffinityKey("node1", netip.MustParsePrefix("192.168.10.0/26")),
	datastore.ResourceKey(api.KindBGPConfiguration, "", "default"),
	peerKey("peer-rack1"),
	peerKey("peer-tor"),
	poolKey("pool1"),
	nodeKey("node1"),
	nodeKey("node2"),
}

func TestLoadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resources.yaml")
	writeFile(t, path, calicoYAML)
	s, hook := open(t, path)
	ctx := context.Background()

	res, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(calicoKeys)
	slices.Sort(want)
	if got := keysOf(res.KVs); !slices.Equal(got, want) {
		t.Fatalf("keys:\n got %q\nwant %q", got, want)
	}
	if res.Revision != 1 {
		t.Errorf("revision after load = %d, want 1", res.Revision)
	}
	for _, kv := range res.KVs {
		if kv.Revision != 1 || kv.Value.Meta().ResourceVersion != "1" {
			t.Errorf("%s: revision %d / resourceVersion %q, want 1", kv.Key, kv.Revision, kv.Value.Meta().ResourceVersion)
		}
	}

	// The typo'd document is reported with file, document, line and field.
	ws := warnings(hook, "peerIp")
	if len(ws) != 1 {
		t.Fatalf("want one warning about peerIp, got %d: %v", len(ws), hook.AllEntries())
	}
	w := ws[0]
	if w.Data["file"] != path || w.Data["document"] != 5 || w.Data["line"] != 56 {
		t.Errorf("warning fields = %v", w.Data)
	}
	if e := w.Data["error"].(string); !strings.Contains(e, "BGPPeer") || !strings.Contains(e, "typo-peer") || !strings.Contains(e, "unknown field") {
		t.Errorf("warning error text %q lacks kind/name/field", e)
	}
	// The broken document's key is known: the peer is present and
	// broken (Get, List), naming field and value.
	de := broken(t, s, peerKey("typo-peer"), "spec.peerIp: unknown field")
	if de.Field != "spec.peerIp" || de.Revision != 1 {
		t.Errorf("broken peer: %+v", de)
	}
	if len(res.Invalid) != 1 || res.Invalid[0].Key != peerKey("typo-peer") {
		t.Errorf("Invalid = %v", res.Invalid)
	}

	// Values come back typed, with defaults, from lists and typed lists.
	pool := mustGet(t, s, poolKey("pool1")).Value.(*api.IPPool)
	if pool.Spec.BlockSize != 26 || pool.Spec.IPIPMode != "Always" {
		t.Errorf("pool = %+v", pool.Spec)
	}
	peer := mustGet(t, s, peerKey("peer-rack1")).Value.(*api.BGPPeer)
	if peer.Spec.NodeSelector != "rack == 'r1'" || peer.Spec.ASNumber != 64514 {
		t.Errorf("peer = %+v", peer.Spec)
	}
	blk := mustGet(t, s, calicoKeys[0]).Value.(*api.IPAMBlock)
	if blk.Spec.AffinityNode() != "node1" || len(blk.Spec.Allocations) != 4 {
		t.Errorf("block = %+v", blk.Spec)
	}

	// Prefix listings as with etcd.
	res, _ = s.List(ctx, datastore.HostAffinityPrefix("node1"))
	if got := keysOf(res.KVs); len(got) != 1 || got[0] != calicoKeys[2] {
		t.Errorf("affinities of node1 = %q", got)
	}
	res, _ = s.List(ctx, datastore.KindPrefix(api.KindNode))
	if got := keysOf(res.KVs); !slices.Equal(got, []string{nodeKey("node1"), nodeKey("node2")}) {
		t.Errorf("nodes = %q", got)
	}
	res, _ = s.List(ctx, datastore.HostAffinityPrefix("node"))
	if len(res.KVs) != 0 {
		t.Errorf("prefix node/ matched %q", keysOf(res.KVs))
	}

	// Values handed out are copies.
	n1 := mustGet(t, s, nodeKey("node1")).Value.(*api.Node)
	n1.Spec.BGP.IPv4Address = "10.9.9.9/24"
	if got := mustGet(t, s, nodeKey("node1")).Value.(*api.Node); got.Spec.BGP.IPv4Address != "10.0.0.1/24" {
		t.Errorf("store value was modified through a returned copy")
	}
}

const jsonFile = `[
  {
    "apiVersion": "projectcalico.org/v3",
    "kind": "Node",
    "metadata": {"name": "node3", "labels": {"rack": "r2"}},
    "spec": {"bgp": {"ipv4Address": "10.0.0.3/24", "asNumber": 64600}}
  },
  {
    "apiVersion": "projectcalico.org/v3",
    "kind": "BGPPeer",
    "metadata": {"name": "peer-json"},
    "spec": {"peerIP": "10.0.2.254", "asNumber": "64520"}
  }
]
`

func TestLoadDirectory(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "10-calico.yaml"), calicoYAML)
	writeFile(t, filepath.Join(dir, "20-nodes.json"), jsonFile)
	// A syntax error in one file does not affect the others, nor the
	// documents before the error.
	writeFile(t, filepath.Join(dir, "30-broken.yml"), `apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: node4
---
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: node5
  labels: {a: b
spec: {}
`)
	writeFile(t, filepath.Join(dir, "40-pools.yaml"), `apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: pool2
spec:
  cidr: 10.244.0.0/16
  vxlanMode: CrossSubnet
`)
	// Ignored: hidden files, editor leftovers, other extensions, directories.
	for _, name := range []string{".40-pools.yaml.swp", "40-pools.yaml~", "#40-pools.yaml#", "notes.txt", ".hidden.yaml"} {
		writeFile(t, filepath.Join(dir, name), "kind: Node\nmetadata: {name: ignored}\n")
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}

	s, hook := open(t, dir)
	res, err := s.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(calicoKeys), nodeKey("node3"), peerKey("peer-json"), nodeKey("node4"), poolKey("pool2"))
	slices.Sort(want)
	if got := keysOf(res.KVs); !slices.Equal(got, want) {
		t.Fatalf("keys:\n got %q\nwant %q", got, want)
	}
	if ws := warnings(hook, "syntax error"); len(ws) == 0 || ws[0].Data["file"] != filepath.Join(dir, "30-broken.yml") {
		t.Errorf("syntax error not reported with its file: %v", ws)
	} else if ws[0].Data["line"] == 0 {
		t.Errorf("syntax error reported without a line: %v", ws[0].Data)
	}
	n3 := mustGet(t, s, nodeKey("node3")).Value.(*api.Node)
	if n3.Metadata.Labels["rack"] != "r2" || *n3.Spec.BGP.ASNumber != 64600 {
		t.Errorf("node3 = %+v", n3)
	}
}

func TestDuplicateLaterWins(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), "kind: Node\napiVersion: projectcalico.org/v3\nmetadata: {name: n1}\nspec: {bgp: {ipv4Address: 10.0.0.1/24}}\n")
	writeFile(t, filepath.Join(dir, "b.yaml"), "kind: Node\napiVersion: projectcalico.org/v3\nmetadata: {name: n1}\nspec: {bgp: {ipv4Address: 10.0.0.2/24}}\n")
	s, hook := open(t, dir)
	n := mustGet(t, s, nodeKey("n1")).Value.(*api.Node)
	if n.Spec.BGP.IPv4Address != "10.0.0.2/24" {
		t.Errorf("the later file should win, got %s", n.Spec.BGP.IPv4Address)
	}
	ws := warnings(hook, "defined twice")
	if len(ws) != 1 {
		t.Fatalf("want one duplicate warning, got %v", hook.AllEntries())
	}
	first, _ := ws[0].Data["first"].(string)
	second, _ := ws[0].Data["second"].(string)
	if !strings.Contains(first, "a.yaml") || !strings.Contains(second, "b.yaml") {
		t.Errorf("duplicate warning should name both places: %v", ws[0].Data)
	}
}

func TestNewErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := New(ctx, filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing directory should be an error")
	}
	if _, err := New(ctx, filepath.Join(t.TempDir(), "no", "such.yaml")); err == nil {
		t.Error("a file in a missing directory should be an error")
	}
	// A missing file in an existing directory is an empty store.
	s, _ := open(t, filepath.Join(t.TempDir(), "new.yaml"))
	if res, err := s.List(ctx, ""); err != nil || len(res.KVs) != 0 {
		t.Errorf("List = %v, %v", res, err)
	}
}

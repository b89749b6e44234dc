package bgp

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

// --- builders ---

func asn(v uint32) *api.ASNumber { a := api.ASNumber(v); return &a }
func ptr[T any](v T) *T          { return &v }

type nodeOpt func(*api.Node)

func mkNode(name, v4, v6 string, opts ...nodeOpt) *api.Node {
	n := &api.Node{Metadata: api.ObjectMeta{Name: name}, Spec: api.NodeSpec{BGP: &api.NodeBGPSpec{IPv4Address: v4, IPv6Address: v6}}}
	for _, o := range opts {
		o(n)
	}
	return n
}

func withAS(as uint32) nodeOpt { return func(n *api.Node) { n.Spec.BGP.ASNumber = asn(as) } }
func withRR(id string) nodeOpt {
	return func(n *api.Node) { n.Spec.BGP.RouteReflectorClusterID = id }
}
func withLabels(kv ...string) nodeOpt {
	return func(n *api.Node) {
		n.Metadata.Labels = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			n.Metadata.Labels[kv[i]] = kv[i+1]
		}
	}
}

func mkPeer(name string, spec api.BGPPeerSpec) *api.BGPPeer {
	return &api.BGPPeer{Metadata: api.ObjectMeta{Name: name}, Spec: spec}
}

func mkConfig(name string, spec api.BGPConfigurationSpec) *api.BGPConfiguration {
	return &api.BGPConfiguration{Metadata: api.ObjectMeta{Name: name}, Spec: spec}
}

func cacheOf(t testing.TB, objs ...api.Resource) *Cache {
	t.Helper()
	c := NewCache()
	for _, o := range objs {
		if err := c.Set(o); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// sessions summarizes a model as "v4 Name ip:port as=A local=L [passive] [rr]".
func sessions(m *Model) []string {
	var out []string
	for _, f := range []*Family{m.V4, m.V6} {
		for _, p := range f.Peers {
			s := fmt.Sprintf("v%d %s %s:%d as=%d local=%d", f.Version, p.Name, p.IP, p.Port, p.AS, p.LocalAS)
			if p.Passive {
				s += " passive"
			}
			if p.RRClient {
				s += " rr"
			}
			if p.Reverse {
				s += " reverse"
			}
			out = append(out, s)
		}
	}
	return out
}

func compute(t testing.TB, c *Cache, node string) *Model {
	t.Helper()
	m, errs := Compute(c, Options{NodeName: node})
	if m == nil || len(errs) > 0 {
		t.Fatalf("Compute(%s): %v", node, errors.Join(errs...))
	}
	return m
}

// --- table-driven topology rules ---

func TestTopologyRules(t *testing.T) {
	meshOff := mkConfig("default", api.BGPConfigurationSpec{NodeToNodeMeshEnabled: ptr(false)})
	for _, tc := range []struct {
		name string
		node string
		objs []api.Resource
		want []string
	}{
		{
			name: "lexical passive, not numeric",
			node: "n9",
			objs: []api.Resource{mkNode("n9", "10.0.0.9/24", ""), mkNode("n10", "10.0.0.10/24", ""), mkNode("n2", "10.0.0.2/24", "")},
			want: []string{
				"v4 Mesh_10_0_0_2 10.0.0.2:179 as=64512 local=64512",
				"v4 Mesh_10_0_0_10 10.0.0.10:179 as=64512 local=64512", // "10.0.0.10" < "10.0.0.9"
			},
		},
		{
			name: "mesh skips reflectors",
			node: "a",
			objs: []api.Resource{mkNode("a", "10.0.0.1/24", ""), mkNode("rr", "10.0.0.2/24", "", withRR("1.1.1.1")), mkNode("b", "10.0.0.3/24", "")},
			want: []string{"v4 Mesh_10_0_0_3 10.0.0.3:179 as=64512 local=64512 passive"},
		},
		{
			name: "a reflector has no mesh",
			node: "rr",
			objs: []api.Resource{mkNode("a", "10.0.0.1/24", ""), mkNode("rr", "10.0.0.2/24", "", withRR("1.1.1.1")), mkNode("b", "10.0.0.3/24", "")},
			want: nil,
		},
		{
			name: "peer AS falls back to the global AS (the peer's effective AS)",
			node: "a",
			objs: []api.Resource{mkConfig("default", api.BGPConfigurationSpec{ASNumber: asn(64600)}),
				mkNode("a", "10.0.0.1/24", "", withAS(65001)), mkNode("b", "10.0.0.2/24", ""), mkNode("c", "10.0.0.3/24", "", withAS(65003))},
			want: []string{"v4 Mesh_10_0_0_2 10.0.0.2:179 as=64600 local=65001 passive", "v4 Mesh_10_0_0_3 10.0.0.3:179 as=65003 local=65001 passive"},
		},
		{
			name: "deliberate: the lower-address end of a selector peering waits",
			node: "a",
			objs: []api.Resource{meshOff, mkNode("a", "10.0.0.1/24", "", withLabels("x", "1")), mkNode("b", "10.0.0.2/24", "", withLabels("x", "1")),
				mkPeer("p", api.BGPPeerSpec{NodeSelector: "x == '1'", PeerSelector: "x == '1'"})},
			want: []string{"v4 Node_10_0_0_2 10.0.0.2:179 as=64512 local=64512 passive"},
		},
		{
			name: "deliberate: the higher-address end of a selector peering connects",
			node: "b",
			objs: []api.Resource{meshOff, mkNode("a", "10.0.0.1/24", "", withLabels("x", "1")), mkNode("b", "10.0.0.2/24", "", withLabels("x", "1")),
				mkPeer("p", api.BGPPeerSpec{NodeSelector: "x == '1'", PeerSelector: "x == '1'"})},
			want: []string{"v4 Node_10_0_0_1 10.0.0.1:179 as=64512 local=64512"},
		},
		{
			name: "global AS default 64512 when no configuration",
			node: "a",
			objs: []api.Resource{mkNode("a", "10.0.0.1/24", ""), mkNode("b", "10.0.0.2/24", ""), mkPeer("x", api.BGPPeerSpec{PeerIP: "10.1.1.1", ASNumber: 64512})},
			want: []string{"v4 Mesh_10_0_0_2 10.0.0.2:179 as=64512 local=64512 passive", "v4 Global_10_1_1_1 10.1.1.1:179 as=64512 local=64512"},
		},
		{
			name: "never peer with yourself",
			node: "a",
			objs: []api.Resource{meshOff, mkNode("a", "10.0.0.1/24", ""),
				mkPeer("self", api.BGPPeerSpec{PeerIP: "10.0.0.1", ASNumber: 65000}),
				mkPeer("all", api.BGPPeerSpec{PeerSelector: "all()"})},
			want: nil,
		},
		{
			name: "global wins over node-specific to the same ip:port",
			node: "a",
			objs: []api.Resource{meshOff, mkNode("a", "10.0.0.1/24", ""),
				mkPeer("g", api.BGPPeerSpec{PeerIP: "10.1.1.1", ASNumber: 65000}),
				mkPeer("n", api.BGPPeerSpec{Node: "a", PeerIP: "10.1.1.1", ASNumber: 65099}),
				mkPeer("n-port", api.BGPPeerSpec{Node: "a", PeerIP: "10.1.1.1:1790", ASNumber: 65099})},
			want: []string{"v4 Global_10_1_1_1 10.1.1.1:179 as=65000 local=64512", "v4 Node_10_1_1_1_port_1790 10.1.1.1:1790 as=65099 local=64512"},
		},
		{
			name: "explicit peering wins over mesh and reverse",
			node: "a",
			objs: []api.Resource{mkNode("a", "10.0.0.1/24", "", withLabels("x", "1")), mkNode("b", "10.0.0.2/24", "", withLabels("x", "1"), withAS(65002)),
				mkPeer("b-to-a", api.BGPPeerSpec{Node: "b", PeerSelector: "x == '1'"}),
				mkPeer("a-to-b", api.BGPPeerSpec{Node: "a", PeerIP: "10.0.0.2", ASNumber: 65002})},
			want: []string{"v4 Node_10_0_0_2 10.0.0.2:179 as=65002 local=64512 passive"},
		},
		{
			name: "reverse of a peerSelector peering",
			node: "c",
			objs: []api.Resource{meshOff, mkNode("rr", "10.0.0.1/24", "", withLabels("rr", "true"), withAS(65100)), mkNode("c", "10.0.0.5/24", "", withLabels("client", "")),
				mkPeer("p", api.BGPPeerSpec{NodeSelector: "rr == 'true'", PeerSelector: "has(client)"})},
			want: []string{"v4 Node_10_0_0_1 10.0.0.1:179 as=65100 local=64512 reverse"},
		},
		{
			name: "reverse uses localASNumber of the remote side",
			node: "c",
			objs: []api.Resource{meshOff, mkNode("rr", "10.0.0.1/24", "", withLabels("rr", "true")), mkNode("c", "10.0.0.5/24", "", withLabels("client", "")),
				mkPeer("p", api.BGPPeerSpec{NodeSelector: "rr == 'true'", PeerSelector: "has(client)", LocalASNumber: asn(65111)})},
			want: []string{"v4 Node_10_0_0_1 10.0.0.1:179 as=65111 local=64512 reverse"},
		},
		{
			name: "reverse peering manual",
			node: "c",
			objs: []api.Resource{meshOff, mkNode("rr", "10.0.0.1/24", "", withLabels("rr", "true")), mkNode("c", "10.0.0.5/24", "", withLabels("client", "")),
				mkPeer("p", api.BGPPeerSpec{NodeSelector: "rr == 'true'", PeerSelector: "has(client)", ReversePeering: ptr(api.ReversePeeringManual)})},
			want: nil,
		},
		{
			name: "reverse of a global peerSelector: the selected node peers with every node",
			node: "rr",
			objs: []api.Resource{meshOff, mkNode("rr", "10.0.0.1/24", "", withLabels("rr", "")), mkNode("b", "10.0.0.2/24", ""), mkNode("c", "10.0.0.3/24", ""),
				mkPeer("p", api.BGPPeerSpec{PeerSelector: "has(rr)"})},
			want: []string{"v4 Node_10_0_0_2 10.0.0.2:179 as=64512 local=64512 passive reverse", "v4 Node_10_0_0_3 10.0.0.3:179 as=64512 local=64512 passive reverse"},
		},
		{
			name: "reverse of a node-IP peering uses the AS the remote side expects",
			node: "b",
			objs: []api.Resource{meshOff, mkNode("a", "10.0.0.1/24", ""), mkNode("b", "10.0.0.2/24", "", withAS(65002)),
				mkPeer("p", api.BGPPeerSpec{Node: "a", PeerIP: "10.0.0.2", ASNumber: 65002})},
			want: []string{"v4 Node_10_0_0_1 10.0.0.1:179 as=64512 local=65002 reverse"},
		},
		{
			name: "a node is address and AS: a peerIP with another AS gives the node at that address no reverse session",
			node: "b",
			objs: []api.Resource{meshOff, mkNode("a", "10.0.0.1/24", ""), mkNode("b", "10.0.0.2/24", "", withAS(65002)),
				mkPeer("p", api.BGPPeerSpec{Node: "a", PeerIP: "10.0.0.2", ASNumber: 65099})},
			want: nil,
		},
		{
			name: "a node is address and AS: a peerIP without asNumber names the node at that address",
			node: "b",
			objs: []api.Resource{meshOff, mkConfig("node.a", api.BGPConfigurationSpec{ListenPort: 1791}), mkNode("a", "10.0.0.1/24", ""), mkNode("b", "10.0.0.2/24", "", withAS(65002)),
				mkPeer("p", api.BGPPeerSpec{Node: "a", PeerIP: "10.0.0.2"})},
			want: []string{"v4 Node_10_0_0_1_port_1791 10.0.0.1:1791 as=64512 local=65002 reverse"},
		},
		{
			name: "a node is address and AS: a peerIP with another AS does not inherit the node's port nor wait",
			node: "a",
			objs: []api.Resource{meshOff, mkConfig("node.b", api.BGPConfigurationSpec{ListenPort: 1791}), mkNode("a", "10.0.0.1/24", ""), mkNode("b", "10.0.0.2/24", ""),
				mkPeer("p", api.BGPPeerSpec{Node: "a", PeerIP: "10.0.0.2", ASNumber: 65099}),
				mkPeer("q", api.BGPPeerSpec{Node: "a", PeerIP: "10.0.0.2", ASNumber: 64512})},
			want: []string{"v4 Node_10_0_0_2 10.0.0.2:179 as=65099 local=64512", "v4 Node_10_0_0_2_port_1791 10.0.0.2:1791 as=64512 local=64512 passive"},
		},
		{
			name: "peer node listen port applies to node peerings",
			node: "a",
			objs: []api.Resource{mkConfig("default", api.BGPConfigurationSpec{ListenPort: 1790}), mkConfig("node.b", api.BGPConfigurationSpec{ListenPort: 1791}),
				mkNode("a", "10.0.0.1/24", ""), mkNode("b", "10.0.0.2/24", ""), mkNode("c", "10.0.0.3/24", "")},
			want: []string{"v4 Mesh_10_0_0_2_port_1791 10.0.0.2:1791 as=64512 local=64512 passive", "v4 Mesh_10_0_0_3_port_1790 10.0.0.3:1790 as=64512 local=64512 passive"},
		},
		{
			name: "rr client: iBGP with a different or empty cluster id",
			node: "rr",
			objs: []api.Resource{meshOff, mkNode("rr", "10.0.0.1/24", "", withRR("1.1.1.1")), mkNode("rr2", "10.0.0.2/24", "", withRR("1.1.1.1")),
				mkNode("rr3", "10.0.0.3/24", "", withRR("2.2.2.2")), mkNode("c", "10.0.0.4/24", ""),
				mkPeer("p", api.BGPPeerSpec{PeerSelector: "all()"}), mkPeer("ext", api.BGPPeerSpec{PeerIP: "10.9.9.9", ASNumber: 65000})},
			want: []string{"v4 Global_10_0_0_2 10.0.0.2:179 as=64512 local=64512 passive", "v4 Global_10_0_0_3 10.0.0.3:179 as=64512 local=64512 passive rr",
				"v4 Global_10_0_0_4 10.0.0.4:179 as=64512 local=64512 passive rr", "v4 Global_10_9_9_9 10.9.9.9:179 as=65000 local=64512"},
		},
		{
			name: "families: only where both ends have an address",
			node: "a",
			objs: []api.Resource{mkNode("a", "10.0.0.1/24", "fd00::1/64"), mkNode("b", "", "fd00::2/64"), mkNode("c", "10.0.0.3/24", ""),
				&api.Node{Metadata: api.ObjectMeta{Name: "nobgp"}}},
			want: []string{"v4 Mesh_10_0_0_3 10.0.0.3:179 as=64512 local=64512 passive", "v6 Mesh_fd00__2 fd00::2:179 as=64512 local=64512 passive"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cacheOf(t, tc.objs...)
			m := compute(t, c, tc.node)
			if got := sessions(m); !slices.Equal(got, tc.want) {
				t.Errorf("sessions:\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}

// TestSymmetry computes every node of random clusters and checks that
// node-to-node sessions pair up: same ports and AS on both sides, exactly
// one passive end.
func TestSymmetry(t *testing.T) {
	for seed := range uint64(30) {
		r := rand.New(rand.NewPCG(seed, 1))
		var objs []api.Resource
		mesh := r.IntN(2) == 0
		objs = append(objs, mkConfig("default", api.BGPConfigurationSpec{NodeToNodeMeshEnabled: &mesh, ListenPort: uint16(179 + r.IntN(2)*1611)}))
		n := 3 + r.IntN(8)
		for i := range n {
			var opts []nodeOpt
			if r.IntN(4) == 0 {
				opts = append(opts, withRR("9.9.9.9"))
			}
			if r.IntN(3) == 0 {
				opts = append(opts, withAS(65000+uint32(r.IntN(3))))
			}
			opts = append(opts, withLabels("role", []string{"a", "b", "c"}[r.IntN(3)]))
			v6 := ""
			if r.IntN(2) == 0 {
				v6 = fmt.Sprintf("fd00::%x/64", i+1)
			}
			objs = append(objs, mkNode(fmt.Sprintf("n%d", i), fmt.Sprintf("10.0.%d.%d/16", r.IntN(3), i+1), v6, opts...))
			if r.IntN(3) == 0 {
				objs = append(objs, mkConfig(fmt.Sprintf("node.n%d", i), api.BGPConfigurationSpec{ListenPort: uint16(2000 + i)}))
			}
		}
		objs = append(objs,
			mkPeer("ab", api.BGPPeerSpec{NodeSelector: "role == 'a'", PeerSelector: "role == 'b'"}),
			mkPeer("cc", api.BGPPeerSpec{NodeSelector: "role == 'c'", PeerSelector: "role == 'c'"}),
			mkPeer("ip", api.BGPPeerSpec{Node: "n0", PeerIP: "10.0.0.2", ASNumber: 64512}),
		)
		c := cacheOf(t, objs...)
		models := map[string]*Model{}
		for i := range n {
			name := fmt.Sprintf("n%d", i)
			m, errs := Compute(c, Options{NodeName: name})
			if m == nil || len(errs) > 0 {
				t.Fatalf("seed %d %s: %v", seed, name, errs)
			}
			models[name] = m
		}
		for name, m := range models {
			for _, f := range m.Families {
				for _, p := range f.Peers {
					if p.PeerNode == "" {
						continue
					}
					other := models[p.PeerNode].Family(f.Version)
					var back *Peer
					for _, q := range other.Peers {
						if q.IP == f.IP {
							back = q
						}
					}
					if back == nil {
						if p.BGPPeer == "ip" && !mesh { // only the explicit side... reverse is Auto, so it must exist
							t.Errorf("seed %d: %s -> %s (%s) has no reverse session", seed, name, p.PeerNode, p.Name)
						} else if p.BGPPeer != "" || mesh {
							t.Errorf("seed %d: %s -> %s (%s) has no matching session", seed, name, p.PeerNode, p.Name)
						}
						continue
					}
					if p.Passive == back.Passive {
						t.Errorf("seed %d: %s<->%s passive %v/%v", seed, name, p.PeerNode, p.Passive, back.Passive)
					}
					if p.Port != back.ListenPort || back.Port != p.ListenPort {
						t.Errorf("seed %d: %s<->%s ports %d/%d listen %d/%d", seed, name, p.PeerNode, p.Port, back.Port, p.ListenPort, back.ListenPort)
					}
					if p.AS != back.LocalAS || back.AS != p.LocalAS {
						t.Errorf("seed %d: %s<->%s AS %d/%d local %d/%d", seed, name, p.PeerNode, p.AS, back.AS, p.LocalAS, back.LocalAS)
					}
				}
			}
		}
	}
}

// --- cache maintenance ---

func TestCacheIncremental(t *testing.T) {
	c := cacheOf(t, mkConfig("default", api.BGPConfigurationSpec{NodeToNodeMeshEnabled: ptr(false)}),
		mkNode("a", "10.0.0.1/24", "", withLabels("role", "x")), mkNode("b", "10.0.0.2/24", "", withLabels("role", "y")),
		mkPeer("p", api.BGPPeerSpec{NodeSelector: "role == 'x'", PeerSelector: "role == 'z'"}))
	if got := sessions(compute(t, c, "a")); len(got) != 0 {
		t.Fatalf("before: %v", got)
	}
	// b's labels change: it now matches the peerSelector.
	if err := c.Set(mkNode("b", "10.0.0.2/24", "", withLabels("role", "z"))); err != nil {
		t.Fatal(err)
	}
	if got := sessions(compute(t, c, "a")); !slices.Equal(got, []string{"v4 Node_10_0_0_2 10.0.0.2:179 as=64512 local=64512 passive"}) {
		t.Fatalf("after label change: %v", got)
	}
	// b's address changes.
	if err := c.Set(mkNode("b", "10.0.0.7/24", "", withLabels("role", "z"))); err != nil {
		t.Fatal(err)
	}
	if got := sessions(compute(t, c, "a")); !slices.Equal(got, []string{"v4 Node_10_0_0_7 10.0.0.7:179 as=64512 local=64512 passive"}) {
		t.Fatalf("after address change: %v", got)
	}
	// Mesh on through a config change.
	if err := c.Set(mkConfig("default", api.BGPConfigurationSpec{})); err != nil {
		t.Fatal(err)
	}
	if got := sessions(compute(t, c, "a")); !slices.Equal(got, []string{"v4 Node_10_0_0_7 10.0.0.7:179 as=64512 local=64512 passive"}) {
		t.Fatalf("mesh on: explicit must win over mesh: %v", got)
	}
	// Delete the peer by key: the mesh session appears.
	key := datastore.ResourceKey(api.KindBGPPeer, "", "p")
	if err := c.Apply(key, nil); err != nil {
		t.Fatal(err)
	}
	if got := sessions(compute(t, c, "a")); !slices.Equal(got, []string{"v4 Mesh_10_0_0_7 10.0.0.7:179 as=64512 local=64512 passive"}) {
		t.Fatalf("after delete: %v", got)
	}
	if len(c.selectors) != 0 {
		t.Errorf("selectors not released: %v", c.selectors)
	}
	// Delete node b.
	if err := c.Apply(datastore.ResourceKey(api.KindNode, "", "b"), nil); err != nil {
		t.Fatal(err)
	}
	if got := sessions(compute(t, c, "a")); len(got) != 0 {
		t.Fatalf("after node delete: %v", got)
	}
	if len(c.byIP) != 1 || len(c.sorted[0]) != 1 {
		t.Errorf("indexes not cleaned: byIP=%d sorted=%d", len(c.byIP), len(c.sorted[0]))
	}
	if got := c.Keys(); len(got) != 2 {
		t.Errorf("keys: %v", got)
	}
}

func TestCacheApplyKeys(t *testing.T) {
	c := NewCache()
	n := mkNode("a", "10.0.0.1/24", "")
	if err := c.Apply(datastore.ResourceKey(api.KindBGPPeer, "", "a"), n); err == nil {
		t.Error("a Node under a BGPPeer key was accepted")
	}
	if err := c.Apply("/not/a/calico/key", n); err == nil {
		t.Error("bad key accepted")
	}
	// Kinds the model does not read are ignored.
	wep := &api.WorkloadEndpoint{Metadata: api.ObjectMeta{Name: "w", Namespace: "ns"}}
	k, _ := datastore.KeyFor(wep)
	if err := c.Apply(k, wep); err != nil || len(c.Keys()) != 0 {
		t.Errorf("workload endpoint: %v %v", err, c.Keys())
	}
	// Affinity keys carry node and CIDR; minimal objects are fine.
	ak := datastore.AffinityKey("a", mustPrefix("10.65.1.0/26"))
	if err := c.Apply(ak, &api.BlockAffinity{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(n); err != nil {
		t.Fatal(err)
	}
	m := compute(t, c, "a")
	if len(m.V4.Blocks) != 1 || m.V4.Blocks[0].CIDR != "10.65.1.0/26" {
		t.Errorf("blocks: %+v", m.V4.Blocks)
	}
	if err := c.Apply(ak, nil); err != nil {
		t.Fatal(err)
	}
	if m := compute(t, c, "a"); len(m.V4.Blocks) != 0 {
		t.Errorf("block not deleted: %+v", m.V4.Blocks)
	}
	if !Relevant(ak) || Relevant(k) {
		t.Error("Relevant")
	}
}

func TestDeterministic(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "scenarios", "route-reflector", "input.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs := api.Decode(data, "x", api.DecodeOptions{})
	var objs []api.Resource
	for _, d := range docs {
		objs = append(objs, d.Object)
	}
	want := compute(t, cacheOf(t, objs...), "rr1")
	for i := range 20 {
		r := rand.New(rand.NewPCG(uint64(i), 2))
		shuffled := slices.Clone(objs)
		r.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		got := compute(t, cacheOf(t, shuffled...), "rr1")
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("order %d gives a different model:\n%s\n%s", i, got, want)
		}
	}
}

// --- errors and secrets ---

func TestComputeErrors(t *testing.T) {
	c := cacheOf(t, mkNode("a", "10.0.0.1/24", ""))
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{}, "no node name"},
		{Options{NodeName: "missing"}, `Node "missing": not found`},
		{Options{NodeName: "a", RouterID: "fd00::1"}, "CALICO_ROUTER_ID"},
		{Options{NodeName: "a", RouterID: "0.0.0.0"}, "CALICO_ROUTER_ID"},
	} {
		m, errs := Compute(c, tc.opts)
		if m != nil || Fatal(errs) == nil || !strings.Contains(Fatal(errs).Error(), tc.want) {
			t.Errorf("%+v: model %v, errors %v; want fatal %q", tc.opts, m != nil, errs, tc.want)
		}
	}
	if m, errs := Compute(c, Options{NodeName: "a", RouterID: " 192.0.2.7 "}); m == nil || m.RouterID != "192.0.2.7" || len(errs) > 0 {
		t.Errorf("explicit router id: %v %v", m, errs)
	}
}

func TestSecretRedaction(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "s"), 0o755); err != nil {
		t.Fatal(err)
	}
	const pw = "Sup3rS3cretValue"
	if err := os.WriteFile(filepath.Join(dir, "s", "k"), []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := cacheOf(t, mkNode("a", "10.0.0.1/24", ""),
		mkPeer("p", api.BGPPeerSpec{PeerIP: "10.9.9.9", ASNumber: 65000, Password: &api.BGPPassword{SecretKeyRef: &api.SecretKeySelector{Name: "s", Key: "k"}}}))
	m, errs := Compute(c, Options{NodeName: "a", SecretsDir: dir})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	p := m.V4.Peers[0]
	if p.Password.Reveal() != pw {
		t.Fatalf("password %q", p.Password.Reveal())
	}
	js, _ := json.Marshal(m)
	outputs := []string{
		m.String(), string(js),
		fmt.Sprintf("%v %+v %#v %s %q %x", p.Password, p.Password, p.Password, p.Password, p.Password, p.Password),
		fmt.Sprintf("%v %+v %#v", p, *p, p.SessionOptions),
		fmt.Sprintf("%+v", *m.V4.Templates[0]),
	}
	for _, o := range outputs {
		if strings.Contains(o, pw) || strings.Contains(o, fmt.Sprintf("%x", pw)) {
			t.Errorf("password leaked: %s", o)
		}
	}
	if !strings.Contains(m.String(), redacted) {
		t.Errorf("String does not show the mask")
	}
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(path, content string) {
		p := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("s/plain", "abc")
	write("s/nl", "abc\n")
	write("s/two", "abc\n\n")
	write("s/empty", "")
	write("outside", "x")
	if err := os.Symlink("../outside", filepath.Join(dir, "s", "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("plain", filepath.Join(dir, "s", "link")); err != nil {
		t.Fatal(err)
	}
	r := newSecretReader(filepath.Join(dir, "s", ".."))
	for key, want := range map[string]string{"plain": "abc", "nl": "abc", "two": "abc\n", "empty": "", "link": "abc"} {
		got, err := r.read(&api.SecretKeySelector{Name: "s", Key: key})
		if err != nil || got != want {
			t.Errorf("%s: %q %v", key, got, err)
		}
	}
	for _, ref := range []api.SecretKeySelector{{Name: "s", Key: "missing"}, {Name: "s", Key: ".."}, {Name: "..", Key: "outside"}, {Name: "s", Key: "a/b"}} {
		if v, err := r.read(&ref); err == nil {
			t.Errorf("%+v: got %q, want error", ref, v)
		}
	}
	// A symlink escaping the directory is refused... only when it points
	// outside the root: "../outside" from s/ stays inside dir.
	if _, err := newSecretReader(filepath.Join(dir, "s")).read(&api.SecretKeySelector{Name: ".", Key: "escape"}); err == nil {
		t.Errorf("name '.' accepted")
	}
	if v, err := newSecretReader(filepath.Join(dir, "s")).read(&api.SecretKeySelector{Name: "x", Key: "y"}); err == nil {
		t.Errorf("missing dir: %q", v)
	}
	if _, err := newSecretReader("").read(&api.SecretKeySelector{Name: "s", Key: "plain"}); err == nil || !strings.Contains(err.Error(), "no secrets directory") {
		t.Errorf("no dir: %v", err)
	}
}

func TestSecretSymlinkEscape(t *testing.T) {
	root := t.TempDir()
	secrets := filepath.Join(root, "secrets")
	if err := os.MkdirAll(filepath.Join(secrets, "s"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "host-file"), []byte("host"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../host-file", filepath.Join(secrets, "s", "k")); err != nil {
		t.Fatal(err)
	}
	if v, err := newSecretReader(secrets).read(&api.SecretKeySelector{Name: "s", Key: "k"}); err == nil {
		t.Errorf("symlink out of the secrets directory was followed: %q", v)
	}
}

func TestFatalHelper(t *testing.T) {
	errs := []error{&Problem{FieldError: api.FieldError{Msg: "w"}}, &Problem{FieldError: api.FieldError{Msg: "f"}, Fatal: true}, errors.New("plain")}
	err := Fatal(errs)
	if err == nil || !strings.Contains(err.Error(), "f") || !strings.Contains(err.Error(), "plain") || strings.Contains(err.Error(), "w\n") {
		t.Errorf("Fatal: %v", err)
	}
	if Fatal([]error{&Problem{FieldError: api.FieldError{Msg: "w"}}}) != nil {
		t.Error("warning counted as fatal")
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// TestUnvalidatedHostileObjects feeds objects that skipped api validation
// (as Apply allows) and checks that nothing hostile reaches a config.
func TestUnvalidatedHostileObjects(t *testing.T) {
	r := newRenderer(t)
	base := []api.Resource{mkNode("a", "10.0.0.1/24", ""), mkNode("b", "10.0.0.2/24", "", withRR("1.1.1.1; } protocol evil {"))}

	// An invalid cluster id is ignored with a warning; the node is no reflector.
	c := cacheOf(t, base...)
	m, errs := Compute(c, Options{NodeName: "b"})
	if m == nil || len(errs) != 1 || !strings.Contains(errs[0].Error(), "routeReflectorClusterID") {
		t.Fatalf("cluster id: %v", errs)
	}
	if files, err := r.render(m); err != nil || strings.Contains(string(files["peers.cfg"]), "evil") {
		t.Fatalf("render: %v", err)
	}

	// A BGPFilter whose interface cannot be quoted is a fatal problem and
	// the filter is left out.
	c = cacheOf(t, base...)
	f := &api.BGPFilter{Metadata: api.ObjectMeta{Name: "f"}, Spec: api.BGPFilterSpec{ExportV4: []api.BGPFilterRule{{Interface: "eth0\"; accept; #", Action: api.FilterReject}}}}
	if err := c.Set(f); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(mkPeer("p", api.BGPPeerSpec{PeerIP: "10.9.9.9", ASNumber: 65000, Filters: []string{"f"}})); err != nil {
		t.Fatal(err)
	}
	m, errs = Compute(c, Options{NodeName: "a"})
	if err := Fatal(errs); err == nil || !strings.Contains(err.Error(), `BGPFilter "f": spec.exportV4[0]: interface`) {
		t.Fatalf("filter: %v", errs)
	}
	if len(m.Filters) != 0 {
		t.Errorf("broken filter compiled into the model")
	}

	// A BGPPeer name from a raw key that BIRD cannot quote stops the render.
	c = cacheOf(t, base...)
	key := datastore.ResourcePrefix + "bgppeers/evil\"\nname"
	if err := c.Apply(key, mkPeer("x", api.BGPPeerSpec{PeerIP: "10.9.9.9", ASNumber: 65000})); err != nil {
		t.Fatal(err)
	}
	m, _ = Compute(c, Options{NodeName: "a"})
	if files, err := r.render(m); err == nil || files != nil {
		t.Fatalf("hostile peer name rendered: %v", err)
	}
}

// TestConcurrentApplyCompute runs updates and computes in parallel (for
// the race detector).
func TestConcurrentApplyCompute(t *testing.T) {
	c := benchCache(t, 50)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			if err := c.Set(benchNode(1 + i%49)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 50 {
		if m, errs := Compute(c, Options{NodeName: "node-0"}); m == nil || len(errs) > 0 {
			t.Fatal(errs)
		}
	}
	<-done
}

package kvstore

import (
	"maps"
	"strings"
	"testing"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

// decode reads YAML resources as the datastore hands them over (defaulted,
// validated); validation can be skipped for deliberately bad input.
func decode(t *testing.T, y string, validate bool) []api.Resource {
	t.Helper()
	objs, err := api.DecodeAll([]byte(y), "test", api.DecodeOptions{NoValidate: !validate})
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return objs
}

func contents(s *Store) map[string]string {
	out := map[string]string{}
	for _, k := range s.Keys("") {
		kv, _ := s.Get(k)
		out[k] = kv.Value
	}
	return out
}

var defaults = map[string]string{
	"/calico/bgp/v1/global/as_num":    "64512",
	"/calico/bgp/v1/global/node_mesh": `{"enabled":true}`,
	"/calico/bgp/v1/global/loglevel":  "info",
}

// with returns defaults plus extra (an empty value deletes a default).
func with(extra map[string]string) map[string]string {
	out := maps.Clone(defaults)
	for k, v := range extra {
		if v == "<deleted>" {
			delete(out, k)
			continue
		}
		out[k] = v
	}
	return out
}

func diff(t *testing.T, name string, got, want map[string]string) {
	t.Helper()
	for k, w := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("%s: missing %s (want %q)", name, k, w)
		} else if g != w {
			t.Errorf("%s: %s = %q, want %q", name, k, g, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected %s = %q", name, k, g)
		}
	}
}

func TestMirrorMapping(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		noValid bool   // skip validation (deliberately broken input)
		wantErr string // substring of the joined Apply errors
		want    map[string]string
	}{
		{name: "nothing", want: defaults},
		{
			name: "global configuration, every field",
			yaml: `
kind: BGPConfiguration
metadata: {name: default}
spec:
  asNumber: 65000
  nodeToNodeMeshEnabled: false
  logSeverityScreen: Warning
  listenPort: 1790
  bindMode: NodeIP
  serviceClusterIPs: [{cidr: 10.96.0.0/12}, {cidr: "fd00:96::/108"}]
  serviceExternalIPs: [{cidr: 192.0.2.0/24}]
  serviceLoadBalancerIPs: [{cidr: 198.51.100.0/24}, {cidr: 198.51.100.7/32}]
  ignoredInterfaces: [eth9, "docker*"]
  nodeMeshMaxRestartTime: 90.6s
  communities:
  - {name: gold, value: "65000:100"}
  - {name: big, value: "65000:1:2"}
  prefixAdvertisements:
  - cidr: 10.65.0.0/16
    communities: [gold, "65000:200", "65000:100"]
  - cidr: 172.16.1.5/24
    communities: [big]
  - cidr: fd00:65::/64
    communities: ["1:1"]
`,
			want: map[string]string{
				"/calico/bgp/v1/global/as_num":                      "65000",
				"/calico/bgp/v1/global/node_mesh":                   `{"enabled":false}`,
				"/calico/bgp/v1/global/loglevel":                    "none",
				"/calico/bgp/v1/global/listen_port":                 "1790",
				"/calico/bgp/v1/global/bind_mode":                   "NodeIP",
				"/calico/bgp/v1/global/svc_cluster_ips":             "10.96.0.0/12,fd00:96::/108",
				"/calico/bgp/v1/global/svc_external_ips":            "192.0.2.0/24",
				"/calico/bgp/v1/global/svc_loadbalancer_ips":        "198.51.100.0/24,198.51.100.7/32",
				"/calico/bgp/v1/global/ignored_interfaces":          "eth9,docker*",
				"/calico/bgp/v1/global/node_mesh_restart_time":      "91",
				"/calico/bgp/v1/global/prefix_advertisements/ip_v4": `[{"cidr":"10.65.0.0/16","communities":["65000:100","65000:200"]},{"cidr":"172.16.1.0/24","communities":["65000:1:2"]}]`,
				"/calico/bgp/v1/global/prefix_advertisements/ip_v6": `[{"cidr":"fd00:65::/64","communities":["1:1"]}]`,
			},
		},
		{
			name: "global configuration, defaults filled by the decoder",
			yaml: "kind: BGPConfiguration\nmetadata: {name: default}\nspec: {logSeverityScreen: Debug}\n",
			want: with(map[string]string{"/calico/bgp/v1/global/loglevel": "debug"}),
		},
		{
			name: "prefix advertisement without communities",
			yaml: "kind: BGPConfiguration\nmetadata: {name: default}\nspec: {logSeverityScreen: INFO, prefixAdvertisements: [{cidr: 10.1.0.0/16}]}\n",
			want: with(map[string]string{
				"/calico/bgp/v1/global/prefix_advertisements/ip_v4": `[{"cidr":"10.1.0.0/16","communities":[]}]`,
				"/calico/bgp/v1/global/prefix_advertisements/ip_v6": `[]`,
			}),
		},
		{
			name: "log levels Fatal and None",
			yaml: "kind: BGPConfiguration\nmetadata: {name: default}\nspec: {logSeverityScreen: Fatal}\n" +
				"---\nkind: BGPConfiguration\nmetadata: {name: node.n1}\nspec: {logSeverityScreen: None}\n",
			want: with(map[string]string{
				"/calico/bgp/v1/global/loglevel":  "none",
				"/calico/bgp/v1/host/n1/loglevel": "none",
			}),
		},
		{
			name: "per-node configuration",
			yaml: `
kind: BGPConfiguration
metadata: {name: node.n1}
spec:
  listenPort: 1791
  logSeverityScreen: debug
  communities: [{name: c1, value: "7:7"}]
  prefixAdvertisements: [{cidr: "fd00:1::/48", communities: [c1]}]
`,
			want: with(map[string]string{
				"/calico/bgp/v1/host/n1/listen_port":                 "1791",
				"/calico/bgp/v1/host/n1/loglevel":                    "debug",
				"/calico/bgp/v1/host/n1/prefix_advertisements/ip_v4": `[]`,
				"/calico/bgp/v1/host/n1/prefix_advertisements/ip_v6": `[{"cidr":"fd00:1::/48","communities":["7:7"]}]`,
			}),
		},
		{
			name:    "badly named configuration",
			yaml:    "kind: BGPConfiguration\nmetadata: {name: other}\nspec: {listenPort: 1}\n",
			noValid: true,
			wantErr: `BGPConfiguration "other": metadata.name must be`,
			want:    defaults,
		},
		{
			name: "node, every field",
			yaml: `
kind: Node
metadata: {name: n1}
spec:
  bgp:
    ipv4Address: 10.192.0.5/16
    ipv6Address: "fd00:192::5/64"
    asNumber: 65001
    routeReflectorClusterID: 224.0.0.1
    ipv4IPIPTunnelAddr: 10.65.1.1
  ipv4VXLANTunnelAddr: 10.65.1.2
  ipv6VXLANTunnelAddr: "fd00:65::2"
  vxlanTunnelMACAddr: "66:aa:bb:cc:dd:ee"
  vxlanTunnelMACAddrV6: "66:aa:bb:cc:dd:ef"
`,
			want: with(map[string]string{
				"/calico/bgp/v1/host/n1/ip_addr_v4":           "10.192.0.5",
				"/calico/bgp/v1/host/n1/network_v4":           "10.192.0.0/16",
				"/calico/bgp/v1/host/n1/ip_addr_v6":           "fd00:192::5",
				"/calico/bgp/v1/host/n1/network_v6":           "fd00:192::/64",
				"/calico/bgp/v1/host/n1/as_num":               "65001",
				"/calico/bgp/v1/host/n1/rr_cluster_id":        "224.0.0.1",
				"/calico/bgp/v1/host/n1/ipip_tunnel_addr_v4":  "10.65.1.1",
				"/calico/bgp/v1/host/n1/vxlan_tunnel_addr_v4": "10.65.1.2",
				"/calico/bgp/v1/host/n1/vxlan_tunnel_addr_v6": "fd00:65::2",
				"/calico/bgp/v1/host/n1/vxlan_tunnel_mac":     "66:aa:bb:cc:dd:ee",
				"/calico/bgp/v1/host/n1/vxlan_tunnel_mac_v6":  "66:aa:bb:cc:dd:ef",
			}),
		},
		{
			name: "node without BGP spec: the always-present keys",
			yaml: "kind: Node\nmetadata: {name: n2}\nspec: {}\n",
			want: with(map[string]string{
				"/calico/bgp/v1/host/n2/ip_addr_v4":    "",
				"/calico/bgp/v1/host/n2/ip_addr_v6":    "",
				"/calico/bgp/v1/host/n2/rr_cluster_id": "",
			}),
		},
		{
			name: "node address without prefix length",
			yaml: "kind: Node\nmetadata: {name: n3}\nspec: {bgp: {ipv4Address: 10.0.0.3}}\n",
			want: with(map[string]string{
				"/calico/bgp/v1/host/n3/ip_addr_v4":    "10.0.0.3",
				"/calico/bgp/v1/host/n3/network_v4":    "10.0.0.3/32",
				"/calico/bgp/v1/host/n3/ip_addr_v6":    "",
				"/calico/bgp/v1/host/n3/rr_cluster_id": "",
			}),
		},
		{
			name:    "node with a bad address keeps the rest",
			yaml:    "kind: Node\nmetadata: {name: n4}\nspec: {bgp: {ipv4Address: 'fd00::1/64', asNumber: 65004}}\n",
			noValid: true,
			wantErr: `Node "n4": spec.bgp.ipv4Address "fd00::1/64"`,
			want: with(map[string]string{
				"/calico/bgp/v1/host/n4/ip_addr_v4":    "",
				"/calico/bgp/v1/host/n4/ip_addr_v6":    "",
				"/calico/bgp/v1/host/n4/as_num":        "65004",
				"/calico/bgp/v1/host/n4/rr_cluster_id": "",
			}),
		},
		{
			name: "pools",
			yaml: `
kind: IPPool
metadata: {name: ipip}
spec: {cidr: 10.65.0.0/16, ipipMode: Always, natOutgoing: true}
---
kind: IPPool
metadata: {name: vxlan6}
spec: {cidr: "fd00:65::/48", vxlanMode: CrossSubnet, disableBGPExport: true}
---
kind: IPPool
metadata: {name: cross-ipip-disabled}
spec: {cidr: 10.66.0.0/16, ipipMode: CrossSubnet, disabled: true, assignmentMode: Manual}
---
kind: IPPool
metadata: {name: plain}
spec: {cidr: 10.67.0.0/16}
`,
			want: with(map[string]string{
				"/calico/v1/ipam/v4/pool/10.65.0.0-16": `{"cidr":"10.65.0.0/16","ipip":"tunl0","ipip_mode":"always","vxlan_mode":"never","masquerade":true,"ipam":true,"disabled":false,"disableBGPExport":false,"assignment_mode":"Automatic"}`,
				"/calico/v1/ipam/v6/pool/fd00:65::-48": `{"cidr":"fd00:65::/48","ipip":"","ipip_mode":"never","vxlan_mode":"cross-subnet","masquerade":false,"ipam":true,"disabled":false,"disableBGPExport":true,"assignment_mode":"Automatic"}`,
				"/calico/v1/ipam/v4/pool/10.66.0.0-16": `{"cidr":"10.66.0.0/16","ipip":"tunl0","ipip_mode":"cross-subnet","vxlan_mode":"never","masquerade":false,"ipam":false,"disabled":true,"disableBGPExport":false,"assignment_mode":"Manual"}`,
				"/calico/v1/ipam/v4/pool/10.67.0.0-16": `{"cidr":"10.67.0.0/16","ipip":"","ipip_mode":"never","vxlan_mode":"never","masquerade":false,"ipam":true,"disabled":false,"disableBGPExport":false,"assignment_mode":"Automatic"}`,
			}),
		},
		{
			name: "affinities: only this node's confirmed and pendingDeletion ones",
			yaml: `
kind: BlockAffinity
metadata: {name: a1}
spec: {node: me, cidr: 10.65.1.0/26, state: confirmed}
---
kind: BlockAffinity
metadata: {name: a2}
spec: {node: me, cidr: 10.65.1.64/26}
---
kind: BlockAffinity
metadata: {name: a3}
spec: {node: me, cidr: 10.65.1.128/26, state: pending}
---
kind: BlockAffinity
metadata: {name: a4}
spec: {node: me, cidr: 10.65.1.192/26, state: pendingDeletion}
---
kind: BlockAffinity
metadata: {name: a5}
spec: {node: me, cidr: 10.65.2.0/26, state: confirmed, deleted: true}
---
kind: BlockAffinity
metadata: {name: a6}
spec: {node: other, cidr: 10.65.3.0/26, state: confirmed}
---
kind: BlockAffinity
metadata: {name: a7}
spec: {node: me, cidr: "fd00:65::/122", state: confirmed}
`,
			want: with(map[string]string{
				"/calico/ipam/v2/host/me/ipv4/block/10.65.1.0-26":   `{"state":"confirmed","deleted":false}`,
				"/calico/ipam/v2/host/me/ipv4/block/10.65.1.64-26":  `{"state":"confirmed","deleted":false}`,
				"/calico/ipam/v2/host/me/ipv4/block/10.65.1.192-26": `{"state":"pendingDeletion","deleted":false}`,
				"/calico/ipam/v2/host/me/ipv6/block/fd00:65::-122":  `{"state":"confirmed","deleted":false}`,
			}),
		},
		{
			name: "peers and filters are not mirrored",
			yaml: `
kind: BGPPeer
metadata: {name: p1}
spec: {peerIP: 192.0.2.1, asNumber: 65100}
---
kind: BGPFilter
metadata: {name: f1}
spec: {exportV4: [{action: Accept, cidr: 10.0.0.0/8, matchOperator: In}]}
`,
			want: defaults,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New()
			m := NewMirror(s, "me")
			var errs []string
			for _, obj := range decode(t, tc.yaml, !tc.noValid) {
				if err := m.Apply("", obj); err != nil {
					errs = append(errs, err.Error())
				}
			}
			joined := strings.Join(errs, "\n")
			if (tc.wantErr == "") != (joined == "") || !strings.Contains(joined, tc.wantErr) {
				t.Errorf("errors = %q, want one containing %q", joined, tc.wantErr)
			}
			diff(t, tc.name, contents(s), tc.want)
		})
	}
}

// step is one Apply: the YAML of the new state, or a key to delete.
type step struct {
	yaml   string
	delete string
	want   map[string]string
}

func runSteps(t *testing.T, steps []step) {
	t.Helper()
	s := New()
	m := NewMirror(s, "me")
	for i, st := range steps {
		if st.delete != "" {
			if err := m.Apply(st.delete, nil); err != nil {
				t.Fatalf("step %d: delete: %v", i, err)
			}
		} else {
			for _, obj := range decode(t, st.yaml, true) {
				if err := m.Apply("", obj); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
		}
		diff(t, "step "+string(rune('0'+i)), contents(s), st.want)
	}
}

func TestMirrorUpdatesAndDeletes(t *testing.T) {
	cfgKey := datastore.ResourceKey(api.KindBGPConfiguration, "", "default")
	nodeCfgKey := datastore.ResourceKey(api.KindBGPConfiguration, "", "node.n1")
	nodeKey := datastore.ResourceKey(api.KindNode, "", "n1")
	t.Run("global configuration", func(t *testing.T) {
		runSteps(t, []step{
			{
				yaml: "kind: BGPConfiguration\nmetadata: {name: default}\nspec: {asNumber: 65000, listenPort: 1790, nodeToNodeMeshEnabled: false, bindMode: NodeIP}\n",
				want: with(map[string]string{
					"/calico/bgp/v1/global/as_num":      "65000",
					"/calico/bgp/v1/global/node_mesh":   `{"enabled":false}`,
					"/calico/bgp/v1/global/listen_port": "1790",
					"/calico/bgp/v1/global/bind_mode":   "NodeIP",
				}),
			},
			{ // fields dropped: listen_port and bind_mode go, as_num and node_mesh return to defaults
				yaml: "kind: BGPConfiguration\nmetadata: {name: default}\nspec: {logSeverityScreen: Debug}\n",
				want: with(map[string]string{"/calico/bgp/v1/global/loglevel": "debug"}),
			},
			{
				yaml: "kind: BGPConfiguration\nmetadata: {name: default}\nspec: {serviceClusterIPs: [{cidr: 10.96.0.0/12}]}\n",
				want: with(map[string]string{"/calico/bgp/v1/global/svc_cluster_ips": "10.96.0.0/12"}),
			},
			{delete: cfgKey, want: defaults}, // deleted: the defaults stay
		})
	})
	t.Run("node and its override", func(t *testing.T) {
		runSteps(t, []step{
			{
				yaml: "kind: Node\nmetadata: {name: n1}\nspec: {bgp: {ipv4Address: 10.0.0.1/24, asNumber: 65001, routeReflectorClusterID: 1.1.1.1}}\n" +
					"---\nkind: BGPConfiguration\nmetadata: {name: node.n1}\nspec: {listenPort: 1791}\n",
				want: with(map[string]string{
					"/calico/bgp/v1/host/n1/ip_addr_v4":    "10.0.0.1",
					"/calico/bgp/v1/host/n1/network_v4":    "10.0.0.0/24",
					"/calico/bgp/v1/host/n1/ip_addr_v6":    "",
					"/calico/bgp/v1/host/n1/as_num":        "65001",
					"/calico/bgp/v1/host/n1/rr_cluster_id": "1.1.1.1",
					"/calico/bgp/v1/host/n1/listen_port":   "1791",
				}),
			},
			{ // AS and RR dropped, address moved
				yaml: "kind: Node\nmetadata: {name: n1}\nspec: {bgp: {ipv4Address: 10.1.0.1/16}}\n",
				want: with(map[string]string{
					"/calico/bgp/v1/host/n1/ip_addr_v4":    "10.1.0.1",
					"/calico/bgp/v1/host/n1/network_v4":    "10.1.0.0/16",
					"/calico/bgp/v1/host/n1/ip_addr_v6":    "",
					"/calico/bgp/v1/host/n1/rr_cluster_id": "",
					"/calico/bgp/v1/host/n1/listen_port":   "1791",
				}),
			},
			{ // the node goes; its override (another resource) stays
				delete: nodeKey,
				want:   with(map[string]string{"/calico/bgp/v1/host/n1/listen_port": "1791"}),
			},
			{delete: nodeCfgKey, want: defaults},
			{delete: nodeCfgKey, want: defaults}, // deleting twice is harmless
		})
	})
	t.Run("affinity confirmed, then pendingDeletion (still routed), then gone", func(t *testing.T) {
		blk := "/calico/ipam/v2/host/me/ipv4/block/10.65.1.0-26"
		runSteps(t, []step{
			{yaml: "kind: BlockAffinity\nmetadata: {name: a}\nspec: {node: me, cidr: 10.65.1.0/26, state: pending}\n", want: defaults},
			{yaml: "kind: BlockAffinity\nmetadata: {name: a}\nspec: {node: me, cidr: 10.65.1.0/26, state: confirmed}\n",
				want: with(map[string]string{blk: AffinityValue})},
			{yaml: "kind: BlockAffinity\nmetadata: {name: a}\nspec: {node: me, cidr: 10.65.1.0/26, state: pendingDeletion}\n",
				want: with(map[string]string{blk: PendingDeletionAffinityValue})},
			{yaml: "kind: BlockAffinity\nmetadata: {name: a}\nspec: {node: me, cidr: 10.65.1.0/26, state: pendingDeletion, deleted: true}\n", want: defaults},
			{yaml: "kind: BlockAffinity\nmetadata: {name: a}\nspec: {node: me, cidr: 10.65.1.0/26, state: confirmed}\n",
				want: with(map[string]string{blk: AffinityValue})},
			{delete: blk, want: defaults},
		})
	})
	t.Run("pool mode change and delete", func(t *testing.T) {
		runSteps(t, []step{
			{yaml: "kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.65.0.0/16, vxlanMode: Always}\n",
				want: with(map[string]string{"/calico/v1/ipam/v4/pool/10.65.0.0-16": `{"cidr":"10.65.0.0/16","ipip":"","ipip_mode":"never","vxlan_mode":"always","masquerade":false,"ipam":true,"disabled":false,"disableBGPExport":false,"assignment_mode":"Automatic"}`})},
			{yaml: "kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.65.0.0/16, ipipMode: Always}\n",
				want: with(map[string]string{"/calico/v1/ipam/v4/pool/10.65.0.0-16": `{"cidr":"10.65.0.0/16","ipip":"tunl0","ipip_mode":"always","vxlan_mode":"never","masquerade":false,"ipam":true,"disabled":false,"disableBGPExport":false,"assignment_mode":"Automatic"}`})},
			{delete: datastore.ResourceKey(api.KindIPPool, "", "p"), want: defaults},
		})
	})
}

func TestMirrorSharedKey(t *testing.T) {
	// Two pools with one CIDR: the latest writer shows; the key lives until both go.
	s := New()
	m := NewMirror(s, "me")
	objs := decode(t, "kind: IPPool\nmetadata: {name: a}\nspec: {cidr: 10.65.0.0/16, natOutgoing: true}\n"+
		"---\nkind: IPPool\nmetadata: {name: b}\nspec: {cidr: 10.65.0.0/16}\n", true)
	for _, o := range objs {
		m.Apply("", o)
	}
	k := "/calico/v1/ipam/v4/pool/10.65.0.0-16"
	if v, _ := s.GetValue(k); !strings.Contains(v, `"masquerade":false`) {
		t.Fatalf("latest writer should win: %s", v)
	}
	m.Apply(datastore.ResourceKey(api.KindIPPool, "", "b"), nil)
	if v, _ := s.GetValue(k); !strings.Contains(v, `"masquerade":true`) {
		t.Fatalf("after deleting b, a's value should show: %q", v)
	}
	m.Apply(datastore.ResourceKey(api.KindIPPool, "", "a"), nil)
	if s.Exists(k) {
		t.Fatal("key should be gone with both pools")
	}
	if got := m.DatastoreKeys(); len(got) != 1 || got[0] != datastore.ResourceKey(api.KindBGPConfiguration, "", "default") {
		t.Fatalf("DatastoreKeys = %v", got)
	}
}

func TestMirrorGenerationAndErrors(t *testing.T) {
	s := New()
	m := NewMirror(s, "me")
	node := decode(t, "kind: Node\nmetadata: {name: n1}\nspec: {bgp: {ipv4Address: 10.0.0.1/24}}\n", true)[0]
	if err := m.Apply("", node); err != nil {
		t.Fatal(err)
	}
	g := s.Generation()
	if err := m.Apply("", node); err != nil || s.Generation() != g {
		t.Fatalf("re-applying an identical node changed the store (err %v)", err)
	}
	// A key of another kind is refused and changes nothing.
	err := m.Apply(datastore.ResourceKey(api.KindIPPool, "", "x"), node)
	if err == nil || !strings.Contains(err.Error(), "holds a IPPool, not a Node") || s.Generation() != g {
		t.Fatalf("kind mismatch: err %v", err)
	}
	if err := m.Apply("/not/a/calico/key", node); err == nil {
		t.Fatal("bad key accepted")
	}
	if err := m.Apply("/not/a/calico/key", nil); err != nil || s.Generation() != g {
		t.Fatalf("deleting an unknown key: %v", err)
	}
	if err := m.Apply("", nil); err == nil {
		t.Fatal("Apply with nothing accepted")
	}
}

func TestMirrorUndefaultedGlobal(t *testing.T) {
	// Minimal JSON read from etcd is not defaulted: the mirror falls back
	// to Calico's defaults itself.
	s := New()
	m := NewMirror(s, "me")
	cfg := &api.BGPConfiguration{}
	cfg.Metadata.Name = "default"
	if err := m.Apply("", cfg); err != nil {
		t.Fatal(err)
	}
	diff(t, "empty default", contents(s), defaults)
}

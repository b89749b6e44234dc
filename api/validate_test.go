package api

import (
	"errors"
	"strings"
	"testing"
)

// Each bad input must be rejected with an error naming the field and value.
func TestValidationRejects(t *testing.T) {
	tests := []struct {
		name, in, field, value string
	}{
		{"name uppercase", "kind: Node\nmetadata: {name: Node1}", "metadata.name", `"Node1"`},
		{"name missing", "kind: Node\nmetadata: {}", "metadata.name", ""},
		{"namespace on cluster kind", "kind: Node\nmetadata: {name: n, namespace: x}", "metadata.namespace", `"x"`},
		{"wep namespace", "kind: WorkloadEndpoint\nmetadata: {name: w, namespace: Bad_NS}", "metadata.namespace", `"Bad_NS"`},
		{"label key", "kind: Node\nmetadata: {name: n, labels: {'a b': c}}", "metadata.labels", `"a b"`},
		{"label value", "kind: Node\nmetadata: {name: n, labels: {a: 'x y'}}", "metadata.labels.a", `"x y"`},
		{"node v4 address", "kind: Node\nmetadata: {name: n}\nspec: {bgp: {ipv4Address: 10.0.0.300/24}}", "spec.bgp.ipv4Address", `"10.0.0.300/24"`},
		{"node v6 in v4 field", "kind: Node\nmetadata: {name: n}\nspec: {bgp: {ipv4Address: 'fd00::1/64'}}", "spec.bgp.ipv4Address", `"fd00::1/64"`},
		{"node v4 in v6 field", "kind: Node\nmetadata: {name: n}\nspec: {bgp: {ipv6Address: 10.0.0.1}}", "spec.bgp.ipv6Address", `"10.0.0.1"`},
		{"rr cluster id", "kind: Node\nmetadata: {name: n}\nspec: {bgp: {routeReflectorClusterID: rr1}}", "spec.bgp.routeReflectorClusterID", `"rr1"`},
		{"vxlan mac", "kind: Node\nmetadata: {name: n}\nspec: {vxlanTunnelMACAddr: 66:zz}", "spec.vxlanTunnelMACAddr", `"66:zz"`},
		{"peer ip", "kind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: 10.0.0, asNumber: 1}", "spec.peerIP", `"10.0.0"`},
		{"peer ip port 0", "kind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: '10.0.0.1:0', asNumber: 1}", "spec.peerIP", `"10.0.0.1:0"`},
		{"peer v6 port unbracketed", "kind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: 'fd00::1:1790:x', asNumber: 1}", "spec.peerIP", ""},
		{"peer v6 bad port", "kind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: '[fd00::1]:99999', asNumber: 1}", "spec.peerIP", ""},
		{"peer needs ip or selector", "kind: BGPPeer\nmetadata: {name: p}\nspec: {asNumber: 1}", "spec.peerIP", ""},
		{"peer ip and selector", "kind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: 10.0.0.1, asNumber: 1, peerSelector: all()}", "spec.peerSelector", `"all()"`},
		{"node and nodeSelector", "kind: BGPPeer\nmetadata: {name: p}\nspec: {node: a, nodeSelector: all(), peerIP: 10.0.0.1, asNumber: 1}", "spec.nodeSelector", ""},
		{"bad selector", "kind: BGPPeer\nmetadata: {name: p}\nspec: {peerSelector: 'a == '}", "spec.peerSelector", `"a == "`},
		{"next hop enum", "kind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: 10.0.0.1, asNumber: 1, nextHopMode: self}", "spec.nextHopMode", `"self"`},
		{"keepOriginal conflicts", "kind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: 10.0.0.1, asNumber: 1, nextHopMode: Self, keepOriginalNextHop: true}", "spec.keepOriginalNextHop", ""},
		{"source address enum", "kind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: 10.0.0.1, asNumber: 1, sourceAddress: NodeIP}", "spec.sourceAddress", `"NodeIP"`},
		{"reverse peering enum", "kind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: 10.0.0.1, asNumber: 1, reversePeering: \"Off\"}", "spec.reversePeering", `"Off"`},
		{"ttl range", "kind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: 10.0.0.1, asNumber: 1, ttlSecurity: 256}", "spec.ttlSecurity", "256"},
		{"allow local as", "kind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: 10.0.0.1, asNumber: 1, numAllowedLocalASNumbers: -1}", "spec.numAllowedLocalASNumbers", "-1"},
		{"reachableBy family", "kind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: 10.0.0.1, asNumber: 1, reachableBy: 'fd00::1'}", "spec.reachableBy", `"fd00::1"`},
		{"filter name", "kind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: 10.0.0.1, asNumber: 1, filters: ['Bad\"Name']}", "spec.filters[0]", `"Bad\"Name"`},
		{"password needs ref", "kind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: 10.0.0.1, asNumber: 1, password: {}}", "spec.password.secretKeyRef", ""},
		{"password key", "kind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: 10.0.0.1, asNumber: 1, password: {secretKeyRef: {name: s, key: 'a\"b'}}}", "spec.password.secretKeyRef.key", `"a\"b"`},
		{"pool cidr", "kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0}", "spec.cidr", `"10.0.0.0"`},
		{"pool block size", "kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, blockSize: 33}", "spec.blockSize", "33"},
		{"pool smaller than block", "kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/28}", "spec.cidr", `"10.0.0.0/28"`},
		{"pool ipip enum", "kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, ipipMode: always}", "spec.ipipMode", `"always"`},
		{"pool ipip and vxlan", "kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, ipipMode: Always, vxlanMode: Always}", "spec.vxlanMode", `"Always"`},
		{"pool v6 ipip", "kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 'fd00::/48', ipipMode: Always}", "spec.ipipMode", `"Always"`},
		{"pool uses", "kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, allowedUses: [Pods]}", "spec.allowedUses[0]", `"Pods"`},
		{"config name", "kind: BGPConfiguration\nmetadata: {name: mine}", "metadata.name", `"mine"`},
		{"config log level", "kind: BGPConfiguration\nmetadata: {name: default}\nspec: {logSeverityScreen: Verbose}", "spec.logSeverityScreen", `"Verbose"`},
		{"config bind mode", "kind: BGPConfiguration\nmetadata: {name: default}\nspec: {bindMode: Any}", "spec.bindMode", `"Any"`},
		{"node config mesh", "kind: BGPConfiguration\nmetadata: {name: node.a}\nspec: {nodeToNodeMeshEnabled: false}", "spec.nodeToNodeMeshEnabled", "false"},
		{"community value", "kind: BGPConfiguration\nmetadata: {name: default}\nspec: {communities: [{name: c, value: '65536:1'}]}", "spec.communities[0].value", `"65536:1"`},
		{"large community", "kind: BGPConfiguration\nmetadata: {name: default}\nspec: {communities: [{name: c, value: '1:2:4294967296'}]}", "spec.communities[0].value", ""},
		{"advert community name", "kind: BGPConfiguration\nmetadata: {name: default}\nspec: {prefixAdvertisements: [{cidr: 10.0.0.0/8, communities: [nosuch]}]}", "spec.prefixAdvertisements[0].communities[0]", `"nosuch"`},
		{"service cidr", "kind: BGPConfiguration\nmetadata: {name: default}\nspec: {serviceClusterIPs: [{cidr: 10.96.0.0/33}]}", "spec.serviceClusterIPs[0].cidr", `"10.96.0.0/33"`},
		{"ignored iface quote", "kind: BGPConfiguration\nmetadata: {name: default}\nspec: {ignoredInterfaces: ['eth\"0']}", "spec.ignoredInterfaces[0]", ""},
		{"filter action", "kind: BGPFilter\nmetadata: {name: f}\nspec: {exportV4: [{action: Allow}]}", "spec.exportV4[0].action", `"Allow"`},
		{"filter v6 cidr in v4", "kind: BGPFilter\nmetadata: {name: f}\nspec: {exportV4: [{action: Accept, cidr: 'fd00::/8', matchOperator: In}]}", "spec.exportV4[0].cidr", ""},
		{"filter op needs cidr", "kind: BGPFilter\nmetadata: {name: f}\nspec: {importV4: [{action: Accept, matchOperator: In}]}", "spec.importV4[0].cidr", ""},
		{"filter prefix len", "kind: BGPFilter\nmetadata: {name: f}\nspec: {importV4: [{action: Accept, cidr: 10.0.0.0/16, matchOperator: In, prefixLength: {min: 8}}]}", "spec.importV4[0].prefixLength.min", "8"},
		{"filter source", "kind: BGPFilter\nmetadata: {name: f}\nspec: {exportV6: [{action: Reject, source: Everyone}]}", "spec.exportV6[0].source", `"Everyone"`},
		{"filter peer type", "kind: BGPFilter\nmetadata: {name: f}\nspec: {exportV4: [{action: Reject, peerType: external}]}", "spec.exportV4[0].peerType", `"external"`},
		{"filter op count", "kind: BGPFilter\nmetadata: {name: f}\nspec: {exportV4: [{action: Accept, operations: [{}]}]}", "spec.exportV4[0].operations[0]", ""},
		{"affinity state", "kind: BlockAffinity\nmetadata: {name: a}\nspec: {node: n, cidr: 10.0.0.0/26, state: maybe}", "spec.state", `"maybe"`},
		{"wep network", "kind: WorkloadEndpoint\nmetadata: {name: w, namespace: default}\nspec: {ipNetworks: [10.0.0.1]}", "spec.ipNetworks[0]", `"10.0.0.1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeAll([]byte(tt.in), "", DecodeOptions{})
			if err == nil {
				t.Fatal("accepted")
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("no FieldError in %v", err)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name field %s", err, tt.field)
			}
			if tt.value != "" && !strings.Contains(err.Error(), tt.value) {
				t.Errorf("error %q does not show value %s", err, tt.value)
			}
			kind := strings.TrimPrefix(strings.SplitN(tt.in, "\n", 2)[0], "kind: ")
			if fe.Kind != kind {
				t.Errorf("error names kind %q, want %q", fe.Kind, kind)
			}
		})
	}
}

func TestValidationAccepts(t *testing.T) {
	for _, in := range []string{
		"kind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: '[fd00::1]:1790', asNumber: '65000.1', reachableBy: 'fd00::fe'}",
		"kind: BGPPeer\nmetadata: {name: p}\nspec: {peerSelector: has(rr), nodeSelector: \"zone in {'a','b'}\", reversePeering: Manual}",
		"kind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: 10.0.0.1, asNumber: 4294967295, keepOriginalNextHop: true, ttlSecurity: 2, maxRestartTime: 2m}",
		"kind: BGPConfiguration\nmetadata: {name: node.node-1}\nspec: {listenPort: 1790, logSeverityScreen: debug, prefixAdvertisements: [{cidr: 'fd00::/64', communities: ['1:2:3']}]}",
		"kind: BGPConfiguration\nmetadata: {name: default}\nspec: {communities: [{name: web, value: '65000:100'}], prefixAdvertisements: [{cidr: 10.0.0.0/8, communities: [web, '1:1']}], ignoredInterfaces: ['eth*', 'vlan[0-9]']}",
		"kind: BGPFilter\nmetadata: {name: f}\nspec: {exportV4: [{action: accept, cidr: 10.0.0.0/8, matchOperator: in, prefixLength: {min: 16, max: 32}, interface: 'eth*', operations: [{addCommunity: {value: '1:2'}}, {prependASPath: {prefix: [65000]}}, {setPriority: {value: 10}}]}]}",
		"kind: IPPool\nmetadata: {name: v6}\nspec: {cidr: 'fd00:10::/48', vxlanMode: Always}",
		"kind: WorkloadEndpoint\nmetadata: {name: node1-k8s-Pod--name-eth0, namespace: kube-system}\nspec: {node: node1, ipNetworks: [10.0.0.1/32], interfaceName: cali0123456789a}",
	} {
		if _, err := DecodeAll([]byte(in), "", DecodeOptions{}); err != nil {
			t.Errorf("%s\nrejected: %v", in, err)
		}
	}
}

func TestASNumber(t *testing.T) {
	for in, want := range map[string]uint32{"1": 1, "64512": 64512, "4294967295": 4294967295, "1.10": 65546, "0.1": 1, "65535.65535": 4294967295} {
		got, err := ParseASNumber(in)
		if err != nil || uint32(got) != want {
			t.Errorf("ParseASNumber(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "0.0", "4294967296", "-1", "1.65536", "a", "1.2.3", ""} {
		if _, err := ParseASNumber(in); err == nil {
			t.Errorf("ParseASNumber(%q) accepted", in)
		}
	}
}

func TestParseIPPort(t *testing.T) {
	tests := []struct {
		in   string
		ip   string
		port uint16
		ok   bool
	}{
		{"10.0.0.1", "10.0.0.1", 0, true},
		{"10.0.0.1:1790", "10.0.0.1", 1790, true},
		{"fd00::1", "fd00::1", 0, true},
		{"[fd00::1]:179", "fd00::1", 179, true},
		{"[fd00::1]", "", 0, false},
		{"10.0.0.1:", "", 0, false},
		{"10.0.0.1:65536", "", 0, false},
		{"fe80::1%eth0", "", 0, false},
		{"host:179", "", 0, false},
	}
	for _, tt := range tests {
		ip, port, err := ParseIPPort(tt.in)
		if (err == nil) != tt.ok || (tt.ok && (ip.String() != tt.ip || port != tt.port)) {
			t.Errorf("ParseIPPort(%q) = %v, %d, %v", tt.in, ip, port, err)
		}
	}
}

func TestValidCommunity(t *testing.T) {
	for in, want := range map[string]bool{"65000:100": true, "0:0": true, "65536:1": false, "1:2:3": true,
		"4294967295:4294967295:4294967295": true, "1:2:3:4": false, "a:b": false, "1": false, "": false, "1:-1": false} {
		if ValidCommunity(in) != want {
			t.Errorf("ValidCommunity(%q) != %v", in, want)
		}
	}
}

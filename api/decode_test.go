package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func decodeOne(t *testing.T, in string) Resource {
	t.Helper()
	objs, err := DecodeAll([]byte(in), "test.yaml", DecodeOptions{})
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if len(objs) != 1 {
		t.Fatalf("got %d objects, want 1", len(objs))
	}
	return objs[0]
}

func TestDecodeCalicoctlShapes(t *testing.T) {
	in := `
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  logSeverityScreen: Info
  asNumber: 63400
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: rack1-tor
spec:
  peerIP: 192.20.30.40
  asNumber: "1.10"
  nodeSelector: rack == 'rack-1'
  keepaliveTime: 10s
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: pool1
spec:
  cidr: 10.65.1.7/16
  ipipMode: CrossSubnet
  natOutgoing: true
---
apiVersion: projectcalico.org/v3
kind: BGPPeerList
items:
- metadata: {name: p1}
  spec: {peerIP: "10.0.0.1:1790", asNumber: 65001}
- kind: BGPPeer
  apiVersion: projectcalico.org/v3
  metadata: {name: p2}
  spec: {peerIP: "[fd00::1]:1790", asNumber: 65002}
---
apiVersion: v1
kind: List
items:
- apiVersion: projectcalico.org/v3
  kind: Node
  metadata: {name: node1, labels: {rack: rack-1}}
  spec: {bgp: {ipv4Address: 10.0.0.1/24, asNumber: 64513}}
`
	docs := Decode([]byte(in), "in.yaml", DecodeOptions{})
	if len(docs) != 6 {
		for _, d := range docs {
			t.Logf("%s: %v", d.Where(), d.Err)
		}
		t.Fatalf("got %d documents, want 6", len(docs))
	}
	for _, d := range docs {
		if d.Err != nil {
			t.Fatalf("%s: %v", d.Where(), d.Err)
		}
	}
	cfg := docs[0].Object.(*BGPConfiguration)
	if *cfg.Spec.ASNumber != 63400 || cfg.Spec.NodeToNodeMeshEnabled == nil || !*cfg.Spec.NodeToNodeMeshEnabled {
		t.Errorf("BGPConfiguration defaults: %+v", cfg.Spec)
	}
	peer := docs[1].Object.(*BGPPeer)
	if peer.Spec.ASNumber != 65536+10 || peer.Spec.KeepaliveTime.Seconds() != 10 {
		t.Errorf("asdot / duration: %+v", peer.Spec)
	}
	pool := docs[2].Object.(*IPPool)
	want := IPPoolSpec{CIDR: "10.65.0.0/16", IPIPMode: "CrossSubnet", VXLANMode: "Never", NATOutgoing: true,
		BlockSize: 26, NodeSelector: "all()", AllowedUses: []string{"Workload", "Tunnel"}, AssignmentMode: "Automatic"}
	if !reflect.DeepEqual(pool.Spec, want) {
		t.Errorf("pool defaults:\n got %+v\nwant %+v", pool.Spec, want)
	}
	if docs[3].Item != 0 || docs[4].Item != 1 || docs[4].Object.(*BGPPeer).Spec.PeerIP != "[fd00::1]:1790" {
		t.Errorf("typed list items: %+v %+v", docs[3], docs[4])
	}
	if n := docs[5].Object.(*Node); n.Metadata.Labels["rack"] != "rack-1" || *n.Spec.BGP.ASNumber != 64513 {
		t.Errorf("node in List: %+v", n)
	}
}

func TestDecodeJSONStreamAndArray(t *testing.T) {
	for name, in := range map[string]string{
		"stream": `{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{"name":"a"},"spec":{"cidr":"10.0.0.0/16"}}
			{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{"name":"b"},"spec":{"cidr":"10.1.0.0/16"}}`,
		"array": "[\n\t{\"kind\":\"IPPool\",\"metadata\":{\"name\":\"a\"},\"spec\":{\"cidr\":\"10.0.0.0/16\"}},\n\t{\"kind\":\"IPPool\",\"metadata\":{\"name\":\"b\"},\"spec\":{\"cidr\":\"10.1.0.0/16\"}}]",
	} {
		objs, err := DecodeAll([]byte(in), "x.json", DecodeOptions{})
		if err != nil || len(objs) != 2 || objs[1].Meta().Name != "b" {
			t.Errorf("%s: %v %v", name, objs, err)
		}
	}
}

// Every problem names kind, name, field and value, and (for YAML) the line.
func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"unknown field with suggestion", "kind: BGPPeer\nmetadata: {name: p}\nspec:\n  peerIP: 10.0.0.1\n  asNumber: 1\n  nodeSelectr: all()\n",
			[]string{`BGPPeer "p"`, "spec.nodeSelectr", "unknown field", `did you mean "nodeSelector"`, "line 6"}},
		{"wrong case is unknown", "kind: IPPool\nmetadata: {name: p}\nspec: {CIDR: 10.0.0.0/8}\n", []string{"spec.CIDR", `did you mean "cidr"`}},
		{"nested unknown", "kind: Node\nmetadata: {name: n}\nspec: {bgp: {ipv4Adress: 10.0.0.1}}\n", []string{"spec.bgp.ipv4Adress"}},
		{"bad AS", "kind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: 10.0.0.1, asNumber: 4294967296}\n", []string{"spec.asNumber", "4294967296", "1-4294967295"}},
		{"AS zero", "kind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: 10.0.0.1, asNumber: 0}\n", []string{"spec.asNumber"}},
		{"bad asdot", "kind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: 10.0.0.1, asNumber: '1.70000'}\n", []string{"spec.asNumber", "asdot"}},
		{"bad duration", "kind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: 10.0.0.1, asNumber: 1, keepaliveTime: 10}\n", []string{"spec.keepaliveTime", "duration"}},
		{"bad duration string", "kind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: 10.0.0.1, asNumber: 1, maxRestartTime: tenseconds}\n", []string{"spec.maxRestartTime", `"tenseconds"`}},
		{"port out of range", "kind: BGPConfiguration\nmetadata: {name: default}\nspec: {listenPort: 70000}\n", []string{"spec.listenPort", "70000"}},
		{"bool as string", "kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/8, natOutgoing: 'yes'}\n", []string{"spec.natOutgoing", "true or false"}},
		{"unknown kind", "kind: BGPPear\nmetadata: {name: p}\n", []string{"kind", "BGPPear", "unknown kind"}},
		{"wrong apiVersion", "kind: IPPool\napiVersion: crd.projectcalico.org/v1\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/8}\n", []string{"apiVersion", "projectcalico.org/v3"}},
		{"not a mapping", "- a\n- b\n", []string{"mapping"}},
		{"semantic", "kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/33}\n", []string{`IPPool "p"`, "spec.cidr", `"10.0.0.0/33"`, "CIDR"}},
		// A key given twice: YAML parsers let the last win silently.
		{"duplicate spec key", "kind: BGPPeer\nmetadata: {name: p}\nspec:\n  peerIP: 10.0.0.1\n  asNumber: 1\n  asNumber: 2\n",
			[]string{`BGPPeer "p"`, "spec.asNumber: duplicate key, on lines 5 and 6"}},
		{"duplicate top-level key", "kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/8}\nspec: {cidr: 10.1.0.0/16}\n",
			[]string{`IPPool "p"`, "spec: duplicate key, on lines 3 and 4"}},
		{"duplicate kind", "kind: IPPool\nkind: BGPPeer\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/8}\n", []string{"kind: duplicate key, on lines 1 and 2"}},
		{"duplicate name", "kind: IPPool\nmetadata:\n  name: a\n  name: b\nspec: {cidr: 10.0.0.0/8}\n", []string{"metadata.name: duplicate key, on lines 3 and 4"}},
		{"duplicate label", "kind: Node\nmetadata: {name: n, labels: {rack: a, rack: b}}\n", []string{"metadata.labels.rack: duplicate key, on lines 2 and 2"}},
		{"duplicate in a list item", "kind: BGPFilter\nmetadata: {name: f}\nspec:\n  exportV4:\n  - action: Accept\n    action: Reject\n    matchOperator: In\n    cidr: 10.0.0.0/8\n",
			[]string{"spec.exportV4[0].action: duplicate key, on lines 5 and 6"}},
		{"duplicate free-form key", "kind: Node\nmetadata:\n  name: n\n  managedFields:\n  - {manager: a, manager: b}\n", []string{"metadata.managedFields[0].manager: duplicate key, on lines 5 and 5"}},
		{"duplicate list items", "kind: List\nitems: []\nitems:\n- kind: Node\n  metadata: {name: n}\n", []string{"items: duplicate key, on lines 2 and 3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeAll([]byte(tt.in), "f.yaml", DecodeOptions{})
			if err == nil {
				t.Fatal("expected an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), "f.yaml") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestDecodeSkipsInvalidKeepsValid(t *testing.T) {
	in := "kind: IPPool\nmetadata: {name: good1}\nspec: {cidr: 10.0.0.0/16}\n---\nkind: IPPool\nmetadata: {name: bad}\nspec: {cidr: nope}\n---\nkind: IPPool\nmetadata: {name: good2}\nspec: {cidr: 10.1.0.0/16}\n"
	docs := Decode([]byte(in), "p.yaml", DecodeOptions{})
	if len(docs) != 3 || docs[0].Err != nil || docs[1].Err == nil || docs[2].Err != nil {
		t.Fatalf("docs: %+v", docs)
	}
	if !strings.Contains(docs[1].Err.Error(), "p.yaml:5 (document 2)") {
		t.Errorf("error should name file, line and document: %v", docs[1].Err)
	}
	var fe *FieldError
	if !errors.As(docs[1].Err, &fe) || fe.Kind != KindIPPool || fe.Name != "bad" || fe.Field != "spec.cidr" || fe.Value != "nope" {
		t.Errorf("structured error: %#v", fe)
	}
	if _, err := DecodeAll([]byte(in), "p.yaml", DecodeOptions{}); err == nil {
		t.Error("DecodeAll must fail when any document is invalid")
	}
}

func TestYAMLSyntaxErrorLine(t *testing.T) {
	in := "kind: IPPool\nmetadata: {name: a}\nspec: {cidr: 10.0.0.0/16}\n---\nkind: IPPool\nmetadata:\n  name: b\n spec: [\n"
	docs := Decode([]byte(in), "s.yaml", DecodeOptions{})
	last := docs[len(docs)-1]
	if docs[0].Err != nil || last.Err == nil {
		t.Fatalf("want first doc ok and a syntax error: %+v", docs)
	}
	// yaml.v3 reports the line of the block that fails to parse (here
	// the mapping opened on line 7), counted from the start of the stream.
	if last.Line < 6 || last.Line > 8 || !strings.Contains(last.Err.Error(), fmt.Sprintf("s.yaml:%d", last.Line)) ||
		!strings.Contains(last.Err.Error(), "YAML syntax error") {
		t.Errorf("syntax error should carry file:line of the second document: line %d: %v", last.Line, last.Err)
	}
}

// Values Calico itself writes to etcd decode and re-encode without loss.
func TestCalicoJSONRoundTrip(t *testing.T) {
	tests := []struct {
		kind, in string
	}{
		{KindNode, `{"kind":"Node","apiVersion":"projectcalico.org/v3","metadata":{"name":"node1","uid":"3c0b5c3e-1b3c-4c2c-9d9e-7f8a1c2b3d4e","creationTimestamp":"2024-03-01T10:00:00Z","labels":{"kubernetes.io/hostname":"node1"}},"spec":{"bgp":{"ipv4Address":"10.192.0.2/16","ipv4IPIPTunnelAddr":"192.168.166.128"},"orchRefs":[{"nodeName":"node1","orchestrator":"k8s"}]},"status":{}}`},
		{KindIPPool, `{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{"name":"default-ipv4-ippool","uid":"u1","creationTimestamp":"2024-03-01T10:00:00Z"},"spec":{"cidr":"192.168.0.0/16","vxlanMode":"Never","ipipMode":"Always","natOutgoing":true,"blockSize":26,"nodeSelector":"all()","allowedUses":["Workload","Tunnel"]}}`},
		{KindBGPPeer, `{"kind":"BGPPeer","apiVersion":"projectcalico.org/v3","metadata":{"name":"peer1"},"spec":{"peerIP":"10.0.0.9","asNumber":65001,"password":{"secretKeyRef":{"name":"bgp-secrets","key":"peer1"}},"filters":["f1"]}}`},
	}
	for _, tt := range tests {
		obj, err := DecodeJSON(tt.kind, []byte(tt.in), DecodeOptions{NoDefaults: true})
		if err != nil {
			t.Fatalf("%s: %v", tt.kind, err)
		}
		out, err := MarshalJSON(obj)
		if err != nil {
			t.Fatal(err)
		}
		var a, b any
		json.Unmarshal([]byte(tt.in), &a)
		json.Unmarshal(out, &b)
		// Calico writes "status":{} which we drop as empty; compare the rest.
		if m, ok := a.(map[string]any); ok {
			if s, ok := m["status"].(map[string]any); ok && len(s) == 0 {
				delete(m, "status")
			}
		}
		if m, ok := b.(map[string]any); ok {
			if s, ok := m["status"].(map[string]any); ok && len(s) == 0 {
				delete(m, "status")
			}
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s round trip:\n in %s\nout %s", tt.kind, tt.in, out)
		}
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	in := "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: p\n  labels:\n    num: \"123\"\nspec:\n  peerIP: 10.0.0.1\n  asNumber: 65001\n  filters:\n  - \"true\"\n"
	obj := decodeOne(t, in)
	out, err := MarshalYAML(obj)
	if err != nil {
		t.Fatal(err)
	}
	back := decodeOne(t, string(out))
	if !reflect.DeepEqual(obj, back) {
		t.Errorf("YAML round trip changed the object:\n%s", out)
	}
	if !strings.HasPrefix(string(out), "kind: BGPPeer\napiVersion: projectcalico.org/v3\n") {
		t.Errorf("kind and apiVersion should lead:\n%s", out)
	}
}

func TestWorkloadEndpointNamespaceDefaults(t *testing.T) {
	w := decodeOne(t, "kind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {node: n1}\n")
	if w.Meta().Namespace != "default" {
		t.Errorf("namespace = %q, want default (as calicoctl)", w.Meta().Namespace)
	}
}

func TestCloneIsDeep(t *testing.T) {
	n := decodeOne(t, "kind: Node\nmetadata: {name: n, labels: {a: b}}\nspec: {bgp: {ipv4Address: 10.0.0.1/24}}\n").(*Node)
	c := Clone(n)
	c.Metadata.Labels["a"] = "changed"
	c.Spec.BGP.IPv4Address = "10.0.0.2/24"
	if n.Metadata.Labels["a"] != "b" || n.Spec.BGP.IPv4Address != "10.0.0.1/24" {
		t.Error("Clone shares memory with the original")
	}
}

func TestMarshalDoesNotModify(t *testing.T) {
	p := &BGPPeer{Metadata: ObjectMeta{Name: "p", ResourceVersion: "7"}, Spec: BGPPeerSpec{PeerIP: "10.0.0.1", ASNumber: 1}}
	b, err := MarshalStored(p)
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind != "" || p.Metadata.ResourceVersion != "7" {
		t.Errorf("MarshalStored modified its argument: %+v", p)
	}
	if s := string(b); !strings.Contains(s, `"kind":"BGPPeer"`) || strings.Contains(s, "resourceVersion") {
		t.Errorf("stored form: %s", s)
	}
}

func TestAllocationBlockRelease(t *testing.T) {
	i0, i1, i2 := 0, 1, 2
	h := func(s string) *string { return &s }
	b := &AllocationBlock{
		CIDR:        "10.0.0.0/30",
		Allocations: []*int{&i0, &i1, &i2, nil},
		Unallocated: []int{3},
		Attributes:  []AllocationAttribute{{HandleID: h("a")}, {HandleID: h("b")}, {HandleID: h("c")}},
	}
	b.Release([]int{1, 3, 9})
	if b.Allocations[1] != nil || len(b.Attributes) != 2 || *b.Attributes[1].HandleID != "c" || *b.Allocations[2] != 1 || *b.Allocations[0] != 0 {
		t.Errorf("after release: allocations %v attributes %v", b.Allocations, b.Attributes)
	}
	if len(b.Unallocated) != 2 || b.SequenceNumber != 1 {
		t.Errorf("unallocated %v seq %d", b.Unallocated, b.SequenceNumber)
	}
}

// A merge key ("<<: *anchor") and a key that overrides a merged one are
// not duplicates.
func TestMergeKeysAreNotDuplicates(t *testing.T) {
	in := "kind: BGPPeer\nmetadata: {name: p}\nspec:\n  <<: {peerIP: 10.0.0.1, asNumber: 1}\n  asNumber: 2\n"
	objs, err := DecodeAll([]byte(in), "f.yaml", DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p := objs[0].(*BGPPeer); p.Spec.ASNumber.String() != "2" || p.Spec.PeerIP != "10.0.0.1" {
		t.Errorf("merged peer: %+v", p.Spec)
	}
}

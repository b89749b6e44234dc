package api

import (
	"strings"
	"testing"
)

func TestBFDProfileDefaults(t *testing.T) {
	objs, err := DecodeAll([]byte("apiVersion: roost.io/v1\nkind: BFDProfile\nmetadata: {name: fast}\nspec: {receiveInterval: 100}\n"), "", DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := objs[0].(*BFDProfile)
	s := p.Spec
	if *s.ReceiveInterval != 100 || *s.TransmitInterval != DefaultBFDInterval || *s.DetectMultiplier != DefaultBFDMultiplier {
		t.Errorf("spec %+v: want receive 100, transmit %d, multiplier %d", s, DefaultBFDInterval, DefaultBFDMultiplier)
	}
	if s.PassiveMode != nil || s.MinimumTTL != nil {
		t.Errorf("passiveMode and minimumTtl have no default; got %v %v", s.PassiveMode, s.MinimumTTL)
	}
	// Encoded with its own apiVersion, and read back the same.
	y, err := MarshalYAML(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(y), "apiVersion: roost.io/v1\n") {
		t.Errorf("YAML lacks apiVersion roost.io/v1:\n%s", y)
	}
	back, err := DecodeAll(y, "", DecodeOptions{})
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	j1, _ := MarshalJSON(p)
	j2, _ := MarshalJSON(back[0])
	if string(j1) != string(j2) {
		t.Errorf("round trip:\n%s\n%s", j1, j2)
	}
	// JSON without kind and apiVersion, as a reader of etcd gets it.
	r, err := DecodeJSON(KindBFDProfile, []byte(`{"metadata":{"name":"x"},"spec":{"passiveMode":true}}`), DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rp := r.(*BFDProfile); !*rp.Spec.PassiveMode || *rp.Spec.DetectMultiplier != 3 {
		t.Errorf("decoded %+v", rp.Spec)
	}
}

func TestBFDValidation(t *testing.T) {
	const prof = "apiVersion: roost.io/v1\nkind: BFDProfile\nmetadata: {name: p}\n"
	tests := []struct {
		name, in, want string
	}{
		{"receive too small", prof + "spec: {receiveInterval: 9}", `BFDProfile "p": spec.receiveInterval=9: must be in 10-60000`},
		{"transmit too big", prof + "spec: {transmitInterval: 60001}", `BFDProfile "p": spec.transmitInterval=60001: must be in 10-60000`},
		{"multiplier 1", prof + "spec: {detectMultiplier: 1}", `BFDProfile "p": spec.detectMultiplier=1: must be in 2-255`},
		{"multiplier 256", prof + "spec: {detectMultiplier: 256}", `spec.detectMultiplier=256: must be in 2-255`},
		{"ttl 255", prof + "spec: {minimumTtl: 255}", `BFDProfile "p": spec.minimumTtl=255: must be in 1-254`},
		{"ttl 0", prof + "spec: {minimumTtl: 0}", `spec.minimumTtl=0: must be in 1-254`},
		{"negative", prof + "spec: {receiveInterval: -5}", `spec.receiveInterval="-5": must be an integer in 0-4294967295`},
		{"passive string", prof + "spec: {passiveMode: 'yes'}", `spec.passiveMode="yes": must be true or false`},
		{"echo mode", prof + "spec: {echoMode: true}", `spec.echoMode: unknown field`},
		{"name", "apiVersion: roost.io/v1\nkind: BFDProfile\nmetadata: {name: Fast}", `metadata.name="Fast"`},
		{"calico apiVersion", "apiVersion: projectcalico.org/v3\nkind: BFDProfile\nmetadata: {name: p}", `BFDProfile "p": apiVersion="projectcalico.org/v3": must be roost.io/v1`},
		{"roost apiVersion on a v3 kind", "apiVersion: roost.io/v1\nkind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: 10.0.0.1, asNumber: 1}", `BGPPeer "p": apiVersion="roost.io/v1": must be projectcalico.org/v3`},
		{"peer annotation", "kind: BGPPeer\nmetadata: {name: p, annotations: {bfd.roost.io/profile: 'Fast Profile'}}\nspec: {peerIP: 10.0.0.1, asNumber: 1}",
			`BGPPeer "p": metadata.annotations[bfd.roost.io/profile]="Fast Profile": must be a BFDProfile name`},
		{"config annotation", "kind: BGPConfiguration\nmetadata: {name: node.a, annotations: {bfd.roost.io/profile: 'a\"b'}}",
			`BGPConfiguration "node.a": metadata.annotations[bfd.roost.io/profile]="a\"b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeAll([]byte(tt.in), "", DecodeOptions{})
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q lacks %q", err, tt.want)
			}
		})
	}
}

func TestBFDAnnotationAccepted(t *testing.T) {
	for _, in := range []string{
		"kind: BGPPeer\nmetadata: {name: p, annotations: {bfd.roost.io/profile: fast}}\nspec: {peerIP: 10.0.0.1, asNumber: 1}",
		"kind: BGPPeer\nmetadata: {name: p, annotations: {bfd.roost.io/profile: ''}}\nspec: {peerIP: 10.0.0.1, asNumber: 1}",
		"kind: BGPConfiguration\nmetadata: {name: default, annotations: {bfd.roost.io/profile: mesh.v1}}",
		// Other kinds do not interpret it.
		"kind: Node\nmetadata: {name: n, annotations: {bfd.roost.io/profile: 'Not A Name'}}",
		"apiVersion: roost.io/v1\nkind: BFDProfile\nmetadata: {name: edge}\nspec: {receiveInterval: 10, transmitInterval: 60000, detectMultiplier: 255, minimumTtl: 254, passiveMode: true}",
	} {
		if _, err := DecodeAll([]byte(in), "", DecodeOptions{}); err != nil {
			t.Errorf("%s: %v", in, err)
		}
	}
	md := &ObjectMeta{Annotations: map[string]string{BFDProfileAnnotation: ""}}
	if name, set := BFDProfileOf(md); name != "" || !set {
		t.Errorf("empty annotation: %q %v, want \"\" true", name, set)
	}
	if _, set := BFDProfileOf(&ObjectMeta{}); set {
		t.Error("no annotation reported as set")
	}
}

package api

import (
	"testing"
)

// FuzzDecode: the decoder never panics, and whatever it accepts encodes to
// YAML that decodes again to an equally valid object.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"kind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16}\n",
		"kind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: '[fd00::1]:1790', asNumber: '1.2'}\n---\nkind: Node\nmetadata: {name: n}\n",
		`{"kind":"BGPConfiguration","metadata":{"name":"default"},"spec":{"asNumber":64512}}`,
		"kind: List\nitems: [{kind: BGPFilter, metadata: {name: f}, spec: {exportV4: [{action: Accept}]}}]\n",
		"a: &x {b: 1}\nc: *x\n<<: *x\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, d := range Decode(data, "fuzz", DecodeOptions{}) {
			if d.Err != nil {
				continue
			}
			out, err := MarshalYAML(d.Object)
			if err != nil {
				t.Fatalf("accepted object does not encode: %v", err)
			}
			if _, err := DecodeAll(out, "re", DecodeOptions{}); err != nil {
				t.Fatalf("re-decoding our own output failed: %v\n%s", err, out)
			}
		}
	})
}

package cli

import (
	"strings"
	"testing"
)

const bfdProfilesYAML = `apiVersion: roost.io/v1
kind: BFDProfile
metadata: {name: fast}
spec: {receiveInterval: 100, transmitInterval: 100, detectMultiplier: 3}
---
apiVersion: roost.io/v1
kind: BFDProfile
metadata: {name: tor}
spec: {passiveMode: true, minimumTtl: 254}
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
  annotations: {bfd.roost.io/profile: fast}
spec: {asNumber: 64512}
`

// BFDProfiles go through apply/get/delete like Calico's kinds: in etcd
// under /roost/resources/v1/bfdprofiles/ with apiVersion roost.io/v1,
// with a get table; invalid ones are refused with resource, field and
// value named.
func TestBFDProfileCommands(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		rn := &runner{}
		in := writeFile(t, "bfd.yaml", bfdProfilesYAML)
		if out := rn.mustRun(t, b.args("apply", "-f", in)...); out != "Successfully applied 3 resource(s)\n" {
			t.Errorf("apply: %q", out)
		}
		golden(t, "get-bfdprofiles", rn.mustRun(t, b.args("get", "bfdprofiles")...))
		golden(t, "get-bfdprofiles-wide", rn.mustRun(t, b.args("get", "bfd", "-o", "wide")...))
		y := rn.mustRun(t, b.args("get", "bfdprofile", "fast", "-o", "yaml")...)
		golden(t, "get-bfdprofile-yaml", resourceVersionRE.ReplaceAllString(y, ""))
		if b.name == "etcd" {
			raw := b.raw(t, "/roost/resources/v1/bfdprofiles/fast")
			if !strings.Contains(raw, `"kind":"BFDProfile","apiVersion":"roost.io/v1"`) || !strings.Contains(raw, `"receiveInterval":100`) {
				t.Errorf("stored value %q", raw)
			}
			if cfg := b.raw(t, "/calico/resources/v3/projectcalico.org/bgpconfigurations/default"); !strings.Contains(cfg, `"annotations":{"bfd.roost.io/profile":"fast"}`) {
				t.Errorf("BGPConfiguration lost its annotation: %s", cfg)
			}
		}

		// A list from get -o json applies back unchanged.
		j := rn.mustRun(t, b.args("get", "bfdprofiles", "-o", "json")...)
		if !strings.Contains(j, `"kind": "BFDProfileList",`+"\n"+`  "apiVersion": "roost.io/v1"`) {
			t.Errorf("get -o json:\n%s", j)
		}
		rn.stdin = j
		if out := rn.mustRun(t, b.args("apply", "-f", "-")...); out != "Successfully applied 2 'BFDProfile' resource(s)\n" {
			t.Errorf("apply of get -o json: %q", out)
		}

		// Invalid input: nothing is written, the error says where and what.
		bad := writeFile(t, "bad.yaml", `apiVersion: roost.io/v1
kind: BFDProfile
metadata: {name: new}
spec: {receiveInterval: 100}
---
apiVersion: roost.io/v1
kind: BFDProfile
metadata: {name: fast}
spec: {receiveInterval: 5, detectMultiplier: 300}
---
apiVersion: projectcalico.org/v3
kind: BFDProfile
metadata: {name: wrong-group}
`)
		stderr := rn.mustFail(t, b.args("apply", "-f", bad)...)
		for _, want := range []string{
			"nothing was written",
			`bad.yaml:6 (document 2): BFDProfile "fast": spec.receiveInterval=5: must be in 10-60000`,
			`BFDProfile "fast": spec.detectMultiplier=300: must be in 2-255`,
			`bad.yaml:11 (document 3): BFDProfile "wrong-group": apiVersion="projectcalico.org/v3": must be roost.io/v1`,
		} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
		}
		if r := rn.run(t, b.args("get", "bfdprofile", "new")...); r.code == 0 {
			t.Errorf("a failed apply wrote new: %v", r)
		}
		badPeer := writeFile(t, "peer.yaml", `apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor, annotations: {bfd.roost.io/profile: "Fast!"}}
spec: {peerIP: 10.0.0.254, asNumber: 65000}
`)
		if stderr := rn.mustFail(t, b.args("apply", "-f", badPeer)...); !strings.Contains(stderr, `BGPPeer "tor": metadata.annotations[bfd.roost.io/profile]="Fast!": must be a BFDProfile name`) {
			t.Errorf("bad annotation: %s", stderr)
		}

		if out := rn.mustRun(t, b.args("delete", "bfdprofile", "tor")...); !strings.Contains(out, "Successfully deleted 1 'BFDProfile' resource(s)") {
			t.Errorf("delete: %q", out)
		}
		if out := rn.mustRun(t, b.args("get", "bfdprofiles")...); strings.Contains(out, "tor") || !strings.Contains(out, "fast") {
			t.Errorf("after delete:\n%s", out)
		}
	})
}

package file

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

// Roost's BFDProfile (roost.io/v1) lives beside Calico's v3 resources in a
// file, under its own key; an invalid one is skipped and reported, and a
// new one is written back with its own apiVersion.
func TestBFDProfileInFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bfd.yaml")
	writeFile(t, path, `apiVersion: roost.io/v1
kind: BFDProfile
metadata: {name: fast}
spec: {receiveInterval: 100, transmitInterval: 100}
---
apiVersion: roost.io/v1
kind: BFDProfile
metadata: {name: broken}
spec: {detectMultiplier: 1}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: tor
  annotations: {bfd.roost.io/profile: fast}
spec: {peerIP: 10.0.0.254, asNumber: 65000}
`)
	s, hook := open(t, path)
	ctx := context.Background()
	res, err := s.List(ctx, datastore.KindPrefix(api.KindBFDProfile))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.KVs) != 1 || res.KVs[0].Key != "/roost/resources/v1/bfdprofiles/fast" {
		t.Fatalf("BFD profiles: %+v", res.KVs)
	}
	p := res.KVs[0].Value.(*api.BFDProfile)
	if *p.Spec.ReceiveInterval != 100 || *p.Spec.DetectMultiplier != api.DefaultBFDMultiplier {
		t.Errorf("profile spec %+v", p.Spec)
	}
	if len(res.Invalid) != 1 || !strings.Contains(res.Invalid[0].Error(), `BFDProfile "broken": spec.detectMultiplier=1: must be in 2-255`) {
		t.Errorf("invalid: %v", res.Invalid)
	}
	if ws := warnings(hook, "detectMultiplier"); len(ws) != 1 {
		t.Errorf("want one warning about detectMultiplier, got %v", hook.AllEntries())
	}

	n := &api.BFDProfile{}
	n.Metadata.Name = "slow"
	if _, err := s.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	if f := readFile(t, path); !strings.Contains(f, "kind: BFDProfile\napiVersion: roost.io/v1\nmetadata:\n  name: slow") {
		t.Errorf("written file:\n%s", f)
	}
}

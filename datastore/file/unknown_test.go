package file

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roostnet/roost/api"
)

// TestNewerCalicoFieldsAreKept: a field Roost does not know in a v3
// resource (a newer Calico's) neither breaks the object nor the store: it
// is reported once, kept, and written back when Roost rewrites the object.
// A close misspelling of a known field is still a broken object.
func TestNewerCalicoFieldsAreKept(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "store.yaml")
	writeFile(t, path, `kind: BGPPeer
apiVersion: projectcalico.org/v3
metadata: {name: tor}
spec:
  peerIP: 10.0.0.254
  asNumber: 65000
  futureSessionKnob: {mode: fast}
---
kind: BGPPeer
apiVersion: projectcalico.org/v3
metadata: {name: typo}
spec:
  peerIP: 10.0.0.253
  asNumbr: 65000
`)
	s, hook := open(t, path)
	peer := mustGet(t, s, peerKey("tor")).Value.(*api.BGPPeer)
	if peer.Spec.ASNumber != 65000 {
		t.Errorf("peer = %+v", peer.Spec)
	}
	if u := api.UnknownFields(peer); len(u) != 1 || u[0] != "spec.futureSessionKnob" {
		t.Errorf("unknown fields %v", u)
	}
	if ws := warnings(hook, "does not know"); len(ws) != 1 || ws[0].Data["fields"] != "spec.futureSessionKnob" {
		t.Errorf("want one report of the unknown field, got %v", hook.AllEntries())
	}
	broken(t, s, peerKey("typo"), "spec.asNumbr: unknown field (did you mean \"asNumber\"?)")

	kv := mustGet(t, s, peerKey("tor"))
	kv.Value.Meta().Labels = map[string]string{"rack": "a"}
	if _, err := s.Update(context.Background(), kv); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path); !strings.Contains(got, "futureSessionKnob:\n    mode: fast") || !strings.Contains(got, "rack: a") {
		t.Errorf("rewritten file lost the unknown field or the change:\n%s", got)
	}
}

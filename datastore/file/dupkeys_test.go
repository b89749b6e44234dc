package file

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

// A key given twice in a document (YAML parsers let the last win
// silently) makes the document invalid, reported with both lines; the
// object is present and broken.
func TestDuplicateKeyRejected(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nodes.yaml")
	writeFile(t, path, twoNodes)
	s, hook := open(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s.Watch(ctx, "", 0)
	untilInSync(t, ch)

	writeFile(t, path, strings.Replace(twoNodes, "    ipv4Address: 10.0.0.2/24\n", "    ipv4Address: 10.0.0.2/24\n    ipv4Address: 10.0.0.9/24\n", 1))
	ev := next(t, ch)
	if ev.Type != datastore.Broken || ev.Key != nodeKey("node2") || ev.Err == nil ||
		!strings.Contains(ev.Err.Error(), "spec.bgp.ipv4Address: duplicate key, on lines 15 and 16") {
		t.Fatalf("got %v %s %v", ev.Type, ev.Key, ev.Err)
	}
	broken(t, s, nodeKey("node2"), "duplicate key")
	if len(warnings(hook, "duplicate key")) == 0 {
		t.Error("the duplicate key was not logged")
	}
	// Refused on write too (a YAML document given to the store's codec).
	if _, err := api.DecodeAll([]byte("kind: Node\nmetadata: {name: n}\nmetadata: {name: m}\n"), path, api.DecodeOptions{}); err == nil ||
		!strings.Contains(err.Error(), "metadata: duplicate key, on lines 2 and 3") {
		t.Errorf("decode: %v", err)
	}
}

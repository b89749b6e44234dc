package file

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

const twoNodes = `apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: node1
spec:
  bgp:
    ipv4Address: 10.0.0.1/24
---
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: node2
spec:
  bgp:
    ipv4Address: 10.0.0.2/24
`

func TestWatchFileEdits(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nodes.yaml")
	writeFile(t, path, twoNodes)
	s, _ := open(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s.Watch(ctx, datastore.KindPrefix(api.KindNode), 0)

	evs := untilInSync(t, ch)
	if len(evs) != 3 || evs[0].Type != datastore.Added || evs[0].Key != nodeKey("node1") || evs[1].Key != nodeKey("node2") {
		t.Fatalf("initial listing = %v", evs)
	}
	if evs[2].Revision != 1 {
		t.Errorf("InSync revision = %d", evs[2].Revision)
	}

	// Edit one document: one Modified event with the new value.
	writeFile(t, path, strings.Replace(twoNodes, "10.0.0.2/24", "10.0.0.22/24", 1))
	ev := next(t, ch)
	if ev.Type != datastore.Modified || ev.Key != nodeKey("node2") || ev.Revision != 2 {
		t.Fatalf("got %v %s rev %d", ev.Type, ev.Key, ev.Revision)
	}
	if got := ev.Value.(*api.Node).Spec.BGP.IPv4Address; got != "10.0.0.22/24" {
		t.Errorf("new value has %s", got)
	}
	if ev.Value.Meta().ResourceVersion != "2" {
		t.Errorf("resourceVersion = %q", ev.Value.Meta().ResourceVersion)
	}

	// Re-saving the same content, or only comments and formatting, is no change.
	writeFile(t, path, "# a comment\n"+strings.Replace(twoNodes, "10.0.0.2/24", "'10.0.0.22/24'", 1))
	quiet(t, ch, 200*time.Millisecond)

	// Delete a document.
	writeFile(t, path, twoNodes[:strings.Index(twoNodes, "---")])
	ev = next(t, ch)
	if ev.Type != datastore.Deleted || ev.Key != nodeKey("node2") || ev.Value != nil || ev.Revision != 3 {
		t.Fatalf("got %v %s rev %d", ev.Type, ev.Key, ev.Revision)
	}
	absent(t, s, nodeKey("node2"))

	// Editors that write a temporary file and rename it over the original.
	replaceFile(t, path, twoNodes)
	ev = next(t, ch)
	if ev.Type != datastore.Added || ev.Key != nodeKey("node2") || ev.Revision != 4 {
		t.Fatalf("got %v %s rev %d", ev.Type, ev.Key, ev.Revision)
	}
	quiet(t, ch, 100*time.Millisecond)

	// Other files of the directory do not matter to a single-file store.
	writeFile(t, filepath.Join(dir, "other.yaml"), "kind: Node\napiVersion: projectcalico.org/v3\nmetadata: {name: other}\n")
	quiet(t, ch, 200*time.Millisecond)
}

func TestWatchDirectory(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), twoNodes)
	s, _ := open(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s.Watch(ctx, "", 0)
	untilInSync(t, ch)

	// A new file.
	writeFile(t, filepath.Join(dir, "b.yml"), "kind: IPPool\napiVersion: projectcalico.org/v3\nmetadata: {name: p1}\nspec: {cidr: 10.1.0.0/16}\n")
	ev := next(t, ch)
	if ev.Type != datastore.Added || ev.Key != poolKey("p1") {
		t.Fatalf("got %v %s", ev.Type, ev.Key)
	}
	if ev.Value.(*api.IPPool).Spec.BlockSize != 26 {
		t.Errorf("defaults not applied: %+v", ev.Value)
	}

	// Files that are not data do not matter.
	writeFile(t, filepath.Join(dir, ".b.yml.swp"), "garbage: [")
	writeFile(t, filepath.Join(dir, "b.yml~"), "kind: IPPool\nmetadata: {name: p2}\nspec: {cidr: 10.2.0.0/16}\n")
	quiet(t, ch, 200*time.Millisecond)

	// Rename-replace in a directory.
	replaceFile(t, filepath.Join(dir, "b.yml"), "kind: IPPool\napiVersion: projectcalico.org/v3\nmetadata: {name: p1}\nspec: {cidr: 10.1.0.0/16, natOutgoing: true}\n")
	ev = next(t, ch)
	if ev.Type != datastore.Modified || ev.Key != poolKey("p1") || !ev.Value.(*api.IPPool).Spec.NATOutgoing {
		t.Fatalf("got %v %s %+v", ev.Type, ev.Key, ev.Value)
	}

	// Removing a file deletes its objects.
	if err := os.Remove(filepath.Join(dir, "b.yml")); err != nil {
		t.Fatal(err)
	}
	ev = next(t, ch)
	if ev.Type != datastore.Deleted || ev.Key != poolKey("p1") {
		t.Fatalf("got %v %s", ev.Type, ev.Key)
	}
	quiet(t, ch, 100*time.Millisecond)
}

// An edit that makes a document invalid leaves its object present and
// broken: a Broken event naming field and value, never a deletion; the
// same after a fresh start; a fix brings the value back.
func TestInvalidEditIsBroken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nodes.yaml")
	writeFile(t, path, twoNodes)
	s, hook := open(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s.Watch(ctx, "", 0)
	untilInSync(t, ch)

	typo := strings.Replace(twoNodes, "ipv4Address: 10.0.0.2/24", "ipv4Adress: 10.0.0.3/24", 1)
	writeFile(t, path, typo)
	ev := next(t, ch)
	var de *datastore.DecodeError
	if ev.Type != datastore.Broken || ev.Key != nodeKey("node2") || ev.Value != nil || !errors.As(ev.Err, &de) ||
		de.Field != "spec.bgp.ipv4Adress" || !strings.Contains(ev.Err.Error(), "nodes.yaml:9") {
		t.Fatalf("got %v %s %v", ev.Type, ev.Key, ev.Err)
	}
	quiet(t, ch, 150*time.Millisecond)
	broken(t, s, nodeKey("node2"), "ipv4Adress")
	if len(warnings(hook, "present and broken")) == 0 {
		t.Error("the broken object was not logged")
	}
	// The node1 document above it moves: node2 is not announced again.
	writeFile(t, path, "# a comment\n"+typo)
	quiet(t, ch, 200*time.Millisecond)

	// A fresh start over the same file: node2 is broken there too.
	s2, _ := open(t, path)
	broken(t, s2, nodeKey("node2"), "ipv4Adress")
	ch2 := s2.Watch(ctx, "", 0)
	evs := untilInSync(t, ch2)
	if len(evs) != 3 || evs[0].Type != datastore.Added || evs[1].Type != datastore.Broken || evs[1].Key != nodeKey("node2") {
		t.Fatalf("fresh listing = %v", evs)
	}

	// Fixed: the new value arrives as a modification.
	writeFile(t, path, strings.Replace(twoNodes, "10.0.0.2/24", "10.0.0.3/24", 1))
	ev = next(t, ch)
	if ev.Type != datastore.Modified || ev.Value.(*api.Node).Spec.BGP.IPv4Address != "10.0.0.3/24" {
		t.Fatalf("got %v %+v", ev.Type, ev.Value)
	}

	// A document that cannot be identified any more (its name is gone)
	// may be any object the file defined: node2, which the file no longer
	// defines readably, is broken, not deleted, until the file is fixed.
	writeFile(t, path, strings.Replace(twoNodes, "  name: node2\n", "", 1))
	ev = next(t, ch)
	if ev.Type != datastore.Broken || ev.Key != nodeKey("node2") || !strings.Contains(ev.Err.Error(), "metadata.name") {
		t.Fatalf("got %v %s %v", ev.Type, ev.Key, ev.Err)
	}
	if _, err := s.Update(ctx, &datastore.KV{Value: newNode("node2", "10.0.0.9/24")}); err == nil || !strings.Contains(err.Error(), "must be fixed") {
		t.Errorf("Update of an object its file lost: %v", err)
	}
	// Removing the document deletes node2.
	writeFile(t, path, twoNodes[:strings.Index(twoNodes, "---")])
	ev = next(t, ch)
	if ev.Type != datastore.Deleted || ev.Key != nodeKey("node2") {
		t.Fatalf("got %v %s", ev.Type, ev.Key)
	}
}

// Writes to a broken object behave as with etcd: Create fails (the key
// exists), Update replaces the broken document, Delete removes it.
func TestWriteBrokenObject(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nodes.yaml")
	typo := strings.Replace(twoNodes, "ipv4Address: 10.0.0.2/24", "ipv4Adress: 10.0.0.3/24", 1)
	writeFile(t, path, typo)
	s, _ := open(t, path)
	ctx := context.Background()
	de := broken(t, s, nodeKey("node2"), "ipv4Adress")
	if _, err := s.Create(ctx, newNode("node2", "10.0.0.4/24")); !errors.Is(err, datastore.ErrExists) {
		t.Fatalf("Create over a broken object: %v", err)
	}
	if _, err := s.Update(ctx, &datastore.KV{Value: newNode("node2", "10.0.0.4/24"), Revision: de.Revision + 5}); !errors.Is(err, datastore.ErrConflict) {
		t.Fatalf("Update with a wrong revision: %v", err)
	}
	kv, err := s.Update(ctx, &datastore.KV{Value: newNode("node2", "10.0.0.4/24"), Revision: de.Revision})
	if err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, nodeKey("node2")).Value.(*api.Node).Spec.BGP.IPv4Address; got != "10.0.0.4/24" || kv.Revision <= de.Revision {
		t.Fatalf("after fixing: %s at %d", got, kv.Revision)
	}
	if strings.Contains(readFile(t, path), "ipv4Adress") {
		t.Errorf("the broken document was not replaced:\n%s", readFile(t, path))
	}
	writeFile(t, path, typo)
	waitFor(t, "broken again", func() bool {
		_, err := s.Get(ctx, nodeKey("node2"))
		return errors.As(err, &de)
	})
	if err := s.Delete(ctx, nodeKey("node2"), 0); err != nil {
		t.Fatal(err)
	}
	absent(t, s, nodeKey("node2"))
	if strings.Contains(readFile(t, path), "node2") {
		t.Errorf("the broken document was not removed:\n%s", readFile(t, path))
	}
}

// A half-saved file: the objects past the syntax error are present and
// broken (never deleted), and the file is not rewritten.
func TestSyntaxErrorBreaksWithoutDeleting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nodes.yaml")
	writeFile(t, path, twoNodes)
	s, _ := open(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s.Watch(ctx, "", 0)
	untilInSync(t, ch)

	bad := strings.Replace(twoNodes, "  name: node2\n", "  name: [node2\n", 1)
	writeFile(t, path, bad)
	ev := next(t, ch)
	if ev.Type != datastore.Broken || ev.Key != nodeKey("node2") || !strings.Contains(ev.Err.Error(), "cannot be read") {
		t.Fatalf("got %v %s %v", ev.Type, ev.Key, ev.Err)
	}
	quiet(t, ch, 200*time.Millisecond)
	mustGet(t, s, nodeKey("node1"))
	_, err := s.Update(ctx, &datastore.KV{Value: newNode("node2", "10.0.0.9/24")})
	if err == nil || !strings.Contains(err.Error(), "fixed") {
		t.Errorf("Update into a broken file: %v", err)
	}
	if readFile(t, path) != bad {
		t.Error("the broken file was rewritten")
	}
	// Once fixed, the deletion of node2 happens.
	writeFile(t, path, twoNodes[:strings.Index(twoNodes, "---")])
	ev = next(t, ch)
	if ev.Type != datastore.Deleted || ev.Key != nodeKey("node2") {
		t.Fatalf("got %v %s", ev.Type, ev.Key)
	}
}

func TestWatchFromRevision(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, WithHistory(20))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 5 {
		if _, err := s.Create(ctx, newNode(fmt.Sprintf("n%d", i), fmt.Sprintf("10.0.0.%d/24", i+1))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Create(ctx, newHandle("h1", 1)); err != nil {
		t.Fatal(err)
	}
	// Revisions: load = 1, creates = 2..7. From 4: n3 (5), n4 (6); h1 is
	// outside the prefix.
	ch := s.Watch(ctx, datastore.KindPrefix(api.KindNode), 4)
	evs := untilInSync(t, ch)
	if len(evs) != 3 || evs[0].Key != nodeKey("n3") || evs[0].Revision != 5 || evs[1].Key != nodeKey("n4") || evs[2].Revision != 7 {
		t.Fatalf("replay = %v", evs)
	}
	if err := s.Delete(ctx, nodeKey("n0"), 0); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Type != datastore.Deleted || ev.Key != nodeKey("n0") || ev.Revision != 8 {
		t.Fatalf("live = %v", ev)
	}

	// Push the history past revision 4.
	for i := range 40 {
		if _, err := s.Create(ctx, newHandle(fmt.Sprintf("x%d", i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	ch2 := s.Watch(ctx, datastore.KindPrefix(api.KindNode), 4)
	evs = untilInSync(t, ch2)
	if evs[0].Type != datastore.Resync || !evs[0].Relist {
		t.Fatalf("want Resync{Relist}, got %v", evs[0])
	}
	if len(evs) != 6 { // resync, n1..n4, in-sync
		t.Fatalf("relist = %v", evs)
	}
	// A revision this store never reached (from before a restart) relists too.
	ch3 := s.Watch(ctx, "", 10000)
	if ev := next(t, ch3); ev.Type != datastore.Resync || !ev.Relist {
		t.Fatalf("future revision: %v", ev)
	}
}

func TestSlowWatcher(t *testing.T) {
	s, _ := open(t, t.TempDir(), WithMaxPending(10))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s.Watch(ctx, datastore.HandlePrefix, 0)
	// Nobody reads ch while 80 writes happen: they must not block.
	done := make(chan error)
	go func() {
		for i := range 80 {
			if _, err := s.Create(ctx, newHandle(fmt.Sprintf("h%03d", i), 1)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("writers blocked by a slow watcher")
	}
	// The watcher catches up through a relist and ends with the full state.
	seen := map[string]bool{}
	resynced := false
	for !resynced || len(seen) < 80 {
		ev := next(t, ch)
		switch ev.Type {
		case datastore.Resync:
			if !ev.Relist {
				t.Fatalf("Resync without relist")
			}
			resynced = true
			seen = map[string]bool{}
		case datastore.Added, datastore.Modified:
			seen[ev.Key] = true
		}
	}
	if ev := next(t, ch); ev.Type != datastore.InSync || ev.Revision != s.Revision() {
		t.Fatalf("want InSync at %d, got %v", s.Revision(), ev)
	}
}

func TestCloseClosesWatches(t *testing.T) {
	s, err := New(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(context.Background(), "", 0)
	untilInSync(t, ch)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("event after Close")
		}
	case <-time.After(waitLong):
		t.Fatal("watch channel not closed")
	}
	if _, err := s.Get(context.Background(), "x"); err != ErrClosed {
		t.Errorf("Get after Close = %v", err)
	}
	if _, ok := <-s.Watch(context.Background(), "", 0); ok {
		t.Error("Watch after Close delivered an event")
	}

	// A cancelled context closes just that watch.
	s2, _ := open(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	ch = s2.Watch(ctx, "", 0)
	cancel()
	for range ch {
	}
}

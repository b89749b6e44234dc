package file

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

func TestWritesPersist(t *testing.T) {
	dir := t.TempDir()
	calico := filepath.Join(dir, "10-calico.yaml")
	writeFile(t, calico, calicoYAML)
	writeFile(t, filepath.Join(dir, "20-nodes.json"), jsonFile)
	s, _ := open(t, dir)
	ctx := context.Background()
	ch := s.Watch(ctx, "", 0)
	untilInSync(t, ch)

	// New objects go to roost-state.yaml.
	kv, err := s.Create(ctx, newNode("node9", "10.0.0.9/24"))
	if err != nil {
		t.Fatal(err)
	}
	if kv.Key != nodeKey("node9") || kv.Revision != 2 || kv.Value.Meta().ResourceVersion != "2" {
		t.Errorf("Create = %+v", kv)
	}
	if ev := next(t, ch); ev.Type != datastore.Added || ev.Key != nodeKey("node9") || ev.Revision != 2 {
		t.Errorf("event = %v", ev)
	}
	if !strings.Contains(readFile(t, filepath.Join(dir, StateFile)), "name: node9") {
		t.Error("node9 not in the state file")
	}

	// An object from a file is rewritten in that file; the other
	// documents are kept byte for byte (comments included).
	n1 := mustGet(t, s, nodeKey("node1"))
	n1.Value.(*api.Node).Spec.BGP.IPv4Address = "10.0.0.11/24"
	if _, err := s.Update(ctx, n1); err != nil {
		t.Fatal(err)
	}
	text := readFile(t, calico)
	if !strings.Contains(text, "ipv4Address: 10.0.0.11/24") {
		t.Errorf("node1 not rewritten in its file:\n%s", text)
	}
	for _, keep := range []string{"# cluster-wide BGP settings", "# this one has a typo and must be skipped", "peerIp: 10.0.0.9", "allocations: [0, null, null, null]"} {
		if !strings.Contains(text, keep) {
			t.Errorf("%q lost from the rewritten file", keep)
		}
	}
	if strings.Contains(text, "resourceVersion") {
		t.Error("resourceVersion written to the file")
	}
	if ev := next(t, ch); ev.Type != datastore.Modified || ev.Key != nodeKey("node1") || ev.Revision != 3 {
		t.Errorf("event = %v", ev)
	}

	// An item of a typed list.
	peer := mustGet(t, s, peerKey("peer-tor"))
	peer.Value.(*api.BGPPeer).Spec.ASNumber = 65001
	if _, err := s.Update(ctx, peer); err != nil {
		t.Fatal(err)
	}
	next(t, ch)
	// Delete an item of a List and an object of the JSON file.
	if err := s.Delete(ctx, poolKey("pool1"), 0); err != nil {
		t.Fatal(err)
	}
	next(t, ch)
	if err := s.Delete(ctx, peerKey("peer-json"), 0); err != nil {
		t.Fatal(err)
	}
	next(t, ch)
	n3 := mustGet(t, s, nodeKey("node3"))
	n3.Value.Meta().Labels["rack"] = "r3"
	if _, err := s.Update(ctx, n3); err != nil {
		t.Fatal(err)
	}
	next(t, ch)
	if js := readFile(t, filepath.Join(dir, "20-nodes.json")); !strings.HasPrefix(js, "[") || strings.Contains(js, "peer-json") || !strings.Contains(js, `"rack": "r3"`) {
		t.Errorf("JSON file after writes:\n%s", js)
	}

	// Our own writes are not reported again by the file watch.
	quiet(t, ch, 300*time.Millisecond)

	// A new store on the same directory sees the same objects.
	want, _ := s.List(ctx, "")
	s.Close()
	s2, _ := open(t, dir)
	got, _ := s2.List(ctx, "")
	if len(got.KVs) != len(want.KVs) {
		t.Fatalf("after reopening: %q, want %q", keysOf(got.KVs), keysOf(want.KVs))
	}
	for i := range want.KVs {
		a, _ := datastore.EncodeValue(want.KVs[i].Value)
		b, _ := datastore.EncodeValue(got.KVs[i].Value)
		if want.KVs[i].Key != got.KVs[i].Key || string(a) != string(b) {
			t.Errorf("after reopening: %s %s, want %s %s", got.KVs[i].Key, b, want.KVs[i].Key, a)
		}
	}
	if got.Revision != 1 {
		t.Errorf("revisions restart at 1, got %d", got.Revision)
	}
	absent(t, s2, poolKey("pool1"))
	if p := mustGet(t, s2, peerKey("peer-tor")).Value.(*api.BGPPeer); p.Spec.ASNumber != 65001 {
		t.Errorf("peer-tor AS = %d", p.Spec.ASNumber)
	}
}

func TestSingleFileWrites(t *testing.T) {
	for _, name := range []string{"store.yaml", "store.json"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), name)
			s, _ := open(t, path)
			ctx := context.Background()
			for i := range 3 {
				if _, err := s.Create(ctx, newNode(fmt.Sprintf("n%d", i), fmt.Sprintf("10.0.0.%d/24", i+1))); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Delete(ctx, nodeKey("n1"), 0); err != nil {
				t.Fatal(err)
			}
			text := readFile(t, path)
			if strings.HasSuffix(name, ".json") != strings.HasPrefix(text, "[") {
				t.Errorf("file format:\n%s", text)
			}
			entries, _ := os.ReadDir(filepath.Dir(path))
			for _, e := range entries {
				if e.Name() != name && e.Name() != "."+name+".lock" { // the data and its write lock
					t.Errorf("temporary file left behind: %s", e.Name())
				}
			}
			s.Close()
			s2, _ := open(t, path)
			res, _ := s2.List(ctx, "")
			if got := keysOf(res.KVs); len(got) != 2 || got[0] != nodeKey("n0") || got[1] != nodeKey("n2") {
				t.Errorf("after reopening: %q", got)
			}
		})
	}
}

func TestCAS(t *testing.T) {
	s, _ := open(t, t.TempDir())
	ctx := context.Background()
	kv, err := s.Create(ctx, newNode("n1", "10.0.0.1/24"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, newNode("n1", "10.0.0.1/24")); !errors.Is(err, datastore.ErrExists) {
		t.Errorf("second Create = %v", err)
	}
	stale := *kv
	kv.Value.(*api.Node).Spec.BGP.IPv4Address = "10.0.0.2/24"
	kv2, err := s.Update(ctx, kv)
	if err != nil {
		t.Fatal(err)
	}
	if kv2.Revision <= kv.Revision {
		t.Errorf("revision did not grow: %d -> %d", kv.Revision, kv2.Revision)
	}
	_, err = s.Update(ctx, &stale)
	var ke *datastore.KeyError
	if !errors.Is(err, datastore.ErrConflict) || !errors.As(err, &ke) || ke.Key != nodeKey("n1") {
		t.Errorf("stale Update = %v", err)
	}
	if err := s.Delete(ctx, nodeKey("n1"), stale.Revision); !errors.Is(err, datastore.ErrConflict) {
		t.Errorf("stale Delete = %v", err)
	}
	// Without a revision, Update overwrites.
	kv.Revision = 0
	if _, err := s.Update(ctx, kv); err != nil {
		t.Errorf("unconditional Update = %v", err)
	}
	if _, err := s.Update(ctx, &datastore.KV{Value: newNode("ghost", "10.0.0.3/24")}); !errors.Is(err, datastore.ErrNotFound) {
		t.Errorf("Update of a missing object = %v", err)
	}
	if err := s.Delete(ctx, nodeKey("ghost"), 0); !errors.Is(err, datastore.ErrNotFound) {
		t.Errorf("Delete of a missing object = %v", err)
	}
	cur := mustGet(t, s, nodeKey("n1"))
	if err := s.Delete(ctx, nodeKey("n1"), cur.Revision); err != nil {
		t.Errorf("Delete at the current revision = %v", err)
	}
	// Invalid values are refused with the validation error.
	bad := newNode("n2", "not-an-ip")
	_, err = s.Create(ctx, bad)
	var fe *api.FieldError
	if err == nil || !errors.As(err, &fe) || !strings.Contains(err.Error(), "ipv4Address") {
		t.Errorf("Create of an invalid node = %v", err)
	}
	// A key that does not match the value.
	if _, err := s.Update(ctx, &datastore.KV{Key: nodeKey("other"), Value: newNode("n3", "10.0.0.3/24")}); err == nil {
		t.Error("Update with a key that does not match the value succeeded")
	}
}

func TestTxnAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir)
	ctx := context.Background()
	kv, err := s.Create(ctx, newHandle("h1", 1))
	if err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(ctx, "", 0)
	untilInSync(t, ch)
	before := readFile(t, filepath.Join(dir, StateFile))

	cidr := netip.MustParsePrefix("192.168.10.0/26")
	aff := &api.BlockAffinity{Spec: api.BlockAffinitySpec{Node: "node1", CIDR: cidr.String(), State: api.AffinityPending}}
	aff.Metadata.Name = "aff"
	// The second operation fails: nothing happens, and the error names its key.
	_, err = s.Txn(ctx,
		datastore.Op{Type: datastore.OpCreate, Value: aff},
		datastore.Op{Type: datastore.OpUpdate, Value: newHandle("h1", 2), Revision: kv.Revision + 100},
	)
	var ke *datastore.KeyError
	if !errors.Is(err, datastore.ErrConflict) || !errors.As(err, &ke) || ke.Key != datastore.HandleKey("h1") {
		t.Fatalf("Txn = %v", err)
	}
	absent(t, s, datastore.AffinityKey("node1", cidr))
	if readFile(t, filepath.Join(dir, StateFile)) != before {
		t.Error("a failed Txn changed the file")
	}
	quiet(t, ch, 100*time.Millisecond)

	// Both succeed under one revision.
	rev, err := s.Txn(ctx,
		datastore.Op{Type: datastore.OpCreate, Value: aff},
		datastore.Op{Type: datastore.OpUpdate, Value: newHandle("h1", 2), Revision: kv.Revision},
	)
	if err != nil {
		t.Fatal(err)
	}
	e1, e2 := next(t, ch), next(t, ch)
	if e1.Revision != rev || e2.Revision != rev || e1.Key != datastore.HandleKey("h1") || e2.Key != datastore.AffinityKey("node1", cidr) {
		t.Errorf("events %v %v, want both at %d", e1, e2, rev)
	}
	if a := mustGet(t, s, datastore.AffinityKey("node1", cidr)).Value.(*api.BlockAffinity); a.Spec.State != api.AffinityPending {
		t.Errorf("affinity = %+v", a.Spec)
	}
	// Two operations on one key are refused.
	if _, err := s.Txn(ctx, datastore.Op{Type: datastore.OpDelete, Key: datastore.HandleKey("h1")}, datastore.Op{Type: datastore.OpPut, Value: newHandle("h1", 3)}); err == nil {
		t.Error("two operations on one key were accepted")
	}
	// Put creates and overwrites.
	if _, err := s.Txn(ctx, datastore.Op{Type: datastore.OpPut, Value: newHandle("h2", 1)}, datastore.Op{Type: datastore.OpPut, Value: newHandle("h1", 5)}); err != nil {
		t.Fatal(err)
	}
	if h := mustGet(t, s, datastore.HandleKey("h1")).Value.(*api.IPAMHandle); h.Spec.Block["192.168.10.0/26"] != 5 {
		t.Errorf("h1 = %+v", h.Spec)
	}
}

func TestConcurrentWriters(t *testing.T) {
	s, _ := open(t, t.TempDir())
	ctx := context.Background()
	if _, err := s.Create(ctx, newHandle("counter", 0)); err != nil {
		t.Fatal(err)
	}
	const workers, each = 4, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*2)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				// A compare-and-swap increment, retried on conflict.
				for {
					kv, err := s.Get(ctx, datastore.HandleKey("counter"))
					if err != nil {
						errs <- err
						return
					}
					kv.Value.(*api.IPAMHandle).Spec.Block["192.168.10.0/26"]++
					_, err = s.Update(ctx, kv)
					if errors.Is(err, datastore.ErrConflict) {
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					break
				}
				if _, err := s.Create(ctx, newHandle(fmt.Sprintf("w%d-%d", w, i), 1)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := mustGet(t, s, datastore.HandleKey("counter")).Value.(*api.IPAMHandle).Spec.Block["192.168.10.0/26"]; n != workers*each {
		t.Errorf("counter = %d, want %d", n, workers*each)
	}
	res, _ := s.List(ctx, datastore.HandlePrefix)
	if len(res.KVs) != workers*each+1 {
		t.Errorf("%d handles", len(res.KVs))
	}
}

func TestExternalEditBeforeWrite(t *testing.T) {
	// A write right after an edit of the same file, before the file watch
	// has reported it, must neither lose the edit nor skip its revision.
	path := filepath.Join(t.TempDir(), "nodes.yaml")
	writeFile(t, path, twoNodes)
	s, _ := open(t, path, WithDebounce(time.Hour))
	ctx := context.Background()
	kv := mustGet(t, s, nodeKey("node1"))
	writeFile(t, path, strings.Replace(twoNodes, "10.0.0.2/24", "10.0.0.22/24", 1))

	kv.Value.(*api.Node).Spec.BGP.IPv4Address = "10.0.0.11/24"
	if _, err := s.Update(ctx, kv); err != nil {
		t.Fatal(err)
	}
	text := readFile(t, path)
	if !strings.Contains(text, "10.0.0.22/24") || !strings.Contains(text, "10.0.0.11/24") {
		t.Errorf("file after the write:\n%s", text)
	}
	if n2 := mustGet(t, s, nodeKey("node2")).Value.(*api.Node); n2.Spec.BGP.IPv4Address != "10.0.0.22/24" {
		t.Errorf("node2 = %s", n2.Spec.BGP.IPv4Address)
	}
	// And a CAS against the state before the edit fails.
	writeFile(t, path, strings.Replace(readFile(t, path), "10.0.0.11/24", "10.0.0.12/24", 1))
	stale := mustGet(t, s, nodeKey("node1"))
	if _, err := s.Update(ctx, stale); !errors.Is(err, datastore.ErrConflict) {
		t.Errorf("Update based on a state the file no longer has = %v", err)
	}
}

func TestDeleteRemovesEveryDefinition(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), "kind: Node\napiVersion: projectcalico.org/v3\nmetadata: {name: n1}\nspec: {bgp: {ipv4Address: 10.0.0.1/24}}\n")
	writeFile(t, filepath.Join(dir, "b.yaml"), "kind: Node\napiVersion: projectcalico.org/v3\nmetadata: {name: n1}\nspec: {bgp: {ipv4Address: 10.0.0.2/24}}\n---\nkind: Node\napiVersion: projectcalico.org/v3\nmetadata: {name: n2}\n")
	s, _ := open(t, dir)
	ctx := context.Background()
	// Update rewrites the definition that counts.
	kv := mustGet(t, s, nodeKey("n1"))
	kv.Value.(*api.Node).Spec.BGP.IPv4Address = "10.0.0.3/24"
	if _, err := s.Update(ctx, kv); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(readFile(t, filepath.Join(dir, "b.yaml")), "10.0.0.3/24") || !strings.Contains(readFile(t, filepath.Join(dir, "a.yaml")), "10.0.0.1/24") {
		t.Error("Update did not rewrite the later definition only")
	}
	// Delete removes both, so the earlier one does not come back.
	if err := s.Delete(ctx, nodeKey("n1"), 0); err != nil {
		t.Fatal(err)
	}
	absent(t, s, nodeKey("n1"))
	s.Close()
	s2, _ := open(t, dir)
	absent(t, s2, nodeKey("n1"))
	mustGet(t, s2, nodeKey("n2"))
}

func TestRewriteOddFiles(t *testing.T) {
	dir := t.TempDir()
	// "..." markers: the file cannot be split into documents safely, so it
	// is rewritten whole.
	odd := filepath.Join(dir, "a.yaml")
	writeFile(t, odd, "%YAML 1.1\n---\nkind: Node\napiVersion: projectcalico.org/v3\nmetadata: {name: n1}\n...\n---\nkind: Node\napiVersion: projectcalico.org/v3\nmetadata: {name: n2}\n...\n")
	// A list that a delete empties, next to a document with a comment.
	lists := filepath.Join(dir, "b.yaml")
	writeFile(t, lists, "kind: IPPoolList\napiVersion: projectcalico.org/v3\nitems:\n- metadata: {name: p1}\n  spec: {cidr: 10.1.0.0/16}\n---\n# keep me\nkind: Node\napiVersion: projectcalico.org/v3\nmetadata: {name: n3}\n")
	s, _ := open(t, dir)
	ctx := context.Background()

	kv := mustGet(t, s, nodeKey("n2"))
	kv.Value.Meta().Labels = map[string]string{"x": "y"}
	if _, err := s.Update(ctx, kv); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, poolKey("p1"), 0); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(readFile(t, lists), "# keep me") {
		t.Errorf("comment lost:\n%s", readFile(t, lists))
	}
	kv = mustGet(t, s, nodeKey("n3"))
	kv.Value.Meta().Labels = map[string]string{"a": "b"}
	if _, err := s.Update(ctx, kv); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, hook := open(t, dir)
	res, _ := s2.List(ctx, "")
	if got := keysOf(res.KVs); len(got) != 3 || got[0] != nodeKey("n1") || got[2] != nodeKey("n3") {
		t.Errorf("after reopening: %q", got)
	}
	if l := mustGet(t, s2, nodeKey("n2")).Value.Meta().Labels["x"]; l != "y" {
		t.Errorf("n2 labels lost")
	}
	if len(warnings(hook, "")) != 0 {
		t.Errorf("rewritten files read back with warnings: %v", hook.AllEntries())
	}
}

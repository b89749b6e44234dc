package file

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

const waitLong = 5 * time.Second

// open creates a store with a short debounce and a captured log.
func open(t *testing.T, path string, opts ...Option) (*Store, *logtest.Hook) {
	t.Helper()
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	opts = append([]Option{WithLogger(logger), WithDebounce(10 * time.Millisecond)}, opts...)
	s, err := New(context.Background(), path, opts...)
	if err != nil {
		t.Fatalf("New(%s): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s, hook
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes content the way many editors do: a temporary file
// renamed over the original.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".swp")
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// next returns the next event or fails.
func next(t *testing.T, ch <-chan datastore.Event) datastore.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return ev
	case <-time.After(waitLong):
		t.Fatal("no event within", waitLong)
	}
	return datastore.Event{}
}

// untilInSync collects events up to and including InSync.
func untilInSync(t *testing.T, ch <-chan datastore.Event) []datastore.Event {
	t.Helper()
	var out []datastore.Event
	for {
		ev := next(t, ch)
		out = append(out, ev)
		if ev.Type == datastore.InSync {
			return out
		}
	}
}

// quiet checks that nothing arrives for d.
func quiet(t *testing.T, ch <-chan datastore.Event, d time.Duration) {
	t.Helper()
	select {
	case ev := <-ch:
		t.Fatalf("unexpected event %v %s (rev %d, err %v)", ev.Type, ev.Key, ev.Revision, ev.Err)
	case <-time.After(d):
	}
}

func keysOf(kvs []datastore.KV) []string {
	var out []string
	for _, kv := range kvs {
		out = append(out, kv.Key)
	}
	return out
}

func mustGet(t *testing.T, s datastore.Datastore, key string) *datastore.KV {
	t.Helper()
	kv, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	return kv
}

func absent(t *testing.T, s datastore.Datastore, key string) {
	t.Helper()
	_, err := s.Get(context.Background(), key)
	if !errors.Is(err, datastore.ErrNotFound) {
		t.Fatalf("Get(%s) = %v, want not found", key, err)
	}
	var ke *datastore.KeyError
	if !errors.As(err, &ke) || ke.Key != key {
		t.Fatalf("Get(%s): error %v is not a KeyError naming the key", key, err)
	}
}

// warnings returns the logged warnings whose message or error contains sub.
// broken asserts that key is present and broken: Get returns a
// DecodeError naming it, whose text holds want.
func broken(t *testing.T, s datastore.Datastore, key, want string) *datastore.DecodeError {
	t.Helper()
	_, err := s.Get(context.Background(), key)
	var de *datastore.DecodeError
	if !errors.As(err, &de) || de.Key != key || !strings.Contains(err.Error(), want) {
		t.Fatalf("Get(%s) = %v, want a broken object (%q)", key, err, want)
	}
	return de
}

func warnings(hook *logtest.Hook, sub string) []*logrus.Entry {
	var out []*logrus.Entry
	for _, e := range hook.AllEntries() {
		if e.Level != logrus.WarnLevel {
			continue
		}
		text := e.Message
		if s, ok := e.Data["error"].(string); ok {
			text += " " + s
		}
		if strings.Contains(text, sub) {
			out = append(out, e)
		}
	}
	return out
}

func nodeKey(name string) string { return datastore.ResourceKey(api.KindNode, "", name) }
func peerKey(name string) string { return datastore.ResourceKey(api.KindBGPPeer, "", name) }
func poolKey(name string) string { return datastore.ResourceKey(api.KindIPPool, "", name) }

func newNode(name, ip string) *api.Node {
	n := &api.Node{}
	n.Metadata.Name = name
	n.Spec.BGP = &api.NodeBGPSpec{IPv4Address: ip}
	return n
}

func newHandle(id string, count int) *api.IPAMHandle {
	h := &api.IPAMHandle{}
	h.Metadata.Name = id
	h.Spec.Block = map[string]int{"192.168.10.0/26": count}
	return h
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

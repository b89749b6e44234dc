package file

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

// The test binary runs as a writer process when writerEnv is set (see
// TestMain): ROOST_FILE_WRITER=<mode>:<path>:<id>:<count>.
const writerEnv = "ROOST_FILE_WRITER"

const counterHandle = "counter"

// runWriter is one writer process: "create" makes count BGPPeers of its
// own; "increment" adds one to a shared handle's count, count times, by
// read-modify-write with compare-and-swap, retrying on conflicts.
func runWriter() int {
	parts := strings.Split(os.Getenv(writerEnv), ":")
	if len(parts) != 4 {
		fmt.Fprintln(os.Stderr, "bad", writerEnv)
		return 2
	}
	mode, path, id := parts[0], parts[1], parts[2]
	count, _ := strconv.Atoi(parts[3])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := New(ctx, path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s.Close()
	for i := range count {
		switch mode {
		case "create":
			p := &api.BGPPeer{}
			p.Metadata.Name = fmt.Sprintf("peer-%s-%d", id, i)
			p.Spec.PeerIP = "10.0.0.1"
			p.Spec.ASNumber = 64512
			if _, err := s.Create(ctx, p); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		case "increment":
			for {
				kv, err := s.Get(ctx, datastore.HandleKey(counterHandle))
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					return 1
				}
				h := kv.Value.(*api.IPAMHandle)
				h.Spec.Block["10.0.0.0/26"]++
				_, err = s.Update(ctx, &datastore.KV{Key: kv.Key, Value: h, Revision: kv.Revision})
				if err == nil {
					break
				}
				if !errors.Is(err, datastore.ErrConflict) {
					fmt.Fprintln(os.Stderr, err)
					return 1
				}
			}
		}
	}
	return 0
}

// writers runs n writer processes at once and waits for them.
func writers(t *testing.T, n int, mode, path string, count int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s:%s:%d:%d", writerEnv, mode, path, i, count))
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("writer %d: %v\n%s", i, err, out)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// Writers in separate processes lose nothing: 3 x 50 creates give 150
// objects, and 3 x 50 compare-and-swap increments of one object give
// 150, on a single file and on a directory.
func TestConcurrentProcesses(t *testing.T) {
	for _, mode := range []struct {
		name string
		path func(t *testing.T) string
	}{
		{"file", func(t *testing.T) string { return filepath.Join(t.TempDir(), "store.yaml") }},
		{"dir", func(t *testing.T) string { return t.TempDir() }},
	} {
		t.Run(mode.name, func(t *testing.T) {
			path := mode.path(t)
			s, _ := open(t, path)
			h := newHandle(counterHandle, 0)
			h.Spec.Block = map[string]int{"10.0.0.0/26": 0}
			if _, err := s.Create(context.Background(), h); err != nil {
				t.Fatal(err)
			}
			writers(t, 3, "create", path, 50)
			writers(t, 3, "increment", path, 50)

			fresh, _ := open(t, path)
			res, err := fresh.List(context.Background(), datastore.KindPrefix(api.KindBGPPeer))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.KVs) != 150 {
				t.Errorf("%d peers stored, want 150", len(res.KVs))
			}
			n := mustGet(t, fresh, datastore.HandleKey(counterHandle)).Value.(*api.IPAMHandle).Spec.Block["10.0.0.0/26"]
			if n != 150 {
				t.Errorf("counter is %d after 150 increments", n)
			}
			// The store that was open all along sees the same.
			waitFor(t, "the open store to catch up", func() bool {
				res, err := s.List(context.Background(), datastore.KindPrefix(api.KindBGPPeer))
				return err == nil && len(res.KVs) == 150
			})
		})
	}
}

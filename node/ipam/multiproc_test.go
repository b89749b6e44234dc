package ipam

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roostnet/roost/datastore/file"
)

// The test binary runs as one `workload add`'s allocation when assignEnv
// is set: ROOST_IPAM_ASSIGN=<file datastore path>:<handle>.
const assignEnv = "ROOST_IPAM_ASSIGN"

func TestMain(m *testing.M) {
	if v := os.Getenv(assignEnv); v != "" {
		os.Exit(assignOnce(v))
	}
	os.Exit(m.Run())
}

func assignOnce(v string) int {
	path, handle, _ := strings.Cut(v, ":")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ds, err := file.New(ctx, path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer ds.Close()
	ip, err := New(ds, "node1", WithLogger(quietLog())).AutoAssign(ctx, Request{Handle: handle, Attrs: map[string]string{AttrNode: "node1"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(ip)
	return 0
}

// Six processes allocating at once on one file datastore (six parallel
// `roost-node workload add`) get six different addresses; the fault run
// saw all six get the same one.
func TestParallelProcessesGetDistinctAddresses(t *testing.T) {
	path := t.TempDir()
	ds, err := file.New(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	mkPool(t, ds, "pool1", "10.70.0.0/16", 26, "Never", "Never")
	ds.Close()

	var wg sync.WaitGroup
	addrs := make([]string, 6)
	errs := make([]error, 6)
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s:wl-%d", assignEnv, path, i))
			out, err := cmd.Output()
			if err != nil {
				errs[i] = fmt.Errorf("process %d: %v %s", i, err, out)
			}
			addrs[i] = strings.TrimSpace(string(out))
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, a := range addrs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if a == "" || seen[a] {
			t.Fatalf("addresses %v: not six distinct ones", addrs)
		}
		seen[a] = true
	}
	// The datastore agrees: six addresses held, one handle each.
	ds, err = file.New(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	c := New(ds, "node1")
	for i := range 6 {
		held, err := c.AddrsByHandle(context.Background(), fmt.Sprintf("wl-%d", i))
		if err != nil || len(held) != 1 || held[0].String() != addrs[i] {
			t.Errorf("handle wl-%d holds %v (%v), want %s", i, held, err, addrs[i])
		}
	}
}

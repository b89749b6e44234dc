package cli

import (
	"context"
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
	"github.com/roostnet/roost/datastore/file"
)

// The test binary runs as a loop of `birdctl apply` when applyLoopEnv is
// set: ROOST_APPLY_LOOP=<datastore path>:<id>:<count>.
const applyLoopEnv = "ROOST_APPLY_LOOP"

func applyLoop() int {
	parts := strings.Split(os.Getenv(applyLoopEnv), ":")
	path, id := parts[0], parts[1]
	count, _ := strconv.Atoi(parts[2])
	dir, err := os.MkdirTemp("", "apply-loop-")
	if err != nil {
		return 1
	}
	defer os.RemoveAll(dir)
	env := OSEnv()
	env.Getenv = func(k string) string {
		switch k {
		case "DATASTORE_TYPE":
			return "file"
		case "DATASTORE_FILE":
			return path
		}
		return ""
	}
	for i := range count {
		f := filepath.Join(dir, fmt.Sprintf("p%d.yaml", i))
		doc := fmt.Sprintf("apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: peer-%s-%d}\nspec: {peerIP: 10.0.0.1, asNumber: 64512}\n", id, i)
		if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
			return 1
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		code := Run(ctx, []string{"apply", "-f", f}, env)
		cancel()
		if code != 0 {
			return code
		}
	}
	return 0
}

// Three `birdctl apply` loops of 50 in parallel on one YAML file: every
// apply that succeeds is stored (the fault run stored 116 of 150).
func TestParallelApplyLoops(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cluster.yaml")
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s:%d:%d", applyLoopEnv, path, i, 50))
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("apply loop %d: %v\n%s", i, err, out)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	s, err := file.New(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.List(context.Background(), datastore.KindPrefix(api.KindBGPPeer))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.KVs) != 150 {
		t.Fatalf("%d peers stored after 150 successful applies", len(res.KVs))
	}
}

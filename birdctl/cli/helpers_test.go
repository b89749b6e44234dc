package cli

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roostnet/roost/birdctl/birdsock/birdtest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden with the current output")

func TestMain(m *testing.M) {
	if os.Getenv(applyLoopEnv) != "" {
		os.Exit(applyLoop())
	}
	// BIRD prints local times; golden JSON must not depend on the zone.
	time.Local = time.UTC
	os.Exit(m.Run())
}

// result is the outcome of one birdctl run.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// runner runs birdctl in-process with a controlled environment.
type runner struct {
	env   map[string]string
	stdin string
	uids  int
}

func (rn *runner) run(t testing.TB, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	env := Env{
		Stdin:  strings.NewReader(rn.stdin),
		Stdout: &out,
		Stderr: &errb,
		Getenv: func(k string) string { return rn.env[k] },
		Now:    func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) },
		NewUID: func() string {
			rn.uids++
			return fmt.Sprintf("00000000-0000-4000-8000-%012d", rn.uids)
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := Run(ctx, args, env)
	rn.stdin = ""
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// mustRun runs birdctl and fails the test unless it exits 0.
func (rn *runner) mustRun(t testing.TB, args ...string) string {
	t.Helper()
	r := rn.run(t, args...)
	if r.code != 0 {
		t.Fatalf("birdctl %s: %v", strings.Join(args, " "), r)
	}
	return r.stdout
}

// mustFail runs birdctl, expects a non-zero exit and returns stderr.
func (rn *runner) mustFail(t testing.TB, args ...string) string {
	t.Helper()
	r := rn.run(t, args...)
	if r.code == 0 {
		t.Fatalf("birdctl %s succeeded, want failure: %v", strings.Join(args, " "), r)
	}
	return r.stderr
}

// golden compares got with testdata/name.golden, or rewrites it with -update.
func golden(t testing.TB, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it):\n--- got ---\n%s\n--- want ---\n%s", path, got, want)
	}
}

// ---- fake BIRD control socket replaying recorded transcripts ----

// fakeBird serves a recording of testdata (birdtest.ReplayFile) and
// records the commands it receives.
type fakeBird struct {
	path string
	r    *birdtest.Server
}

func startFakeBird(t testing.TB, transcript string) *fakeBird {
	t.Helper()
	r := birdtest.ReplayFile(t, filepath.Join("testdata", transcript))
	return &fakeBird{path: r.Socket, r: r}
}

func (fb *fakeBird) commands() []string { return fb.r.Commands() }

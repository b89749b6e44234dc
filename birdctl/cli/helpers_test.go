package cli

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roostnet/roost/birdctl/birdsock/birdtest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden with the current output")

func TestMain(m *testing.M) {
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

// loadTranscript reads a recorded session: BIRD's hello, then per command a
// line "> COMMAND" followed by the reply exactly as BIRD sent it.
func loadTranscript(t testing.TB, name string) (hello string, replies map[string]string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	replies = map[string]string{}
	cmd, first := "", true
	var cur strings.Builder
	flush := func() {
		if first {
			hello = cur.String()
		} else {
			replies[cmd] = cur.String()
		}
		cur.Reset()
	}
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if c, ok := strings.CutPrefix(line, "> "); ok {
			flush()
			first, cmd = false, strings.TrimSuffix(c, "\n")
			continue
		}
		cur.WriteString(line)
	}
	flush()
	return hello, replies
}

// fakeBird serves a transcript on a Unix socket and records the commands
// it receives. Unknown commands get BIRD's syntax error.
type fakeBird struct {
	path string
	mu   sync.Mutex
	cmds []string
}

func startFakeBird(t testing.TB, transcript string) *fakeBird {
	t.Helper()
	hello, replies := loadTranscript(t, transcript)
	fb := &fakeBird{path: birdtest.SocketPath(t, "bird.ctl")}
	ln, err := net.Listen("unix", fb.path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(time.Minute))
				if _, err := conn.Write([]byte(hello)); err != nil {
					return
				}
				r := bufio.NewReader(conn)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					cmd := strings.TrimSuffix(line, "\n")
					fb.mu.Lock()
					fb.cmds = append(fb.cmds, cmd)
					fb.mu.Unlock()
					reply, ok := replies[cmd]
					if !ok {
						reply, ok = replies[strings.ReplaceAll(cmd, `"`, "")]
					}
					if !ok {
						reply = "9001 syntax error, unexpected CF_SYM_UNDEFINED\n"
					}
					// Split writes: the client must not rely on whole lines.
					for len(reply) > 0 {
						n := min(7, len(reply))
						if _, err := conn.Write([]byte(reply[:n])); err != nil {
							return
						}
						reply = reply[n:]
					}
				}
			}()
		}
	}()
	return fb
}

func (fb *fakeBird) commands() []string {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return append([]string(nil), fb.cmds...)
}

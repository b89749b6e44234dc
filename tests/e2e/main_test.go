// Package e2e is Roost's end-to-end suite: every test builds its own lab
// (tests/lab: hosts as network namespaces, one etcd, and roost-node,
// confd and BIRD 2 on every host, started as on a real host), drives it
// through birdctl and checks BGP sessions, routes and pings.
//
// The tests need root, network namespaces, bird, etcd and ping. Without
// them they skip, saying why; with CI=true they fail instead. They run
// the binaries built from this tree (into a temporary directory, once per
// run); ROOST_E2E_BIN=<dir> uses prebuilt confd, birdctl, roost-node and
// roost-cni instead. The CNI test runs containers with podman (runc,
// busybox-static) and needs them too.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/roostnet/roost/tests/lab"
)

// labTags are the tests' lab name tags. A lab is named e<tag><pid>, so
// two runs never share a namespace, and the namespaces of a run that
// died without cleaning up (e.g. a test timeout) are found and removed by
// the next run.
var labTags = map[string]bool{}

var (
	binDir   string // confd, birdctl, roost-node
	runRoot  string // this run's files (binaries, labs); removed after the run
	setupErr error  // why the lab cannot run here
	setupMu  sync.Mutex
	setupRan bool

	summaryMu sync.Mutex
	summary   []string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if runRoot != "" {
		os.RemoveAll(runRoot)
	}
	summaryMu.Lock()
	if len(summary) > 0 {
		fmt.Println("e2e convergence:")
		for _, s := range summary {
			fmt.Println("   ", s)
		}
	}
	summaryMu.Unlock()
	os.Exit(code)
}

// record adds a line to the summary printed after the run.
func record(t *testing.T, format string, args ...any) {
	t.Helper()
	s := fmt.Sprintf(format, args...)
	t.Log(s)
	summaryMu.Lock()
	summary = append(summary, fmt.Sprintf("%-28s %s", t.Name(), s))
	summaryMu.Unlock()
}

// requireLab skips (or, with CI=true, fails) t when the lab cannot run
// here, and builds the binaries on first use.
func requireLab(t testing.TB) {
	t.Helper()
	setupMu.Lock()
	if !setupRan {
		setupRan = true
		setupErr = setup()
	}
	err := setupErr
	setupMu.Unlock()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("the end-to-end lab cannot run: %v (CI=true: failing instead of skipping)", err)
	}
	t.Skipf("skipping: the end-to-end lab cannot run: %v", err)
}

func setup() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (network namespaces, veth, routes)")
	}
	for _, bin := range []string{"ip", "bird", "etcd", "etcdctl", "ping", "sysctl"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s is not in PATH (run `make deps`)", bin)
		}
	}
	probe := fmt.Sprintf("eprobe%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		return fmt.Errorf("no network namespace support: ip netns add: %v: %s", err, bytes.TrimSpace(out))
	}
	out, err := exec.Command("ip", "-n", probe, "link", "add", "p0", "type", "veth", "peer", "name", "p1").CombinedOutput()
	_ = exec.Command("ip", "netns", "del", probe).Run()
	if err != nil {
		return fmt.Errorf("no veth support in a namespace: %v: %s", err, bytes.TrimSpace(out))
	}
	removeStaleLabs()
	runRoot = runDir(os.Getpid())
	if err := os.MkdirAll(runRoot, 0o755); err != nil {
		return err
	}
	if d := os.Getenv("ROOST_E2E_BIN"); d != "" {
		binDir = d
		for _, b := range []string{"confd", "birdctl", "roost-node", "roost-cni"} {
			if _, err := os.Stat(filepath.Join(d, b)); err != nil {
				return fmt.Errorf("ROOST_E2E_BIN: %w", err)
			}
		}
		return nil
	}
	binDir = filepath.Join(runRoot, "bin")
	return buildBinaries(binDir)
}

// runDir holds the files of the run with this pid.
func runDir(pid int) string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("roost-e2e-%d", pid))
}

// buildBinaries builds the programs under test from this tree, so a run
// never uses stale (or someone else's) bin/.
func buildBinaries(dir string) error {
	gobin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		if gobin, err = exec.LookPath("go"); err != nil {
			return fmt.Errorf("cannot build the binaries: go is not in PATH (or set ROOST_E2E_BIN)")
		}
	}
	for _, p := range []struct{ name, pkg string }{
		{"confd", "github.com/roostnet/roost/confd"},
		{"birdctl", "github.com/roostnet/roost/birdctl"},
		{"roost-node", "github.com/roostnet/roost/node"},
		{"roost-cni", cniPackage},
	} {
		cmd := exec.Command(gobin, "build", "-o", filepath.Join(dir, p.name), p.pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v: %s", p.pkg, err, bytes.TrimSpace(out))
		}
	}
	return nil
}

var (
	staleRE    = regexp.MustCompile(`^e([a-z]+)([0-9]+)-`)
	staleDirRE = regexp.MustCompile(`^roost-e2e-([0-9]+)$`)
)

// removeStaleLabs removes the namespaces and files of e2e runs whose
// process is gone (a run killed by a timeout cannot clean up after
// itself).
func removeStaleLabs() {
	if ents, err := os.ReadDir(os.TempDir()); err == nil {
		for _, e := range ents {
			m := staleDirRE.FindStringSubmatch(e.Name())
			if m == nil {
				continue
			}
			if pid, _ := strconv.Atoi(m[1]); pid != os.Getpid() && syscall.Kill(pid, 0) != nil {
				lab.UnmountUnder(filepath.Join(os.TempDir(), e.Name())) // podman's storage (TestCNIPodman)
				os.RemoveAll(filepath.Join(os.TempDir(), e.Name()))
			}
		}
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		ns, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		m := staleRE.FindStringSubmatch(ns)
		if m == nil || !labTags[m[1]] {
			continue
		}
		pid, _ := strconv.Atoi(m[2])
		name := "e" + m[1] + m[2]
		if seen[name] || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		seen[name] = true
		_ = lab.Teardown(name, "")
	}
}

// tag registers a lab name tag at package init (see labTags).
func tag(s string) string {
	if len(s) > 4 || !regexp.MustCompile(`^[a-z]+$`).MatchString(s) {
		panic("lab tag must be 1-4 lowercase letters: " + s)
	}
	if labTags[s] {
		panic("duplicate lab tag " + s)
	}
	labTags[s] = true
	return s
}

// newLab builds a lab for t, named after tag, removed when t ends (its
// processes' logs and every host's BGP status and routes are logged first
// when t failed).
func newLab(t *testing.T, tagName string, o lab.Options) *cluster {
	t.Helper()
	requireLab(t)
	if !labTags[tagName] {
		t.Fatalf("unregistered lab tag %q", tagName)
	}
	o.Name = fmt.Sprintf("e%s%d", tagName, os.Getpid())
	o.BinDir = binDir
	o.Dir = filepath.Join(runRoot, o.Name)
	t.Cleanup(func() { os.RemoveAll(o.Dir) }) // after Close (cleanups run last-in first-out)
	ctx := t.Context()
	start := time.Now()
	l, err := lab.New(ctx, o)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	c := &cluster{t: t, ctx: ctx, Lab: l}
	t.Cleanup(func() {
		start := time.Now()
		l.Close()
		t.Logf("lab %s removed in %s", o.Name, time.Since(start).Round(time.Millisecond))
		if out, _ := exec.Command("ip", "netns", "list").Output(); bytes.Contains(out, []byte(o.Name+"-")) {
			t.Errorf("namespaces of lab %s left behind:\n%s", o.Name, out)
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpState()
		}
	})
	t.Logf("lab %s: %d hosts on %d segment(s), etcd %s, in %s", o.Name, len(l.Hosts), len(l.Segments), l.EtcdURL, time.Since(start).Round(time.Millisecond))
	return c
}

func (c *cluster) dumpState() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var b strings.Builder
	for _, h := range c.Hosts {
		out, err := c.Birdctl(ctx, h, "node", "status")
		fmt.Fprintf(&b, "--- %s: birdctl node status (err %v)\n%s", h.Name, err, out)
		out, _ = c.Exec(ctx, h.NS, nil, "ip", "route")
		fmt.Fprintf(&b, "--- %s: ip route\n%s", h.Name, out)
	}
	c.DumpLogs(&b, 25)
	c.t.Log("state at failure:\n" + b.String())
}

// sameInstant reports whether two BIRD "since" times (hh:mm:ss.mmm) are
// within a few milliseconds of each other: BIRD converts its monotonic
// timestamps to wall-clock time at every query, so one unchanged state
// change can print a millisecond apart in two replies.
func sameInstant(a, b string) bool {
	if a == b {
		return true
	}
	ta, errA := time.Parse("15:04:05.000", a)
	tb, errB := time.Parse("15:04:05.000", b)
	if errA != nil || errB != nil {
		return false
	}
	return (ta.Sub(tb)).Abs() <= 5*time.Millisecond
}

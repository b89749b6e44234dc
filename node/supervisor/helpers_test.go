package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/roostnet/roost/birdctl/birdsock/birdtest"
	"github.com/roostnet/roost/node/internal/nstest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// requireBird returns BIRD's path; without BIRD the test skips, or fails
// under CI=true.
func requireBird(t *testing.T) string {
	t.Helper()
	p, err := birdtest.Binary()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true requires BIRD: %v", err)
		}
		t.Skipf("%v; install bird2 to run this test", err)
	}
	return p
}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// binaries builds roost-node and confd once per test binary run.
func binaries(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		}
		binDir, binErr = os.MkdirTemp("", "roost-supervisor-bin-")
		if binErr != nil {
			return
		}
		for name, pkg := range map[string]string{"roost-node": "github.com/roostnet/roost/node", "confd": "github.com/roostnet/roost/confd"} {
			cmd := exec.Command(goBin, "build", "-o", filepath.Join(binDir, name), pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				binErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

// testProc is a process the test started inside a namespace.
type testProc struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

// startInNS runs bin in ns, output to logPath; the test's cleanup kills it.
func startInNS(t *testing.T, ns *nstest.NS, logPath string, env []string, bin string, args ...string) *testProc {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, bin}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	p := &testProc{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- %s\n%s", logPath, tail(string(b), 60))
		}
	})
	return p
}

func (p *testProc) kill() {
	if !p.exited() {
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *testProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// nsHTTP is an HTTP client whose connections are made inside ns.
func nsHTTP(ns *nstest.NS) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := ns.Do(func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
}

// logEntry is one JSON log line of roost-node.
type logEntry map[string]any

func (e logEntry) str(k string) string { s, _ := e[k].(string); return s }
func (e logEntry) int(k string) int    { f, _ := e[k].(float64); return int(f) }

// jsonLog reads roost-node's JSON log (other lines are skipped).
func jsonLog(t *testing.T, path string) []logEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []logEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e logEntry
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

// find returns the index of the first entry at or after from matching.
func find(entries []logEntry, from int, match func(logEntry) bool) int {
	for i := from; i < len(entries); i++ {
		if match(entries[i]) {
			return i
		}
	}
	return -1
}

func msgIs(component, msg string) func(logEntry) bool {
	return func(e logEntry) bool { return e.str("component") == component && e.str("msg") == msg }
}

// processesIn lists the pids running in a namespace.
func processesIn(t *testing.T, ns *nstest.NS) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "pids", ns.Name).Output()
	if err != nil {
		t.Fatalf("ip netns pids %s: %v", ns.Name, err)
	}
	return strings.Fields(string(out))
}

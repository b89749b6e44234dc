package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roostnet/roost/birdctl/birdsock"
	"github.com/roostnet/roost/node/internal/nstest"
)

// The entrypoint end to end: `roost-node run --with-bird --with-confd` in a
// network namespace, with real confd and BIRD, the file datastore, and a
// BGP peer (a plain BIRD) in a second namespace.

const (
	nodeIP   = "10.201.0.1"
	peerIP   = "10.201.0.2"
	peer2IP  = "10.201.0.3" // a Node without a router: its session stays down
	meshPeer = "Mesh_10_201_0_2"
	mesh2    = "Mesh_10_201_0_3"
	listen   = "127.0.0.1:9099"
)

type entryEnv struct {
	t          *testing.T
	bins       string
	node, peer *nstest.NS
	dir        string
	dsDir      string
	socket     string
	birdCfg    string
	peerSocket string
	runs       int
}

func newEntryEnv(t *testing.T) *entryEnv {
	nstest.RequireRoot(t)
	requireBird(t)
	e := &entryEnv{t: t, bins: binaries(t), dir: t.TempDir()}
	e.node = nstest.New(t, "node")
	e.peer = nstest.New(t, "peer")
	nstest.Veth(t, e.node, "eth0", e.peer, "eth0")
	e.node.Addr(t, "eth0", nodeIP+"/24")
	e.peer.Addr(t, "eth0", peerIP+"/24")
	e.dsDir = filepath.Join(e.dir, "resources")
	e.socket = filepath.Join(e.dir, "run", "bird.ctl")
	e.birdCfg = filepath.Join(e.dir, "etc", "bird", "bird.cfg")
	e.peerSocket = filepath.Join(e.dir, "peer.ctl")
	if err := os.MkdirAll(e.dsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	e.writeResources(false)
	return e
}

func (e *entryEnv) writeResources(withPeer2 bool) {
	y := `apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 64512, nodeToNodeMeshEnabled: true}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool1}
spec: {cidr: 10.244.0.0/16, blockSize: 26, vxlanMode: Always, ipipMode: Never}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: peer1}
spec: {bgp: {ipv4Address: ` + peerIP + `/24}}
`
	if withPeer2 {
		y += `---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: peer2}
spec: {bgp: {ipv4Address: ` + peer2IP + `/24}}
`
	}
	// Written aside and renamed, so the watcher never sees half a file.
	tmp := filepath.Join(e.dir, "cluster.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(y), 0o644); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(e.dsDir, "cluster.yaml")); err != nil {
		e.t.Fatal(err)
	}
}

// startPeer runs the peer router: a BIRD that exports 10.99.1.0/24.
func (e *entryEnv) startPeer() *testProc {
	cfg := filepath.Join(e.dir, "peer.conf")
	conf := fmt.Sprintf(`router id %[1]s;
protocol device {}
protocol static { ipv4; route 10.99.1.0/24 blackhole; }
protocol bgp node1 {
  local %[1]s as 64512; neighbor %[2]s as 64512; multihop;
  graceful restart; connect delay time 1; connect retry time 1; error wait time 1,2;
  ipv4 { import all; export all; };
}
`, peerIP, nodeIP)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		e.t.Fatal(err)
	}
	bird, _ := BirdBinary("")
	p := startInNS(e.t, e.peer, filepath.Join(e.dir, "peer.log"), nil, bird, "-f", "-c", cfg, "-s", e.peerSocket)
	waitFor(e.t, "the peer BIRD", 10*time.Second, func() bool { return BirdLive(context.Background(), e.peerSocket) == nil })
	return p
}

func (e *entryEnv) env(extra ...string) []string {
	return append([]string{
		"DATASTORE_TYPE=file", "DATASTORE_FILE=" + e.dsDir, "NODENAME=node1", "IP=" + nodeIP + "/24",
		"ROOST_LOG_FORMAT=json", "ROOST_NODE_LISTEN=" + listen,
		// Not the machine's /var/lib/calico files.
		"ROOST_MTU_FILE=" + filepath.Join(e.dir, "mtu"), "ROOST_NODENAME_FILE=" + filepath.Join(e.dir, "nodename"),
		"ROOST_BIRD_CONFIG=" + e.birdCfg, "BIRD_SOCKET=" + e.socket,
		"ROOST_CONFD_PATH=" + filepath.Join(e.bins, "confd"),
		"ROOST_RESTART_BACKOFF_MIN=200ms", "ROOST_RESTART_BACKOFF_MAX=1s",
	}, extra...)
}

// run starts the entrypoint.
func (e *entryEnv) run(extraEnv ...string) *testProc {
	return e.runArgs([]string{"run", "--with-bird", "--with-confd"}, extraEnv...)
}

func (e *entryEnv) runArgs(args []string, extraEnv ...string) *testProc {
	e.runs++
	log := filepath.Join(e.dir, fmt.Sprintf("node-%d.log", e.runs))
	return startInNS(e.t, e.node, log, e.env(extraEnv...), filepath.Join(e.bins, "roost-node"), args...)
}

// readyz returns /readyz's code and body.
func (e *entryEnv) readyz() (int, report, error) {
	resp, err := nsHTTP(e.node).Get("http://" + listen + "/readyz")
	if err != nil {
		return 0, report{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return resp.StatusCode, r, fmt.Errorf("%v: %s", err, b)
	}
	return resp.StatusCode, r, nil
}

func (e *entryEnv) waitReady(what string, timeout time.Duration, cond func(report) bool) report {
	e.t.Helper()
	var last report
	var lastErr error
	deadline := time.Now().Add(timeout)
	for {
		code, r, err := e.readyz()
		last, lastErr = r, err
		if err == nil && code == 200 && r.Ready && (cond == nil || cond(r)) {
			return r
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(last, "", "  ")
			e.t.Fatalf("%s: not ready after %v (err %v): %s", what, timeout, lastErr, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func child(r report, name string) ChildStatus {
	for _, c := range r.Supervisor.Children {
		if c.Name == name {
			return c
		}
	}
	return ChildStatus{}
}

// health runs `roost-node health` in the node's namespace.
func (e *entryEnv) health(args ...string) (string, int) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", e.node.Name, filepath.Join(e.bins, "roost-node"), "health"}, args...)...)
	cmd.Env = append(os.Environ(), e.env()...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	return strings.TrimSpace(string(out)), code
}

func (e *entryEnv) protocols(socket string) map[string]string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := birdsock.Dial(ctx, socket)
	if err != nil {
		return nil
	}
	defer c.Close()
	ps, err := c.Protocols(ctx)
	if err != nil {
		return nil
	}
	m := map[string]string{}
	for _, p := range ps {
		m[p.Name] = p.Info
	}
	return m
}

func (e *entryEnv) peerRoutes() string { return e.peerExec("show route protocol node1") }

func (e *entryEnv) peerExec(cmd string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := birdsock.Dial(ctx, e.peerSocket)
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	rep, err := c.Exec(ctx, cmd)
	if err != nil {
		return err.Error()
	}
	return rep.Text()
}

// stop sends SIGTERM and checks that roost-node and every child are gone
// and nothing is left in the node's namespace.
func (e *entryEnv) stop(p *testProc, children ...int) {
	e.t.Helper()
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		e.t.Fatal("roost-node did not exit within 30s of SIGTERM")
	}
	if p.err != nil {
		e.t.Errorf("roost-node exited with %v after SIGTERM", p.err)
	}
	e.t.Logf("stopped in %v", time.Since(start).Round(time.Millisecond))
	for _, pid := range children {
		if alive(pid) {
			e.t.Errorf("child %d still running after roost-node exited", pid)
		}
	}
	if left := processesIn(e.t, e.node); len(left) > 0 {
		e.t.Errorf("processes left in the node's namespace: %v", left)
	}
}

func TestEntrypoint(t *testing.T) {
	e := newEntryEnv(t)

	// 1. Start without the peer: ordered start, then /readyz stays false
	//    until the BGP session reached Established.
	p := e.run()
	waitFor(t, "BIRD to answer", 30*time.Second, func() bool { return BirdLive(context.Background(), e.socket) == nil })
	var r report
	waitFor(t, "/readyz to name the BGP session", 10*time.Second, func() bool {
		code, rr, err := e.readyz()
		r = rr
		return err == nil && code == 503 && strings.Contains(rr.Reason, meshPeer)
	})
	if !r.Alive || r.Supervisor.BGP == nil || r.Supervisor.BGP.Sessions[meshPeer] == "" {
		t.Fatalf("readyz before the peer: %+v", r)
	}
	if out, code := e.health("--bird-live", "--confd-live", "--node-live"); code != 0 || out != "ok: bird-live, confd-live, node-live" {
		t.Errorf("health live checks: %d %q", code, out)
	}
	if out, code := e.health("--bird-ready"); code != 1 || !strings.HasPrefix(out, "bird-ready: 1 of 1 BGP sessions not Established: "+meshPeer) {
		t.Errorf("health --bird-ready without the peer: %d %q", code, out)
	}
	if out, code := e.health("--node-ready"); code != 1 || !strings.Contains(out, meshPeer) {
		t.Errorf("health --node-ready without the peer: %d %q", code, out)
	}
	if out, code := e.health("--bird-ready", "--ready-require-established=false"); code != 0 {
		t.Errorf("health --bird-ready, Established not required: %d %q", code, out)
	}

	entries := jsonLog(t, p.logPath)
	order := []struct {
		what  string
		match func(logEntry) bool
	}{
		{"the node registered", func(e logEntry) bool { return e.str("msg") == "startup: node registered" }},
		{"confd started", msgIs("confd", "started")},
		{"confd's own log", msgIs("confd", "Starting confd")},
		{"confd rendered", msgIs("confd", "ready")},
		{"BIRD started", msgIs("bird", "started")},
		{"BIRD's own log", msgIs("bird", "Started")},
		{"BIRD answers", msgIs("bird", "ready")},
	}
	at := 0
	for _, o := range order {
		i := find(entries, at, o.match)
		if i < 0 {
			t.Fatalf("log: %s missing after entry %d", o.what, at)
		}
		at = i
	}
	birdStart := entries[find(entries, 0, msgIs("bird", "started"))]
	if args := fmt.Sprint(birdStart["args"]); !strings.Contains(args, "-f -c "+filepath.Join(e.dir, "run", "bird-supervised.conf")+" -s "+e.socket) || strings.Contains(args, "-R") {
		t.Errorf("BIRD's first start: %s", args)
	}
	if _, err := os.Stat(e.birdCfg); err != nil {
		t.Errorf("rendered config: %v", err)
	}

	peer := e.startPeer()
	r = e.waitReady("after the peer came up", 30*time.Second, nil)
	if !r.Supervisor.BGP.AllEstablishedOnce || !strings.HasPrefix(r.Supervisor.BGP.Sessions[meshPeer], "Established") {
		t.Fatalf("bgp: %+v", r.Supervisor.BGP)
	}
	if out, code := e.health("--bird-ready", "--bird-live", "--confd-live", "--node-ready", "--node-live"); code != 0 {
		t.Errorf("health, all: %d %q", code, out)
	}
	birdPID, confdPID := child(r, "bird").PID, child(r, "confd").PID

	// 2. Kill BIRD: restarted with -R on the current files, the session
	//    is back, and confd still reconfigures the new BIRD.
	syscall.Kill(birdPID, syscall.SIGKILL)
	r = e.waitReady("after BIRD was killed", 30*time.Second, func(r report) bool {
		c := child(r, "bird")
		return c.PID != birdPID && c.Restarts == 1 && strings.HasPrefix(r.Supervisor.BGP.Sessions[meshPeer], "Established")
	})
	if c := child(r, "bird"); !strings.Contains(c.LastExit, "SIGKILL") {
		t.Errorf("bird's last exit %q", c.LastExit)
	}
	entries = jsonLog(t, p.logPath)
	i := find(entries, 0, func(e logEntry) bool {
		return e.str("component") == "bird" && e.str("msg") == "exited unexpectedly" && e.int("pid") == birdPID
	})
	j := find(entries, max(i, 0), msgIs("bird", "started"))
	if i < 0 || j < 0 || !strings.Contains(fmt.Sprint(entries[j]["args"]), "-R") {
		t.Errorf("log: exit at %d, restart at %d (restart must use -R)", i, j)
	}
	birdPID = child(r, "bird").PID
	e.writeResources(true)
	waitFor(t, "BIRD reconfigured with "+mesh2, 20*time.Second, func() bool { _, ok := e.protocols(e.socket)[mesh2]; return ok })

	// 3. Kill confd: restarted; it renders again and still drives BIRD.
	syscall.Kill(confdPID, syscall.SIGKILL)
	r = e.waitReady("after confd was killed", 30*time.Second, func(r report) bool {
		c := child(r, "confd")
		return c.PID != confdPID && c.Restarts == 1 && c.Ready
	})
	if child(r, "bird").PID != birdPID {
		t.Error("BIRD was restarted when confd died")
	}
	confdPID = child(r, "confd").PID
	e.writeResources(false)
	waitFor(t, "BIRD reconfigured without "+mesh2, 20*time.Second, func() bool {
		ps := e.protocols(e.socket)
		_, ok := ps[mesh2]
		return ps != nil && !ok
	})
	// A session that was never Established (peer2 is gone now) and the
	// latch: a peer going down later does not make the node unready.
	r = e.waitReady("after the reconfiguration", 10*time.Second, nil)

	// 4. SIGTERM: BIRD leaves with graceful restart (the peer keeps the
	//    node's routes), then confd, then the agent; nothing is left.
	if !strings.Contains(e.peerRoutes(), "10.244.") {
		t.Fatalf("the peer has no route from the node: %s", e.peerRoutes())
	}
	e.stop(p, birdPID, confdPID)
	if routes := e.peerRoutes(); !strings.Contains(routes, "10.244.") {
		t.Errorf("graceful restart: the peer dropped the node's routes:\n%s\n%s", routes, e.peerExec("show protocols all node1"))
	}
	entries = jsonLog(t, p.logPath)
	order = []struct {
		what  string
		match func(logEntry) bool
	}{
		{"stopping", func(e logEntry) bool { return strings.HasPrefix(e.str("msg"), "stopping: BIRD") }},
		{"BIRD stopping", msgIs("bird", "stopping")},
		{"BIRD graceful", func(e logEntry) bool {
			return e.str("component") == "bird" && strings.HasPrefix(e.str("msg"), "BIRD left with graceful restart")
		}},
		{"BIRD stopped", msgIs("bird", "stopped")},
		{"confd stopped", msgIs("confd", "stopped")},
		{"the agent stopped", func(e logEntry) bool { return e.str("msg") == "roost-node stopped" }},
	}
	at = 0
	for _, o := range order {
		i := find(entries, at, o.match)
		if i < 0 {
			t.Fatalf("shutdown log: %s missing after entry %d", o.what, at)
		}
		at = i
	}
	if _, err := os.Stat(filepath.Join(e.dir, "run", grMarker)); err != nil {
		t.Errorf("graceful stop marker: %v", err)
	}

	// 5. The next start recovers (-R: the marker); stopping with
	//    ROOST_BIRD_GRACEFUL_RESTART=false (down) withdraws the routes.
	p = e.run("ROOST_BIRD_GRACEFUL_RESTART=false")
	e.waitReady("second run", 30*time.Second, nil)
	entries = jsonLog(t, p.logPath)
	if k := find(entries, 0, msgIs("bird", "started")); k < 0 || strings.Contains(fmt.Sprint(entries[k]["args"]), "-R") {
		t.Errorf("with graceful restart off, BIRD must start without -R")
	}
	if _, err := os.Stat(filepath.Join(e.dir, "run", grMarker)); err != nil {
		t.Errorf("the marker must stay while graceful restart is off: %v", err)
	}
	_, r, _ = e.readyz()
	e.stop(p, child(r, "bird").PID, child(r, "confd").PID)
	waitFor(t, "the peer to withdraw the node's routes", 10*time.Second, func() bool { return !strings.Contains(e.peerRoutes(), "10.244.") })

	p = e.run()
	e.waitReady("third run", 30*time.Second, nil)
	entries = jsonLog(t, p.logPath)
	if k := find(entries, 0, msgIs("bird", "started")); k < 0 || !strings.Contains(fmt.Sprint(entries[k]["args"]), "-R") {
		t.Errorf("after a graceful stop, BIRD must start with -R")
	}
	_, r, _ = e.readyz()
	e.stop(p, child(r, "bird").PID, child(r, "confd").PID)
	peer.kill()

	// Child output carried the component field throughout.
	for _, c := range []string{"bird", "confd"} {
		if find(entries, 0, func(e logEntry) bool {
			return e.str("component") == c && !slices.Contains([]string{"started", "ready", "stopping", "stopped"}, e.str("msg"))
		}) < 0 {
			t.Errorf("no forwarded %s output in the log", c)
		}
	}
}

// A roost-node killed with SIGKILL takes its children with it (Pdeathsig).
func TestEntrypointKilled(t *testing.T) {
	e := newEntryEnv(t)
	p := e.run("ROOST_READY_REQUIRE_ESTABLISHED=false")
	r := e.waitReady("start", 30*time.Second, nil)
	pids := []int{child(r, "bird").PID, child(r, "confd").PID}
	p.kill()
	waitFor(t, "the children to die", 10*time.Second, func() bool { return !alive(pids[0]) && !alive(pids[1]) })
	waitFor(t, "an empty namespace", 10*time.Second, func() bool { return len(processesIn(t, e.node)) == 0 })
}

// --with-bird alone: BIRD waits for a configuration someone else renders
// (e.g. a confd run as its own service), then runs on it.
func TestEntrypointBirdOnly(t *testing.T) {
	e := newEntryEnv(t)
	p := e.runArgs([]string{"run", "--with-bird"})
	code, r, err := 0, report{}, error(nil)
	waitFor(t, "/readyz to wait for the config", 20*time.Second, func() bool {
		code, r, err = e.readyz()
		return err == nil && code == 503 && strings.Contains(r.Reason, "waiting for "+e.birdCfg)
	})
	if BirdLive(context.Background(), e.socket) == nil {
		t.Fatal("BIRD runs without a configuration")
	}
	if err := os.MkdirAll(filepath.Dir(e.birdCfg), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.birdCfg, []byte("router id 10.201.0.1;\nprotocol device {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = e.waitReady("BIRD on the config", 20*time.Second, nil)
	if len(r.Supervisor.Children) != 1 || r.Supervisor.Children[0].Name != "bird" {
		t.Errorf("children %+v", r.Supervisor.Children)
	}
	if out, code := e.health("--confd-live"); code != 1 || !strings.Contains(out, "connection refused") {
		t.Errorf("confd-live without confd: %d %q", code, out)
	}
	e.stop(p, r.Supervisor.Children[0].PID)
}

package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var confdBin string

// TestMain builds the real binary once; these tests drive it as an
// operator (or the packaging) would.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "confd-bin-")
	if err != nil {
		panic(err)
	}
	confdBin = filepath.Join(dir, "confd")
	if out, err := exec.Command("go", "build", "-o", confdBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building confd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const cluster = `apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 64512}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node1}
spec: {bgp: {ipv4Address: 10.0.0.1/24}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node2}
spec: {bgp: {ipv4Address: 10.0.0.2/24}}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool1}
spec: {cidr: 10.244.0.0/16, vxlanMode: Always}
---
apiVersion: projectcalico.org/v3
kind: BlockAffinity
metadata: {name: node1-block}
spec: {node: node1, cidr: 10.244.7.0/26}
`

func write(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func birdBin(t *testing.T) string {
	for _, p := range []string{"bird", "/usr/sbin/bird"} {
		if b, err := exec.LookPath(p); err == nil {
			return b
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("bird is not installed (CI=true requires it)")
	}
	t.Skip("bird is not installed")
	return ""
}

// The contract other tools rely on (issue: keep it stable).
func TestOnetimeContract(t *testing.T) {
	bird := birdBin(t)
	dir := t.TempDir()
	in := write(t, dir, "cluster.yaml", cluster)
	out := filepath.Join(dir, "out")
	cmd := exec.Command(confdBin, "--onetime", "--sync-only", "--datastore-type=file", "--datastore-file="+in, "--nodename=node1", "--output-dir="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("confd --onetime: %v\n%s", err, b)
	}
	main, err := os.ReadFile(filepath.Join(out, "bird.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(main, []byte("include")) {
		t.Errorf("bird.cfg includes nothing:\n%s", main)
	}
	// Run the check from another directory: includes resolve by DIR.
	check := exec.Command(bird, "-p", "-c", filepath.Join(out, "bird.cfg"))
	check.Dir = "/"
	if b, err := check.CombinedOutput(); err != nil {
		t.Fatalf("bird -p -c on the rendered set: %v\n%s", err, b)
	}
	all, _ := exec.Command("cat", filepath.Join(out, "peers.cfg"), filepath.Join(out, "bird_ipam.cfg"), filepath.Join(out, "bird_aggr.cfg")).Output()
	for _, want := range []string{"protocol bgp Mesh_10_0_0_2", "10.244.7.0/26"} {
		if !bytes.Contains(all, []byte(want)) {
			t.Errorf("rendered set lacks %q", want)
		}
	}
}

func TestOnetimeErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name  string
		input string
		args  []string
		want  []string
	}{
		{"invalid resource", cluster + "---\nkind: BGPPeer\napiVersion: projectcalico.org/v3\nmetadata: {name: bad}\nspec: {peerIP: 10.0.0.300, asNumber: 1}\n",
			nil, []string{`BGPPeer "bad"`, "spec.peerIP", "10.0.0.300"}},
		{"hostile password", cluster + "---\nkind: BGPPeer\napiVersion: projectcalico.org/v3\nmetadata: {name: p}\nspec: {peerIP: 10.0.0.9, asNumber: 65001, password: {secretKeyRef: {name: s, key: k}}}\n",
			[]string{"--secrets-dir=" + secrets(t, dir, "pa\"ss")}, []string{"BGPPeer", "p", "password"}},
		{"unknown node", cluster, []string{"--nodename=ghost"}, []string{"ghost"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := write(t, t.TempDir(), "c.yaml", tt.input)
			out := filepath.Join(t.TempDir(), "out")
			args := append([]string{"--onetime", "--sync-only", "--datastore-type=file", "--datastore-file=" + in, "--nodename=node1", "--output-dir=" + out}, tt.args...)
			b, err := exec.Command(confdBin, args...).CombinedOutput()
			if err == nil {
				t.Fatalf("exit 0 on bad input:\n%s", b)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(b), w) {
					t.Errorf("output does not mention %q:\n%s", w, b)
				}
			}
			if strings.Contains(string(b), "pa\"ss") {
				t.Error("the password leaked into the output")
			}
			if _, err := os.Stat(filepath.Join(out, "peers.cfg")); err == nil {
				t.Error("files were written despite the error")
			}
		})
	}
	// A template error names the template and line.
	tdir := t.TempDir()
	write(t, tdir, "bird.cfg.template", "router id 1.1.1.1;\n{{ getv \"/nope\" }}\n")
	cdir := t.TempDir()
	write(t, cdir, "bird.toml", "[template]\nsrc = \"bird.cfg.template\"\ndest = \"/etc/roost/bird/bird.cfg\"\n")
	in := write(t, dir, "c.yaml", cluster)
	b, err := exec.Command(confdBin, "--onetime", "--sync-only", "--datastore-type=file", "--datastore-file="+in, "--nodename=node1",
		"--output-dir="+filepath.Join(dir, "o2"), "--templatedir="+tdir, "--confdir="+cdir).CombinedOutput()
	if err == nil || !strings.Contains(string(b), "bird.cfg.template:2") {
		t.Errorf("template error should exit non-zero naming template:line: %v\n%s", err, b)
	}
}

func secrets(t *testing.T, dir, password string) string {
	d := filepath.Join(dir, "secrets")
	os.MkdirAll(filepath.Join(d, "s"), 0o700)
	write(t, filepath.Join(d, "s"), "k", password)
	return d
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Watch mode with files: an edit re-renders at once, an admin's template
// edit re-renders at once, metrics and health answer, SIGHUP re-renders
// and SIGTERM stops cleanly.
func TestDaemonSignalsMetricsHealthAndEdits(t *testing.T) {
	dir := t.TempDir()
	in := write(t, dir, "cluster.yaml", cluster)
	out := filepath.Join(dir, "out")
	tmplDir, confDir := filepath.Join(dir, "templates"), filepath.Join(dir, "conf.d")
	for _, d := range []string{tmplDir, confDir} {
		os.MkdirAll(d, 0o755)
	}
	for _, f := range []struct{ from, to string }{{"../templates", tmplDir}, {"../etc/conf.d", confDir}} {
		ents, _ := os.ReadDir(f.from)
		for _, e := range ents {
			if b, err := os.ReadFile(filepath.Join(f.from, e.Name())); err == nil && !strings.HasSuffix(e.Name(), ".go") {
				os.WriteFile(filepath.Join(f.to, e.Name()), b, 0o644)
			}
		}
	}
	metricsAddr, healthAddr := freeAddr(t), freeAddr(t)
	var logs bytes.Buffer
	cmd := exec.Command(confdBin, "--sync-only", "--datastore-type=file", "--datastore-file="+in, "--nodename=node1", "--output-dir="+out,
		"--templatedir="+tmplDir, "--confdir="+confDir, "--metrics-addr="+metricsAddr, "--health-addr="+healthAddr)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("confd output:\n%s", logs.String())
		}
	})
	peers := filepath.Join(out, "peers.cfg")
	read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
	waitFor(t, "first render", func() bool { return strings.Contains(read(peers), "Mesh_10_0_0_2") })
	waitFor(t, "ready", func() bool { c, _ := get("http://" + healthAddr + "/readyz"); return c == 200 })
	if c, body := get("http://" + healthAddr + "/healthz"); c != 200 {
		t.Errorf("/healthz: %d %s", c, body)
	}

	// A datastore edit.
	write(t, dir, "cluster.yaml", cluster+"---\nkind: Node\napiVersion: projectcalico.org/v3\nmetadata: {name: node3}\nspec: {bgp: {ipv4Address: 10.0.0.3/24}}\n")
	waitFor(t, "node3 rendered", func() bool { return strings.Contains(read(peers), "Mesh_10_0_0_3") })

	// An admin edits a template.
	tmpl := filepath.Join(tmplDir, "peers.cfg.template")
	orig := read(tmpl)
	os.WriteFile(tmpl, []byte("# edited by the admin\n"+orig), 0o644)
	waitFor(t, "template edit rendered", func() bool { return strings.HasPrefix(read(peers), "# edited by the admin") })

	// Metrics.
	_, metrics := get("http://" + metricsAddr + "/metrics")
	for _, m := range []string{"roost_confd_renders_total", "roost_confd_in_sync 1", "roost_confd_files_written_total", "roost_confd_datastore_events_total"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("metrics lack %s", m)
		}
	}
	// SIGHUP re-renders (and repairs a hand-edited output file).
	os.WriteFile(peers, []byte("# clobbered\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "SIGHUP re-render", func() bool { return strings.Contains(read(peers), "Mesh_10_0_0_3") })
	// SIGTERM: clean exit.
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("confd did not stop on SIGTERM")
	}
}

// calicoStyleTemplate reads only the key store, the way templates written
// for Calico's confd do (getv, gets, ls, exists over Calico's key names),
// never the computed model.
const calicoStyleTemplate = `# rendered from the key store
{{- $me := "/calico/bgp/v1/host/node1" }}
{{- $globalAS := getv "/calico/bgp/v1/global/as_num" }}
{{- $myAS := $globalAS }}{{ if exists (printf "%s/as_num" $me) }}{{ $myAS = getv (printf "%s/as_num" $me) }}{{ end }}
router id {{ getv (printf "%s/ip_addr_v4" $me) }};
log stderr { {{- if eq (getv "/calico/bgp/v1/global/loglevel" "info") "debug" }} all {{- else }} error, fatal {{- end }} };
protocol device {}
protocol static blocks {
  ipv4;
{{- range gets "/calico/ipam/v2/host/node1/ipv4/block/*" }}
  route {{ replace (base .Key) "-" "/" -1 }} blackhole;
{{- end }}
}
filter pools {
{{- range gets "/calico/v1/ipam/v4/pool/*" }}{{ $pool := json .Value }}
  if net ~ {{ $pool.cidr }} then accept;
{{- end }}
  reject;
}
{{- if eq (json (getv "/calico/bgp/v1/global/node_mesh")).enabled true }}
{{- range $host := ls "/calico/bgp/v1/host" }}{{ if ne $host "node1" }}
{{- $ip := getv (printf "/calico/bgp/v1/host/%s/ip_addr_v4" $host) "" }}{{ if $ip }}
protocol bgp Mesh_{{ replace $ip "." "_" -1 }} {
  local {{ getv (printf "%s/ip_addr_v4" $me) }} as {{ $myAS }};
  neighbor {{ $ip }} as {{ getv (printf "/calico/bgp/v1/host/%s/as_num" $host) $globalAS }};
  ipv4 { import all; export filter pools; };
}
{{- end }}{{ end }}{{ end }}
{{- end }}
{{- range gets "/calico/bgp/v1/global/peer_v4/*" }}{{ $p := json .Value }}
protocol bgp Global_{{ replace $p.ip "." "_" -1 }} {
  local as {{ $myAS }};
  neighbor {{ $p.ip }} as {{ $p.as_num }};
  multihop;
  ipv4 { import all; export filter pools; };
}
{{- end }}
`

// The key store is a compatibility feature: a template written for
// Calico's confd renders through it, from the same datastore, into a
// configuration BIRD accepts. (One-dash flags, as Calico runs confd.)
func TestCalicoStyleTemplate(t *testing.T) {
	bird := birdBin(t)
	dir := t.TempDir()
	in := write(t, dir, "cluster.yaml", cluster+`---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node3}
spec: {bgp: {ipv4Address: 10.0.0.3/24, asNumber: 64513}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec: {peerIP: 10.0.0.254, asNumber: 65001}
`)
	tdir, cdir := t.TempDir(), t.TempDir()
	write(t, tdir, "calico.cfg.template", calicoStyleTemplate)
	write(t, cdir, "calico.toml", "[template]\nsrc = \"calico.cfg.template\"\ndest = \"/etc/roost/bird/bird.cfg\"\n"+
		"keys = [\"/calico/bgp/v1\", \"/calico/v1/ipam\", \"/calico/ipam/v2/host\"]\n")
	out := filepath.Join(dir, "out")
	b, err := exec.Command(confdBin, "-onetime", "-sync-only", "--datastore-type=file", "--datastore-file="+in, "--nodename=node1",
		"--output-dir="+out, "-templatedir="+tdir, "-confdir="+cdir).CombinedOutput()
	if err != nil {
		t.Fatalf("confd: %v\n%s", err, b)
	}
	cfg := filepath.Join(out, "bird.cfg")
	got, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"router id 10.0.0.1;",                 // ip_addr_v4 of this host
		"route 10.244.7.0/26 blackhole;",      // this node's block affinity
		"if net ~ 10.244.0.0/16 then accept;", // the pool
		"protocol bgp Mesh_10_0_0_2 {",        // ls over the host directory
		"neighbor 10.0.0.2 as 64512;",         // no as_num: the global AS (getv default)
		"neighbor 10.0.0.3 as 64513;",         // the host's own as_num
		"local 10.0.0.1 as 64512;",            // exists: node1 has no as_num
		"neighbor 10.0.0.254 as 65001;",       // a global BGPPeer, as JSON under peer_v4
		"log stderr { error, fatal };",        // loglevel defaults to info
	} {
		if !strings.Contains(string(got), want) {
			t.Errorf("rendered config lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(string(got), "Mesh_10_0_0_1 ") {
		t.Errorf("a session to this node itself:\n%s", got)
	}
	if b, err := exec.Command(bird, "-p", "-c", cfg).CombinedOutput(); err != nil {
		t.Fatalf("bird -p on the Calico-style render: %v\n%s\n%s", err, b, got)
	}
}

// A confd killed during a render leaves its stage directory, passwords
// included; the next confd removes it at start.
func TestKilledRenderLeftoversSwept(t *testing.T) {
	dir := t.TempDir()
	in := write(t, dir, "c.yaml", cluster+"---\nkind: BGPPeer\napiVersion: projectcalico.org/v3\nmetadata: {name: p}\nspec: {peerIP: 10.0.0.9, asNumber: 65001, password: {secretKeyRef: {name: s, key: k}}}\n")
	sec := secrets(t, dir, "leftover-s3cret")
	// A check that marks the render as under way, then hangs.
	conf := t.TempDir()
	marker := filepath.Join(dir, "checking")
	write(t, conf, "peers.toml", "[template]\nsrc = \"peers.cfg.template\"\ndest = \"/etc/roost/bird/peers.cfg\"\nmode = \"0600\"\n"+
		"check_cmd = \"touch "+marker+"; sleep 60\"\n")
	out := filepath.Join(dir, "out")
	args := []string{"--onetime", "--datastore-type=file", "--datastore-file=" + in, "--nodename=node1", "--output-dir=" + out,
		"--secrets-dir=" + sec, "--confdir=" + conf}
	cmd := exec.Command(confdBin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	kill := func() {
		if !killed {
			killed = true
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // confd and its check
			cmd.Wait()
		}
	}
	t.Cleanup(kill)
	waitFor(t, "the check to run", func() bool { _, err := os.Stat(marker); return err == nil })
	kill()
	stages, _ := filepath.Glob(filepath.Join(out, ".roost-stage-*"))
	if len(stages) != 1 {
		t.Fatalf("want the killed render's stage directory, got %v", stages)
	}
	if b, err := os.ReadFile(filepath.Join(stages[0], "peers.cfg")); err != nil || !strings.Contains(string(b), "leftover-s3cret") {
		t.Fatalf("stage does not hold the password: %v", err)
	}

	// The next confd (here a one-shot without checks) sweeps it.
	if b, err := exec.Command(confdBin, append(args, "--sync-only")...).CombinedOutput(); err != nil {
		t.Fatalf("confd: %v\n%s", err, b)
	}
	if left, _ := filepath.Glob(filepath.Join(out, ".roost-stage-*")); len(left) != 0 {
		t.Errorf("stale stage left: %v", left)
	}
	if _, err := os.Stat(filepath.Join(out, "peers.cfg")); err != nil {
		t.Errorf("the render did not happen: %v", err)
	}
}

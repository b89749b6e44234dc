package app

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/birdctl/birdsock"
	"github.com/roostnet/roost/confd/config"
	"github.com/roostnet/roost/confd/metrics"
	"github.com/roostnet/roost/etc"
	"github.com/roostnet/roost/templates"
)

// scrape returns confd's /metrics page as a Prometheus scraper sees it.
func (e *env) scrape() string {
	e.t.Helper()
	rec := httptest.NewRecorder()
	e.app.metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// A broken template is counted on /metrics with its file and how it
// failed: a conf.d file that does not load, a template that does not
// parse, one that fails to execute.
func TestTemplateFailuresOnMetrics(t *testing.T) {
	tmplDir, confDir := t.TempDir(), t.TempDir()
	copyFS(t, templates.FS, tmplDir)
	copyFS(t, etc.ConfD(), confDir)
	e := newEnv(t, func(c *config.Config) { c.TemplateDir, c.ConfDir, c.SyncOnly = tmplDir, confDir, true })
	e.put(globalConfig(), node("node1", "10.200.0.1"), node("node2", "10.200.0.2"))
	e.start()
	waitFor(t, "first render", func() bool { return e.app.status().Renders >= 1 && e.app.status().LastError == nil })
	if m := e.scrape(); strings.Contains(m, "roost_confd_template_errors_total{") {
		t.Fatalf("template errors counted before any failure:\n%s", grepLines(m, "roost_confd_template_errors_total"))
	}

	peersTmpl := filepath.Join(tmplDir, "peers.cfg.template")
	orig, err := os.ReadFile(peersTmpl)
	if err != nil {
		t.Fatal(err)
	}
	peersToml := filepath.Join(confDir, "peers.toml")
	origToml, err := os.ReadFile(peersToml)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		file   string
		data   []byte
		series string
	}{
		{"parse", peersTmpl, append([]byte("{{ if }}\n"), orig...), `roost_confd_template_errors_total{file="peers.cfg.template",stage="parse"}`},
		{"execute", peersTmpl, append([]byte("{{ getv \"/no/such/key\" }}\n"), orig...), `roost_confd_template_errors_total{file="peers.cfg.template",stage="execute"}`},
		{"load", peersToml, []byte("[template]\nsrc = \"no-such.template\"\ndest = \"/x/peers.cfg\"\n"), `roost_confd_template_errors_total{file="no-such.template",stage="load"}`},
		{"toml", peersToml, []byte("[template\n"), `roost_confd_template_errors_total{file="peers.toml",stage="load"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(tc.file, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.name == "execute" {
				e.put(node("node3", "10.200.0.3")) // a change to render
			}
			waitFor(t, tc.series, func() bool { return strings.Contains(e.scrape(), tc.series+" ") })
			os.WriteFile(peersTmpl, orig, 0o644)
			os.WriteFile(peersToml, origToml, 0o644)
			waitFor(t, "recovery", func() bool {
				s := e.app.status()
				return s.LastError == nil && strings.Contains(e.file("peers.cfg"), "10.200.0.2")
			})
		})
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func pwPeer(name, ip, secret string) *api.BGPPeer {
	return &api.BGPPeer{Metadata: api.ObjectMeta{Name: name}, Spec: api.BGPPeerSpec{PeerIP: ip, ASNumber: 65001,
		Password: &api.BGPPassword{SecretKeyRef: &api.SecretKeySelector{Name: secret, Key: "pw"}}}}
}

func writeSecret(t *testing.T, dir, name, value string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, name), 0o700); err != nil {
		t.Fatal(err)
	}
	// Written beside and renamed, as an admin's tools do.
	tmp := filepath.Join(dir, name, ".pw.tmp")
	if err := os.WriteFile(tmp, []byte(value), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name, "pw")); err != nil {
		t.Fatal(err)
	}
}

// kubeSecret lays out a secret as a Kubernetes secret volume mounted at
// dir/name: the key is a symlink through `..data`, itself a symlink to a
// timestamped directory, and an update swaps `..data` atomically.
func kubeSecret(t *testing.T, dir, name, version, value string) {
	t.Helper()
	vol := filepath.Join(dir, name)
	ts := filepath.Join(vol, "..ts_"+version)
	if err := os.MkdirAll(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ts, "pw"), []byte(value), 0o600); err != nil {
		t.Fatal(err)
	}
	old, _ := os.Readlink(filepath.Join(vol, "..data"))
	if err := os.Symlink("..ts_"+version, filepath.Join(vol, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(vol, "..data_tmp"), filepath.Join(vol, "..data")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(vol, "pw")); err != nil {
		if err := os.Symlink("..data/pw", filepath.Join(vol, "pw")); err != nil {
			t.Fatal(err)
		}
	}
	if old != "" {
		os.RemoveAll(filepath.Join(vol, old))
	}
}

// waitWithin waits at most d for cond and reports how long it took.
func waitWithin(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(start)
	t.Logf("%s: %v", what, took.Round(time.Millisecond))
	return took
}

// protocol returns BIRD's state and description of one protocol ("" when
// BIRD does not have it).
func (b *birdNS) protocol(name string) (state, description string) {
	c, err := birdsock.Dial(context.Background(), b.socket)
	if err != nil {
		return "", ""
	}
	defer c.Close()
	d, err := c.ProtocolDetail(context.Background(), name)
	if err != nil {
		return "", ""
	}
	return d.State, d.Fields["Description"]
}

// A secret BIRD cannot quote and a missing one disable their sessions
// only, visibly (BIRD's protocol down with the reason, readiness and a
// metric naming peer and secret, never the value); the good peer keeps its
// password and every other change still reaches BIRD. Secret files are
// watched: a new or rotated secret (also by a Kubernetes-style `..data`
// swap) reaches BIRD within a second.
func TestSecretProblemsDisableOnlyTheirSessions(t *testing.T) {
	bin := requireRootAndBird(t)
	secrets := filepath.Join(t.TempDir(), "secrets")
	writeSecret(t, secrets, "good", "good-pass\n")
	const badValue = "x\"; } protocol bgp evil"
	writeSecret(t, secrets, "bad", badValue)
	kubeSecret(t, secrets, "kube", "1", "kube-pass-1")
	e := newEnv(t, func(c *config.Config) { c.SecretsDir = secrets })
	e.put(globalConfig(), node("node1", "10.200.0.1"), node("node2", "10.200.0.2"),
		pwPeer("good", "10.200.0.21", "good"), pwPeer("bad", "10.200.0.22", "bad"),
		pwPeer("missing", "10.200.0.23", "nope"), pwPeer("kube", "10.200.0.24", "kube"))
	e.start()
	cfgPath := filepath.Join(e.out, "bird.cfg")
	waitFor(t, "first render", func() bool { _, err := os.Stat(cfgPath); return err == nil })
	b := newBirdNS(t, bin, cfgPath, e.cfg.BirdSocket)
	b.start()
	waitFor(t, "sessions in BIRD", func() bool {
		ps := b.protocols()
		return ps["Global_10_200_0_21"] && ps["Global_10_200_0_22"] && ps["Global_10_200_0_23"] && ps[meshName("10.200.0.2")]
	})
	for name, want := range map[string]string{
		"Global_10_200_0_22": "Disabled by Roost: BGPPeer bad: spec.password.secretKeyRef: password from secret bad/pw: value cannot be written as a BIRD string: double quote at byte 1",
		"Global_10_200_0_23": "Disabled by Roost: BGPPeer missing: spec.password.secretKeyRef: secret nope/pw not found in " + secrets,
	} {
		state, desc := b.protocol(name)
		if state != "down" || !strings.HasPrefix(desc, want) {
			t.Errorf("%s: state %q, description %q; want down, %q", name, state, desc, want)
		}
	}
	if state, desc := b.protocol("Global_10_200_0_21"); state == "down" || strings.HasPrefix(desc, "Disabled") {
		t.Errorf("good peer: state %q, description %q", state, desc)
	}
	peers := e.file("peers.cfg")
	if !strings.Contains(peers, `password "good-pass";`) || strings.Contains(peers, "evil") {
		t.Errorf("peers.cfg: the good password must be there, nothing of the bad one:\n%s", peers)
	}

	// Readiness and the metric name peer and secret, never the value.
	waitFor(t, "BIRD reconfigured", func() bool { return e.app.status().LastError == nil })
	rec := httptest.NewRecorder()
	metrics.HealthHandler(e.app.status, e.app.readyProblem, nil).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	ready := rec.Body.String()
	for _, want := range []string{"rendered with 2 BGP sessions disabled", "Global_10_200_0_22 (BGPPeer bad:", "bad/pw", "Global_10_200_0_23 (BGPPeer missing:", "nope/pw"} {
		if rec.Code != 503 || !strings.Contains(ready, want) {
			t.Errorf("/readyz %d lacks %q: %s", rec.Code, want, ready)
		}
	}
	m := e.scrape()
	for _, want := range []string{
		`roost_confd_bgp_sessions_disabled{kind="BGPPeer",name="bad",reason="unquotable",secret="bad/pw"} 1`,
		`roost_confd_bgp_sessions_disabled{kind="BGPPeer",name="missing",reason="missing",secret="nope/pw"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(m, "disabled"))
		}
	}
	if strings.Contains(m+ready, "evil") {
		t.Error("the bad secret's value leaked into metrics or readiness")
	}

	// Every other change still renders and reaches BIRD.
	e.put(node("node3", "10.200.0.3"))
	waitFor(t, "Mesh to node3 in BIRD", func() bool { return b.protocols()[meshName("10.200.0.3")] })

	// The missing secret appears: its session comes up within a second.
	writeSecret(t, secrets, "nope", "now-here\n")
	waitWithin(t, time.Second, "new secret enabled the session in BIRD", func() bool {
		state, _ := b.protocol("Global_10_200_0_23")
		return state != "" && state != "down"
	})
	// The bad one is fixed.
	writeSecret(t, secrets, "bad", "fixed-pass")
	waitWithin(t, time.Second, "fixed secret enabled the session in BIRD", func() bool {
		state, _ := b.protocol("Global_10_200_0_22")
		return state != "" && state != "down"
	})
	// A Kubernetes secret volume is updated by its `..data` swap.
	reloaded := e.app.status().LastGoodReload
	kubeSecret(t, secrets, "kube", "2", "kube-pass-2")
	waitWithin(t, time.Second, "rotated Kubernetes secret in peers.cfg and BIRD reconfigured", func() bool {
		s := e.app.status()
		return strings.Contains(e.file("peers.cfg"), `password "kube-pass-2";`) && s.LastGoodReload.After(reloaded)
	})
	waitFor(t, "ready", func() bool { return e.app.sessionProblem() == nil && e.app.status().LastError == nil })
	if m := e.scrape(); strings.Contains(m, "roost_confd_bgp_sessions_disabled{") {
		t.Errorf("disabled sessions still counted:\n%s", grepLines(m, "disabled"))
	}
}

// Files holding BGP passwords are readable by their owner only (BIRD runs
// as root under roost-node), whatever the umask and, for an admin's old
// conf.d copy that says 0644, whatever the resource's mode; directories
// confd creates, stage directories included, are not world-writable.
func TestRenderedFileModes(t *testing.T) {
	old := syscall.Umask(0) // the most permissive umask a process can have
	t.Cleanup(func() { syscall.Umask(old) })
	secrets := filepath.Join(t.TempDir(), "secrets")
	writeSecret(t, secrets, "good", "good-pass\n")
	adminConf := t.TempDir()
	copyFS(t, etc.ConfD(), adminConf)
	toml := filepath.Join(adminConf, "peers.toml")
	b, err := os.ReadFile(toml)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(toml, []byte(strings.Replace(string(b), `mode = "0600"`, `mode = "0644"`, 1)), 0o644)

	for _, tc := range []struct {
		name    string
		confDir string
	}{{"shipped conf.d", ""}, {"admin conf.d with mode 0644", adminConf}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *config.Config) {
				c.SecretsDir, c.SyncOnly, c.KeepStageFiles, c.ConfDir = secrets, true, true, tc.confDir
				c.OutputDir = filepath.Join(c.OutputDir, "new", "bird")
			})
			// An existing file with an open mode (an older release wrote
			// it) is tightened on the next render.
			os.MkdirAll(e.cfg.OutputDir, 0o755)
			os.WriteFile(filepath.Join(e.cfg.OutputDir, "peers.cfg"), []byte("# old\n"), 0o644)
			e.put(globalConfig(), node("node1", "10.200.0.1"), node("node2", "10.200.0.2"), pwPeer("good", "10.200.0.21", "good"))
			e.start()
			peers := filepath.Join(e.cfg.OutputDir, "peers.cfg")
			waitFor(t, "render", func() bool {
				b, _ := os.ReadFile(peers)
				return strings.Contains(string(b), `password "good-pass"`)
			})
			modes := map[string]os.FileMode{}
			walk := func(root string) {
				filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
					if err == nil {
						if st, err := os.Lstat(p); err == nil {
							modes[p] = st.Mode()
						}
					}
					return nil
				})
			}
			walk(filepath.Dir(e.cfg.OutputDir))
			stages := 0
			for p, m := range modes {
				rel, _ := filepath.Rel(e.out, p)
				switch {
				case m.IsDir() && m.Perm()&0o002 != 0:
					t.Errorf("%s: directory mode %v is world-writable", rel, m)
				case m.IsDir() && strings.HasPrefix(filepath.Base(p), ".roost-stage-"):
					stages++
					if m.Perm() != 0o700 {
						t.Errorf("%s: stage directory mode %v, want 0700", rel, m.Perm())
					}
				case filepath.Base(p) == "peers.cfg":
					want := os.FileMode(0o600)
					if tc.confDir != "" {
						want = 0o640 // 0644 without the other users' bit
					}
					if m.Perm() != want {
						t.Errorf("%s (holds a password): mode %v, want %v", rel, m.Perm(), want)
					}
				case m.IsRegular() && m.Perm() != 0o644:
					t.Errorf("%s: mode %v, want 0644 (no secret in it)", rel, m.Perm())
				}
			}
			if stages == 0 {
				t.Errorf("no stage directory kept to check: %v", modes)
			}
		})
	}
}

// ready asks confd's /readyz as a probe would.
func (e *env) ready() (bool, string) {
	rec := httptest.NewRecorder()
	metrics.HealthHandler(e.app.status, e.app.readyProblem, nil).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	return rec.Code == 200, rec.Body.String()
}

// failedReloads is roost_confd_reloads_total{result="failed"}.
func (e *env) failedReloads() string {
	return grepLines(e.scrape(), `roost_confd_reloads_total{result="failed"}`)
}

// A standalone confd is ready again within a second of BIRD's return, not
// at its next retry (--retry-max, 30 s here), and the first configure after
// a BIRD restart does not fail on the connection BIRD closed.
func TestReadyWithinASecondOfBirdsReturn(t *testing.T) {
	bin := requireRootAndBird(t)
	e := newEnv(t, func(c *config.Config) { c.RetryMin, c.RetryMax = 30*time.Second, 30*time.Second })
	e.put(globalConfig(), node("node1", "10.200.0.1"), node("node2", "10.200.0.2"))
	cfgPath := filepath.Join(e.out, "bird.cfg")
	e.start()
	waitFor(t, "first render", func() bool { _, err := os.Stat(cfgPath); return err == nil })
	b := newBirdNS(t, bin, cfgPath, e.cfg.BirdSocket)
	b.start()
	waitWithin(t, time.Second, "ready after BIRD's first start", func() bool { ok, _ := e.ready(); return ok })

	// BIRD restarts while confd is idle; the next change reaches it on the
	// first try.
	b.stop()
	b.start()
	failed := e.failedReloads()
	e.put(node("node3", "10.200.0.3"))
	waitFor(t, "node3 in BIRD", func() bool { return b.protocols()[meshName("10.200.0.3")] })
	if got := e.failedReloads(); got != failed {
		t.Errorf("a reload failed after BIRD restarted: %q -> %q", failed, got)
	}

	// BIRD is down when a change renders: not ready; back up: ready
	// within a second.
	b.stop()
	e.put(node("node4", "10.200.0.4"))
	waitFor(t, "not ready while BIRD is down", func() bool {
		ok, why := e.ready()
		return !ok && strings.Contains(why, "daemon not reachable")
	})
	b.start()
	waitWithin(t, time.Second, "ready after BIRD's return", func() bool { ok, _ := e.ready(); return ok })
	if !b.protocols()[meshName("10.200.0.4")] {
		t.Error("BIRD does not run the latest config")
	}
}

package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roostnet/roost/confd/config"
	"github.com/roostnet/roost/confd/render"
	"github.com/roostnet/roost/etc"
	"github.com/roostnet/roost/templates"
)

// A change in etcd reaches the running BIRD: protocols appear and go; an
// unchanged render does not reconfigure BIRD.
func TestEtcdChangeReachesRunningBird(t *testing.T) {
	bin := requireRootAndBird(t)
	e := newEnv(t, nil)
	e.put(globalConfig(), node("node1", "10.200.0.1"), node("node2", "10.200.0.2"))
	e.start()
	cfgPath := filepath.Join(e.out, "bird.cfg")
	waitFor(t, "first render", func() bool { _, err := os.Stat(cfgPath); return err == nil })
	b := newBirdNS(t, bin, cfgPath, e.cfg.BirdSocket)
	b.start()
	waitFor(t, "Mesh to node2 in BIRD", func() bool { return b.protocols()[meshName("10.200.0.2")] })
	waitFor(t, "confd healthy", func() bool { return e.app.status().LastError == nil })

	e.put(node("node3", "10.200.0.3"))
	waitFor(t, "Mesh to node3 appears in BIRD", func() bool { return b.protocols()[meshName("10.200.0.3")] })
	e.del(node("node2", ""))
	waitFor(t, "Mesh to node2 goes from BIRD", func() bool { return !b.protocols()[meshName("10.200.0.2")] })

	// Unrelated churn and a forced re-render leave BIRD alone.
	waitFor(t, "quiet", func() bool { return e.app.status().LastError == nil })
	time.Sleep(1100 * time.Millisecond) // BIRD's status times have second resolution
	before := b.lastReconfig()
	renders := e.app.status().Renders
	e.app.Runner().Trigger()
	waitFor(t, "a re-render", func() bool { return e.app.status().Renders > renders })
	if after := b.lastReconfig(); !after.Equal(before) {
		t.Errorf("an unchanged render reconfigured BIRD (%v -> %v)", before, after)
	}
}

// A template that fails keeps BIRD on the last good config, and the
// failure shows in status; fixing it recovers.
func TestBrokenTemplateKeepsLastGood(t *testing.T) {
	bin := requireRootAndBird(t)
	tmplDir, confDir := t.TempDir(), t.TempDir()
	copyFS(t, templates.FS, tmplDir)
	copyFS(t, etc.ConfD(), confDir)
	e := newEnv(t, func(c *config.Config) { c.TemplateDir, c.ConfDir = tmplDir, confDir })
	e.put(globalConfig(), node("node1", "10.200.0.1"), node("node2", "10.200.0.2"))
	e.start()
	cfgPath := filepath.Join(e.out, "bird.cfg")
	waitFor(t, "first render", func() bool { _, err := os.Stat(cfgPath); return err == nil })
	b := newBirdNS(t, bin, cfgPath, e.cfg.BirdSocket)
	b.start()
	waitFor(t, "BIRD on the config", func() bool { return b.protocols()[meshName("10.200.0.2")] })

	// An admin saves a template that does not parse: reported, last good
	// templates and files stay.
	peersTmpl := filepath.Join(tmplDir, "peers.cfg.template")
	orig, err := os.ReadFile(peersTmpl)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(peersTmpl, append([]byte("{{ if }}\n"), orig...), 0o644)
	waitFor(t, "broken template reported", func() bool {
		err := e.app.status().LastError
		return err != nil && strings.Contains(err.Error(), "peers.cfg.template:1")
	})
	e.put(node("node3", "10.200.0.3"))
	// The last good templates still render the change.
	waitFor(t, "node3 rendered with the last good templates", func() bool { return b.protocols()[meshName("10.200.0.3")] })

	// A template that parses but fails to execute: nothing is written.
	os.WriteFile(peersTmpl, append([]byte("{{ getv \"/no/such/key\" }}\n"), orig...), 0o644)
	waitFor(t, "execution error reported", func() bool {
		err := e.app.status().LastError
		var re *render.Error
		return err != nil && errors.As(err, &re) && re.Stage == render.StageTemplate && strings.Contains(err.Error(), "/no/such/key")
	})
	before := e.file("peers.cfg")
	added := e.events("added")
	e.put(node("node4", "10.200.0.4"))
	// The runner took node4 in, and a render ran after it (and failed).
	waitFor(t, "node4's event", func() bool { return e.events("added") > added })
	renders := e.app.status().Renders
	waitFor(t, "a render with node4", func() bool { return e.app.status().Renders > renders })
	if e.file("peers.cfg") != before || b.protocols()[meshName("10.200.0.4")] {
		t.Error("a failing template must not change files or BIRD")
	}
	if !b.protocols()[meshName("10.200.0.3")] {
		t.Error("BIRD lost its last good config")
	}
	// Fixed: the pending change is applied.
	os.WriteFile(peersTmpl, orig, 0o644)
	waitFor(t, "recovery after the fix", func() bool { return b.protocols()[meshName("10.200.0.4")] })
}

// BIRD down: the render is reported failed and retried; when BIRD comes
// back it runs the latest config.
func TestBirdDownThenBack(t *testing.T) {
	bin := requireRootAndBird(t)
	e := newEnv(t, nil)
	e.put(globalConfig(), node("node1", "10.200.0.1"), node("node2", "10.200.0.2"))
	e.start()
	cfgPath := filepath.Join(e.out, "bird.cfg")
	waitFor(t, "first render", func() bool { _, err := os.Stat(cfgPath); return err == nil })
	// BIRD was never up: the reload failure is reported.
	waitFor(t, "reload failure reported", func() bool {
		err := e.app.status().LastError
		return err != nil && errors.Is(err, render.ErrDaemonDown)
	})
	b := newBirdNS(t, bin, cfgPath, e.cfg.BirdSocket)
	b.start()
	waitFor(t, "retry succeeds once BIRD is up", func() bool {
		s := e.app.status()
		return s.LastError == nil && !s.LastGoodReload.IsZero()
	})
	b.stop()
	e.put(node("node5", "10.200.0.5"))
	waitFor(t, "failure while BIRD is down", func() bool { return e.app.status().LastError != nil })
	if !strings.Contains(e.file("peers.cfg"), "10.200.0.5") {
		t.Error("checked files should be written while BIRD is down (BIRD reads them at start)")
	}
	b.start()
	waitFor(t, "BIRD back with the latest config", func() bool { return b.protocols()[meshName("10.200.0.5")] })
	waitFor(t, "confd healthy again", func() bool { return e.app.status().LastError == nil })
}

// A burst of 1,000 node changes gives few renders and the exact config.
func TestBurstExactFinalConfig(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.SyncOnly = true })
	e.put(globalConfig(), node("node1", "10.200.0.1"))
	e.start()
	waitFor(t, "first render", func() bool { return e.app.status().Renders >= 1 })
	start := e.app.status().Renders
	for i := 0; i < 1000; i++ {
		e.put(node(fmt.Sprintf("burst%d", i), fmt.Sprintf("10.201.%d.%d", i/200, i%200+1)))
	}
	waitFor(t, "the runner took in all 1000 changes", func() bool { return e.events("added") >= 2+1000 })
	waitFor(t, "all 1000 peers rendered", func() bool { return strings.Count(e.file("peers.cfg"), "protocol bgp Mesh_") == 1000 })
	time.Sleep(200 * time.Millisecond) // renders still under way count too
	renders := e.app.status().Renders - start
	t.Logf("1000 changes -> %d renders", renders)
	if renders > 300 {
		t.Errorf("%d renders for 1000 changes: bursts must coalesce", renders)
	}
	for _, ip := range []string{"10.201.0.1", "10.201.4.200"} {
		if !strings.Contains(e.file("peers.cfg"), "neighbor "+ip+" ") {
			t.Errorf("final config lacks %s", ip)
		}
	}
}

// etcd restarted mid-stream: rendering pauses while the watch is lost,
// and the final config is exact.
func TestEtcdRestartMidStream(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.SyncOnly = true })
	e.put(globalConfig(), node("node1", "10.200.0.1"))
	e.start()
	waitFor(t, "first render", func() bool { return e.app.status().Renders >= 1 })
	for i := 0; i < 50; i++ {
		e.put(node(fmt.Sprintf("a%d", i), fmt.Sprintf("10.202.0.%d", i+1)))
	}
	e.etcd.Stop()
	waitFor(t, "out of sync while etcd is down", func() bool { return !e.app.status().InSync })
	renders := e.app.status().Renders
	// Make a render due while out of sync (SIGHUP's trigger, and a change
	// run on the runner's goroutine, as a template edit is): the runner
	// has taken both in once the change ran; then it must still wait.
	e.app.Runner().Trigger()
	ran := make(chan struct{})
	e.app.Runner().Do(context.Background(), func() { close(ran) })
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("the runner did not take the change in")
	}
	time.Sleep(300 * time.Millisecond)
	if e.app.status().Renders != renders {
		t.Error("rendered while out of sync")
	}
	e.etcd.StartAgain()
	for i := 50; i < 100; i++ {
		e.put(node(fmt.Sprintf("a%d", i), fmt.Sprintf("10.202.0.%d", i+1)))
	}
	e.del(node("a0", ""))
	waitFor(t, "exact final config", func() bool {
		p := e.file("peers.cfg")
		return strings.Count(p, "protocol bgp Mesh_") == 99 && !strings.Contains(p, "neighbor 10.202.0.1 ")
	})
	if !e.app.status().InSync {
		t.Error("not in sync after etcd came back")
	}
}

func copyFS(t *testing.T, src fs.FS, dst string) {
	t.Helper()
	ents, err := fs.ReadDir(src, ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := fs.ReadFile(src, e.Name())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

package render

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/template"

	"github.com/roostnet/roost/confd/resource"
)

// needBird returns the bird binary, skipping (or failing under CI) without it.
func needBird(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("bird")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("bird is not installed (CI=true requires it)")
		}
		t.Skip("bird is not installed")
	}
	return p
}

type data struct {
	RouterID string
	Peers    []string
}

// set builds a main BIRD config including a peers file, as the shipped
// templates do, with `bird -p -c` as the check on the main file.
func set(t *testing.T, dir string) []*resource.Resource {
	t.Helper()
	mk := func(name, dest, body, check string) *resource.Resource {
		tm := template.Must(template.New(name).Parse(body))
		return &resource.Resource{Name: name + ".toml", Src: name, Dest: filepath.Join(dir, dest), Mode: 0o640,
			UID: -1, GID: -1, CheckCmd: check, Template: tm}
	}
	return []*resource.Resource{
		mk("main", "bird.cfg", "router id {{.RouterID}};\nprotocol device {}\ninclude \"peers.cfg\";\n", needBird(t)+" -p -c {{.src}}"),
		mk("peers", "peers.cfg", "{{range .Peers}}protocol bgp {{.}} { local as 64512; neighbor 10.0.0.9 as 64512; ipv4 { import all; export none; }; }\n{{end}}", ""),
	}
}

func counter(n *int, fail *error) Reloader {
	return ReloaderFunc(func(context.Context) error { *n++; return *fail })
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRenderWritesChecksReloadsOnce(t *testing.T) {
	dir := t.TempDir()
	reloads := 0
	var reloadErr error
	r := New(set(t, dir), Options{Reloader: counter(&reloads, &reloadErr)})
	ctx := context.Background()

	res, err := r.Render(ctx, data{"10.0.0.1", []string{"Mesh_10_0_0_2"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Changed) != 2 || !res.Checked || !res.Reloaded || reloads != 1 {
		t.Fatalf("first render: %+v, reloads %d", res, reloads)
	}
	if st, _ := os.Stat(filepath.Join(dir, "bird.cfg")); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", st.Mode().Perm())
	}
	// Same data: nothing written, no check, no reload.
	res, err = r.Render(ctx, data{"10.0.0.1", []string{"Mesh_10_0_0_2"}})
	if err != nil || len(res.Changed) != 0 || res.Checked || reloads != 1 {
		t.Fatalf("unchanged render: %+v %v reloads %d", res, err, reloads)
	}
	// One included file changes: the set is checked, one reload.
	res, err = r.Render(ctx, data{"10.0.0.1", []string{"Mesh_10_0_0_2", "Mesh_10_0_0_3"}})
	if err != nil || len(res.Changed) != 1 || res.Changed[0] != filepath.Join(dir, "peers.cfg") || reloads != 2 {
		t.Fatalf("peer added: %+v %v reloads %d", res, err, reloads)
	}
	// No stage directories are left behind.
	if m, _ := filepath.Glob(filepath.Join(dir, ".roost-stage-*")); len(m) != 0 {
		t.Errorf("stage dirs left: %v", m)
	}
	// An external edit of a destination is noticed and repaired.
	os.WriteFile(filepath.Join(dir, "peers.cfg"), []byte("# edited\n"), 0o640)
	res, err = r.Render(ctx, data{"10.0.0.1", []string{"Mesh_10_0_0_2", "Mesh_10_0_0_3"}})
	if err != nil || len(res.Changed) != 1 || !strings.Contains(read(t, filepath.Join(dir, "peers.cfg")), "Mesh_10_0_0_3") {
		t.Fatalf("repair after edit: %+v %v", res, err)
	}
}

// The check runs on the staged set: a bad include fails the check of the
// main file and the last good files stay.
func TestFailedCheckKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	reloads := 0
	var reloadErr error
	r := New(set(t, dir), Options{Reloader: counter(&reloads, &reloadErr)})
	ctx := context.Background()
	if _, err := r.Render(ctx, data{"10.0.0.1", []string{"Mesh_a"}}); err != nil {
		t.Fatal(err)
	}
	good := read(t, filepath.Join(dir, "peers.cfg"))
	_, err := r.Render(ctx, data{"10.0.0.1", []string{"Mesh_a", "bad name"}})
	var re *Error
	if !errors.As(err, &re) || re.Stage != StageCheck || !strings.Contains(re.Error(), "syntax error") {
		t.Fatalf("want a check error with BIRD's message, got %v", err)
	}
	if read(t, filepath.Join(dir, "peers.cfg")) != good || reloads != 1 {
		t.Error("a failed check must not change files or reload")
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".roost-stage-*")); len(m) != 0 {
		t.Errorf("stage dirs left: %v", m)
	}
}

func TestFailedReloadRestoresFiles(t *testing.T) {
	dir := t.TempDir()
	reloads := 0
	var reloadErr error
	r := New(set(t, dir), Options{Reloader: counter(&reloads, &reloadErr)})
	ctx := context.Background()
	if _, err := r.Render(ctx, data{"10.0.0.1", []string{"Mesh_a"}}); err != nil {
		t.Fatal(err)
	}
	good := read(t, filepath.Join(dir, "peers.cfg"))
	reloadErr = errors.New("bird: connection refused")
	_, err := r.Render(ctx, data{"10.0.0.1", []string{"Mesh_a", "Mesh_b"}})
	var re *Error
	if !errors.As(err, &re) || re.Stage != StageReload || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("want a reload error, got %v", err)
	}
	if read(t, filepath.Join(dir, "peers.cfg")) != good {
		t.Error("a failed reload must restore the last good files")
	}
	// BIRD back: the retry applies the new set.
	reloadErr = nil
	res, err := r.Render(ctx, data{"10.0.0.1", []string{"Mesh_a", "Mesh_b"}})
	if err != nil || !res.Reloaded || !strings.Contains(read(t, filepath.Join(dir, "peers.cfg")), "Mesh_b") {
		t.Fatalf("retry: %+v %v", res, err)
	}
}

// BIRD not running yet: the checked files stay (BIRD reads them when it
// starts) and the reload is retried on the next render, changed or not.
func TestDaemonDownKeepsFilesAndRetriesReload(t *testing.T) {
	dir := t.TempDir()
	reloads := 0
	reloadErr := fmt.Errorf("dial bird.ctl: %w", ErrDaemonDown)
	r := New(set(t, dir), Options{Reloader: counter(&reloads, &reloadErr)})
	ctx := context.Background()
	_, err := r.Render(ctx, data{"10.0.0.1", []string{"Mesh_a"}})
	if !errors.Is(err, ErrDaemonDown) {
		t.Fatalf("want ErrDaemonDown, got %v", err)
	}
	if !strings.Contains(read(t, filepath.Join(dir, "peers.cfg")), "Mesh_a") {
		t.Fatal("files must stay when the daemon is down")
	}
	reloadErr = nil
	res, err := r.Render(ctx, data{"10.0.0.1", []string{"Mesh_a"}})
	if err != nil || !res.Reloaded || len(res.Changed) != 0 || reloads != 2 {
		t.Fatalf("retry without changes must reload: %+v %v reloads=%d", res, err, reloads)
	}
	res, err = r.Render(ctx, data{"10.0.0.1", []string{"Mesh_a"}})
	if err != nil || res.Reloaded || reloads != 2 {
		t.Fatalf("after a good reload nothing is pending: %+v %v", res, err)
	}
}

func TestTemplateErrorNamesTemplateAndLine(t *testing.T) {
	dir := t.TempDir()
	tm := template.Must(template.New("bird.cfg.template").Option("missingkey=error").Parse("router id 1.1.1.1;\n{{.Nope.Deeper}}\n"))
	r := New([]*resource.Resource{{Name: "bird.toml", Dest: filepath.Join(dir, "bird.cfg"), Mode: 0o644, UID: -1, GID: -1, Template: tm}}, Options{SyncOnly: true})
	_, err := r.Render(context.Background(), map[string]any{})
	if err == nil || !strings.Contains(err.Error(), "bird.cfg.template:2") {
		t.Fatalf("want template name and line, got %v", err)
	}
	if _, statErr := os.Stat(filepath.Join(dir, "bird.cfg")); !os.IsNotExist(statErr) {
		t.Error("nothing may be written on a template error")
	}
}

func TestReloadCmdRunsOncePerDistinctCommand(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "reloads.log")
	mk := func(name string) *resource.Resource {
		return &resource.Resource{Name: name, Dest: filepath.Join(dir, name), Mode: 0o644, UID: -1, GID: -1,
			ReloadCmd: "echo reload >> " + log, Template: template.Must(template.New(name).Parse("{{.}}"))}
	}
	r := New([]*resource.Resource{mk("a"), mk("b"), mk("c")}, Options{})
	if _, err := r.Render(context.Background(), "v1"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(read(t, log), "reload"); got != 1 {
		t.Errorf("reload_cmd ran %d times for one change, want 1", got)
	}
}

func TestNoopWritesNothing(t *testing.T) {
	dir := t.TempDir()
	reloads := 0
	var reloadErr error
	res := set(t, dir)
	r := New(res, Options{Reloader: counter(&reloads, &reloadErr)})
	if _, err := r.Render(context.Background(), data{"10.0.0.1", []string{"Mesh_a"}}); err != nil {
		t.Fatal(err)
	}
	noop := New(res, Options{Noop: true})
	out, err := noop.Render(context.Background(), data{"10.0.0.1", []string{"Mesh_a", "Mesh_b"}})
	if err != nil || !strings.Contains(out.Diff, "+protocol bgp Mesh_b") || strings.Contains(read(t, filepath.Join(dir, "peers.cfg")), "Mesh_b") {
		t.Fatalf("noop: %+v %v", out, err)
	}
}

func TestDiff(t *testing.T) {
	got := Diff("f", []byte("a\nb\nc\n"), []byte("a\nc\nd\n"))
	want := "--- f\n+++ f (rendered)\n-b\n+d\n"
	if got != want {
		t.Errorf("Diff:\n%s\nwant\n%s", got, want)
	}
}

func TestDiffRedactsPasswords(t *testing.T) {
	got := Diff("f", []byte("a\n"), []byte("a\n  password \"s3cret\";\n"))
	if strings.Contains(got, "s3cret") || !strings.Contains(got, `password "<redacted>";`) {
		t.Errorf("password not redacted:\n%s", got)
	}
}

// Without a check (sync-only), only changed files are written, each beside
// its destination and renamed over it; nothing is left behind.
func TestSyncOnlyWritesChangedFilesOnly(t *testing.T) {
	dir := t.TempDir()
	r := New(set(t, dir), Options{SyncOnly: true})
	ctx := context.Background()
	if res, err := r.Render(ctx, data{"10.0.0.1", []string{"Mesh_10_0_0_2"}}); err != nil || len(res.Changed) != 2 || res.Checked || res.Reloaded {
		t.Fatalf("first render: %+v %v", res, err)
	}
	ino := func(name string) uint64 {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o640 {
			t.Errorf("%s: mode %v, want 0640", name, st.Mode().Perm())
		}
		return st.Sys().(*syscall.Stat_t).Ino
	}
	mainIno, peersIno := ino("bird.cfg"), ino("peers.cfg")
	res, err := r.Render(ctx, data{"10.0.0.1", []string{"Mesh_10_0_0_2", "Mesh_10_0_0_3"}})
	if err != nil || len(res.Changed) != 1 || res.Changed[0] != filepath.Join(dir, "peers.cfg") {
		t.Fatalf("peer added: %+v %v", res, err)
	}
	if ino("bird.cfg") != mainIno {
		t.Error("the unchanged bird.cfg was rewritten")
	}
	if ino("peers.cfg") == peersIno || !strings.Contains(read(t, filepath.Join(dir, "peers.cfg")), "Mesh_10_0_0_3") {
		t.Error("peers.cfg was not replaced")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only the two destinations", names)
	}
}

package render

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/roostnet/roost/confd/resource"
)

// deadPid returns the pid of a process that has exited.
func deadPid(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// SweepStale removes only what a render creates, only when its process is
// gone (or the leftover is old, or predates pids in names).
func TestSweepStale(t *testing.T) {
	dir := t.TempDir()
	dead, alive, self := strconv.Itoa(deadPid(t)), strconv.Itoa(os.Getppid()), strconv.Itoa(os.Getpid())
	mkdir := func(name string) {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, name, "peers.cfg"), []byte(`password "s3cret";`), 0o600)
	}
	file := func(name string) { os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600) }
	old := time.Now().Add(-2 * staleAge)
	for _, n := range []string{".roost-stage-" + dead + "-1", ".roost-stage-" + self + "-2", ".roost-stage-123456789",
		".roost-stage-" + alive + "-3", ".roost-stage-" + alive + "-4"} {
		mkdir(n)
	}
	os.Chtimes(filepath.Join(dir, ".roost-stage-"+alive+"-4"), old, old)
	for _, n := range []string{".peers.cfg.roost-" + dead + "-5", ".peers.cfg.roost-" + alive + "-6", ".other.cfg.roost-" + dead + "-7",
		".roost-stage-" + dead + "-8", "peers.cfg", "notes"} {
		file(n)
	}
	r := New([]*resource.Resource{{Name: "peers.toml", Dest: filepath.Join(dir, "peers.cfg"), Mode: 0o600, UID: -1, GID: -1}}, Options{})
	var got []string
	for _, p := range r.SweepStale() {
		got = append(got, filepath.Base(p))
	}
	slices.Sort(got)
	want := []string{
		".peers.cfg.roost-" + dead + "-5", // its process is gone
		".roost-stage-" + dead + "-1",     // its process is gone
		".roost-stage-" + self + "-2",     // an earlier process with this pid
		".roost-stage-123456789",          // from a release before pids
		".roost-stage-" + alive + "-4",    // too old
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("removed %v\nwant    %v", got, want)
	}
	for _, keep := range []string{".roost-stage-" + alive + "-3", ".peers.cfg.roost-" + alive + "-6", ".other.cfg.roost-" + dead + "-7",
		".roost-stage-" + dead + "-8", "peers.cfg", "notes"} {
		if _, err := os.Lstat(filepath.Join(dir, keep)); err != nil {
			t.Errorf("%s was removed: %v", keep, err)
		}
	}
}

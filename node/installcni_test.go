package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInstallCNICommand runs `roost-node install-cni` as a user would:
// settings from the environment, directories from flags; a second run
// writes nothing, and etcd password authentication is refused without
// showing the password.
func TestInstallCNICommand(t *testing.T) {
	dir := t.TempDir()
	plugin := filepath.Join(dir, "roost-cni")
	if err := os.WriteFile(plugin, []byte("plugin"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NODENAME", "node-a")
	t.Setenv("ETCD_ENDPOINTS", "http://10.1.2.3:2379")
	t.Setenv("ROOST_CNI_PLUGIN", plugin)
	bin, conf := filepath.Join(dir, "bin"), filepath.Join(dir, "net.d")
	run := func() (string, error) {
		cmd := root()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs([]string{"install-cni", "--bin-dir", bin, "--conf-dir", conf, "--log-level", "error"})
		err := cmd.Execute()
		return out.String(), err
	}
	for i, want := range []string{"written", "unchanged"} {
		out, err := run()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Count(out, ": "+want) != 3 {
			t.Fatalf("run %d: want 3 files %s:\n%s", i+1, want, out)
		}
	}
	b, err := os.ReadFile(filepath.Join(conf, "10-roost.conflist"))
	if err != nil || !strings.Contains(string(b), `"nodename": "node-a"`) || !strings.Contains(string(b), "http://10.1.2.3:2379") {
		t.Fatalf("conflist %s (%v)", b, err)
	}

	t.Setenv("ETCD_USERNAME", "roost")
	t.Setenv("ETCD_PASSWORD", "pw-not-to-show")
	_, err = run()
	if err == nil || strings.Contains(err.Error(), "pw-not-to-show") || !strings.Contains(err.Error(), "ETCD_PASSWORD") {
		t.Fatalf("password auth: %v", err)
	}
}

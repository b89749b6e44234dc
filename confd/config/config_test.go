package config

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "confd.toml")
	os.WriteFile(file, []byte("nodename = \"from-file\"\nbird_socket = \"/file.ctl\"\nlog_level = \"debug\"\netcd_endpoints = \"http://file:2379\"\nonetime = true\nretry_max = \"1m\"\n"), 0o600)
	env := map[string]string{"NODENAME": "from-env", "BIRD_SOCKET": "/env.ctl", "DATASTORE_TYPE": "etcdv3"}
	c, err := Load([]string{"--config", file, "--nodename", "from-flag"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ name, got, want string }{
		{"flag beats env", c.NodeName, "from-flag"},
		{"env beats file", c.BirdSocket, "/env.ctl"},
		{"file beats default", c.LogLevel, "debug"},
		{"file value", c.Datastore.EtcdEndpoints, "http://file:2379"},
		{"default", c.SecretsDir, "/etc/roost/secrets"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %q, want %q", ch.name, ch.got, ch.want)
		}
	}
	if !c.Onetime || c.RetryMax != time.Minute || c.RetryMin != 500*time.Millisecond {
		t.Errorf("bool/duration from file: %+v", c)
	}
}

func TestErrors(t *testing.T) {
	env := func(string) string { return "" }
	for _, args := range [][]string{
		{"--datastore-type", "consul"},
		{"--noop", "--sync-only"},
		{"--retry-min", "soon"},
		{"stray"},
		{"--no-such-flag"},
	} {
		if _, err := Load(args, env, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	file := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(file, []byte("nodenmae = \"x\"\n"), 0o600)
	if _, err := Load([]string{"--config", file}, env, io.Discard); err == nil {
		t.Error("unknown config file key accepted")
	}
}

func TestBoolFlagAndHostnameDefault(t *testing.T) {
	c, err := Load([]string{"--onetime", "--sync-only=true", "--datastore-file", "/x.yaml"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Onetime || !c.SyncOnly || c.NodeName == "" || c.Datastore.Type != "file" || c.Datastore.File != "/x.yaml" {
		t.Errorf("%+v", c)
	}
}

func TestRenderSpacingSettings(t *testing.T) {
	c, err := Load([]string{"--min-render-interval", "250ms"}, func(k string) string {
		if k == "ROOST_CONFD_RENDER_QUIET" {
			return "5ms"
		}
		return ""
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.MinRenderInterval != 250*time.Millisecond || c.RenderQuiet != 5*time.Millisecond {
		t.Errorf("spacing: %v %v", c.MinRenderInterval, c.RenderQuiet)
	}
}

package config

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/pflag"
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
	none := func(string) string { return "" }
	c, err := Load(nil, none, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.RenderCPUShare != 0.5 || c.MaxReloadRate != 20 || c.MinRenderInterval != 0 || c.RenderQuiet != 0 {
		t.Errorf("defaults: share %v, reload rate %v, fixed %v/%v; want the adaptive 0.5 and 20 with no fixed spacing",
			c.RenderCPUShare, c.MaxReloadRate, c.MinRenderInterval, c.RenderQuiet)
	}
	file := filepath.Join(t.TempDir(), "confd.toml")
	os.WriteFile(file, []byte("max_reload_rate = 5\nrender_cpu_share = 0.1\n"), 0o600)
	c, err = Load([]string{"--config", file, "--min-render-interval", "250ms", "--render-cpu-share", "0.5"}, func(k string) string {
		return map[string]string{"ROOST_CONFD_RENDER_QUIET": "5ms", "ROOST_CONFD_MAX_RELOAD_RATE": "2.5"}[k]
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.MinRenderInterval != 250*time.Millisecond || c.RenderQuiet != 5*time.Millisecond || c.RenderCPUShare != 0.5 || c.MaxReloadRate != 2.5 {
		t.Errorf("spacing: %v %v %v %v", c.MinRenderInterval, c.RenderQuiet, c.RenderCPUShare, c.MaxReloadRate)
	}
	for _, args := range [][]string{
		{"--render-cpu-share", "0"},
		{"--render-cpu-share", "1.5"},
		{"--render-cpu-share", "NaN"},
		{"--max-reload-rate", "-1"},
		{"--max-reload-rate", "fast"},
	} {
		if _, err := Load(args, none, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		} else {
			t.Logf("%v: %v", args, err)
		}
	}
}

// Go's flag package (confd's before pflag) took one dash as well as two,
// and Calico's confd is run with one: both spellings keep working.
func TestSingleDashForms(t *testing.T) {
	env := func(string) string { return "" }
	c, err := Load([]string{"-onetime", "-nodename", "n1", "-datastore-file=/x.yaml", "-retry-min", "2s", "--sync-only", "-confdir", "-odd-dir"}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Onetime || !c.SyncOnly || c.NodeName != "n1" || c.Datastore.File != "/x.yaml" || c.RetryMin != 2*time.Second || c.ConfDir != "-odd-dir" {
		t.Errorf("%+v", c)
	}
	for _, args := range [][]string{{"-h"}, {"-help"}, {"--help"}} {
		if _, err := Load(args, env, io.Discard); !errors.Is(err, pflag.ErrHelp) {
			t.Errorf("%v: %v, want pflag.ErrHelp", args, err)
		}
	}
	if c, err := Load([]string{"-version"}, env, io.Discard); err != nil || !c.Version {
		t.Errorf("-version: %v", err)
	}
	if _, err := Load([]string{"-no-such-flag"}, env, io.Discard); err == nil {
		t.Error("-no-such-flag accepted")
	}
}

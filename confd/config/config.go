// Package config reads confd's settings through internal/settings: flags
// (pflag; the single-dash spellings of Go's flag package still work) win
// over environment variables, which win over the config file, which wins
// over defaults. Environment names are Calico's where Calico has one.
package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/spf13/pflag"

	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/internal/settings"
)

// Config is confd's complete configuration.
type Config struct {
	NodeName    string
	Datastore   datastore.Config
	ConfDir     string // "" = embedded defaults
	TemplateDir string // "" = embedded defaults
	OutputDir   string
	SecretsDir  string
	RouterID    string // CALICO_ROUTER_ID: "", "hash" or an IPv4 id

	Onetime        bool
	SyncOnly       bool
	Noop           bool
	KeepStageFiles bool

	BirdSocket  string
	LogLevel    string
	MetricsAddr string
	HealthAddr  string
	ConfigFile  string
	Version     bool

	RetryMin, RetryMax time.Duration
	// Render spacing during sustained churn (see runner.Config): a CPU
	// budget and a BIRD reconfigure cap; an explicit MinRenderInterval or
	// RenderQuiet selects the fixed rule instead of the budget.
	RenderCPUShare, MaxReloadRate float64
	// SyncTimeout: /healthz fails after this long out of sync with a
	// datastore that answers (0: never).
	SyncTimeout                    time.Duration
	MinRenderInterval, RenderQuiet time.Duration
}

// DefaultConfigFile is read when it exists and --config is not given.
const DefaultConfigFile = "/etc/roost/confd.toml"

func (c *Config) settings() []*settings.Setting {
	str := func(flag, env, def, help string, p *string) *settings.Setting {
		return &settings.Setting{Flag: flag, Env: env, File: fileKey(flag), Default: def, Help: help, Parse: settings.String(p)}
	}
	boolean := func(flag, env, help string, p *bool) *settings.Setting {
		return &settings.Setting{Flag: flag, Env: env, File: fileKey(flag), Bool: true, Help: help, Parse: settings.Bool(p)}
	}
	dur := func(flag, env, def, help string, p *time.Duration) *settings.Setting {
		return &settings.Setting{Flag: flag, Env: env, File: fileKey(flag), Default: def, Help: help, Parse: settings.Duration(p)}
	}
	num := func(flag, env, def, help string, parse func(string) error) *settings.Setting {
		return &settings.Setting{Flag: flag, Env: env, File: fileKey(flag), Default: def, Help: help, Parse: parse}
	}
	list := []*settings.Setting{str("nodename", "NODENAME", "", "this node's name (default: hostname, lower-cased)", &c.NodeName)}
	list = append(list, settings.Datastore(&c.Datastore)...)
	return append(list,
		str("confdir", "ROOST_CONFD_CONFDIR", "", "directory of template resource TOML files (default: embedded)", &c.ConfDir),
		str("templatedir", "ROOST_CONFD_TEMPLATEDIR", "", "directory of templates (default: embedded)", &c.TemplateDir),
		str("output-dir", "ROOST_CONFD_OUTPUT_DIR", "", "write every dest into this directory instead", &c.OutputDir),
		str("secrets-dir", "ROOST_SECRETS_DIR", "/etc/roost/secrets", "BGP passwords: <dir>/<secret name>/<key>", &c.SecretsDir),
		str("router-id", "CALICO_ROUTER_ID", "", `BGP router id: an IPv4 id, or "hash" (default: the node's IPv4)`, &c.RouterID),
		boolean("onetime", "ROOST_CONFD_ONETIME", "render once and exit", &c.Onetime),
		boolean("sync-only", "ROOST_CONFD_SYNC_ONLY", "write files without check or reload", &c.SyncOnly),
		boolean("noop", "ROOST_CONFD_NOOP", "render and print a diff; write nothing", &c.Noop),
		boolean("keep-stage-file", "ROOST_CONFD_KEEP_STAGE_FILE", "keep staged files for inspection", &c.KeepStageFiles),
		str("bird-socket", "BIRD_SOCKET", "/var/run/roost/bird.ctl", "BIRD control socket used to reconfigure", &c.BirdSocket),
		str("log-level", "BGP_LOGSEVERITYSCREEN", "info", "debug, info, warning, error", &c.LogLevel),
		str("metrics-addr", "ROOST_CONFD_METRICS_ADDR", "", "serve Prometheus metrics here (e.g. 127.0.0.1:9091); empty = off", &c.MetricsAddr),
		str("health-addr", "ROOST_CONFD_HEALTH_ADDR", "", "serve /healthz and /readyz here; empty = off", &c.HealthAddr),
		dur("retry-min", "ROOST_CONFD_RETRY_MIN", "500ms", "first retry delay after a failed render", &c.RetryMin),
		dur("retry-max", "ROOST_CONFD_RETRY_MAX", "30s", "longest retry delay", &c.RetryMax),
		num("render-cpu-share", "ROOST_CONFD_RENDER_CPU_SHARE", "0.5", "during sustained churn renders use at most this share of one core, in (0, 1]; below it every change renders at once", share(&c.RenderCPUShare)),
		num("max-reload-rate", "ROOST_CONFD_MAX_RELOAD_RATE", "20", "reconfigure BIRD at most this many times per second", settings.Float(&c.MaxReloadRate)),
		dur("min-render-interval", "ROOST_CONFD_MIN_RENDER_INTERVAL", "", "fixed spacing instead of the CPU budget: during churn, start the next render this long after the previous one (default 100ms when --render-quiet is set)", &c.MinRenderInterval),
		dur("render-quiet", "ROOST_CONFD_RENDER_QUIET", "", "fixed spacing instead of the CPU budget: during churn, render once no change arrived for this long (default 20ms when --min-render-interval is set)", &c.RenderQuiet),
		settings.SyncTimeout(&c.SyncTimeout),
	)
}

// share accepts a share of one core: a number in (0, 1].
func share(p *float64) func(string) error {
	parse := settings.Float(p)
	return func(v string) error {
		if err := parse(v); err != nil {
			return err
		}
		if *p > 1 {
			return fmt.Errorf("%q is more than one core; want a share in (0, 1]", v)
		}
		return nil
	}
}

// fileKey is a setting's config file key: its flag name with "_".
func fileKey(flag string) string { return strings.ReplaceAll(flag, "-", "_") }

// Load parses args (without the program name). getenv is os.Getenv in
// the program. Usage goes to out on -h (then the error is pflag.ErrHelp).
func Load(args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	c := &Config{}
	list := c.settings()
	fs := pflag.NewFlagSet("confd", pflag.ContinueOnError)
	fs.SetOutput(out)
	fs.SortFlags = false
	settings.Register(fs, list)
	fs.StringVar(&c.ConfigFile, "config", "", "config file (TOML, keys like nodename, etcd_endpoints; default "+DefaultConfigFile+" if present)")
	fs.BoolVar(&c.Version, "version", false, "print the version and exit")
	if err := fs.Parse(longSingleDash(fs, args)); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	file := c.ConfigFile
	if file == "" {
		if _, err := os.Stat(DefaultConfigFile); err == nil {
			file = DefaultConfigFile
		}
	}
	var values map[string]string
	if file != "" {
		var err error
		if values, err = readFile(file, list); err != nil {
			return nil, err
		}
	}
	if err := settings.Resolve(fs, list, getenv, values); err != nil {
		return nil, err
	}
	if c.Version {
		return c, nil
	}
	return c, c.finish()
}

// longSingleDash rewrites "-name" and "-name=value" to their "--" forms
// when name is a long flag: Go's flag package, which confd used before
// pflag, took both spellings, and Calico's confd is run with one dash.
// Arguments after "--" and values of flags are left alone.
func longSingleDash(fs *pflag.FlagSet, args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			name, _, hasValue := strings.Cut(a[1:], "=")
			if f := fs.Lookup(name); f != nil || name == "help" {
				a = "-" + a
				// A non-bool flag without "=" takes the next argument
				// as its value, whatever it looks like.
				if f != nil && !hasValue && f.NoOptDefVal == "" && i+1 < len(args) {
					out = append(out, a, args[i+1])
					i++
					continue
				}
			}
		}
		out = append(out, a)
	}
	return out
}

// readFile reads a TOML config file into setting values by key; an
// unknown key is an error.
func readFile(path string, list []*settings.Setting) (map[string]string, error) {
	var raw map[string]any
	if _, err := toml.DecodeFile(path, &raw); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	known := map[string]bool{}
	for _, s := range list {
		known[s.File] = true
	}
	values := make(map[string]string, len(raw))
	for k, v := range raw {
		if k == "" || !known[k] {
			return nil, fmt.Errorf("config file %s: unknown setting %q", path, k)
		}
		values[k] = fmt.Sprint(v)
	}
	return values, nil
}

func (c *Config) finish() error {
	if c.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("no --nodename and no hostname: %w", err)
		}
		c.NodeName = strings.ToLower(strings.TrimSpace(h))
	}
	if err := c.Datastore.Normalize(); err != nil {
		return err
	}
	if c.Noop && c.SyncOnly {
		return errors.New("--noop and --sync-only cannot be combined")
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = c.RetryMin
	}
	return nil
}

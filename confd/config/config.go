// Package config reads confd's settings: flags win over environment
// variables, which win over the config file, which wins over defaults.
// Environment names are Calico's where Calico has one.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/roostnet/roost/datastore"
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
	// Render spacing during sustained churn (see runner.Config).
	MinRenderInterval, RenderQuiet time.Duration
}

// DefaultConfigFile is read when it exists and --config is not given.
const DefaultConfigFile = "/etc/roost/confd.toml"

type setting struct {
	flag, env, file, help string
	def                   string
	str                   *string
	boolean               *bool
	dur                   *time.Duration
}

func (c *Config) settings() []*setting {
	ds := &c.Datastore
	return []*setting{
		{flag: "nodename", env: "NODENAME", file: "nodename", help: "this node's name (default: hostname, lower-cased)", str: &c.NodeName},
		{flag: "datastore-type", env: datastore.EnvType, file: "datastore_type", help: "etcdv3 or file", str: &ds.Type},
		{flag: "datastore-file", env: datastore.EnvFile, file: "datastore_file", help: "YAML file or directory for the file datastore", str: &ds.File},
		{flag: "etcd-endpoints", env: datastore.EnvEtcdEndpoints, file: "etcd_endpoints", help: "comma-separated etcd URLs", str: &ds.EtcdEndpoints},
		{flag: "etcd-ca-cert-file", env: datastore.EnvEtcdCACert, file: "etcd_ca_cert_file", help: "CA certificate for etcd TLS", str: &ds.EtcdCACert},
		{flag: "etcd-cert-file", env: datastore.EnvEtcdCert, file: "etcd_cert_file", help: "client certificate for etcd TLS", str: &ds.EtcdCert},
		{flag: "etcd-key-file", env: datastore.EnvEtcdKey, file: "etcd_key_file", help: "client key for etcd TLS", str: &ds.EtcdKey},
		{flag: "etcd-username", env: datastore.EnvEtcdUsername, file: "etcd_username", help: "etcd user", str: &ds.EtcdUsername},
		{flag: "etcd-password", env: datastore.EnvEtcdPassword, file: "etcd_password", help: "etcd password (prefer the environment)", str: &ds.EtcdPassword},
		{flag: "confdir", env: "ROOST_CONFD_CONFDIR", file: "confdir", help: "directory of template resource TOML files (default: embedded)", str: &c.ConfDir},
		{flag: "templatedir", env: "ROOST_CONFD_TEMPLATEDIR", file: "templatedir", help: "directory of templates (default: embedded)", str: &c.TemplateDir},
		{flag: "output-dir", env: "ROOST_CONFD_OUTPUT_DIR", file: "output_dir", help: "write every dest into this directory instead", str: &c.OutputDir},
		{flag: "secrets-dir", env: "ROOST_SECRETS_DIR", file: "secrets_dir", def: "/etc/roost/secrets", help: "BGP passwords: <dir>/<secret name>/<key>", str: &c.SecretsDir},
		{flag: "router-id", env: "CALICO_ROUTER_ID", file: "router_id", help: `BGP router id: an IPv4 id, or "hash" (default: the node's IPv4)`, str: &c.RouterID},
		{flag: "onetime", env: "ROOST_CONFD_ONETIME", file: "onetime", help: "render once and exit", boolean: &c.Onetime},
		{flag: "sync-only", env: "ROOST_CONFD_SYNC_ONLY", file: "sync_only", help: "write files without check or reload", boolean: &c.SyncOnly},
		{flag: "noop", env: "ROOST_CONFD_NOOP", file: "noop", help: "render and print a diff; write nothing", boolean: &c.Noop},
		{flag: "keep-stage-file", env: "ROOST_CONFD_KEEP_STAGE_FILE", file: "keep_stage_file", help: "keep staged files for inspection", boolean: &c.KeepStageFiles},
		{flag: "bird-socket", env: "BIRD_SOCKET", file: "bird_socket", def: "/var/run/roost/bird.ctl", help: "BIRD control socket used to reconfigure", str: &c.BirdSocket},
		{flag: "log-level", env: "BGP_LOGSEVERITYSCREEN", file: "log_level", def: "info", help: "debug, info, warning, error", str: &c.LogLevel},
		{flag: "metrics-addr", env: "ROOST_CONFD_METRICS_ADDR", file: "metrics_addr", help: "serve Prometheus metrics here (e.g. 127.0.0.1:9091); empty = off", str: &c.MetricsAddr},
		{flag: "health-addr", env: "ROOST_CONFD_HEALTH_ADDR", file: "health_addr", help: "serve /healthz and /readyz here; empty = off", str: &c.HealthAddr},
		{flag: "retry-min", env: "ROOST_CONFD_RETRY_MIN", file: "retry_min", def: "500ms", help: "first retry delay after a failed render", dur: &c.RetryMin},
		{flag: "retry-max", env: "ROOST_CONFD_RETRY_MAX", file: "retry_max", def: "30s", help: "longest retry delay", dur: &c.RetryMax},
		{flag: "min-render-interval", env: "ROOST_CONFD_MIN_RENDER_INTERVAL", file: "min_render_interval", def: "100ms", help: "during sustained churn, start the next render this long after the previous one (a lone change renders at once)", dur: &c.MinRenderInterval},
		{flag: "render-quiet", env: "ROOST_CONFD_RENDER_QUIET", file: "render_quiet", def: "20ms", help: "during churn, render once no change arrived for this long", dur: &c.RenderQuiet},
	}
}

func (s *setting) set(v string) error {
	switch {
	case s.str != nil:
		*s.str = v
	case s.boolean != nil:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q is not a boolean", v)
		}
		*s.boolean = b
	case s.dur != nil:
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("%q is not a positive duration", v)
		}
		*s.dur = d
	}
	return nil
}

// Load parses args (without the program name). getenv is os.Getenv in
// the program. Usage goes to out on -h.
func Load(args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	c := &Config{}
	settings := c.settings()
	fs := flag.NewFlagSet("confd", flag.ContinueOnError)
	fs.SetOutput(out)
	for _, s := range settings {
		help := s.help
		if s.env != "" {
			help += " [$" + s.env + "]"
		}
		if s.boolean != nil {
			fs.Bool(s.flag, false, help)
		} else {
			fs.String(s.flag, s.def, help)
		}
	}
	fs.StringVar(&c.ConfigFile, "config", "", "config file (TOML, keys like nodename, etcd_endpoints; default "+DefaultConfigFile+" if present)")
	fs.BoolVar(&c.Version, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	explicit := map[string]string{} // flags given on the command line
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = f.Value.String() })

	// Defaults, then file, then env, then flags.
	for _, s := range settings {
		if s.def != "" {
			if err := s.set(s.def); err != nil {
				return nil, err
			}
		}
	}
	file := c.ConfigFile
	if file == "" {
		if _, err := os.Stat(DefaultConfigFile); err == nil {
			file = DefaultConfigFile
		}
	}
	if file != "" {
		if err := c.loadFile(file, settings); err != nil {
			return nil, err
		}
	}
	for _, s := range settings {
		if v := getenv(s.env); s.env != "" && v != "" {
			if err := s.set(v); err != nil {
				return nil, fmt.Errorf("$%s: %w", s.env, err)
			}
		}
	}
	for _, s := range settings {
		if v, ok := explicit[s.flag]; ok {
			if err := s.set(v); err != nil {
				return nil, fmt.Errorf("--%s: %w", s.flag, err)
			}
		}
	}
	if c.Version {
		return c, nil
	}
	return c, c.finish()
}

func (c *Config) loadFile(path string, settings []*setting) error {
	var raw map[string]any
	if _, err := toml.DecodeFile(path, &raw); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	byKey := map[string]*setting{}
	for _, s := range settings {
		byKey[s.file] = s
	}
	for k, v := range raw {
		s, ok := byKey[k]
		if !ok {
			return fmt.Errorf("config file %s: unknown setting %q", path, k)
		}
		if err := s.set(fmt.Sprint(v)); err != nil {
			return fmt.Errorf("config file %s: %s: %w", path, k, err)
		}
	}
	return nil
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

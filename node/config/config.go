// Package config reads roost-node's settings: a command-line flag wins
// over the environment variable, which wins over the default. Variable
// names are Calico's (calico-node, Felix) where Calico has one, so an
// existing calico-node environment carries over.
package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/node/dataplane"
	"github.com/roostnet/roost/node/startup"
)

// Setting is one flag/variable pair.
type Setting struct {
	Flag, Env, Default, Help string
	Secret                   bool
	// Bool settings may be given as a bare flag (--with-bird means true).
	Bool bool
	set  func(string) error
}

// Common are the settings every subcommand needs.
type Common struct {
	NodeName  string
	Datastore datastore.Config
	LogLevel  string
	LogFormat string
}

// Run holds the settings of `roost-node run`.
type Run struct {
	Common
	Startup            startup.Config
	Dataplane          dataplane.Config
	Listen             string
	AutodetectInterval time.Duration
	IPForward          bool
	Supervise          Supervise
}

// Workload holds the settings of `roost-node workload`.
type Workload struct {
	Common
	MTU int
}

func str(p *string) func(string) error { return func(v string) error { *p = v; return nil } }

func integer(name string, p *int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			return fmt.Errorf("%s: %q is not a non-negative integer", name, v)
		}
		*p = n
		return nil
	}
}

func boolean(name string, p *bool) func(string) error {
	return func(v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%s: %q is not a boolean", name, v)
		}
		*p = b
		return nil
	}
}

// duration accepts Go durations ("90s") and plain seconds ("90", Felix's form).
func duration(name string, p *time.Duration) func(string) error {
	return func(v string) error {
		v = strings.TrimSpace(v)
		if n, err := strconv.ParseFloat(v, 64); err == nil && n > 0 {
			*p = time.Duration(n * float64(time.Second))
			return nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("%s: %q is not a positive duration (e.g. 30s, or seconds)", name, v)
		}
		*p = d
		return nil
	}
}

func (c *Common) settings() []*Setting {
	ds := &c.Datastore
	return []*Setting{
		{Flag: "nodename", Env: "NODENAME", Help: "this node's name (default: the host name, lower-cased)", set: str(&c.NodeName)},
		{Flag: "datastore-type", Env: datastore.EnvType, Help: "etcdv3 or file (default: etcdv3 when ETCD_ENDPOINTS is set, else file)", set: str(&ds.Type)},
		{Flag: "datastore-file", Env: datastore.EnvFile, Help: "YAML file or directory for the file datastore (default " + datastore.DefaultFile + ")", set: str(&ds.File)},
		{Flag: "etcd-endpoints", Env: datastore.EnvEtcdEndpoints, Help: "comma-separated etcd URLs", set: str(&ds.EtcdEndpoints)},
		{Flag: "etcd-ca-cert-file", Env: datastore.EnvEtcdCACert, Help: "CA certificate for etcd TLS", set: str(&ds.EtcdCACert)},
		{Flag: "etcd-cert-file", Env: datastore.EnvEtcdCert, Help: "client certificate for etcd TLS", set: str(&ds.EtcdCert)},
		{Flag: "etcd-key-file", Env: datastore.EnvEtcdKey, Help: "client key for etcd TLS", set: str(&ds.EtcdKey)},
		{Flag: "etcd-username", Env: datastore.EnvEtcdUsername, Help: "etcd user", set: str(&ds.EtcdUsername)},
		{Flag: "etcd-password", Env: datastore.EnvEtcdPassword, Help: "etcd password (prefer the environment)", Secret: true, set: str(&ds.EtcdPassword)},
		{Flag: "log-level", Env: "ROOST_LOG_LEVEL", Default: "info", Help: "debug, info, warning or error", set: str(&c.LogLevel)},
		{Flag: "log-format", Env: "ROOST_LOG_FORMAT", Default: "text", Help: "text or json", set: str(&c.LogFormat)},
	}
}

// Settings lists the settings of `run` (for flags and documentation).
func (r *Run) Settings() []*Setting {
	s := &r.Startup
	dp := &r.Dataplane
	return append(r.Common.settings(),
		&Setting{Flag: "ip", Env: "IP", Default: "autodetect", Help: `IPv4 address: "autodetect", "none", an address or a CIDR (the prefix length is kept for CrossSubnet)`, set: str(&s.IP)},
		&Setting{Flag: "ip6", Env: "IP6", Default: "none", Help: `IPv6 address: "autodetect", "none", an address or a CIDR`, set: str(&s.IP6)},
		&Setting{Flag: "ip-autodetection-method", Env: "IP_AUTODETECTION_METHOD", Default: "first-found", Help: "first-found, interface=<regex,...>, skip-interface=<regex,...>, cidr=<cidr,...> or can-reach=<ip|host>", set: str(&s.IPMethod)},
		&Setting{Flag: "ip6-autodetection-method", Env: "IP6_AUTODETECTION_METHOD", Default: "first-found", Help: "as --ip-autodetection-method, for IPv6", set: str(&s.IP6Method)},
		&Setting{Flag: "as", Env: "AS", Help: "this node's AS number (default: keep the Node's, else the global AS)", set: str(&s.AS)},
		&Setting{Flag: "ipip-mtu", Env: "FELIX_IPINIPMTU", Help: "tunl0 MTU (default: host interface MTU - 20)", set: integer("FELIX_IPINIPMTU", &dp.IPIPMTU)},
		&Setting{Flag: "vxlan-mtu", Env: "FELIX_VXLANMTU", Help: "vxlan.calico MTU (default: host interface MTU - 50)", set: integer("FELIX_VXLANMTU", &dp.VXLANMTU)},
		&Setting{Flag: "vxlan-vni", Env: "FELIX_VXLANVNI", Default: "4096", Help: "VXLAN network identifier", set: integer("FELIX_VXLANVNI", &dp.VXLANVNI)},
		&Setting{Flag: "vxlan-port", Env: "FELIX_VXLANPORT", Default: "4789", Help: "VXLAN UDP port", set: integer("FELIX_VXLANPORT", &dp.VXLANPort)},
		&Setting{Flag: "route-refresh-interval", Env: "FELIX_ROUTEREFRESHINTERVAL", Default: "90s", Help: "period of the full comparison with the kernel (kernel events repair drift in between)", set: duration("FELIX_ROUTEREFRESHINTERVAL", &dp.ResyncInterval)},
		&Setting{Flag: "autodetect-poll-interval", Env: "AUTODETECT_POLL_INTERVAL", Default: "30s", Help: "how often autodetected addresses are checked again", set: duration("AUTODETECT_POLL_INTERVAL", &r.AutodetectInterval)},
		&Setting{Flag: "listen", Env: "ROOST_NODE_LISTEN", Default: DefaultNodeListen, Help: `serve /healthz, /readyz and /metrics here; "" turns it off`, set: str(&r.Listen)},
		&Setting{Flag: "ip-forward", Env: "ROOST_IP_FORWARD", Default: "true", Bool: true, Help: "set net.ipv4.ip_forward=1 at start", set: boolean("ROOST_IP_FORWARD", &r.IPForward)},
	)
}

// RunSettings lists the settings of the `run` command: the agent's
// (Settings) and the supervisor's (Supervise.Settings).
func (r *Run) RunSettings() []*Setting {
	return append(r.Settings(), r.Supervise.Settings()...)
}

// Settings lists the settings of `workload`.
func (w *Workload) Settings() []*Setting {
	return append(w.Common.settings(),
		&Setting{Flag: "mtu", Env: "ROOST_WORKLOAD_MTU", Help: "MTU of the workload veth (default: the kernel's, 1500)", set: integer("ROOST_WORKLOAD_MTU", &w.MTU)},
	)
}

// Register adds the settings as flags (help shows the variable).
func Register(fs *pflag.FlagSet, settings []*Setting) {
	for _, s := range settings {
		help := s.Help
		if s.Env != "" {
			help += " [$" + s.Env + "]"
		}
		if !s.Bool {
			fs.String(s.Flag, s.Default, help)
			continue
		}
		// Shown and parsed like a bool flag (--with-bird, --with-bird=false);
		// the value is checked by Resolve like every other setting.
		v := &boolText{s: s.Default}
		fs.Var(v, s.Flag, help)
		fs.Lookup(s.Flag).NoOptDefVal = "true"
	}
}

// boolText is a flag value that pflag presents as a bool.
type boolText struct{ s string }

func (b *boolText) String() string     { return b.s }
func (b *boolText) Set(v string) error { b.s = v; return nil }
func (b *boolText) Type() string       { return "bool" }

// Resolve applies flags (when changed), else variables, else defaults.
func Resolve(fs *pflag.FlagSet, settings []*Setting, getenv func(string) string) error {
	var errs []string
	for _, s := range settings {
		v := s.Default
		if e := getenv(s.Env); s.Env != "" && e != "" {
			v = e
		}
		if f := fs.Lookup(s.Flag); f != nil && f.Changed {
			v = f.Value.String()
		}
		if v == "" && s.Default == "" {
			continue
		}
		if err := s.set(v); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return fmt.Errorf("invalid settings: %s", strings.Join(errs, "; "))
	}
	return nil
}

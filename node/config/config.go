// Package config declares roost-node's settings, read through
// internal/settings: a command-line flag wins over the environment
// variable, which wins over the default. Variable names are Calico's
// (calico-node, Felix) where Calico has one, so an existing calico-node
// environment carries over.
package config

import (
	"fmt"
	"regexp"
	"time"

	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/internal/settings"
	"github.com/roostnet/roost/node/dataplane"
	"github.com/roostnet/roost/node/ipam"
	"github.com/roostnet/roost/node/mtu"
	"github.com/roostnet/roost/node/startup"
)

// Setting is one flag/variable pair (see internal/settings).
type Setting = settings.Setting

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
	BlockReleaseGrace  time.Duration
	SyncTimeout        time.Duration
	Supervise          Supervise
	CNI                CNI
}

// Workload holds the settings of `roost-node workload`.
type Workload struct {
	Common
	MTU     int
	MTUFile string
	// IPv4 and IPv6: which families a workload gets an address of.
	IPv4, IPv6 ipam.FamilyMode
}

// mtuValue accepts 0 (derive it) or an MTU in node/mtu's range.
func mtuValue(p *int) func(string) error {
	return func(v string) error {
		var n int
		if err := settings.Int(&n)(v); err != nil {
			return err
		}
		if err := mtu.Valid(n); err != nil {
			return err
		}
		*p = n
		return nil
	}
}

// pattern accepts a regular expression.
func pattern(p **regexp.Regexp) func(string) error {
	return func(v string) error {
		re, err := regexp.Compile(v)
		if err != nil {
			return fmt.Errorf("%q is not a regular expression: %v", v, err)
		}
		*p = re
		return nil
	}
}

func (c *Common) settings() []*Setting {
	list := []*Setting{{Flag: "nodename", Env: "NODENAME", Help: "this node's name (default: the host name, lower-cased)", Parse: settings.String(&c.NodeName)}}
	return append(append(list, settings.Datastore(&c.Datastore)...),
		&Setting{Flag: "log-level", Env: "ROOST_LOG_LEVEL", Default: "info", Help: "debug, info, warning or error", Parse: settings.String(&c.LogLevel)},
		&Setting{Flag: "log-format", Env: "ROOST_LOG_FORMAT", Default: "text", Help: "text or json", Parse: settings.String(&c.LogFormat)},
	)
}

// Settings lists the settings of `run` (for flags and documentation).
func (r *Run) Settings() []*Setting {
	s := &r.Startup
	dp := &r.Dataplane
	return append(r.Common.settings(),
		&Setting{Flag: "ip", Env: "IP", Default: "autodetect", Help: `IPv4 address: "autodetect", "none", an address or a CIDR (the prefix length is kept for CrossSubnet)`, Parse: settings.String(&s.IP)},
		&Setting{Flag: "ip6", Env: "IP6", Default: "none", Help: `IPv6 address: "autodetect", "none", an address or a CIDR`, Parse: settings.String(&s.IP6)},
		&Setting{Flag: "ip-autodetection-method", Env: "IP_AUTODETECTION_METHOD", Default: "first-found", Help: "first-found, interface=<regex,...>, skip-interface=<regex,...>, cidr=<cidr,...> or can-reach=<ip|host>", Parse: settings.String(&s.IPMethod)},
		&Setting{Flag: "ip6-autodetection-method", Env: "IP6_AUTODETECTION_METHOD", Default: "first-found", Help: "as --ip-autodetection-method, for IPv6", Parse: settings.String(&s.IP6Method)},
		&Setting{Flag: "nodename-file", Env: "ROOST_NODENAME_FILE", Default: startup.DefaultNodenameFile, Help: "where the node's name is written for the CNI plugin, as calico-node does (--nodename-file= writes none)", Parse: settings.String(&s.NodenameFile)},
		&Setting{Flag: "as", Env: "AS", Help: "this node's AS number (default: keep the Node's, else the global AS)", Parse: settings.String(&s.AS)},
		&Setting{Flag: "ipip-mtu", Env: "FELIX_IPINIPMTU", Help: "tunl0 MTU (default: host MTU - 20)", Parse: mtuValue(&dp.IPIPMTU)},
		&Setting{Flag: "vxlan-mtu", Env: "FELIX_VXLANMTU", Help: "vxlan.calico MTU (default: host MTU - 50)", Parse: mtuValue(&dp.VXLANMTU)},
		&Setting{Flag: "vxlan-mtu-v6", Env: "FELIX_VXLANMTUV6", Help: "vxlan-v6.calico MTU (default: host MTU - 70)", Parse: mtuValue(&dp.VXLANMTUV6)},
		&Setting{Flag: "mtu-iface-pattern", Env: "FELIX_MTUIFACEPATTERN", Help: "take the host MTU from the smallest up interface matching this regular expression (default: the interfaces of the node's addresses)", Parse: pattern(&dp.MTUIfacePattern)},
		&Setting{Flag: "workload-mtu", Env: "ROOST_WORKLOAD_MTU", Help: "workload MTU written to the MTU file (default: the smallest MTU of the encapsulations the pools use, else the host MTU)", Parse: mtuValue(&dp.WorkloadMTU)},
		&Setting{Flag: "mtu-file", Env: "ROOST_MTU_FILE", Default: mtu.DefaultFile, Help: "where the workload MTU is written for the CNI plugin and `workload add`", Parse: settings.String(&dp.MTUFile)},
		&Setting{Flag: "vxlan-vni", Env: "FELIX_VXLANVNI", Default: "4096", Help: "VXLAN network identifier", Parse: settings.Int(&dp.VXLANVNI)},
		&Setting{Flag: "vxlan-port", Env: "FELIX_VXLANPORT", Default: "4789", Help: "VXLAN UDP port", Parse: settings.Int(&dp.VXLANPort)},
		&Setting{Flag: "route-refresh-interval", Env: "FELIX_ROUTEREFRESHINTERVAL", Default: "90s", Help: "period of the full comparison with the kernel (kernel events repair drift in between)", Parse: settings.Duration(&dp.ResyncInterval)},
		&Setting{Flag: "autodetect-poll-interval", Env: "AUTODETECT_POLL_INTERVAL", Default: "30s", Help: "how often autodetected addresses are checked again", Parse: settings.Duration(&r.AutodetectInterval)},
		&Setting{Flag: "listen", Env: "ROOST_NODE_LISTEN", Default: DefaultNodeListen, Help: `serve /healthz, /readyz and /metrics here; "" turns it off`, Parse: settings.String(&r.Listen)},
		&Setting{Flag: "ip-forward", Env: "ROOST_IP_FORWARD", Default: "true", Bool: true, Help: "set net.ipv4.ip_forward=1 at start (and net.ipv6.conf.all.forwarding=1 when the node has an IPv6 address)", Parse: settings.Bool(&r.IPForward)},
		&Setting{Flag: "block-release-grace-period", Env: "ROOST_BLOCK_RELEASE_GRACE_PERIOD", Default: "15m", Help: "give back a block of this node that stayed empty this long, when the node has another block of its family (0: never)", Parse: settings.DurationOrZero(&r.BlockReleaseGrace)},
		settings.SyncTimeout(&r.SyncTimeout),
	)
}

// RunSettings lists the settings of the `run` command: the agent's
// (Settings), the supervisor's (Supervise.Settings) and the CNI
// installation's (CNI.RunSettings).
func (r *Run) RunSettings() []*Setting {
	return append(append(r.Settings(), r.Supervise.Settings()...), r.CNI.RunSettings()...)
}

// InstallCNISettings lists the settings of `install-cni`: the agent's
// (so the same environment installs the same node) and the CNI ones.
func (r *Run) InstallCNISettings() []*Setting {
	return append(r.Settings(), r.CNI.Settings("")...)
}

// Settings lists the settings of `workload`.
func (w *Workload) Settings() []*Setting {
	return append(w.Common.settings(),
		&Setting{Flag: "mtu", Env: "ROOST_WORKLOAD_MTU", Help: "MTU of both ends of the workload veth (default: the MTU file's value)", Parse: mtuValue(&w.MTU)},
		&Setting{Flag: "mtu-file", Env: "ROOST_MTU_FILE", Default: mtu.DefaultFile, Help: "the MTU file `roost-node run` writes", Parse: settings.String(&w.MTUFile)},
		&Setting{Flag: "ipv4", Env: "ROOST_WORKLOAD_IPV4", Default: "auto", Help: "give the workload an IPv4 address: auto (when an IPv4 pool applies to the node), true or false", Parse: familyMode(&w.IPv4)},
		&Setting{Flag: "ipv6", Env: "ROOST_WORKLOAD_IPV6", Default: "auto", Help: "give the workload an IPv6 address: auto (when an IPv6 pool applies to the node), true or false", Parse: familyMode(&w.IPv6)},
	)
}

// familyMode parses auto, true or false (ipam.ParseFamilyMode).
func familyMode(p *ipam.FamilyMode) func(string) error {
	return func(v string) error {
		m, err := ipam.ParseFamilyMode(v)
		if err != nil {
			return err
		}
		*p = m
		return nil
	}
}

package config

import (
	"github.com/roostnet/roost/internal/settings"
	"github.com/roostnet/roost/node/cniinstall"
)

// CNI holds the settings of `roost-node install-cni` and of `run
// --install-cni`: where the CNI plugin goes and what its configuration
// says beyond the node's name and datastore (see node/cniinstall). The
// variables CNI_BIN_DIR and CNI_NET_DIR are the ones Calico's install-cni
// and the CNI tooling use.
type CNI struct {
	Install  bool // run only: install at start
	BinDir   string
	ConfDir  string
	Plugin   string // "" : roost-cni next to roost-node
	LogLevel string
	LogFile  string
	// TLSDir and HostTLSDir: copy the etcd TLS files there for the
	// plugin (see cniinstall.Options).
	TLSDir, HostTLSDir string
}

// Settings lists the CNI settings. prefix is put before the directory
// flags: install-cni has --bin-dir and --conf-dir, run has
// --cni-bin-dir and --cni-conf-dir beside --install-cni.
func (c *CNI) Settings(prefix string) []*Setting {
	return []*Setting{
		{Flag: prefix + "bin-dir", Env: "CNI_BIN_DIR", Default: cniinstall.DefaultBinDir, Help: "where the CNI plugin is installed (as roost and roost-ipam)", Parse: settings.String(&c.BinDir)},
		{Flag: prefix + "conf-dir", Env: "CNI_NET_DIR", Default: cniinstall.DefaultConfDir, Help: "where " + cniinstall.ConfName + " is written", Parse: settings.String(&c.ConfDir)},
		{Flag: "cni-plugin", Env: "ROOST_CNI_PLUGIN", Help: "the roost-cni binary to install (default: roost-cni next to roost-node)", Parse: settings.String(&c.Plugin)},
		{Flag: "cni-log-level", Env: "ROOST_CNI_LOG_LEVEL", Default: "info", Help: "the plugin's log level (log_level in the CNI configuration)", Parse: settings.String(&c.LogLevel)},
		{Flag: "cni-tls-dir", Env: "ROOST_CNI_TLS_DIR", Help: "copy the etcd TLS files here (etcd-ca, etcd-cert, etcd-key 0600) for the plugin, e.g. <conf-dir>/roost-tls in a container (default: the conflist names them where they are)", Parse: settings.String(&c.TLSDir)},
		{Flag: "cni-host-tls-dir", Env: "ROOST_CNI_HOST_TLS_DIR", Help: "the TLS directory as the plugin sees it on the host, written into the conflist (default: --cni-tls-dir)", Parse: settings.String(&c.HostTLSDir)},
		{Flag: "cni-log-file", Env: "ROOST_CNI_LOG_FILE", Default: cniinstall.DefaultLogFile, Help: "the plugin's log file (log_file_path in the CNI configuration)", Parse: settings.String(&c.LogFile)},
	}
}

// RunSettings adds --install-cni to the CNI settings of `run`.
func (c *CNI) RunSettings() []*Setting {
	return append([]*Setting{{Flag: "install-cni", Env: "ROOST_INSTALL_CNI", Default: "false", Bool: true,
		Help: "install the CNI plugin and " + cniinstall.ConfName + " at start (as `roost-node install-cni`)", Parse: settings.Bool(&c.Install)}},
		c.Settings("cni-")...)
}

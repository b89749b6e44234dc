// Package cniinstall puts Roost's CNI plugin on a host, as Calico's
// install-cni does: the binary bin/roost-cni is copied into the CNI
// binary directory twice, as `roost` (the network plugin) and
// `roost-ipam` (the IPAM plugin), and 10-roost.conflist (network
// "roost") is written into the CNI configuration directory with this
// node's name and datastore settings.
//
// Every file is written to a temporary file in its directory and renamed
// over the old one, so a runtime never executes half a binary or reads
// half a configuration, and only when its content changes, so a restart
// of roost-node does not touch a running host's files.
//
// The configuration is world-readable (0644, as runtimes expect) and so
// holds no secret: etcd TLS material is passed as file paths. etcd
// username/password authentication is refused (see ErrPassword).
package cniinstall

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/internal/atomicfile"
	"github.com/roostnet/roost/node/mtu"
)

// Defaults, as Calico's install-cni and every CNI runtime use them.
const (
	DefaultBinDir  = "/opt/cni/bin"
	DefaultConfDir = "/etc/cni/net.d"
	// ConfName is the file name of the network configuration list; the
	// "10-" prefix puts it before other networks a runtime picks first.
	ConfName = "10-roost.conflist"
	// NetworkName is the CNI network's name (`podman run --network roost`).
	NetworkName = "roost"
	// PluginType and IPAMType are the names the binary is installed as.
	PluginType = "roost"
	IPAMType   = "roost-ipam"
	// DefaultLogFile is where the plugin logs (it must not write to
	// stdout, which carries its result).
	DefaultLogFile = "/var/log/roost/cni.log"
)

// ErrPassword is returned when the datastore uses etcd username/password
// authentication: the password would have to be written into the
// world-readable CNI configuration, so the installation is refused. Use
// etcd client certificates (ETCD_CERT_FILE, ETCD_KEY_FILE) on hosts that
// run workloads.
var ErrPassword = errors.New("etcd username/password authentication cannot be handed to the CNI plugin " +
	"(the CNI configuration is world-readable and must hold no secret): use etcd TLS client certificates " +
	"(ETCD_CERT_FILE, ETCD_KEY_FILE) instead of ETCD_USERNAME/ETCD_PASSWORD")

// Options describe one installation.
type Options struct {
	Plugin   string // the roost-cni binary to install
	BinDir   string // default DefaultBinDir
	ConfDir  string // default DefaultConfDir
	NodeName string // this node's name (required)
	// Datastore is this node's datastore configuration (normalised here).
	Datastore datastore.Config
	// MTU for workloads; 0 lets the plugin read the MTU file roost-node
	// writes.
	MTU int
	// MTUFile, when not node/mtu's default, is passed as "mtu_file".
	MTUFile  string
	LogLevel string // plugin log level, default "info"
	LogFile  string // default DefaultLogFile
	// IPv6 makes the plugin assign IPv6 addresses too.
	IPv6 bool
	// TLSDir, when set, is where the etcd TLS files are copied (etcd-ca,
	// etcd-cert 0644; etcd-key 0600), for a plugin that cannot read them
	// where roost-node does (a DaemonSet mounts them from a Secret);
	// HostTLSDir is that directory as the plugin sees it on the host
	// (default TLSDir). Without TLSDir the conflist names the files
	// where they are.
	TLSDir, HostTLSDir string
}

// Names of the etcd TLS files in Options.TLSDir (Calico's install-cni
// uses the same).
const (
	TLSCAName   = "etcd-ca"
	TLSCertName = "etcd-cert"
	TLSKeyName  = "etcd-key"
)

// Result says what Install changed.
type Result struct {
	// Binaries are the installed plugin paths; Written the binaries and
	// copied TLS files this run wrote.
	Binaries []string
	Written  []string
	Conf     string // the conflist's path
	// ConfWritten is false when the conflist already held this content.
	ConfWritten bool
}

// Changed is true when any file was written.
func (r Result) Changed() bool { return r.ConfWritten || len(r.Written) > 0 }

// ipamConf is the IPAM section (Calico's keys).
type ipamConf struct {
	Type       string `json:"type"`
	AssignIPv4 string `json:"assign_ipv4"`
	AssignIPv6 string `json:"assign_ipv6"`
}

// pluginConf is the roost plugin's entry (Calico's keys where Calico has
// one). Field order is the file's order.
type pluginConf struct {
	Type          string   `json:"type"`
	LogLevel      string   `json:"log_level"`
	LogFilePath   string   `json:"log_file_path"`
	NodeName      string   `json:"nodename"`
	DatastoreType string   `json:"datastore_type"`
	DatastoreFile string   `json:"datastore_file,omitempty"`
	EtcdEndpoints string   `json:"etcd_endpoints,omitempty"`
	EtcdCACert    string   `json:"etcd_ca_cert_file,omitempty"`
	EtcdCert      string   `json:"etcd_cert_file,omitempty"`
	EtcdKey       string   `json:"etcd_key_file,omitempty"`
	MTU           int      `json:"mtu"`
	MTUFile       string   `json:"mtu_file,omitempty"`
	IPAM          ipamConf `json:"ipam"`
}

type confList struct {
	Name       string       `json:"name"`
	CNIVersion string       `json:"cniVersion"`
	Plugins    []pluginConf `json:"plugins"`
}

// Conflist renders 10-roost.conflist for o. It fails on a configuration
// the plugin could not use and on etcd password authentication
// (ErrPassword).
func Conflist(o Options) ([]byte, error) {
	if o.NodeName == "" {
		return nil, errors.New("cni: no node name")
	}
	ds := o.Datastore
	if ds.EtcdUsername != "" || ds.EtcdPassword != "" {
		return nil, ErrPassword
	}
	if err := ds.Normalize(); err != nil {
		return nil, err
	}
	if o.MTU != 0 {
		if err := mtu.Valid(o.MTU); err != nil {
			return nil, fmt.Errorf("cni: %w", err)
		}
	}
	p := pluginConf{
		Type: PluginType, LogLevel: o.LogLevel, LogFilePath: o.LogFile, NodeName: o.NodeName,
		DatastoreType: ds.Type, MTU: o.MTU,
		IPAM: ipamConf{Type: IPAMType, AssignIPv4: "true", AssignIPv6: fmt.Sprint(o.IPv6)},
	}
	if p.LogLevel == "" {
		p.LogLevel = "info"
	}
	if p.LogFilePath == "" {
		p.LogFilePath = DefaultLogFile
	}
	if o.MTUFile != "" && o.MTUFile != mtu.DefaultFile {
		p.MTUFile = o.MTUFile
	}
	// Paths are made absolute: the runtime runs the plugin from its own
	// working directory.
	abs := func(s string) (string, error) {
		if s == "" {
			return "", nil
		}
		return filepath.Abs(s)
	}
	var err error
	switch ds.Type {
	case datastore.TypeFile:
		if p.DatastoreFile, err = abs(ds.File); err != nil {
			return nil, err
		}
	case datastore.TypeEtcd:
		p.EtcdEndpoints = ds.EtcdEndpoints
		for _, f := range tlsFiles(&ds, &p) {
			if f.src == "" {
				continue
			}
			if o.TLSDir != "" {
				host := o.HostTLSDir
				if host == "" {
					host = o.TLSDir
				}
				*f.dst, err = abs(filepath.Join(host, f.name))
			} else {
				*f.dst, err = abs(f.src)
			}
			if err != nil {
				return nil, err
			}
		}
	}
	b, err := json.MarshalIndent(confList{Name: NetworkName, CNIVersion: "1.0.0", Plugins: []pluginConf{p}}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

type tlsFile struct {
	name string
	src  string
	dst  *string
	perm os.FileMode
}

// tlsFiles pairs the datastore's TLS files with their conflist keys.
func tlsFiles(ds *datastore.Config, p *pluginConf) []tlsFile {
	return []tlsFile{
		{TLSCAName, ds.EtcdCACert, &p.EtcdCACert, 0o644},
		{TLSCertName, ds.EtcdCert, &p.EtcdCert, 0o644},
		{TLSKeyName, ds.EtcdKey, &p.EtcdKey, 0o600},
	}
}

// Install copies the plugin binary as `roost` and `roost-ipam` into the
// binary directory and writes the conflist into the configuration
// directory; files already holding the content are left alone.
func Install(o Options) (Result, error) {
	var res Result
	if o.BinDir == "" {
		o.BinDir = DefaultBinDir
	}
	if o.ConfDir == "" {
		o.ConfDir = DefaultConfDir
	}
	conf, err := Conflist(o)
	if err != nil {
		return res, err
	}
	if o.Plugin == "" {
		return res, errors.New("cni: no plugin binary given")
	}
	bin, err := os.ReadFile(o.Plugin)
	if err != nil {
		return res, fmt.Errorf("cni: reading the plugin binary: %w", err)
	}
	for _, d := range []string{o.BinDir, o.ConfDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return res, fmt.Errorf("cni: %w", err)
		}
	}
	for _, name := range []string{PluginType, IPAMType} {
		path := filepath.Join(o.BinDir, name)
		res.Binaries = append(res.Binaries, path)
		wrote, err := atomicfile.WriteIfChanged(path, bin, 0o755)
		if err != nil {
			return res, fmt.Errorf("cni: installing %s: %w", path, err)
		}
		if wrote {
			res.Written = append(res.Written, path)
		}
	}
	ds := o.Datastore
	_ = ds.Normalize() // checked by Conflist
	if o.TLSDir != "" && ds.Type == datastore.TypeEtcd {
		var p pluginConf
		for _, f := range tlsFiles(&ds, &p) {
			if f.src == "" {
				continue
			}
			data, err := os.ReadFile(f.src)
			if err != nil {
				return res, fmt.Errorf("cni: copying etcd TLS files: %w", err)
			}
			if err := os.MkdirAll(o.TLSDir, 0o755); err != nil {
				return res, fmt.Errorf("cni: %w", err)
			}
			path := filepath.Join(o.TLSDir, f.name)
			wrote, err := atomicfile.WriteIfChanged(path, data, f.perm)
			if err != nil {
				return res, fmt.Errorf("cni: copying %s: %w", f.src, err)
			}
			if wrote {
				res.Written = append(res.Written, path)
			}
		}
	}
	res.Conf = filepath.Join(o.ConfDir, ConfName)
	// 0644: runtimes read it as any user may; it holds no secret.
	if res.ConfWritten, err = atomicfile.WriteIfChanged(res.Conf, conf, 0o644); err != nil {
		return res, fmt.Errorf("cni: writing %s: %w", res.Conf, err)
	}
	return res, nil
}

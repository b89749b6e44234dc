// Package config reads the configuration of Roost's CNI plugins (the
// network plugin "roost" and the IPAM plugin "roost-ipam"): the network
// configuration on stdin, with Calico's field names, and CNI_ARGS. Every
// error is a *types.Error naming the field and the value at fault
// (docs/cni.md).
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/node/ipam"
	"github.com/roostnet/roost/node/names"
	"github.com/roostnet/roost/node/startup"
)

// Plugin type names: the binary's name selects the role.
const (
	NetworkType = "roost"
	IPAMType    = "roost-ipam"
)

// Defaults as in Calico's CNI plugin.
const (
	DefaultNodenameFile     = "/var/lib/calico/nodename"
	DefaultDatastoreTimeout = 10 * time.Second
)

// Plugin-specific error codes (the CNI spec leaves 100 and above to
// plugins).
const (
	ErrNoAddress = 100 // the pools are exhausted or none allows the workload
)

// NetConf is the network configuration both plugins read.
type NetConf struct {
	types.PluginConf

	NodeName             string `json:"nodename"`
	NodenameFile         string `json:"nodename_file"`
	NodenameFileOptional bool   `json:"nodename_file_optional"`

	DatastoreType           string `json:"datastore_type"`
	EtcdEndpoints           string `json:"etcd_endpoints"`
	EtcdCACertFile          string `json:"etcd_ca_cert_file"`
	EtcdCertFile            string `json:"etcd_cert_file"`
	EtcdKeyFile             string `json:"etcd_key_file"`
	DatastoreFile           string `json:"datastore_file"`
	DatastoreTimeoutSeconds int    `json:"datastore_timeout_seconds"`

	MTU int `json:"mtu"`
	// MTUFile is where "mtu": 0 reads the node's workload MTU (roost-node's
	// ROOST_MTU_FILE); default DefaultMTUFile. Written by install-cni.
	MTUFile     string `json:"mtu_file"`
	LogLevel    string `json:"log_level"`
	LogFilePath string `json:"log_file_path"`

	IPAM IPAMConf `json:"ipam"`

	// Args are the conventional "args" of a network configuration; Roost
	// reads args.cni (docs/cni.md).
	Args struct {
		CNI map[string]json.RawMessage `json:"cni"`
	} `json:"args"`
	// RuntimeConfig carries the "ips" capability.
	RuntimeConfig struct {
		IPs []string `json:"ips"`
	} `json:"runtimeConfig"`
}

// IPAMConf is the "ipam" section.
type IPAMConf struct {
	Type       string     `json:"type"`
	AssignIPv4 BoolString `json:"assign_ipv4"`
	AssignIPv6 BoolString `json:"assign_ipv6"`
	IPv4Pools  []string   `json:"ipv4_pools"`
	IPv6Pools  []string   `json:"ipv6_pools"`
}

// fieldValue is the JSON text of the field at the dotted path in the
// configuration (for errors).
func fieldValue(stdin []byte, path string) string {
	var v any
	if json.Unmarshal(stdin, &v) != nil {
		return "?"
	}
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return "?"
		}
		v = m[k]
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "?"
	}
	return string(b)
}

// BoolString is Calico's "true"/"false" string (a JSON boolean is taken
// too); empty when absent.
type BoolString string

// UnmarshalJSON takes a string or a boolean (Parse checks the value).
func (b *BoolString) UnmarshalJSON(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	switch x := v.(type) {
	case bool:
		*b = BoolString(strconv.FormatBool(x))
	case string:
		*b = BoolString(strings.ToLower(strings.TrimSpace(x)))
	default:
		*b = BoolString(data)
	}
	return nil
}

// Mode is the family mode for IPAM: def when absent.
func (b BoolString) Mode(def ipam.FamilyMode) ipam.FamilyMode {
	switch b {
	case "":
		return def
	case "true", "1", "t":
		return ipam.FamilyOn
	}
	return ipam.FamilyOff
}

// Invalid is a configuration error naming the field and its value.
func Invalid(field string, value any, why string) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("invalid network configuration: %s: %s", field, why), fmt.Sprintf("field %s, value %v", field, value))
}

// Parse decodes and checks a network configuration.
func Parse(stdin []byte) (*NetConf, error) {
	c := &NetConf{}
	dec := json.NewDecoder(bytes.NewReader(stdin))
	if err := dec.Decode(c); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("malformed network configuration: field %s: %s is not a %s", te.Field, fieldValue(stdin, te.Field), te.Type), err.Error())
		}
		return nil, types.NewError(types.ErrDecodingFailure, "malformed network configuration: "+err.Error(), "")
	}
	switch c.DatastoreType {
	case "", datastore.TypeEtcd, "etcd", datastore.TypeFile:
	case "kubernetes":
		return nil, Invalid("datastore_type", c.DatastoreType, "the Kubernetes datastore is not supported by Roost (use etcdv3 or file)")
	default:
		return nil, Invalid("datastore_type", c.DatastoreType, "use etcdv3 or file")
	}
	if c.MTU < 0 || c.MTU > 65535 || (c.MTU > 0 && c.MTU < 68) {
		return nil, Invalid("mtu", c.MTU, "must be 0 (from the node) or 68..65535")
	}
	if c.DatastoreTimeoutSeconds < 0 {
		return nil, Invalid("datastore_timeout_seconds", c.DatastoreTimeoutSeconds, "must not be negative")
	}
	for field, v := range map[string]BoolString{"ipam.assign_ipv4": c.IPAM.AssignIPv4, "ipam.assign_ipv6": c.IPAM.AssignIPv6} {
		if _, err := strconv.ParseBool(string(v)); v != "" && err != nil {
			return nil, Invalid(field, string(v), `use "true" or "false"`)
		}
	}
	for field, list := range map[string][]string{"ipam.ipv4_pools": c.IPAM.IPv4Pools, "ipam.ipv6_pools": c.IPAM.IPv6Pools} {
		for _, p := range list {
			if strings.TrimSpace(p) == "" {
				return nil, Invalid(field, fmt.Sprintf("%q", p), "empty pool name")
			}
		}
	}
	for _, s := range c.RuntimeConfig.IPs {
		if _, err := parseAddr(s); err != nil {
			return nil, Invalid("runtimeConfig.ips", s, err.Error())
		}
	}
	return c, nil
}

// Datastore is the datastore configuration; secrets are never part of
// it (TLS material is named by file).
func (c *NetConf) Datastore() datastore.Config {
	d := datastore.Config{
		Type: c.DatastoreType, File: c.DatastoreFile,
		EtcdEndpoints: c.EtcdEndpoints, EtcdCACert: c.EtcdCACertFile, EtcdCert: c.EtcdCertFile, EtcdKey: c.EtcdKeyFile,
	}
	if d.Type == "" && d.EtcdEndpoints != "" {
		d.Type = datastore.TypeEtcd
	}
	return d
}

// Timeout bounds every datastore operation of one plugin call.
func (c *NetConf) Timeout() time.Duration {
	if c.DatastoreTimeoutSeconds > 0 {
		return time.Duration(c.DatastoreTimeoutSeconds) * time.Second
	}
	return DefaultDatastoreTimeout
}

// Node is the node name: "nodename", else the content of
// "nodename_file" (default /var/lib/calico/nodename, where calico-node
// writes it), else the host name.
func (c *NetConf) Node() (string, error) {
	if c.NodeName != "" {
		n, err := startup.NodeName(c.NodeName)
		if err != nil {
			return "", Invalid("nodename", c.NodeName, err.Error())
		}
		return n, nil
	}
	file := c.NodenameFile
	if file == "" {
		file = DefaultNodenameFile
	}
	b, err := os.ReadFile(file)
	switch {
	case err == nil && strings.TrimSpace(string(b)) != "":
		n, err := startup.NodeName(string(b))
		if err != nil {
			return "", Invalid("nodename_file", file, err.Error())
		}
		return n, nil
	case err != nil && c.NodenameFile != "" && !c.NodenameFileOptional:
		return "", Invalid("nodename_file", file, err.Error())
	}
	n, err := startup.NodeName("")
	if err != nil {
		return "", types.NewError(types.ErrInvalidNetworkConfig, err.Error(), "set nodename in the network configuration")
	}
	return n, nil
}

// Identity is who an attachment belongs to, from CNI_ARGS and the
// container id (Calico's rules): a Kubernetes pod when K8S_POD_NAMESPACE
// and K8S_POD_NAME are given, else a plain container (orchestrator cni,
// namespace default).
type Identity struct {
	Orchestrator string
	Namespace    string
	Pod          string // k8s
	ContainerID  string
	IfName       string
	Handle       string // IPAM handle
	HostIface    string // the host end of the veth
}

// Args are the CNI_ARGS Roost reads.
type Args struct {
	K8sNamespace, K8sPod, K8sInfraContainerID, K8sPodUID string
	// IPs asked for (IP=, cni.projectcalico.org/ipAddrs), IPv4Pools and
	// IPv6Pools (cni.projectcalico.org/ipv4pools / ipv6pools).
	IPs                  []string
	IPv4Pools, IPv6Pools []string
}

// Calico's annotation names, accepted as CNI_ARGS keys and in args.cni.
const (
	KeyIPv4Pools = "cni.projectcalico.org/ipv4pools"
	KeyIPv6Pools = "cni.projectcalico.org/ipv6pools"
	KeyIPAddrs   = "cni.projectcalico.org/ipAddrs"
)

// ParseArgs reads CNI_ARGS ("K=V;K=V"); unknown keys are ignored.
func ParseArgs(s string) (*Args, error) {
	a := &Args{}
	if s == "" {
		return a, nil
	}
	for _, kv := range strings.Split(s, ";") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_ARGS: %q is not KEY=VALUE", kv), s)
		}
		var err error
		switch k {
		case "K8S_POD_NAMESPACE":
			a.K8sNamespace = v
		case "K8S_POD_NAME":
			a.K8sPod = v
		case "K8S_POD_INFRA_CONTAINER_ID":
			a.K8sInfraContainerID = v
		case "K8S_POD_UID":
			a.K8sPodUID = v
		case "IP":
			a.IPs, err = listValue(v)
		case KeyIPAddrs:
			a.IPs, err = listValue(v)
		case KeyIPv4Pools:
			a.IPv4Pools, err = listValue(v)
		case KeyIPv6Pools:
			a.IPv6Pools, err = listValue(v)
		}
		if err != nil {
			return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_ARGS: %s=%s: %v", k, v, err), s)
		}
	}
	for _, ip := range a.IPs {
		if _, err := parseAddr(ip); err != nil {
			return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_ARGS: IP %q: %v", ip, err), s)
		}
	}
	return a, nil
}

// listValue reads a JSON list of strings (Calico's annotation format) or
// a comma-separated list.
func listValue(v string) ([]string, error) {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(v, "[") {
		var out []string
		if err := json.Unmarshal([]byte(v), &out); err != nil {
			return nil, fmt.Errorf("not a JSON list of strings: %w", err)
		}
		return out, nil
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

func parseAddr(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, errors.New("not an IPv4 or IPv6 address")
	}
	return ip.Unmap(), nil
}

// Request is what the IPAM plugin asks for: the configuration's pools and
// families, overridden by args.cni and CNI_ARGS (pools), plus specific
// addresses from runtimeConfig.ips, args.cni and CNI_ARGS.
type Request struct {
	IPv4, IPv6           ipam.FamilyMode
	IPv4Pools, IPv6Pools []string
	// Where the pool lists came from (for errors): ipam.ipv4_pools,
	// args.cni.<key> or CNI_ARGS <key>.
	IPv4PoolsField, IPv6PoolsField string
	IPs                            []netip.Addr
}

// AddressRequest combines the configuration with CNI_ARGS.
func (c *NetConf) AddressRequest(a *Args) (*Request, error) {
	r := &Request{
		IPv4: c.IPAM.AssignIPv4.Mode(ipam.FamilyOn), IPv6: c.IPAM.AssignIPv6.Mode(ipam.FamilyOff),
		IPv4Pools: c.IPAM.IPv4Pools, IPv6Pools: c.IPAM.IPv6Pools,
		IPv4PoolsField: "ipam.ipv4_pools", IPv6PoolsField: "ipam.ipv6_pools",
	}
	ips := append([]string(nil), c.RuntimeConfig.IPs...)
	for key, raw := range c.Args.CNI {
		var list []string
		switch key {
		case "ips", KeyIPAddrs, KeyIPv4Pools, KeyIPv6Pools:
			if err := json.Unmarshal(raw, &list); err != nil {
				// Calico's annotations hold a JSON list inside a string.
				var s string
				if err2 := json.Unmarshal(raw, &s); err2 != nil {
					return nil, Invalid("args.cni."+key, string(raw), "must be a list of strings")
				}
				l, err := listValue(s)
				if err != nil {
					return nil, Invalid("args.cni."+key, s, err.Error())
				}
				list = l
			}
		default:
			continue
		}
		switch key {
		case "ips", KeyIPAddrs:
			ips = append(ips, list...)
		case KeyIPv4Pools:
			r.IPv4Pools, r.IPv4PoolsField = list, "args.cni."+key
		case KeyIPv6Pools:
			r.IPv6Pools, r.IPv6PoolsField = list, "args.cni."+key
		}
	}
	if a != nil {
		ips = append(ips, a.IPs...)
		if a.IPv4Pools != nil {
			r.IPv4Pools, r.IPv4PoolsField = a.IPv4Pools, "CNI_ARGS "+KeyIPv4Pools
		}
		if a.IPv6Pools != nil {
			r.IPv6Pools, r.IPv6PoolsField = a.IPv6Pools, "CNI_ARGS "+KeyIPv6Pools
		}
	}
	seen := map[netip.Addr]bool{}
	for _, s := range ips {
		ip, err := parseAddr(s)
		if err != nil {
			return nil, Invalid("ips", s, err.Error())
		}
		if !seen[ip] {
			seen[ip] = true
			r.IPs = append(r.IPs, ip)
		}
	}
	return r, nil
}

// Identify works out who the attachment is for.
func Identify(containerID, ifName, cniArgs string) (*Identity, *Args, error) {
	a, err := ParseArgs(cniArgs)
	if err != nil {
		return nil, nil, err
	}
	if containerID == "" {
		return nil, nil, types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_CONTAINERID is empty", "")
	}
	if ifName == "" {
		return nil, nil, types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_IFNAME is empty", "")
	}
	id := &Identity{ContainerID: containerID, IfName: ifName, Handle: names.PodHandle(containerID)}
	if a.K8sNamespace != "" && a.K8sPod != "" {
		id.Orchestrator, id.Namespace, id.Pod = names.OrchestratorK8s, a.K8sNamespace, a.K8sPod
		id.HostIface = names.WorkloadInterface(a.K8sNamespace, a.K8sPod)
	} else {
		id.Orchestrator, id.Namespace = names.OrchestratorCNI, "default"
		id.HostIface = names.ContainerInterface(containerID)
	}
	return id, a, nil
}

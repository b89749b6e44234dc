// Package startup makes this host a node: its name, its IPv4/IPv6
// addresses (given or autodetected, with their prefix lengths), its AS,
// the Node resource that carries them, and the default IPv4 and IPv6
// pools.
package startup

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/internal/atomicfile"
	"github.com/roostnet/roost/internal/backoff"
)

// Config holds the startup settings (docs/roost-node.md, Calico's names).
type Config struct {
	NodeName  string // NODENAME
	IP        string // IP: "", "autodetect", "none", an address or a CIDR
	IP6       string // IP6: likewise; "" means none
	IPMethod  string // IP_AUTODETECTION_METHOD
	IP6Method string // IP6_AUTODETECTION_METHOD
	AS        string // AS: plain or asdot; "" keeps the node's (or the global) AS
	// ClusterType (CLUSTER_TYPE) is merged into ClusterInformation
	// default's clusterType ("": DefaultClusterType).
	ClusterType string
	Pool        PoolConfig
	// NodenameFile (ROOST_NODENAME_FILE) is where the node's name is
	// written for the CNI plugin, as calico-node writes
	// /var/lib/calico/nodename; "" writes none.
	NodenameFile string
}

// DefaultNodenameFile is calico-node's node name file, which Calico's and
// Roost's CNI plugins read when their configuration names no node.
const DefaultNodenameFile = "/var/lib/calico/nodename"

// WriteNodenameFile makes path hold name (no newline, as calico-node
// writes it), atomically and only when it changed.
func WriteNodenameFile(path, name string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("node name file: %w", err)
	}
	if _, err := atomicfile.WriteIfChanged(path, []byte(name), 0o644); err != nil {
		return fmt.Errorf("node name file %s: %w", path, err)
	}
	return nil
}

// PoolConfig is the default IPv4 pool (CALICO_IPV4POOL_*) and, in V6,
// the default IPv6 pool (CALICO_IPV6POOL_*).
type PoolConfig struct {
	Disabled         bool   // NO_DEFAULT_POOLS
	CIDR             string // CALICO_IPV4POOL_CIDR (192.168.0.0/16; "none": no default IPv4 pool)
	IPIP             string // CALICO_IPV4POOL_IPIP (Always unless VXLAN is on)
	VXLAN            string // CALICO_IPV4POOL_VXLAN (Never)
	BlockSize        int    // CALICO_IPV4POOL_BLOCK_SIZE (26)
	NATOutgoing      bool   // CALICO_IPV4POOL_NAT_OUTGOING (true)
	NodeSelector     string // CALICO_IPV4POOL_NODE_SELECTOR (all())
	DisableBGPExport bool   // CALICO_IPV4POOL_DISABLE_BGP_EXPORT
	V6               PoolConfigV6
}

// PoolConfigV6 is the default IPv6 pool. Calico creates one whenever
// FELIX_IPV6SUPPORT is true; Roost only when IPv6 is in use: the CIDR is
// given, or the node has an IPv6 address (IP6).
type PoolConfigV6 struct {
	CIDR             string // CALICO_IPV6POOL_CIDR ("": a random ULA /48; "none": no default IPv6 pool)
	VXLAN            string // CALICO_IPV6POOL_VXLAN (Never)
	BlockSize        int    // CALICO_IPV6POOL_BLOCK_SIZE (122)
	NATOutgoing      bool   // CALICO_IPV6POOL_NAT_OUTGOING (false)
	NodeSelector     string // CALICO_IPV6POOL_NODE_SELECTOR (all())
	DisableBGPExport bool   // CALICO_IPV6POOL_DISABLE_BGP_EXPORT
	Supported        bool   // FELIX_IPV6SUPPORT (true); false: no default IPv6 pool
}

// Names Calico gives the pools it creates.
const (
	DefaultPoolName   = "default-ipv4-ippool"
	DefaultPoolNameV6 = "default-ipv6-ippool"
)

// NodeName returns name when set, else the host name, lower-cased.
func NodeName(name string) (string, error) {
	if name = strings.TrimSpace(name); name == "" {
		h, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("node name: NODENAME is unset and the host name is unknown: %w", err)
		}
		name = h
	}
	name = strings.ToLower(name)
	if !api.IsDNS1123Subdomain(name) {
		return "", fmt.Errorf("node name %q is not a valid resource name (lowercase letters, digits, '-' and '.'); set NODENAME", name)
	}
	return name, nil
}

// Addrs are the node's addresses with prefix lengths and interfaces.
type Addrs struct {
	V4, V6           netip.Prefix
	V4Iface, V6Iface string
}

// Autodetecting reports whether either family is autodetected (and so
// should be re-detected periodically).
func (c *Config) Autodetecting() bool {
	v4 := strings.ToLower(strings.TrimSpace(c.IP))
	v6 := strings.ToLower(strings.TrimSpace(c.IP6))
	return v4 == "" || v4 == "autodetect" || v6 == "autodetect"
}

// ResolveAddrs turns IP/IP6 into addresses, autodetecting as configured.
func ResolveAddrs(cfg *Config, det *Detector) (Addrs, error) {
	var out Addrs
	var err error
	out.V4, out.V4Iface, err = resolve(cfg.IP, "autodetect", cfg.IPMethod, 4, det)
	if err != nil {
		return out, err
	}
	out.V6, out.V6Iface, err = resolve(cfg.IP6, "none", cfg.IP6Method, 6, det)
	if err != nil {
		return out, err
	}
	return out, nil
}

func resolve(setting, def, method string, family int, det *Detector) (netip.Prefix, string, error) {
	env := "IP"
	if family == 6 {
		env = "IP6"
	}
	s := strings.TrimSpace(setting)
	if s == "" {
		s = def
	}
	switch strings.ToLower(s) {
	case "none":
		return netip.Prefix{}, "", nil
	case "autodetect":
		m, err := ParseMethod(method)
		if err != nil {
			return netip.Prefix{}, "", fmt.Errorf("%s_AUTODETECTION_METHOD: %w", env, err)
		}
		d, err := det.Detect(m, family)
		if err != nil {
			return netip.Prefix{}, "", err
		}
		return d.Addr, d.Iface, nil
	}
	ip, pfx, err := api.ParseAddrMaybeCIDR(s)
	if err != nil || (family == 6) != ip.Unmap().Is6() {
		return netip.Prefix{}, "", fmt.Errorf("%s=%q: want an IPv%d address, a CIDR, \"autodetect\" or \"none\"", env, setting, family)
	}
	ip = ip.Unmap()
	// Find the interface holding it; a bare address takes its prefix.
	if det != nil && det.NL != nil {
		if ifaces, lerr := det.interfaces(family); lerr == nil {
			for _, ia := range ifaces {
				for _, a := range ia.addrs {
					if a.Addr() == ip {
						if !pfx.IsValid() {
							pfx = a
						}
						return netip.PrefixFrom(ip, pfx.Bits()), ia.name, nil
					}
				}
			}
		}
	}
	if !pfx.IsValid() {
		pfx = netip.PrefixFrom(ip, ip.BitLen())
	}
	return netip.PrefixFrom(ip, pfx.Bits()), "", nil
}

// ErrDuplicateAddress: another Node already has the address.
var ErrDuplicateAddress = errors.New("address already used by another node")

// Register creates or updates the Node resource of name with the
// addresses and AS (nil keeps what the Node has). It refuses when another
// node already owns one of the addresses. Fields it does not manage
// (labels, tunnel addresses, route reflector id...) are kept.
func Register(ctx context.Context, ds datastore.Datastore, name string, addrs Addrs, as *api.ASNumber, log logrus.FieldLogger) (*api.Node, error) {
	// Another writer changed the Node between read and write: read again
	// after a short jittered delay, so that racing writers spread out.
	bo := backoff.New(backoff.Policy{Min: 5 * time.Millisecond, Max: 250 * time.Millisecond})
	for range 50 {
		if err := checkDuplicates(ctx, ds, name, addrs); err != nil {
			return nil, err
		}
		key := datastore.ResourceKey(api.KindNode, "", name)
		kv, err := ds.Get(ctx, key)
		var node *api.Node
		var rev int64
		switch {
		case errors.Is(err, datastore.ErrNotFound):
			node = &api.Node{}
			node.Metadata.Name = name
		case err != nil:
			return nil, err
		default:
			var ok bool
			if node, ok = kv.Value.(*api.Node); !ok {
				return nil, fmt.Errorf("%s is not a Node", key)
			}
			rev = kv.Revision
		}
		node.Metadata.ResourceVersion = ""
		before, _ := api.MarshalJSON(api.Clone(node))
		if node.Spec.BGP == nil {
			node.Spec.BGP = &api.NodeBGPSpec{}
		}
		b := node.Spec.BGP
		b.IPv4Address = prefixString(addrs.V4)
		b.IPv6Address = prefixString(addrs.V6)
		if as != nil {
			v := *as
			b.ASNumber = &v
		}
		if *b == (api.NodeBGPSpec{}) {
			node.Spec.BGP = nil
		}
		after, _ := api.MarshalJSON(api.Clone(node))
		if rev != 0 && string(before) == string(after) {
			return node, nil
		}
		if rev == 0 {
			_, err = ds.Create(ctx, node)
		} else {
			_, err = ds.Update(ctx, &datastore.KV{Key: key, Value: node, Revision: rev})
		}
		if err == nil {
			log.WithFields(logrus.Fields{"node": name, "ipv4": b.IPv4Address, "ipv6": b.IPv6Address, "created": rev == 0}).Info("startup: node registered")
			return node, nil
		}
		if !errors.Is(err, datastore.ErrConflict) && !errors.Is(err, datastore.ErrExists) && !errors.Is(err, datastore.ErrNotFound) {
			return nil, fmt.Errorf("writing Node %s: %w", name, err)
		}
		if err := bo.Wait(ctx); err != nil {
			return nil, fmt.Errorf("writing Node %s: %w", name, err)
		}
	}
	return nil, fmt.Errorf("writing Node %s: too many concurrent modifications", name)
}

func prefixString(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

func checkDuplicates(ctx context.Context, ds datastore.Datastore, name string, addrs Addrs) error {
	res, err := ds.List(ctx, datastore.KindPrefix(api.KindNode))
	if err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	for _, kv := range res.KVs {
		n, ok := kv.Value.(*api.Node)
		if !ok || n.Metadata.Name == name || n.Spec.BGP == nil {
			continue
		}
		for _, pair := range []struct {
			mine   netip.Prefix
			theirs string
		}{{addrs.V4, n.Spec.BGP.IPv4Address}, {addrs.V6, n.Spec.BGP.IPv6Address}} {
			if !pair.mine.IsValid() || pair.theirs == "" {
				continue
			}
			ip, _, err := api.ParseAddrMaybeCIDR(pair.theirs)
			if err == nil && ip.Unmap() == pair.mine.Addr() {
				return fmt.Errorf("refusing to start: %s is already the address of node %q (%w); set IP/IP6 or IP_AUTODETECTION_METHOD, or delete the stale Node", pair.mine.Addr(), n.Metadata.Name, ErrDuplicateAddress)
			}
		}
	}
	return nil
}

// PoolFromEnv reads CALICO_IPV4POOL_*, CALICO_IPV6POOL_*,
// FELIX_IPV6SUPPORT and NO_DEFAULT_POOLS.
func PoolFromEnv(getenv func(string) string) (PoolConfig, error) {
	pc := PoolConfig{CIDR: "192.168.0.0/16", BlockSize: api.DefaultBlockSizeV4, NATOutgoing: true,
		V6: PoolConfigV6{BlockSize: api.DefaultBlockSizeV6}}
	var err error
	boolEnv := func(name string, def bool) bool {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return def
		}
		b, perr := strconv.ParseBool(v)
		if perr != nil {
			err = errors.Join(err, fmt.Errorf("%s=%q is not a boolean", name, v))
			return def
		}
		return b
	}
	pc.Disabled = boolEnv("NO_DEFAULT_POOLS", false)
	pc.NATOutgoing = boolEnv("CALICO_IPV4POOL_NAT_OUTGOING", true)
	pc.DisableBGPExport = boolEnv("CALICO_IPV4POOL_DISABLE_BGP_EXPORT", false)
	pc.V6.NATOutgoing = boolEnv("CALICO_IPV6POOL_NAT_OUTGOING", false)
	pc.V6.DisableBGPExport = boolEnv("CALICO_IPV6POOL_DISABLE_BGP_EXPORT", false)
	pc.V6.Supported = boolEnv("FELIX_IPV6SUPPORT", true)
	if v := strings.TrimSpace(getenv("CALICO_IPV4POOL_CIDR")); v != "" {
		pc.CIDR = v
	}
	pc.V6.CIDR = strings.TrimSpace(getenv("CALICO_IPV6POOL_CIDR"))
	intEnv := func(name string, p *int) {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			n, perr := strconv.Atoi(v)
			if perr != nil {
				err = errors.Join(err, fmt.Errorf("%s=%q is not a number", name, v))
			}
			*p = n
		}
	}
	intEnv("CALICO_IPV4POOL_BLOCK_SIZE", &pc.BlockSize)
	intEnv("CALICO_IPV6POOL_BLOCK_SIZE", &pc.V6.BlockSize)
	pc.NodeSelector = strings.TrimSpace(getenv("CALICO_IPV4POOL_NODE_SELECTOR"))
	pc.V6.NodeSelector = strings.TrimSpace(getenv("CALICO_IPV6POOL_NODE_SELECTOR"))
	mode := func(name string) string {
		v := strings.TrimSpace(getenv(name))
		for _, m := range []string{api.EncapAlways, api.EncapCrossSubnet, api.EncapNever} {
			if strings.EqualFold(v, m) {
				return m
			}
		}
		if strings.EqualFold(v, "off") || strings.EqualFold(v, "false") {
			return api.EncapNever
		}
		if v != "" {
			err = errors.Join(err, fmt.Errorf("%s=%q: use Always, CrossSubnet or Never", name, v))
		}
		return ""
	}
	pc.VXLAN = mode("CALICO_IPV4POOL_VXLAN")
	pc.IPIP = mode("CALICO_IPV4POOL_IPIP")
	if pc.V6.VXLAN = mode("CALICO_IPV6POOL_VXLAN"); pc.V6.VXLAN == "" {
		pc.V6.VXLAN = api.EncapNever
	}
	if pc.VXLAN == "" {
		pc.VXLAN = api.EncapNever
	}
	if pc.IPIP == "" {
		// Calico's default: IPIP Always, unless VXLAN was asked for.
		pc.IPIP = api.EncapAlways
		if pc.VXLAN != api.EncapNever {
			pc.IPIP = api.EncapNever
		}
	}
	return pc, err
}

// DefaultPool builds the IPv4 pool PoolConfig describes (validated).
func (pc PoolConfig) DefaultPool() (*api.IPPool, error) {
	p := &api.IPPool{}
	p.Metadata.Name = DefaultPoolName
	p.Spec = api.IPPoolSpec{
		CIDR: pc.CIDR, IPIPMode: pc.IPIP, VXLANMode: pc.VXLAN, BlockSize: pc.BlockSize,
		NATOutgoing: pc.NATOutgoing, NodeSelector: pc.NodeSelector, DisableBGPExport: pc.DisableBGPExport,
	}
	api.Default(p)
	if err := api.Validate(p); err != nil {
		return nil, fmt.Errorf("default pool from CALICO_IPV4POOL_*: %w", err)
	}
	if p.IsIPv6() {
		return nil, fmt.Errorf("CALICO_IPV4POOL_CIDR=%q is not an IPv4 CIDR", pc.CIDR)
	}
	return p, nil
}

// DefaultPoolV6 builds the IPv6 pool PoolConfig describes (validated),
// on a random unique local /48 (fdXX:XXXX:XXXX::/48, as Calico
// generates one) when CALICO_IPV6POOL_CIDR is empty.
func (pc PoolConfig) DefaultPoolV6() (*api.IPPool, error) {
	cidr := pc.V6.CIDR
	if cidr == "" {
		var b [16]byte
		b[0] = 0xfd
		if _, err := rand.Read(b[1:6]); err != nil {
			return nil, fmt.Errorf("generating an IPv6 pool CIDR: %w", err)
		}
		cidr = netip.PrefixFrom(netip.AddrFrom16(b), 48).String()
	}
	p := &api.IPPool{}
	p.Metadata.Name = DefaultPoolNameV6
	p.Spec = api.IPPoolSpec{
		CIDR: cidr, IPIPMode: api.EncapNever, VXLANMode: pc.V6.VXLAN, BlockSize: pc.V6.BlockSize,
		NATOutgoing: pc.V6.NATOutgoing, NodeSelector: pc.V6.NodeSelector, DisableBGPExport: pc.V6.DisableBGPExport,
	}
	api.Default(p)
	if err := api.Validate(p); err != nil {
		return nil, fmt.Errorf("default pool from CALICO_IPV6POOL_*: %w", err)
	}
	if !p.IsIPv6() {
		return nil, fmt.Errorf("CALICO_IPV6POOL_CIDR=%q is not an IPv6 CIDR", pc.V6.CIDR)
	}
	return p, nil
}

// EnsureDefaultPools creates the default IPv4 pool when no IPv4 pool
// exists, and the default IPv6 pool when no IPv6 pool exists and IPv6 is
// in use (CALICO_IPV6POOL_CIDR is set, or nodeHasIPv6), unless
// NO_DEFAULT_POOLS, a CIDR of "none" or FELIX_IPV6SUPPORT=false says
// otherwise. Another node creating them at the same moment is fine. It
// returns the pools this call created.
func EnsureDefaultPools(ctx context.Context, ds datastore.Datastore, pc PoolConfig, nodeHasIPv6 bool, log logrus.FieldLogger) ([]*api.IPPool, error) {
	if pc.Disabled {
		return nil, nil
	}
	res, err := ds.List(ctx, datastore.KindPrefix(api.KindIPPool))
	if err != nil {
		return nil, fmt.Errorf("listing IP pools: %w", err)
	}
	have4, have6 := false, false
	for _, kv := range res.KVs {
		if p, ok := kv.Value.(*api.IPPool); ok {
			have4 = have4 || !p.IsIPv6()
			have6 = have6 || p.IsIPv6()
		}
	}
	if len(res.Invalid) > 0 {
		// A pool is present but broken: it may be the pool of either
		// family.
		log.WithError(res.Invalid[0]).Warn("startup: an IP pool is present but broken; not creating default pools")
		return nil, nil
	}
	var want []*api.IPPool
	if !have4 && !strings.EqualFold(pc.CIDR, "none") {
		p, err := pc.DefaultPool()
		if err != nil {
			return nil, err
		}
		want = append(want, p)
	}
	if v6 := pc.V6; !have6 && v6.Supported && !strings.EqualFold(v6.CIDR, "none") && (v6.CIDR != "" || nodeHasIPv6) {
		p, err := pc.DefaultPoolV6()
		if err != nil {
			return nil, err
		}
		want = append(want, p)
	}
	var created []*api.IPPool
	for _, pool := range want {
		if _, err := ds.Create(ctx, pool); err != nil {
			if errors.Is(err, datastore.ErrExists) {
				continue
			}
			return created, fmt.Errorf("creating the default pool %s: %w", pool.Metadata.Name, err)
		}
		created = append(created, pool)
		log.WithFields(logrus.Fields{"name": pool.Metadata.Name, "cidr": pool.Spec.CIDR, "ipipMode": pool.Spec.IPIPMode, "vxlanMode": pool.Spec.VXLANMode,
			"blockSize": pool.Spec.BlockSize}).Info("startup: created a default pool")
	}
	return created, nil
}

// ParseAS parses the AS setting; "" gives nil (keep the node's or use the
// global AS).
func ParseAS(s string) (*api.ASNumber, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	as, err := api.ParseASNumber(s)
	if err != nil {
		return nil, fmt.Errorf("AS=%q: %w", s, err)
	}
	return &as, nil
}

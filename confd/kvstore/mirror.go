package kvstore

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

// Roots of the key tree Calico's confd keeps in memory (docs/confd.md, "Key store").
const (
	GlobalPrefix = "/calico/bgp/v1/global/"
	HostPrefix   = "/calico/bgp/v1/host/"
	PoolPrefix   = "/calico/v1/ipam/" // + "v4/pool/<cidr-with-dash>" or "v6/..."
)

// Global defaults: Calico's confd writes these three keys whether or not a
// default BGPConfiguration exists, and puts them back when a field or the
// whole resource is deleted. (Calico's own default for node_mesh is
// `{"enabled": true}`, with a space; Roost writes the compact form it also
// writes for an explicit setting. Templates parse it with json.)
const (
	DefaultASNumber = "64512"
	MeshEnabled     = `{"enabled":true}`
	MeshDisabled    = `{"enabled":false}`
	DefaultLogLevel = "info"
)

// globalSource is the datastore key of the global BGPConfiguration.
var globalSource = datastore.ResourceKey(api.KindBGPConfiguration, "", api.DefaultBGPConfigName)

// Mirror translates datastore resources into Calico confd's key tree in a
// Store and keeps it current as resources change.
//
// For every datastore key it remembers the store keys it produced, so an
// update that drops a field deletes that key and a delete removes them all.
// If two resources produce the same store key (two IPPools with one CIDR)
// the most recent writer's value is shown, and the key stays until its last
// producer is gone.
//
// Mapping (values are exact strings):
//
// BGPConfiguration "default" (global; the first four keys always exist):
//
//	/calico/bgp/v1/global/as_num            spec.asNumber, default 64512
//	/calico/bgp/v1/global/node_mesh         {"enabled":true} (default) or {"enabled":false}
//	/calico/bgp/v1/global/loglevel          spec.logSeverityScreen lower-cased: "debug" and
//	                                        "info" kept, anything else (warning, error,
//	                                        fatal, none) "none"; "info" when unset. This is
//	                                        Calico's mapping: BIRD knows only these levels.
//	/calico/bgp/v1/global/listen_port       spec.listenPort, when set
//	/calico/bgp/v1/global/prefix_advertisements/ip_v4, .../ip_v6
//	                                        when spec.prefixAdvertisements is non-empty, both
//	                                        keys, each a JSON array (possibly []) of
//	                                        {"cidr":"10.0.0.0/24","communities":["65000:100"]}:
//	                                        cidr masked, community names resolved through
//	                                        spec.communities, values deduplicated and sorted.
//	/calico/bgp/v1/global/bind_mode         spec.bindMode ("NodeIP", "None"), when set
//	/calico/bgp/v1/global/svc_cluster_ips   spec.serviceClusterIPs CIDRs joined with ",",
//	/calico/bgp/v1/global/svc_external_ips  ... serviceExternalIPs,
//	/calico/bgp/v1/global/svc_loadbalancer_ips ... serviceLoadBalancerIPs (each when non-empty)
//	/calico/bgp/v1/global/ignored_interfaces spec.ignoredInterfaces joined with ",", when set
//	/calico/bgp/v1/global/node_mesh_restart_time spec.nodeMeshMaxRestartTime in whole
//	                                        seconds (rounded), when set
//
// These are Calico's names and formats. spec.nodeMeshPassword is not
// mirrored: it names a secret, and secrets are resolved by the BGP model.
//
// BGPConfiguration "node.<name>" (per-node overrides, as in Calico):
//
//	/calico/bgp/v1/host/<name>/listen_port, loglevel, prefix_advertisements/ip_v4|ip_v6
//	                                        same formats, only for fields that are set
//
// Node <name> (as Calico's BGP node processor writes it):
//
//	/calico/bgp/v1/host/<name>/ip_addr_v4   spec.bgp.ipv4Address without prefix; always
//	                                        present, "" when unset (Calico's templates rely on it)
//	/calico/bgp/v1/host/<name>/ip_addr_v6   likewise
//	/calico/bgp/v1/host/<name>/network_v4   the address's subnet, masked ("10.192.0.0/16";
//	                                        an address without prefix gives /32), when set
//	/calico/bgp/v1/host/<name>/network_v6   likewise (/128)
//	/calico/bgp/v1/host/<name>/as_num       spec.bgp.asNumber, when set
//	/calico/bgp/v1/host/<name>/rr_cluster_id spec.bgp.routeReflectorClusterID; always present,
//	                                        "" for a node that is not a route reflector (as Calico)
//
// Roost additions (Calico's confd does not get these; its Felix does):
//
//	/calico/bgp/v1/host/<name>/ipip_tunnel_addr_v4   spec.bgp.ipv4IPIPTunnelAddr, when set
//	/calico/bgp/v1/host/<name>/vxlan_tunnel_addr_v4  spec.ipv4VXLANTunnelAddr, when set
//	/calico/bgp/v1/host/<name>/vxlan_tunnel_addr_v6  spec.ipv6VXLANTunnelAddr, when set
//	/calico/bgp/v1/host/<name>/vxlan_tunnel_mac      spec.vxlanTunnelMACAddr, when set
//	/calico/bgp/v1/host/<name>/vxlan_tunnel_mac_v6   spec.vxlanTunnelMACAddrV6, when set
//
// (tunnel addresses without any prefix length).
//
// IPPool (every pool, disabled ones included, as Calico: a disabled pool
// only stops new allocations; templates and the model decide what to do):
//
//	/calico/v1/ipam/v4/pool/10.65.0.0-16 (v6 for IPv6 pools), Calico's v1 pool JSON:
//	{"cidr":"10.65.0.0/16","ipip":"tunl0","ipip_mode":"always","vxlan_mode":"never",
//	 "masquerade":true,"ipam":true,"disabled":false,"disableBGPExport":false,
//	 "assignment_mode":"Automatic"}
//	ipip is "tunl0" when ipipMode is Always or CrossSubnet, else ""; modes are
//	"always", "cross-subnet" or "never"; ipam = !disabled.
//
// BlockAffinity of this node, confirmed and pendingDeletion ones (as Calico:
// a block being released may still hold addresses, so its blackhole and
// export stay until the affinity is gone; pending and deleted affinities
// count as absent):
//
//	/calico/ipam/v2/host/<this node>/ipv4/block/10.65.1.0-26  {"state":"confirmed","deleted":false}
//	(or {"state":"pendingDeletion","deleted":false})
//
// Affinities of other nodes, BGPPeers, BGPFilters (the renderer publishes
// computed peers itself), workload endpoints, blocks and handles produce
// nothing.
type Mirror struct {
	mu       sync.Mutex
	store    *Store
	node     string
	produced map[string]map[string]string // datastore key -> store key -> value
	claims   map[string][]string          // store key -> datastore keys producing it; last wins
}

// NewMirror returns a Mirror writing into store for the node nodeName, and
// writes the global defaults (as if no default BGPConfiguration existed).
func NewMirror(store *Store, nodeName string) *Mirror {
	m := &Mirror{
		store:    store,
		node:     nodeName,
		produced: map[string]map[string]string{},
		claims:   map[string][]string{},
	}
	kvs, _ := globalKeys(nil)
	store.Apply(func(w *Writer) { m.replace(w, globalSource, kvs) })
	return m
}

// Apply records the current state of one datastore key: obj is the
// resource stored there, nil when it was deleted. With key "" the key is
// derived from obj. The store is changed in one batch. An error describes
// input that could not be (fully) translated: the store then holds what
// could be, and the error names the resource and field.
func (m *Mirror) Apply(key string, obj api.Resource) error {
	if key == "" {
		if obj == nil {
			return fmt.Errorf("kvstore: Apply with neither key nor object")
		}
		k, err := datastore.KeyFor(obj)
		if err != nil {
			return err
		}
		key = k
	}
	kvs, err := m.translate(key, obj)
	if kvs == nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.store.Apply(func(w *Writer) { m.replace(w, key, kvs) })
	return err
}

// DatastoreKeys returns the sorted datastore keys that currently produce
// store keys (plus the global configuration's key, which always does).
// After a relist, keys not seen again can be passed to Apply(key, nil).
func (m *Mirror) DatastoreKeys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.produced))
	for k := range m.produced {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// translate computes the store keys for one datastore key. A nil map (not
// an empty one) means "change nothing".
func (m *Mirror) translate(key string, obj api.Resource) (map[string]string, error) {
	if obj == nil {
		if key == globalSource {
			return globalKeys(nil)
		}
		return map[string]string{}, nil
	}
	info, err := datastore.ParseKey(key)
	if err != nil {
		return nil, err
	}
	if info.Kind != obj.ResourceKind() {
		return nil, fmt.Errorf("key %q holds a %s, not a %s", key, info.Kind, obj.ResourceKind())
	}
	switch o := obj.(type) {
	case *api.BGPConfiguration:
		switch {
		case info.Name == api.DefaultBGPConfigName:
			return globalKeys(o)
		case strings.HasPrefix(info.Name, api.NodeBGPConfigPrefix) && len(info.Name) > len(api.NodeBGPConfigPrefix):
			return nodeConfigKeys(strings.TrimPrefix(info.Name, api.NodeBGPConfigPrefix), o)
		}
		return map[string]string{}, fmt.Errorf("BGPConfiguration %q: metadata.name must be %q or %q<nodename>; ignored",
			info.Name, api.DefaultBGPConfigName, api.NodeBGPConfigPrefix)
	case *api.Node:
		return nodeKeys(info.Name, o)
	case *api.IPPool:
		return poolKeys(info.Name, o)
	case *api.BlockAffinity:
		return m.affinityKeys(o)
	}
	return map[string]string{}, nil
}

// replace makes the store keys produced by src exactly kvs.
func (m *Mirror) replace(w *Writer, src string, kvs map[string]string) {
	old := m.produced[src]
	if len(kvs) == 0 {
		delete(m.produced, src)
	} else {
		m.produced[src] = kvs
	}
	for k := range old {
		if _, keep := kvs[k]; !keep {
			m.release(w, src, k)
		}
	}
	for k, v := range kvs {
		if ov, had := old[k]; had && ov == v {
			continue // unchanged: no claim reordering, no store write
		}
		c := m.claims[k]
		for i, s := range c {
			if s == src {
				c = append(c[:i], c[i+1:]...)
				break
			}
		}
		m.claims[k] = append(c, src)
		w.Set(k, v)
	}
}

// release drops src's claim on store key k.
func (m *Mirror) release(w *Writer, src, k string) {
	c := m.claims[k]
	for i, s := range c {
		if s == src {
			c = append(c[:i], c[i+1:]...)
			break
		}
	}
	if len(c) == 0 {
		delete(m.claims, k)
		w.Delete(k)
		return
	}
	m.claims[k] = c
	w.Set(k, m.produced[c[len(c)-1]][k])
}

// globalKeys maps the default BGPConfiguration (nil: none exists).
func globalKeys(c *api.BGPConfiguration) (map[string]string, error) {
	kvs := map[string]string{
		GlobalPrefix + "as_num":    DefaultASNumber,
		GlobalPrefix + "node_mesh": MeshEnabled,
		GlobalPrefix + "loglevel":  DefaultLogLevel,
	}
	if c == nil {
		return kvs, nil
	}
	s := &c.Spec
	if s.ASNumber != nil {
		kvs[GlobalPrefix+"as_num"] = s.ASNumber.String()
	}
	if s.NodeToNodeMeshEnabled != nil && !*s.NodeToNodeMeshEnabled {
		kvs[GlobalPrefix+"node_mesh"] = MeshDisabled
	}
	if s.LogSeverityScreen != "" {
		kvs[GlobalPrefix+"loglevel"] = LogLevel(s.LogSeverityScreen)
	}
	if s.BindMode != nil && *s.BindMode != "" {
		kvs[GlobalPrefix+"bind_mode"] = *s.BindMode
	}
	for name, blocks := range map[string][]api.ServiceIPBlock{
		"svc_cluster_ips":      s.ServiceClusterIPs,
		"svc_external_ips":     s.ServiceExternalIPs,
		"svc_loadbalancer_ips": s.ServiceLoadBalancerIPs,
	} {
		if len(blocks) > 0 {
			cidrs := make([]string, len(blocks))
			for i, b := range blocks {
				cidrs[i] = b.CIDR
			}
			kvs[GlobalPrefix+name] = strings.Join(cidrs, ",")
		}
	}
	if len(s.IgnoredInterfaces) > 0 {
		kvs[GlobalPrefix+"ignored_interfaces"] = strings.Join(s.IgnoredInterfaces, ",")
	}
	if s.NodeMeshMaxRestartTime != nil {
		kvs[GlobalPrefix+"node_mesh_restart_time"] = strconv.Itoa(int(math.Round(s.NodeMeshMaxRestartTime.Seconds())))
	}
	err := commonConfigKeys(kvs, GlobalPrefix, c)
	return kvs, err
}

// nodeConfigKeys maps a "node.<name>" BGPConfiguration.
func nodeConfigKeys(node string, c *api.BGPConfiguration) (map[string]string, error) {
	kvs := map[string]string{}
	prefix := HostPrefix + node + "/"
	if c.Spec.LogSeverityScreen != "" {
		kvs[prefix+"loglevel"] = LogLevel(c.Spec.LogSeverityScreen)
	}
	err := commonConfigKeys(kvs, prefix, c)
	return kvs, err
}

// commonConfigKeys adds the keys global and per-node configurations share.
func commonConfigKeys(kvs map[string]string, prefix string, c *api.BGPConfiguration) error {
	if c.Spec.ListenPort != 0 {
		kvs[prefix+"listen_port"] = strconv.Itoa(int(c.Spec.ListenPort))
	}
	if len(c.Spec.PrefixAdvertisements) == 0 {
		return nil
	}
	v4, v6, err := prefixAdvertisements(c)
	kvs[prefix+"prefix_advertisements/ip_v4"] = v4
	kvs[prefix+"prefix_advertisements/ip_v6"] = v6
	return err
}

// LogLevel maps a logSeverityScreen value to BIRD's granularity as Calico
// does: "debug" and "info" (any case) stay, everything else is "none".
func LogLevel(severity string) string {
	switch l := strings.ToLower(severity); l {
	case "debug", "info":
		return l
	}
	return "none"
}

type prefixAdv struct {
	CIDR        string   `json:"cidr"`
	Communities []string `json:"communities"`
}

// prefixAdvertisements encodes spec.prefixAdvertisements per family.
// Entries whose CIDR does not parse, and community names that are not
// defined, are left out and reported.
func prefixAdvertisements(c *api.BGPConfiguration) (v4, v6 string, err error) {
	named := map[string]string{}
	for _, cm := range c.Spec.Communities {
		named[cm.Name] = cm.Value
	}
	var errs []string
	l4, l6 := []prefixAdv{}, []prefixAdv{}
	for i, pa := range c.Spec.PrefixAdvertisements {
		p, perr := api.ParseCIDR(pa.CIDR)
		if perr != nil {
			errs = append(errs, fmt.Sprintf("spec.prefixAdvertisements[%d].cidr %q: not a CIDR", i, pa.CIDR))
			continue
		}
		set := map[string]bool{}
		for j, cm := range pa.Communities {
			switch {
			case api.ValidCommunity(cm):
				set[cm] = true
			case named[cm] != "":
				set[named[cm]] = true
			default:
				errs = append(errs, fmt.Sprintf("spec.prefixAdvertisements[%d].communities[%d] %q: not a community value nor a name in spec.communities", i, j, cm))
			}
		}
		comms := make([]string, 0, len(set))
		for cm := range set {
			comms = append(comms, cm)
		}
		sort.Strings(comms)
		e := prefixAdv{CIDR: p.String(), Communities: comms}
		if p.Addr().Is6() {
			l6 = append(l6, e)
		} else {
			l4 = append(l4, e)
		}
	}
	b4, _ := json.Marshal(l4)
	b6, _ := json.Marshal(l6)
	if len(errs) > 0 {
		err = fmt.Errorf("BGPConfiguration %q: %s", c.Metadata.Name, strings.Join(errs, "; "))
	}
	return string(b4), string(b6), err
}

// nodeKeys maps a Node.
func nodeKeys(name string, n *api.Node) (map[string]string, error) {
	prefix := HostPrefix + name + "/"
	kvs := map[string]string{
		prefix + "ip_addr_v4":    "",
		prefix + "ip_addr_v6":    "",
		prefix + "rr_cluster_id": "",
	}
	var errs []string
	bad := func(field, value, msg string) {
		errs = append(errs, fmt.Sprintf("%s %q: %s", field, value, msg))
	}
	if b := n.Spec.BGP; b != nil {
		for _, f := range []struct {
			field, value, suffix string
			v6                   bool
		}{
			{"spec.bgp.ipv4Address", b.IPv4Address, "_v4", false},
			{"spec.bgp.ipv6Address", b.IPv6Address, "_v6", true},
		} {
			if f.value == "" {
				continue
			}
			addr, pfx, err := api.ParseAddrMaybeCIDR(strings.TrimSpace(f.value))
			if err != nil || addr.Is6() != f.v6 || addr.Is4In6() {
				bad(f.field, f.value, "not an address of the right family")
				continue
			}
			if !pfx.IsValid() {
				pfx = netip.PrefixFrom(addr, addr.BitLen())
			}
			kvs[prefix+"ip_addr"+f.suffix] = addr.String()
			kvs[prefix+"network"+f.suffix] = pfx.Masked().String()
		}
		if b.ASNumber != nil {
			kvs[prefix+"as_num"] = b.ASNumber.String()
		}
		kvs[prefix+"rr_cluster_id"] = b.RouteReflectorClusterID
		if b.IPv4IPIPTunnelAddr != "" {
			if a, ok := tunnelAddr(b.IPv4IPIPTunnelAddr, false); ok {
				kvs[prefix+"ipip_tunnel_addr_v4"] = a
			} else {
				bad("spec.bgp.ipv4IPIPTunnelAddr", b.IPv4IPIPTunnelAddr, "not an IPv4 address")
			}
		}
	}
	for _, f := range []struct {
		field, value, key string
		v6                bool
	}{
		{"spec.ipv4VXLANTunnelAddr", n.Spec.IPv4VXLANTunnelAddr, "vxlan_tunnel_addr_v4", false},
		{"spec.ipv6VXLANTunnelAddr", n.Spec.IPv6VXLANTunnelAddr, "vxlan_tunnel_addr_v6", true},
	} {
		if f.value == "" {
			continue
		}
		if a, ok := tunnelAddr(f.value, f.v6); ok {
			kvs[prefix+f.key] = a
		} else {
			bad(f.field, f.value, "not an address of the right family")
		}
	}
	if n.Spec.VXLANTunnelMACAddr != "" {
		kvs[prefix+"vxlan_tunnel_mac"] = n.Spec.VXLANTunnelMACAddr
	}
	if n.Spec.VXLANTunnelMACAddrV6 != "" {
		kvs[prefix+"vxlan_tunnel_mac_v6"] = n.Spec.VXLANTunnelMACAddrV6
	}
	if len(errs) > 0 {
		return kvs, fmt.Errorf("%s %q: %s", api.KindNode, name, strings.Join(errs, "; "))
	}
	return kvs, nil
}

// tunnelAddr parses a tunnel address, with or without a prefix length.
func tunnelAddr(s string, v6 bool) (string, bool) {
	a, _, err := api.ParseAddrMaybeCIDR(strings.TrimSpace(s))
	if err != nil || a.Is6() != v6 || a.Is4In6() {
		return "", false
	}
	return a.String(), true
}

// poolValue is Calico's v1 IP pool JSON (field order as Calico writes it).
type poolValue struct {
	CIDR             string `json:"cidr"`
	IPIP             string `json:"ipip"`
	IPIPMode         string `json:"ipip_mode"`
	VXLANMode        string `json:"vxlan_mode"`
	Masquerade       bool   `json:"masquerade"`
	IPAM             bool   `json:"ipam"`
	Disabled         bool   `json:"disabled"`
	DisableBGPExport bool   `json:"disableBGPExport"`
	AssignmentMode   string `json:"assignment_mode"`
}

// EncapMode writes an ipipMode/vxlanMode the way Calico's v1 pool does.
func EncapMode(mode string) string {
	switch {
	case strings.EqualFold(mode, api.EncapAlways):
		return "always"
	case strings.EqualFold(mode, api.EncapCrossSubnet):
		return "cross-subnet"
	}
	return "never"
}

// PoolKey is the store key of a pool CIDR.
func PoolKey(p netip.Prefix) string {
	fam := "v4"
	if p.Addr().Is6() {
		fam = "v6"
	}
	return PoolPrefix + fam + "/pool/" + api.CIDRToKey(p.Masked().String())
}

// poolKeys maps an IPPool.
func poolKeys(name string, p *api.IPPool) (map[string]string, error) {
	cidr, err := api.ParseCIDR(p.Spec.CIDR)
	if err != nil {
		return map[string]string{}, fmt.Errorf("IPPool %q: spec.cidr %q: not a CIDR", name, p.Spec.CIDR)
	}
	v := poolValue{
		CIDR:             cidr.String(),
		IPIPMode:         EncapMode(p.Spec.IPIPMode),
		VXLANMode:        EncapMode(p.Spec.VXLANMode),
		Masquerade:       p.Spec.NATOutgoing,
		IPAM:             !p.Spec.Disabled,
		Disabled:         p.Spec.Disabled,
		DisableBGPExport: p.Spec.DisableBGPExport,
		AssignmentMode:   p.Spec.AssignmentMode,
	}
	if v.IPIPMode != "never" {
		v.IPIP = "tunl0"
	}
	if v.AssignmentMode == "" {
		v.AssignmentMode = api.DefaultAssignmentMode
	}
	b, _ := json.Marshal(v)
	return map[string]string{PoolKey(cidr): string(b)}, nil
}

// AffinityValue is the value written for a confirmed affinity;
// PendingDeletionAffinityValue the one for an affinity being released.
const (
	AffinityValue                = `{"state":"confirmed","deleted":false}`
	PendingDeletionAffinityValue = `{"state":"pendingDeletion","deleted":false}`
)

// affinityKeys maps a BlockAffinity: only this node's routed ones
// (confirmed or pendingDeletion).
func (m *Mirror) affinityKeys(a *api.BlockAffinity) (map[string]string, error) {
	if a.Spec.Node != m.node || !a.Routed() {
		return map[string]string{}, nil
	}
	cidr, err := api.ParseCIDR(a.Spec.CIDR)
	if err != nil {
		return map[string]string{}, fmt.Errorf("BlockAffinity %q: spec.cidr %q: not a CIDR", a.Metadata.Name, a.Spec.CIDR)
	}
	v := AffinityValue
	if !a.Confirmed() {
		v = PendingDeletionAffinityValue
	}
	return map[string]string{datastore.AffinityKey(m.node, cidr): v}, nil
}

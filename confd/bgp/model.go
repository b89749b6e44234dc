package bgp

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Model is everything the BIRD templates need for one node, computed from
// the Cache by Compute. Every list is sorted; equal inputs give equal
// Models, so unrelated churn renders identical bytes.
//
// Field names are a contract with the templates (Roost's defaults and
// admin-edited copies): they only ever gain fields.
type Model struct {
	// NodeName is the node the model is for.
	NodeName string
	// RouterID is the BIRD router id (dotted quad).
	RouterID string
	// RouterIDSource says where RouterID came from: "ipv4" (the node's
	// IPv4 address), "hash" (CALICO_ROUTER_ID=hash: the first 4 bytes of
	// SHA-256 of the node name, first octet above 223 lowered by 32, as
	// Calico derives it) or "explicit" (CALICO_ROUTER_ID=<IPv4>).
	RouterIDSource string
	// ASNumber is this node's effective AS: the Node's spec.bgp.asNumber,
	// else the default BGPConfiguration's asNumber, else 64512.
	ASNumber uint32
	// LogLevel is Calico's BIRD log level name: "debug", "info" or "none",
	// from logSeverityScreen (node override first): Debug -> debug,
	// Info (and unset) -> info, Warning/Error/Fatal/None -> none.
	LogLevel string
	// BirdDebug is the matching argument of BIRD's `debug protocols`:
	// debug -> "all", info -> "{ states }", none -> "off".
	BirdDebug string
	// ListenPort is the BGP port of this node (node override, else
	// global, else 179). BIRD 2 has no global listen statement: each
	// session carries it as `local ... port N` when it is not 179.
	ListenPort int
	// BindMode is the effective bindMode: "" (listen on all addresses) or
	// "NodeIP" (every session gets `local <node ip>` and `strict bind on`).
	BindMode string
	// MeshEnabled is the effective node-to-node mesh setting.
	MeshEnabled bool
	// RouteReflectorClusterID is this node's cluster id ("" when the node
	// is not a route reflector).
	RouteReflectorClusterID string
	// IgnoredInterfaces is the global ignoredInterfaces list as given.
	// DirectExcludes are the interface globs the direct protocol skips, in
	// order: "cali*", "kube-ipvs*", then ignoredInterfaces (deduplicated).
	// Templates quote them with birdString.
	IgnoredInterfaces []string
	DirectExcludes    []string
	// Device and kernel protocol settings (constants today, fields so that
	// templates need no literals).
	DeviceScanTime int // seconds
	KernelScanTime int // seconds
	KernelLearn    bool
	KernelPersist  bool
	// KernelGracefulRestart and KernelMergePaths switch the kernel
	// protocols' `graceful restart` and `merge paths on`.
	KernelGracefulRestart bool
	KernelMergePaths      bool
	// V4 and V6 hold per-family data; Families lists the enabled ones
	// (the node has an address of that family), V4 first.
	V4       *Family
	V6       *Family
	Families []*Family
	// Filters are the compiled BGPFilters used by at least one session of
	// this node, sorted by name.
	Filters []*Filter
	// BFDSessions counts the sessions (both families) with BFD. When it is
	// not zero BFDProtocol names the `protocol bfd` the templates emit
	// ("" otherwise).
	BFDSessions int
	BFDProtocol string
	// MissingBFDProfiles are the BFDProfiles that annotations of this
	// node's sessions name but that do not exist, sorted; those sessions
	// render without BFD (Compute reports each as a warning).
	MissingBFDProfiles []string
}

// Family is the per address family part of the Model.
type Family struct {
	// Version is 4 or 6; Channel is "ipv4" or "ipv6"; Suffix is "v4" or
	// "v6" (used in BIRD names such as kernel_v4).
	Version int
	Channel string
	Suffix  string
	// Enabled: this node has an address of the family. A disabled family
	// has no sessions and renders nothing.
	Enabled bool
	// IP is this node's address ("10.0.0.1"), CIDR the address with its
	// prefix length as configured ("10.0.0.1/24", or just the address when
	// no length was given) and Network the subnet ("10.0.0.0/24", "" when
	// unknown).
	IP      string
	CIDR    string
	Network string
	// Peers are the BGP sessions, sorted by IP, then port.
	Peers []*Peer
	// Templates are the distinct session options used by Peers, in the
	// order of first use.
	Templates []*SessionTemplate
	// Blocks are the IPAM blocks with a confirmed affinity to this node.
	Blocks []Block
	// Pools are all IP pools of the family, sorted by CIDR.
	Pools []Pool
	// ExportPools are the CIDRs of enabled pools whose routes are exported
	// to BGP peers; NoExportPools those with disableBGPExport (their
	// routes are rejected, blocks included); EncapPools those with IPIP or
	// VXLAN (BIRD does not program them into the kernel: roost-node does).
	ExportPools   []string
	NoExportPools []string
	EncapPools    []string
	// NodeAgentPools are the CIDRs of the pools whose routes to other
	// nodes' blocks roost-node programs, not BIRD (rejected by the kernel
	// export): IPIP and VXLAN pools, and unencapsulated ones unless
	// programClusterRoutes leaves those to BIRD (api.ClusterRoutePolicy).
	NodeAgentPools []string
	// Services are the distinct CIDRs of serviceClusterIPs/
	// serviceExternalIPs/serviceLoadBalancerIPs of this family, sorted:
	// blackhole statics, exported to peers, never programmed into the
	// kernel. ServiceCIDRs lists the same CIDRs.
	Services     []Service
	ServiceCIDRs []string
	// Communities are the communities attached to routes inside a CIDR
	// (prefixAdvertisements, node override first), sorted by CIDR.
	Communities []PrefixCommunities
	// StaticRoutes are the routes to peers given by reachableBy.
	StaticRoutes []StaticRoute
	// TunnelInterfaces are interface globs whose routes are never
	// exported to iBGP peers: "tunl0", "*.calico" (vxlan.calico,
	// vxlan-v6.calico), "*.cali". Their routes lead to other nodes' blocks,
	// which iBGP peers learn from the owners.
	TunnelInterfaces []string
	// NormalRoutePriority is the kernel metric of a route of normal
	// priority (BGPConfiguration ipv4NormalRoutePriority /
	// ipv6NormalRoutePriority, default 1024). Route priority travels in
	// BGP as bgp_local_pref = MaxPriority - priority (Calico's meaning), so
	// NormalLocalPref (MaxPriority - NormalRoutePriority) is the local
	// preference of a normal route; above it a route has a higher than
	// normal priority.
	NormalRoutePriority int
	NormalLocalPref     int
	// MaxPriority is 2147483647 (2^31-1): priorities are 1..2^31-2.
	MaxPriority int
}

// Priority constants (Calico's): bgp_local_pref = MaxPriority - priority.
const (
	MaxPriority                = 2147483647
	DefaultNormalRoutePriority = 1024
	// OverridePreference is the BIRD preference given to an imported
	// route of higher than normal priority, so it wins over this node's
	// own route to the same prefix (live migration: an elevated /32 on
	// the new node must beat the old node's workload route).
	OverridePreference = 200
)

// Peer is one BGP session. Its options (SessionOptions, promoted: .LocalAS,
// .Password, ...) are those of its Template; the default templates write
// each distinct set of options once as a BIRD `template bgp` and every
// session as `protocol bgp <Name> from <Template> { neighbor ...; }`.
type Peer struct {
	// Name is the BIRD protocol name: Mesh_<ip>, Global_<ip> or
	// Node_<ip> with '.' and ':' as '_', plus _port_<n> when Port is not
	// 179. Status tools derive the peer type from the prefix.
	Name string
	// Type is "mesh", "global" or "node" (node-specific, selector and
	// reverse peerings).
	Type string
	// IP and Port are the neighbor address and port (Port is 179 unless
	// set in peerIP or by the peer node's listen port).
	IP   string
	Port int
	// PortSet: Port is not 179 (the template writes `port N`).
	PortSet bool
	// AS is the neighbor's AS.
	AS uint32
	// Passive: wait for the peer to connect. Between two nodes the one
	// whose address compares greater as a string connects; the other
	// (this node, when Passive) waits: Calico's lexical rule.
	Passive bool
	// Template names the SessionTemplate holding this session's options.
	Template string
	// ReachableBy is the gateway of the static route to the peer ("").
	ReachableBy string
	// BGPPeer is the resource the session comes from ("" for the mesh);
	// PeerNode the node at the other end when it is one ("" otherwise);
	// Reverse: the session exists because of the remote side's BGPPeer.
	BGPPeer  string
	PeerNode string
	Reverse  bool
	// Description is a human-readable origin of the session (e.g.
	// "Mesh to node node2", "BGPPeer rr (reverse, from node rr1)").
	Description string
	// SessionOptions points at the options of Template (shared: do not
	// modify through a Peer).
	*SessionOptions
}

// SessionOptions are the settings of a session other than its neighbor.
type SessionOptions struct {
	// LocalAS is the AS this node uses on the session (localASNumber,
	// else the node's AS); IsEBGP: the neighbor's AS differs from it.
	LocalAS uint32
	IsEBGP  bool
	// SourceAddress is the local address of the session ("" for
	// sourceAddress: None, unless BindMode is NodeIP).
	SourceAddress string
	// ListenPort is this node's BGP port (written `local ... port N` when
	// not 179) and StrictBind asks BIRD to bind to SourceAddress only.
	ListenPort int
	StrictBind bool
	// RRClient and RRClusterID: this node reflects routes to the peer.
	RRClient    bool
	RRClusterID string
	// Password is the resolved TCP-MD5 password ("" when none). It is
	// redacted in every printed or JSON form; templates read it with
	// .Password.Reveal.
	Password Secret
	// TTLSecurity switches `ttl security on`; Multihop is the hop limit of
	// `multihop N` (0: plain `multihop;`, BIRD's default of 64).
	// Every session is multihop, as in Calico: BIRD's direct mode would
	// refuse eBGP neighbors that are not on a connected subnet.
	TTLSecurity bool
	Multihop    int
	// GracefulRestartTime in seconds (0: BIRD's default, 120 s).
	GracefulRestartTime int
	// KeepaliveTime in seconds (0: default); HoldTime is set when the
	// keepalive needs a hold time above BIRD's default of 240 s.
	KeepaliveTime int
	HoldTime      int
	// NextHop is "self", "keep" or "" (BIRD's default); NextHopSelf and
	// NextHopKeep say the same as booleans.
	NextHop     string
	NextHopSelf bool
	NextHopKeep bool
	// NumAllowLocalAS is `allow local as N` (0: off).
	NumAllowLocalAS int
	// Filters are the session's BGPFilters, in the BGPPeer's order.
	Filters []PeerFilter
	// BFD is the session's BFD setting (nil: no BFD), from the
	// bfd.roost.io/profile annotations (see BFD).
	BFD *BFD
	// Disabled: the session's password cannot be used (its secret is
	// missing, empty, unreadable, too long or holds characters BIRD
	// cannot quote), so the session is rendered `disabled;` rather than
	// without a password or not at all. DisabledReason says why in one
	// line that BIRD can quote (never the value); SecretProblem names
	// the resource and secret.
	Disabled       bool
	DisabledReason string
	SecretProblem  *SecretProblem `json:",omitempty"`
}

// DisabledPrefix starts the description of a session Roost rendered
// disabled; status tools (birdctl node status, roost-node's readiness)
// recognise it in BIRD's `show protocols all`.
const DisabledPrefix = "Disabled by Roost: "

// DisabledDescription is the BIRD description of a disabled session:
// DisabledPrefix and the reason.
func (o *SessionOptions) DisabledDescription() string { return DisabledPrefix + o.DisabledReason }

// SecretProblem is why a session's password cannot be used.
type SecretProblem struct {
	// Kind and Name name the resource with the secretKeyRef (a BGPPeer,
	// or the default BGPConfiguration for nodeMeshPassword), Field its
	// field ("spec.password.secretKeyRef").
	Kind, Name, Field string
	// Secret is "<secret name>/<key>".
	Secret string
	// Reason is one of "missing", "unreadable", "empty", "too-long",
	// "unquotable".
	Reason string
}

// DisabledSession is one session rendered disabled, for status and
// metrics.
type DisabledSession struct {
	Family  int
	Name    string // the BIRD protocol
	Reason  string // DisabledReason
	Problem SecretProblem
}

// DisabledSessions lists the sessions rendered disabled, by family and
// name.
func (m *Model) DisabledSessions() []DisabledSession {
	var out []DisabledSession
	for _, f := range []*Family{m.V4, m.V6} {
		if f == nil {
			continue
		}
		for _, p := range f.Peers {
			if p.Disabled && p.SecretProblem != nil {
				out = append(out, DisabledSession{Family: f.Version, Name: p.Name, Reason: p.DisabledReason, Problem: *p.SecretProblem})
			}
		}
	}
	return out
}

// SessionTemplate is one distinct set of SessionOptions of a family,
// rendered as a BIRD `template bgp`. Name is Tmpl_<v4|v6>_<n>, numbered in
// the order of first use by the sorted sessions. Description lists the
// origins of the sessions using it ("node-to-node mesh", "BGPPeer x").
type SessionTemplate struct {
	Name        string
	Description string
	SessionOptions
}

// PeerFilter is one BGPFilter applied to a session. Import and Export are
// the BIRD statements calling the compiled functions, e.g.
// `BGPFilter_x_import_v4(false);` ("" when the filter has no rules for
// that direction and family).
type PeerFilter struct {
	Name   string
	Import string
	Export string
}

// Block is an IPAM block affine to this node. Blackhole is false for
// single-address blocks (/32, /128), which get no blackhole route.
type Block struct {
	CIDR      string
	Blackhole bool
}

// Pool is one IP pool.
type Pool struct {
	CIDR             string
	IPIPMode         string // Never, Always, CrossSubnet
	VXLANMode        string // Never, Always, CrossSubnet
	Encapsulated     bool   // IPIP or VXLAN is not Never
	Disabled         bool
	DisableBGPExport bool
	Export           bool // !Disabled && !DisableBGPExport
	// BIRDPrograms: BIRD programs the routes to other nodes' blocks of
	// this pool into the kernel; else roost-node does (NodeAgentPools).
	BIRDPrograms bool
}

// Service is one service CIDR. Kinds lists where it is configured:
// "cluster", "external", "loadbalancer" (in that order).
type Service struct {
	CIDR  string
	Kinds []string
}

// PrefixCommunities attaches communities to routes inside CIDR. Standard
// and Large hold BIRD literals ("(65000,100)", "(1,2,3)"), sorted.
type PrefixCommunities struct {
	CIDR     string
	Standard []string
	Large    []string
}

// StaticRoute is a route to Dest via the gateway Via.
type StaticRoute struct {
	Dest string
	Via  string
}

// Filter is a compiled BGPFilter: one BIRD function per direction and
// family that has rules.
type Filter struct {
	Name     string
	ImportV4 *FilterFunc
	ExportV4 *FilterFunc
	ImportV6 *FilterFunc
	ExportV6 *FilterFunc
}

// FilterFunc is a BIRD function: `function <Name>(bool is_ibgp) { <Statements> }`.
// Each statement is one complete BIRD statement; a matching rule ends the
// whole filter with accept or reject, a non-matching one falls through.
type FilterFunc struct {
	Name       string
	Statements []string
}

// Secret holds a password. It prints as "<redacted>" with every fmt verb,
// in JSON and as text; Reveal gives the value.
type Secret string

const redacted = "<redacted>"

// Reveal returns the secret value (for templates: .Password.Reveal).
func (s Secret) Reveal() string { return string(s) }

// IsSet reports whether a value is present.
func (s Secret) IsSet() bool { return s != "" }

func (s Secret) String() string   { return s.mask() }
func (s Secret) GoString() string { return `"` + s.mask() + `"` }

// Format makes every verb (%v %s %q %x %#v ...) print the mask.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", s.mask())
		return
	}
	fmt.Fprint(f, s.mask())
}

// MarshalJSON writes the mask.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.mask() + `"`), nil }

// MarshalText writes the mask.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.mask()), nil }

func (s Secret) mask() string {
	if s == "" {
		return ""
	}
	return redacted
}

// Passwords returns the distinct passwords the model's sessions use, so
// that writers can keep files holding them private.
func (m *Model) Passwords() []string {
	var out []string
	for _, f := range []*Family{m.V4, m.V6} {
		if f == nil {
			continue
		}
		for _, t := range f.Templates {
			if pw := t.Password.Reveal(); pw != "" && !slices.Contains(out, pw) {
				out = append(out, pw)
			}
		}
	}
	return out
}

// String renders the model as indented JSON, passwords redacted.
func (m *Model) String() string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return fmt.Sprintf("bgp.Model(%v)", err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// Family returns V4 for 4 and V6 for 6 (nil otherwise).
func (m *Model) Family(version int) *Family {
	switch version {
	case 4:
		return m.V4
	case 6:
		return m.V6
	}
	return nil
}

// Peer returns the session of a family with the given protocol name, or nil.
func (m *Model) Peer(version int, name string) *Peer {
	f := m.Family(version)
	if f == nil {
		return nil
	}
	for _, p := range f.Peers {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// PeerCount is the number of sessions over both families.
func (m *Model) PeerCount() int { return len(m.V4.Peers) + len(m.V6.Peers) }

// Funcs lists the filter's functions that exist, in the order import v4,
// export v4, import v6, export v6.
func (f *Filter) Funcs() []*FilterFunc {
	var out []*FilterFunc
	for _, fn := range []*FilterFunc{f.ImportV4, f.ExportV4, f.ImportV6, f.ExportV6} {
		if fn != nil {
			out = append(out, fn)
		}
	}
	return out
}

package api

// BGPConfiguration named "default" holds cluster-wide BGP settings; one named
// "node.<nodename>" overrides a few of them for that node.
type BGPConfiguration struct {
	TypeMeta
	Metadata ObjectMeta           `json:"metadata"`
	Spec     BGPConfigurationSpec `json:"spec"`
}

// BGPConfigurationSpec follows projectcalico.org/v3.
type BGPConfigurationSpec struct {
	LogSeverityScreen      string           `json:"logSeverityScreen,omitempty"`
	NodeToNodeMeshEnabled  *bool            `json:"nodeToNodeMeshEnabled,omitempty"`
	ASNumber               *ASNumber        `json:"asNumber,omitempty"`
	ServiceLoadBalancerIPs []ServiceIPBlock `json:"serviceLoadBalancerIPs,omitempty"`
	ServiceExternalIPs     []ServiceIPBlock `json:"serviceExternalIPs,omitempty"`
	ServiceClusterIPs      []ServiceIPBlock `json:"serviceClusterIPs,omitempty"`
	// ServiceLoadBalancerAggregation (Enabled, Disabled) is accepted and
	// ignored: Roost advertises the configured CIDRs, as Enabled does
	// (Disabled needs the Kubernetes services, which Roost does not see).
	ServiceLoadBalancerAggregation *string               `json:"serviceLoadBalancerAggregation,omitempty"`
	ListenPort                     uint16                `json:"listenPort,omitempty"`
	BindMode                       *string               `json:"bindMode,omitempty"`
	Communities                    []Community           `json:"communities,omitempty"`
	PrefixAdvertisements           []PrefixAdvertisement `json:"prefixAdvertisements,omitempty"`
	NodeMeshPassword               *BGPPassword          `json:"nodeMeshPassword,omitempty"`
	NodeMeshMaxRestartTime         *Duration             `json:"nodeMeshMaxRestartTime,omitempty"`
	IgnoredInterfaces              []string              `json:"ignoredInterfaces,omitempty"`
	LocalWorkloadPeeringIPV4       string                `json:"localWorkloadPeeringIPV4,omitempty"`
	LocalWorkloadPeeringIPV6       string                `json:"localWorkloadPeeringIPV6,omitempty"`
	// ProgramClusterRoutes: which pools' routes to other nodes' blocks
	// BIRD programs into the kernel; roost-node programs the others
	// (ClusterRoutes). Read from the default BGPConfiguration only.
	ProgramClusterRoutes *string `json:"programClusterRoutes,omitempty"`
	// IPv4NormalRoutePriority / IPv6NormalRoutePriority: the kernel metric
	// of routes of normal priority (default 1024); BGPFilter priorities
	// are relative to it (docs/bgp.md, Route priority).
	IPv4NormalRoutePriority *int `json:"ipv4NormalRoutePriority,omitempty"`
	IPv6NormalRoutePriority *int `json:"ipv6NormalRoutePriority,omitempty"`
}

// ProgramClusterRoutes values (Calico's): who programs the routes to other
// nodes' blocks of pools without VXLAN. VXLAN pools are always roost-node's.
const (
	ClusterRoutesEnabled            = "Enabled"            // BIRD: IPIP and unencapsulated pools
	ClusterRoutesDisabled           = "Disabled"           // BIRD: none
	ClusterRoutesEnabledIPIPOnly    = "EnabledIPIPOnly"    // BIRD: IPIP pools
	ClusterRoutesEnabledNoEncapOnly = "EnabledNoEncapOnly" // BIRD: unencapsulated pools (default)
)

// ClusterRoutePolicy says for which pools BIRD programs the cluster
// routes (the routes to other nodes' blocks); roost-node programs those
// of the other pools. confd and roost-node both derive it from the
// default BGPConfiguration, so exactly one of them programs each route.
type ClusterRoutePolicy struct {
	IPIP    bool // pools with ipipMode Always or CrossSubnet
	NoEncap bool // pools with ipipMode and vxlanMode Never
}

// ClusterRoutes is the policy of the default BGPConfiguration (nil: none
// exists): EnabledNoEncapOnly unless programClusterRoutes says otherwise.
func ClusterRoutes(c *BGPConfiguration) ClusterRoutePolicy {
	def := ClusterRoutePolicy{NoEncap: true}
	if c == nil || c.Spec.ProgramClusterRoutes == nil {
		return def
	}
	switch *c.Spec.ProgramClusterRoutes {
	case ClusterRoutesEnabled:
		return ClusterRoutePolicy{IPIP: true, NoEncap: true}
	case ClusterRoutesDisabled:
		return ClusterRoutePolicy{}
	case ClusterRoutesEnabledIPIPOnly:
		return ClusterRoutePolicy{IPIP: true}
	}
	return def
}

// BIRDPrograms tells whether BIRD programs the cluster routes of a pool
// with these modes ("" is Never). IPv6 pools have no IPIP. IPIP pools are
// always roost-node's, whatever IPIP says: BIRD 2 cannot send a route
// through tunl0 (Calico's BIRD fork has krt_tunnel for it, and Calico
// deprecates BIRD programming IPIP routes), so Enabled acts as
// EnabledNoEncapOnly and EnabledIPIPOnly as Disabled (confd warns).
func (p ClusterRoutePolicy) BIRDPrograms(ipipMode, vxlanMode string, ipv6 bool) bool {
	on := func(m string) bool { return m != "" && m != EncapNever }
	if on(vxlanMode) || (on(ipipMode) && !ipv6) {
		return false
	}
	return p.NoEncap
}

// Route priorities (BGPFilter priority and setPriority, normal route
// priorities) lie in 1..MaxRoutePriority, as Calico's: they travel in BGP
// as bgp_local_pref = 2^31-1 - priority.
const MaxRoutePriority = 2147483646

// Bind modes.
const (
	BindModeNone   = "None"
	BindModeNodeIP = "NodeIP"
)

// ServiceIPBlock is one CIDR of serviceClusterIPs / serviceExternalIPs /
// serviceLoadBalancerIPs.
type ServiceIPBlock struct {
	CIDR string `json:"cidr,omitempty"`
}

// Community names a BGP community value (standard "a:b" or large "a:b:c").
type Community struct {
	Name  string `json:"name,omitempty"`
	Value string `json:"value,omitempty"`
}

// PrefixAdvertisement attaches communities (values or names from
// Communities) to a CIDR this node advertises.
type PrefixAdvertisement struct {
	CIDR        string   `json:"cidr,omitempty"`
	Communities []string `json:"communities,omitempty"`
}

// BGPPassword points at a secret holding a BGP session password.
type BGPPassword struct {
	SecretKeyRef *SecretKeySelector `json:"secretKeyRef,omitempty"`
}

// SecretKeySelector names a key of a secret.
type SecretKeySelector struct {
	Name     string `json:"name"`
	Key      string `json:"key"`
	Optional *bool  `json:"optional,omitempty"`
}

// BGPPeer configures BGP sessions: global (no node, no nodeSelector),
// node-specific (node or nodeSelector), and to other nodes (peerSelector).
type BGPPeer struct {
	TypeMeta
	Metadata ObjectMeta  `json:"metadata"`
	Spec     BGPPeerSpec `json:"spec"`
}

// BGPPeerSpec follows projectcalico.org/v3.
type BGPPeerSpec struct {
	Node                     string       `json:"node,omitempty"`
	PeerIP                   string       `json:"peerIP,omitempty"`
	ASNumber                 ASNumber     `json:"asNumber,omitempty"`
	NodeSelector             string       `json:"nodeSelector,omitempty"`
	PeerSelector             string       `json:"peerSelector,omitempty"`
	KeepOriginalNextHop      bool         `json:"keepOriginalNextHop,omitempty"`
	NextHopMode              *string      `json:"nextHopMode,omitempty"`
	Password                 *BGPPassword `json:"password,omitempty"`
	SourceAddress            *string      `json:"sourceAddress,omitempty"`
	MaxRestartTime           *Duration    `json:"maxRestartTime,omitempty"`
	NumAllowedLocalASNumbers *int32       `json:"numAllowedLocalASNumbers,omitempty"`
	TTLSecurity              *uint8       `json:"ttlSecurity,omitempty"`
	KeepaliveTime            *Duration    `json:"keepaliveTime,omitempty"`
	ReachableBy              string       `json:"reachableBy,omitempty"`
	Filters                  []string     `json:"filters,omitempty"`
	LocalASNumber            *ASNumber    `json:"localASNumber,omitempty"`
	ReversePeering           *string      `json:"reversePeering,omitempty"`
	LocalWorkloadSelector    string       `json:"localWorkloadSelector,omitempty"`
}

// Enum values of BGPPeerSpec.
const (
	NextHopAuto = "Auto"
	NextHopSelf = "Self"
	NextHopKeep = "Keep"

	SourceAddressUseNodeIP = "UseNodeIP"
	SourceAddressNone      = "None"

	ReversePeeringAuto   = "Auto"
	ReversePeeringManual = "Manual"
)

// BGPFilter holds ordered import/export rules per address family.
type BGPFilter struct {
	TypeMeta
	Metadata ObjectMeta    `json:"metadata"`
	Spec     BGPFilterSpec `json:"spec"`
}

// BGPFilterSpec has one ordered rule list per direction and family.
type BGPFilterSpec struct {
	ExportV4 []BGPFilterRule `json:"exportV4,omitempty"`
	ImportV4 []BGPFilterRule `json:"importV4,omitempty"`
	ExportV6 []BGPFilterRule `json:"exportV6,omitempty"`
	ImportV6 []BGPFilterRule `json:"importV6,omitempty"`
}

// BGPFilterRule matches routes and accepts or rejects them, optionally
// changing attributes first. Every match field set must match.
type BGPFilterRule struct {
	CIDR          string                 `json:"cidr,omitempty"`
	MatchOperator string                 `json:"matchOperator,omitempty"`
	PrefixLength  *BGPFilterPrefixLength `json:"prefixLength,omitempty"`
	Source        string                 `json:"source,omitempty"`
	Interface     string                 `json:"interface,omitempty"`
	PeerType      string                 `json:"peerType,omitempty"`
	Communities   *BGPFilterCommunities  `json:"communities,omitempty"`
	ASPathPrefix  []ASNumber             `json:"asPathPrefix,omitempty"`
	Priority      *int                   `json:"priority,omitempty"`
	Action        string                 `json:"action"`
	Operations    []BGPFilterOperation   `json:"operations,omitempty"`
}

// BGPFilterPrefixLength bounds the prefix length of matched routes.
type BGPFilterPrefixLength struct {
	Min *int32 `json:"min,omitempty"`
	Max *int32 `json:"max,omitempty"`
}

// BGPFilterCommunities matches routes carrying any of the values.
type BGPFilterCommunities struct {
	Values []string `json:"values,omitempty"`
}

// BGPFilterOperation changes a route; exactly one field is set.
type BGPFilterOperation struct {
	AddCommunity  *BGPFilterAddCommunity  `json:"addCommunity,omitempty"`
	PrependASPath *BGPFilterPrependASPath `json:"prependASPath,omitempty"`
	SetPriority   *BGPFilterSetPriority   `json:"setPriority,omitempty"`
}

// BGPFilterAddCommunity adds one community value.
type BGPFilterAddCommunity struct {
	Value string `json:"value,omitempty"`
}

// BGPFilterPrependASPath prepends AS numbers to the path.
type BGPFilterPrependASPath struct {
	Prefix []ASNumber `json:"prefix,omitempty"`
}

// BGPFilterSetPriority sets the route's preference.
type BGPFilterSetPriority struct {
	Value int `json:"value"`
}

// Enum values of BGPFilterRule.
const (
	MatchEqual    = "Equal"
	MatchNotEqual = "NotEqual"
	MatchIn       = "In"
	MatchNotIn    = "NotIn"

	FilterAccept = "Accept"
	FilterReject = "Reject"

	FilterSourceRemotePeers = "RemotePeers"

	PeerTypeEBGP = "eBGP"
	PeerTypeIBGP = "iBGP"
)

func (r *BGPConfiguration) ResourceKind() string { return KindBGPConfiguration }
func (r *BGPConfiguration) Meta() *ObjectMeta    { return &r.Metadata }
func (r *BGPConfiguration) withTypeMeta() Resource {
	c := *r
	c.TypeMeta.set(KindBGPConfiguration)
	return &c
}
func (r *BGPPeer) ResourceKind() string     { return KindBGPPeer }
func (r *BGPPeer) Meta() *ObjectMeta        { return &r.Metadata }
func (r *BGPPeer) withTypeMeta() Resource   { c := *r; c.TypeMeta.set(KindBGPPeer); return &c }
func (r *BGPFilter) ResourceKind() string   { return KindBGPFilter }
func (r *BGPFilter) Meta() *ObjectMeta      { return &r.Metadata }
func (r *BGPFilter) withTypeMeta() Resource { c := *r; c.TypeMeta.set(KindBGPFilter); return &c }

package api

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/roostnet/roost/api/selector"
)

// Validate checks a resource and returns an ErrorList naming kind, name,
// field and value of every problem, or nil.
func Validate(r Resource) error {
	v := &validator{}
	md := r.Meta()
	v.meta(r.ResourceKind(), md)
	switch o := r.(type) {
	case *BGPConfiguration:
		v.bgpConfiguration(o)
		v.bfdAnnotation(md)
	case *BGPPeer:
		v.bgpPeer(o)
		v.bfdAnnotation(md)
	case *BFDProfile:
		v.bfdProfile(o)
	case *Node:
		v.node(o)
	case *IPPool:
		v.ipPool(o)
	case *BGPFilter:
		v.bgpFilter(o)
	case *WorkloadEndpoint:
		v.workloadEndpoint(o)
	case *CalicoNodeStatus:
		v.calicoNodeStatus(o)
	case *BlockAffinity:
		v.blockAffinity(o)
	case *IPAMBlock:
		v.ipamBlock(o)
	case *IPAMHandle:
		// Names come from etcd keys or files; nothing else to check.
	case *IPAMConfiguration:
		v.ipamConfiguration(o)
	case *StatusReport:
		if _, err := o.Spec.Reported(); err != nil {
			v.add("spec.time", o.Spec.Time, "must be an RFC 3339 time")
		}
	}
	return v.errs.withResource(r.ResourceKind(), md.Name).errOrNil()
}

type validator struct{ errs ErrorList }

func (v *validator) add(field string, value any, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Field: field, Value: value, Msg: fmt.Sprintf(format, args...)})
}

var (
	dns1123Label     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dns1123Subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	labelValueRE     = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)
	labelNameRE      = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	secretKeyRE      = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
	// Interface names and globs: what Linux allows minus anything that
	// would need quoting in BIRD (quotes, backslashes, whitespace).
	ifaceGlobRE = regexp.MustCompile(`^[A-Za-z0-9_.:@*?+\-\[\]]{1,64}$`)
	// Workload endpoint names are built from pod names and may hold
	// uppercase letters, "--" and dots.
	wepNameRE = regexp.MustCompile(`^[A-Za-z0-9][-A-Za-z0-9_.]*$`)
	handleRE  = regexp.MustCompile(`^[-A-Za-z0-9_.:]+$`)
)

// IsDNS1123Subdomain reports whether s is a valid resource/node name.
func IsDNS1123Subdomain(s string) bool {
	return len(s) <= 253 && dns1123Subdomain.MatchString(s)
}

func (v *validator) meta(kind string, md *ObjectMeta) {
	switch {
	case md.Name == "":
		v.add("metadata.name", nil, "required")
	case kind == KindWorkloadEndpoint:
		if len(md.Name) > 253 || !wepNameRE.MatchString(md.Name) {
			v.add("metadata.name", md.Name, "must be letters, digits, '-', '_' or '.' (at most 253)")
		}
	case kind == KindIPAMHandle:
		if len(md.Name) > 253 || !handleRE.MatchString(md.Name) {
			v.add("metadata.name", md.Name, "must be letters, digits, '-', '_', '.' or ':'")
		}
	case !IsDNS1123Subdomain(md.Name):
		v.add("metadata.name", md.Name, "must be a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', at most 253 characters")
	}
	if Namespaced(kind) {
		if md.Namespace == "" {
			v.add("metadata.namespace", nil, "required")
		} else if len(md.Namespace) > 63 || !dns1123Label.MatchString(md.Namespace) {
			v.add("metadata.namespace", md.Namespace, "must be a DNS-1123 label")
		}
	} else if md.Namespace != "" {
		v.add("metadata.namespace", md.Namespace, "%s is not namespaced", kind)
	}
	for k, val := range md.Labels {
		if !validLabelKey(k) {
			v.add("metadata.labels", k, "invalid label key: [prefix/]name, name of letters, digits, '-', '_', '.', at most 63")
		}
		if len(val) > 63 || !labelValueRE.MatchString(val) {
			v.add("metadata.labels."+k, val, "invalid label value: letters, digits, '-', '_', '.', at most 63")
		}
	}
}

func validLabelKey(k string) bool {
	prefix, name, found := strings.Cut(k, "/")
	if !found {
		name, prefix = prefix, ""
	} else if prefix == "" || !IsDNS1123Subdomain(prefix) {
		return false
	}
	return len(name) <= 63 && labelNameRE.MatchString(name)
}

func (v *validator) selector(field, s string) {
	if s == "" {
		return
	}
	if _, err := selector.Parse(s); err != nil {
		v.add(field, s, "invalid selector: %v", err)
	}
}

func (v *validator) enum(field, val string, allowed ...string) {
	if val == "" {
		return
	}
	for _, a := range allowed {
		if val == a {
			return
		}
	}
	v.add(field, val, "must be one of %s", strings.Join(allowed, ", "))
}

func (v *validator) cidr(field, s string, wantV6 *bool) (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(s)
	if err != nil || p.Addr().Zone() != "" {
		v.add(field, s, "not a valid CIDR")
		return netip.Prefix{}, false
	}
	if p.Addr().Is4In6() {
		v.add(field, s, "IPv4-mapped IPv6 prefixes are not supported")
		return netip.Prefix{}, false
	}
	if wantV6 != nil && p.Addr().Is6() != *wantV6 {
		v.add(field, s, "must be an %s CIDR", family(*wantV6))
		return netip.Prefix{}, false
	}
	return p, true
}

func family(v6 bool) string {
	if v6 {
		return "IPv6"
	}
	return "IPv4"
}

var (
	v4 = new(bool)
	v6 = func() *bool { b := true; return &b }()
)

func (v *validator) ip(field, s string, wantV6 *bool, allowPrefix bool) {
	if s == "" {
		return
	}
	var (
		a   netip.Addr
		err error
	)
	if allowPrefix {
		a, _, err = ParseAddrMaybeCIDR(s)
	} else {
		a, err = netip.ParseAddr(s)
	}
	if err != nil || a.Zone() != "" || a.Is4In6() {
		if allowPrefix {
			v.add(field, s, "not a valid IP address or address/prefix")
		} else {
			v.add(field, s, "not a valid IP address")
		}
		return
	}
	if wantV6 != nil && a.Is6() != *wantV6 {
		v.add(field, s, "must be an %s address", family(*wantV6))
	}
}

// ValidCommunity reports whether s is a standard (a:b, 16-bit parts) or
// large (a:b:c, 32-bit parts) BGP community value.
func ValidCommunity(s string) bool {
	parts := strings.Split(s, ":")
	bits := 16
	switch len(parts) {
	case 2:
	case 3:
		bits = 32
	default:
		return false
	}
	for _, p := range parts {
		if _, err := strconv.ParseUint(p, 10, bits); err != nil {
			return false
		}
	}
	return true
}

var logSeverities = []string{"Debug", "Info", "Warning", "Error", "Fatal", "None"}

func (v *validator) bgpConfiguration(o *BGPConfiguration) {
	s := &o.Spec
	name := o.Metadata.Name
	for _, p := range []struct {
		field string
		v     *int
	}{{"spec.ipv4NormalRoutePriority", s.IPv4NormalRoutePriority}, {"spec.ipv6NormalRoutePriority", s.IPv6NormalRoutePriority}} {
		if p.v != nil && (*p.v < 1 || *p.v > MaxRoutePriority) {
			v.add(p.field, *p.v, "must be in 1-%d", MaxRoutePriority)
		}
	}
	perNode := strings.HasPrefix(name, NodeBGPConfigPrefix)
	if perNode {
		// Calico allows only a few node-level overrides.
		if s.NodeToNodeMeshEnabled != nil {
			v.add("spec.nodeToNodeMeshEnabled", *s.NodeToNodeMeshEnabled, "only allowed in the default BGPConfiguration")
		}
		if s.ASNumber != nil {
			v.add("spec.asNumber", uint32(*s.ASNumber), "only allowed in the default BGPConfiguration (set the Node's spec.bgp.asNumber)")
		}
		if len(s.ServiceClusterIPs)+len(s.ServiceExternalIPs)+len(s.ServiceLoadBalancerIPs) > 0 {
			v.add("spec.serviceClusterIPs", nil, "service IPs are only allowed in the default BGPConfiguration")
		}
		if s.NodeMeshPassword != nil || s.NodeMeshMaxRestartTime != nil {
			v.add("spec.nodeMeshPassword", nil, "node mesh settings are only allowed in the default BGPConfiguration")
		}
	} else if name != DefaultBGPConfigName && name != "" {
		v.add("metadata.name", name, "must be %q or %q+<node name>", DefaultBGPConfigName, NodeBGPConfigPrefix)
	}
	if s.LogSeverityScreen != "" {
		ok := false
		for _, l := range logSeverities {
			ok = ok || strings.EqualFold(l, s.LogSeverityScreen)
		}
		if !ok {
			v.add("spec.logSeverityScreen", s.LogSeverityScreen, "must be one of %s", strings.Join(logSeverities, ", "))
		}
	}
	if s.BindMode != nil {
		v.enum("spec.bindMode", *s.BindMode, BindModeNone, BindModeNodeIP)
	}
	if s.ServiceLoadBalancerAggregation != nil {
		v.enum("spec.serviceLoadBalancerAggregation", *s.ServiceLoadBalancerAggregation, "Enabled", "Disabled")
	}
	if s.ProgramClusterRoutes != nil {
		v.enum("spec.programClusterRoutes", *s.ProgramClusterRoutes, ClusterRoutesEnabled, ClusterRoutesDisabled,
			ClusterRoutesEnabledIPIPOnly, ClusterRoutesEnabledNoEncapOnly)
	}
	for field, blocks := range map[string][]ServiceIPBlock{
		"spec.serviceClusterIPs": s.ServiceClusterIPs, "spec.serviceExternalIPs": s.ServiceExternalIPs,
		"spec.serviceLoadBalancerIPs": s.ServiceLoadBalancerIPs,
	} {
		for i, b := range blocks {
			v.cidr(fmt.Sprintf("%s[%d].cidr", field, i), b.CIDR, nil)
		}
	}
	names := map[string]bool{}
	for i, c := range s.Communities {
		f := fmt.Sprintf("spec.communities[%d]", i)
		if c.Name == "" || len(c.Name) > 63 || !dns1123Label.MatchString(c.Name) {
			v.add(f+".name", c.Name, "must be a DNS-1123 label")
		}
		if !ValidCommunity(c.Value) {
			v.add(f+".value", c.Value, "must be a standard community a:b (0-65535 each) or a large community a:b:c (0-4294967295 each)")
		}
		names[c.Name] = true
	}
	for i, pa := range s.PrefixAdvertisements {
		f := fmt.Sprintf("spec.prefixAdvertisements[%d]", i)
		v.cidr(f+".cidr", pa.CIDR, nil)
		for j, c := range pa.Communities {
			if !ValidCommunity(c) && !names[c] {
				v.add(fmt.Sprintf("%s.communities[%d]", f, j), c, "neither a community value (a:b or a:b:c) nor a name defined in spec.communities")
			}
		}
	}
	v.password("spec.nodeMeshPassword", s.NodeMeshPassword)
	for i, ifc := range s.IgnoredInterfaces {
		if !ifaceGlobRE.MatchString(ifc) {
			v.add(fmt.Sprintf("spec.ignoredInterfaces[%d]", i), ifc, "must be an interface name or glob of letters, digits and _.:@-*?[]")
		}
	}
	v.ip("spec.localWorkloadPeeringIPV4", s.LocalWorkloadPeeringIPV4, v4, false)
	v.ip("spec.localWorkloadPeeringIPV6", s.LocalWorkloadPeeringIPV6, v6, false)
}

func (v *validator) password(field string, p *BGPPassword) {
	if p == nil {
		return
	}
	if p.SecretKeyRef == nil {
		v.add(field+".secretKeyRef", nil, "required")
		return
	}
	if !IsDNS1123Subdomain(p.SecretKeyRef.Name) {
		v.add(field+".secretKeyRef.name", p.SecretKeyRef.Name, "must be a DNS-1123 subdomain")
	}
	if len(p.SecretKeyRef.Key) > 253 || !secretKeyRE.MatchString(p.SecretKeyRef.Key) {
		v.add(field+".secretKeyRef.key", p.SecretKeyRef.Key, "must be letters, digits, '-', '_' or '.'")
	}
}

func (v *validator) bgpPeer(o *BGPPeer) {
	s := &o.Spec
	if s.Node != "" && !IsDNS1123Subdomain(s.Node) {
		v.add("spec.node", s.Node, "must be a node name (DNS-1123 subdomain)")
	}
	if s.Node != "" && s.NodeSelector != "" {
		v.add("spec.nodeSelector", s.NodeSelector, "cannot be combined with spec.node")
	}
	v.selector("spec.nodeSelector", s.NodeSelector)
	v.selector("spec.peerSelector", s.PeerSelector)
	var peerAddr netip.Addr
	switch {
	case s.PeerIP != "" && s.PeerSelector != "":
		v.add("spec.peerSelector", s.PeerSelector, "cannot be combined with spec.peerIP")
	case s.PeerIP == "" && s.PeerSelector == "":
		v.add("spec.peerIP", nil, "required unless spec.peerSelector is set")
	case s.PeerIP != "":
		a, _, err := ParseIPPort(s.PeerIP)
		if err != nil {
			v.add("spec.peerIP", s.PeerIP, "%v", err)
		} else {
			peerAddr = a
		}
		// No asNumber: the AS of the node at peerIP, else the global AS
		// (as in Calico, where it is optional).
	}
	if s.NextHopMode != nil {
		v.enum("spec.nextHopMode", *s.NextHopMode, NextHopAuto, NextHopSelf, NextHopKeep)
		if s.KeepOriginalNextHop && *s.NextHopMode != NextHopKeep {
			v.add("spec.keepOriginalNextHop", true, "conflicts with spec.nextHopMode %q", *s.NextHopMode)
		}
	}
	v.password("spec.password", s.Password)
	if s.SourceAddress != nil {
		v.enum("spec.sourceAddress", *s.SourceAddress, SourceAddressUseNodeIP, SourceAddressNone)
	}
	if s.NumAllowedLocalASNumbers != nil && (*s.NumAllowedLocalASNumbers < 0 || *s.NumAllowedLocalASNumbers > 10) {
		v.add("spec.numAllowedLocalASNumbers", *s.NumAllowedLocalASNumbers, "must be in 0-10")
	}
	if s.ReversePeering != nil {
		v.enum("spec.reversePeering", *s.ReversePeering, ReversePeeringAuto, ReversePeeringManual)
	}
	if s.KeepaliveTime != nil && s.KeepaliveTime.Duration != 0 && s.KeepaliveTime.Duration.Seconds() < 1 {
		v.add("spec.keepaliveTime", s.KeepaliveTime.String(), "must be at least 1s")
	}
	if s.ReachableBy != "" {
		a, err := netip.ParseAddr(s.ReachableBy)
		switch {
		case err != nil || a.Zone() != "":
			v.add("spec.reachableBy", s.ReachableBy, "not a valid IP address")
		case peerAddr.IsValid() && a.Is6() != peerAddr.Is6():
			v.add("spec.reachableBy", s.ReachableBy, "must be of the same family as spec.peerIP")
		}
	}
	for i, f := range s.Filters {
		if !IsDNS1123Subdomain(f) {
			v.add(fmt.Sprintf("spec.filters[%d]", i), f, "must be a BGPFilter name (DNS-1123 subdomain)")
		}
	}
	v.selector("spec.localWorkloadSelector", s.LocalWorkloadSelector)
}

func (v *validator) node(o *Node) {
	s := &o.Spec
	if b := s.BGP; b != nil {
		v.ip("spec.bgp.ipv4Address", b.IPv4Address, v4, true)
		v.ip("spec.bgp.ipv6Address", b.IPv6Address, v6, true)
		v.ip("spec.bgp.ipv4IPIPTunnelAddr", b.IPv4IPIPTunnelAddr, v4, false)
		if id := b.RouteReflectorClusterID; id != "" {
			a, err := netip.ParseAddr(id)
			if err != nil || !a.Is4() {
				v.add("spec.bgp.routeReflectorClusterID", id, "must be in IPv4 address form, e.g. 224.0.0.1")
			}
		}
	}
	v.ip("spec.ipv4VXLANTunnelAddr", s.IPv4VXLANTunnelAddr, v4, false)
	v.ip("spec.ipv6VXLANTunnelAddr", s.IPv6VXLANTunnelAddr, v6, false)
	for f, m := range map[string]string{"spec.vxlanTunnelMACAddr": s.VXLANTunnelMACAddr, "spec.vxlanTunnelMACAddrV6": s.VXLANTunnelMACAddrV6} {
		if m != "" {
			if _, err := net.ParseMAC(m); err != nil {
				v.add(f, m, "not a valid MAC address")
			}
		}
	}
	for i, a := range s.Addresses {
		v.ip(fmt.Sprintf("spec.addresses[%d].address", i), a.Address, nil, true)
	}
}

func (v *validator) ipPool(o *IPPool) {
	s := &o.Spec
	if s.CIDR == "" {
		v.add("spec.cidr", nil, "required")
		return
	}
	p, ok := v.cidr("spec.cidr", s.CIDR, nil)
	if !ok {
		return
	}
	is6 := p.Addr().Is6()
	lo, hi := 20, 32
	if is6 {
		lo, hi = 116, 128
	}
	if s.BlockSize < lo || s.BlockSize > hi {
		v.add("spec.blockSize", s.BlockSize, "must be in %d-%d for an %s pool", lo, hi, family(is6))
	} else if p.Bits() > s.BlockSize {
		v.add("spec.cidr", s.CIDR, "pool is smaller than one block (blockSize %d)", s.BlockSize)
	}
	v.enum("spec.ipipMode", s.IPIPMode, EncapNever, EncapAlways, EncapCrossSubnet)
	v.enum("spec.vxlanMode", s.VXLANMode, EncapNever, EncapAlways, EncapCrossSubnet)
	if s.IPIPMode != EncapNever && s.IPIPMode != "" {
		if is6 {
			v.add("spec.ipipMode", s.IPIPMode, "IPIP is not supported for IPv6 pools")
		}
		if s.VXLANMode != EncapNever && s.VXLANMode != "" {
			v.add("spec.vxlanMode", s.VXLANMode, "cannot be combined with spec.ipipMode %q", s.IPIPMode)
		}
	}
	v.selector("spec.nodeSelector", s.NodeSelector)
	v.selector("spec.namespaceSelector", s.NamespaceSelector)
	for i, u := range s.AllowedUses {
		v.enum(fmt.Sprintf("spec.allowedUses[%d]", i), u, UseWorkload, UseTunnel, UseLoadBalancer)
	}
	v.enum("spec.assignmentMode", s.AssignmentMode, "Automatic", "Manual")
}

func (v *validator) bgpFilter(o *BGPFilter) {
	for _, set := range []struct {
		field string
		rules []BGPFilterRule
		v6    bool
	}{
		{"spec.exportV4", o.Spec.ExportV4, false}, {"spec.importV4", o.Spec.ImportV4, false},
		{"spec.exportV6", o.Spec.ExportV6, true}, {"spec.importV6", o.Spec.ImportV6, true},
	} {
		for i := range set.rules {
			v.filterRule(fmt.Sprintf("%s[%d]", set.field, i), &set.rules[i], set.v6)
		}
	}
}

func (v *validator) filterRule(f string, r *BGPFilterRule, is6 bool) {
	if r.Action == "" {
		v.add(f+".action", nil, "required (Accept or Reject)")
	}
	v.enum(f+".action", r.Action, FilterAccept, FilterReject)
	maxLen := int32(32)
	if is6 {
		maxLen = 128
	}
	minLen := int32(0)
	if r.CIDR != "" {
		want := is6
		if p, ok := v.cidr(f+".cidr", r.CIDR, &want); ok {
			minLen = int32(p.Bits())
		}
		if r.MatchOperator == "" {
			v.add(f+".matchOperator", nil, "required with cidr (Equal, NotEqual, In, NotIn)")
		}
	} else if r.MatchOperator != "" {
		v.add(f+".cidr", nil, "required with matchOperator")
	}
	v.enum(f+".matchOperator", r.MatchOperator, MatchEqual, MatchNotEqual, MatchIn, MatchNotIn)
	if pl := r.PrefixLength; pl != nil {
		if r.CIDR == "" {
			v.add(f+".prefixLength", nil, "requires cidr")
		}
		for name, val := range map[string]*int32{"min": pl.Min, "max": pl.Max} {
			if val != nil && (*val < minLen || *val > maxLen) {
				v.add(f+".prefixLength."+name, *val, "must be in %d-%d", minLen, maxLen)
			}
		}
		if pl.Min != nil && pl.Max != nil && *pl.Min > *pl.Max {
			v.add(f+".prefixLength", fmt.Sprintf("%d-%d", *pl.Min, *pl.Max), "min must not exceed max")
		}
	}
	v.enum(f+".source", r.Source, FilterSourceRemotePeers)
	if r.Interface != "" && !ifaceGlobRE.MatchString(r.Interface) {
		v.add(f+".interface", r.Interface, "must be an interface name or glob of letters, digits and _.:@-*?[]")
	}
	v.enum(f+".peerType", r.PeerType, PeerTypeEBGP, PeerTypeIBGP)
	if r.Communities != nil {
		for i, c := range r.Communities.Values {
			if !ValidCommunity(c) {
				v.add(fmt.Sprintf("%s.communities.values[%d]", f, i), c, "must be a community a:b or a:b:c")
			}
		}
	}
	if r.Priority != nil && (*r.Priority < 1 || *r.Priority > MaxRoutePriority) {
		v.add(f+".priority", *r.Priority, "must be in 1-%d", MaxRoutePriority)
	}
	for i, op := range r.Operations {
		of := fmt.Sprintf("%s.operations[%d]", f, i)
		n := 0
		if op.AddCommunity != nil {
			n++
			if !ValidCommunity(op.AddCommunity.Value) {
				v.add(of+".addCommunity.value", op.AddCommunity.Value, "must be a community a:b or a:b:c")
			}
		}
		if op.PrependASPath != nil {
			n++
			if len(op.PrependASPath.Prefix) == 0 {
				v.add(of+".prependASPath.prefix", nil, "must list at least one AS number")
			}
		}
		if op.SetPriority != nil {
			n++
			if op.SetPriority.Value < 1 || op.SetPriority.Value > MaxRoutePriority {
				v.add(of+".setPriority.value", op.SetPriority.Value, "must be in 1-%d", MaxRoutePriority)
			}
		}
		if n != 1 {
			v.add(of, nil, "exactly one of addCommunity, prependASPath, setPriority must be set")
		}
	}
	if len(r.Operations) > 0 && r.Action == FilterReject {
		v.add(f+".operations", nil, "operations only apply to routes the rule accepts")
	}
}

func (v *validator) workloadEndpoint(o *WorkloadEndpoint) {
	s := &o.Spec
	if s.Node != "" && !IsDNS1123Subdomain(s.Node) {
		v.add("spec.node", s.Node, "must be a node name (DNS-1123 subdomain)")
	}
	for i, n := range s.IPNetworks {
		v.cidr(fmt.Sprintf("spec.ipNetworks[%d]", i), n, nil)
	}
	v.ip("spec.ipv4Gateway", s.IPv4Gateway, v4, false)
	v.ip("spec.ipv6Gateway", s.IPv6Gateway, v6, false)
	if s.InterfaceName != "" && (len(s.InterfaceName) > 15 || !ifaceGlobRE.MatchString(s.InterfaceName) || strings.ContainsAny(s.InterfaceName, "*?[]")) {
		v.add("spec.interfaceName", s.InterfaceName, "must be a Linux interface name of at most 15 characters")
	}
	if s.MAC != "" {
		if _, err := net.ParseMAC(s.MAC); err != nil {
			v.add("spec.mac", s.MAC, "not a valid MAC address")
		}
	}
}

func (v *validator) blockAffinity(o *BlockAffinity) {
	if !IsDNS1123Subdomain(o.Spec.Node) {
		v.add("spec.node", o.Spec.Node, "must be a node name (DNS-1123 subdomain)")
	}
	if o.Spec.CIDR == "" {
		v.add("spec.cidr", nil, "required")
	} else {
		v.cidr("spec.cidr", o.Spec.CIDR, nil)
	}
	v.enum("spec.state", o.Spec.State, AffinityConfirmed, AffinityPending, AffinityPendingDeletion)
}

func (v *validator) ipamConfiguration(o *IPAMConfiguration) {
	if o.Metadata.Name != "" && o.Metadata.Name != DefaultIPAMConfigName {
		v.add("metadata.name", o.Metadata.Name, "the IPAMConfiguration must be named %q", DefaultIPAMConfigName)
	}
	s := &o.Spec
	if s.MaxBlocksPerHost < 0 || s.MaxBlocksPerHost > 1000000 {
		v.add("spec.maxBlocksPerHost", s.MaxBlocksPerHost, "must be between 0 and 1000000")
	}
	if s.IPCooldownSeconds < 0 || s.IPCooldownSeconds > 1200 {
		v.add("spec.ipCooldownSeconds", s.IPCooldownSeconds, "must be between 0 and 1200")
	}
	if p := s.KubeVirtVMAddressPersistence; p != nil {
		v.enum("spec.kubeVirtVMAddressPersistence", *p, "Enabled", "Disabled")
	}
}

func (v *validator) ipamBlock(o *IPAMBlock) {
	b := &o.Spec
	p, ok := v.cidr("spec.cidr", b.CIDR, nil)
	if !ok {
		return
	}
	size := 1 << (p.Addr().BitLen() - p.Bits())
	if p.Addr().BitLen()-p.Bits() > 20 {
		v.add("spec.cidr", b.CIDR, "block too large")
		return
	}
	if len(b.Allocations) != size {
		v.add("spec.allocations", len(b.Allocations), "must have one entry per address (%d)", size)
	}
	for i, a := range b.Allocations {
		if a != nil && (*a < 0 || *a >= len(b.Attributes)) {
			v.add(fmt.Sprintf("spec.allocations[%d]", i), *a, "refers to a missing attribute")
		}
	}
	for i, u := range b.Unallocated {
		if u < 0 || u >= size {
			v.add(fmt.Sprintf("spec.unallocated[%d]", i), u, "outside the block")
		}
	}
}

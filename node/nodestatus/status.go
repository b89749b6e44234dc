package nodestatus

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/birdctl/birdsock"
)

// This file maps BIRD's answers to CalicoNodeStatus's status, as
// calico-node fills it from its BIRD: the same fields and values, from
// Roost's single BIRD 2 daemon (both address families) or a BIRD 1.6.

// notAnswering is the Agent status of a BIRD that does not answer.
var notAnswering = api.BGPDaemonStatus{State: api.BGPDaemonStateNotReady}

// agentStatus maps `show status`. BIRD 2 serves both families: birdV6 is
// the same daemon when the node has an IPv6 address, else NotReady (no
// IPv6 BGP, as calico-node reports a node without bird6).
func agentStatus(st *birdsock.Status, ipv6 bool) api.CalicoNodeAgentStatus {
	d := api.BGPDaemonStatus{
		State: api.BGPDaemonStateNotReady, Version: st.Version, RouterID: st.RouterID,
		LastBootTime: st.LastRebootText, LastReconfigurationTime: st.LastReconfigText,
	}
	if st.Up {
		d.State = api.BGPDaemonStateReady
	}
	out := api.CalicoNodeAgentStatus{BIRDV4: d, BIRDV6: notAnswering}
	if ipv6 {
		out.BIRDV6 = d
	}
	return out
}

// sessionStates are the BGP states CalicoNodeStatus knows (RFC 4271's),
// by the word BIRD shows. BIRD shows "Passive" for a passive session in
// the Active state.
var sessionStates = map[string]string{
	"Idle": api.BGPSessionStateIdle, "Connect": api.BGPSessionStateConnect, "Active": api.BGPSessionStateActive,
	"Passive": api.BGPSessionStateActive, "OpenSent": api.BGPSessionStateOpenSent, "OpenConfirm": api.BGPSessionStateOpenConfirm,
	"Established": api.BGPSessionStateEstablished, "Close": api.BGPSessionStateClose,
}

// protocolStates give the session state when Info names none.
var protocolStates = map[string]string{
	"up": api.BGPSessionStateEstablished, "start": api.BGPSessionStateActive, "down": api.BGPSessionStateIdle,
}

// bgpStatus maps `show protocols`: one peer per BGP session Roost (or
// Calico) named Mesh_, Node_ or Global_; a session counts as established
// when BIRD's protocol is up. The state is the BGP state BIRD shows first
// in Info; a protocol that is down (disabled, or stopped by an error) is
// Idle, one starting without a state word Active. addr resolves names that do not encode an address (nil: skip).
func bgpStatus(ps []birdsock.Protocol, addr func(name string) netip.Addr) api.CalicoNodeBGPStatus {
	var out api.CalicoNodeBGPStatus
	for _, p := range ps {
		if !strings.EqualFold(p.Proto, "BGP") {
			continue
		}
		n, ok := birdsock.ParsePeerName(p.Name)
		if !ok {
			continue
		}
		a := n.Addr
		if !a.IsValid() && addr != nil {
			a = addr(p.Name)
		}
		if !a.IsValid() {
			continue
		}
		up := strings.EqualFold(p.State, "up")
		word, _, _ := strings.Cut(strings.TrimSpace(p.Info), " ")
		state, known := sessionStates[word]
		if !known || strings.EqualFold(p.State, "down") {
			state = protocolStates[strings.ToLower(p.State)]
		}
		peer := api.CalicoNodePeer{PeerIP: a.Unmap().String(), Type: n.Type, State: state, Since: p.Since}
		if a.Is6() && !a.Is4In6() {
			out.PeersV6 = append(out.PeersV6, peer)
			if up {
				out.NumberEstablishedV6++
			} else {
				out.NumberNotEstablishedV6++
			}
		} else {
			out.PeersV4 = append(out.PeersV4, peer)
			if up {
				out.NumberEstablishedV4++
			} else {
				out.NumberNotEstablishedV4++
			}
		}
	}
	byIP := func(a, b api.CalicoNodePeer) int { return compareAddr(a.PeerIP, b.PeerIP) }
	slices.SortStableFunc(out.PeersV4, byIP)
	slices.SortStableFunc(out.PeersV6, byIP)
	return out
}

// sourceTypes maps BIRD protocol types to route sources.
var sourceTypes = map[string]string{
	"Kernel": api.RouteSourceKernel, "Static": api.RouteSourceStatic, "Direct": api.RouteSourceDirect,
}

// routeStatus maps `show route`: every route of BIRD's tables, FIB for the
// one BIRD selected for a prefix ("*"), RIB for the alternatives. protoType
// gives a protocol's type (BIRD's Proto column) by name; names it does not
// know fall back to calico-node's reading of the name (kernel*, static*,
// direct*). Routes are sorted by destination, FIB first.
func routeStatus(rs []birdsock.Route, protoType map[string]string) api.CalicoNodeBGPRouteStatus {
	var out api.CalicoNodeBGPRouteStatus
	for _, r := range rs {
		cr := api.CalicoNodeRoute{Type: api.RouteTypeRIB, Destination: r.Prefix, Gateway: "N/A"}
		if r.Primary {
			cr.Type = api.RouteTypeFIB
		}
		switch {
		case len(r.NextHops) > 0:
			if h := r.NextHops[0]; h.Gateway != "" {
				cr.Gateway = h.Gateway
			}
			cr.Interface = r.NextHops[0].Interface
		case r.Type != "" && r.Type != "unicast":
			cr.Interface = r.Type // blackhole, unreachable, prohibited
		}
		cr.LearnedFrom = learnedFrom(r, protoType)
		if strings.Contains(r.Prefix, ":") {
			out.RoutesV6 = append(out.RoutesV6, cr)
		} else {
			out.RoutesV4 = append(out.RoutesV4, cr)
		}
	}
	order := func(a, b api.CalicoNodeRoute) int {
		if c := compareDest(a.Destination, b.Destination); c != 0 {
			return c
		}
		return cmp.Compare(a.Type, b.Type) // FIB < RIB
	}
	slices.SortStableFunc(out.RoutesV4, order)
	slices.SortStableFunc(out.RoutesV6, order)
	return out
}

func learnedFrom(r birdsock.Route, protoType map[string]string) api.CalicoNodeRouteLearnedFrom {
	typ, known := protoType[r.Protocol]
	if !known {
		for _, p := range []struct{ prefix, typ string }{{"kernel", "Kernel"}, {"static", "Static"}, {"direct", "Direct"}} {
			if strings.HasPrefix(r.Protocol, p.prefix) {
				typ = p.typ
			}
		}
		if birdsock.PeerTypeOf(r.Protocol) != "" {
			typ = "BGP"
		}
	}
	if st, ok := sourceTypes[typ]; ok {
		return api.CalicoNodeRouteLearnedFrom{SourceType: st}
	}
	if typ != "BGP" {
		return api.CalicoNodeRouteLearnedFrom{}
	}
	lf := api.CalicoNodeRouteLearnedFrom{SourceType: api.RouteSourceBGPPeer, PeerIP: r.From}
	if n, ok := birdsock.ParsePeerName(r.Protocol); ok {
		if n.Type == birdsock.PeerTypeNodeMesh {
			lf.SourceType = api.RouteSourceNodeMesh
		}
		if n.Addr.IsValid() {
			lf.PeerIP = n.Addr.Unmap().String()
		}
	}
	return lf
}

func compareAddr(a, b string) int {
	x, e1 := netip.ParseAddr(a)
	y, e2 := netip.ParseAddr(b)
	if e1 == nil && e2 == nil {
		return x.Compare(y)
	}
	return cmp.Compare(a, b)
}

func compareDest(a, b string) int {
	x, e1 := netip.ParsePrefix(a)
	y, e2 := netip.ParsePrefix(b)
	if e1 == nil && e2 == nil {
		if c := x.Addr().Compare(y.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(x.Bits(), y.Bits())
	}
	return cmp.Compare(a, b)
}

// report is what one round of BIRD queries says, for the classes asked.
type report struct {
	agent  api.CalicoNodeAgentStatus
	bgp    api.CalicoNodeBGPStatus
	routes api.CalicoNodeBGPRouteStatus
}

// collect queries BIRD for the classes (each command once, on the
// round's connection). A BIRD that does not answer gives calico-node's
// answer (Agent NotReady, no sessions, no routes); another failure gives
// an error and no report.
func collect(round *birdsock.Round, classes map[string]bool, ipv6 bool) (*report, error) {
	rep := &report{}
	if classes[api.NodeStatusClassAgent] {
		st, err := round.Status()
		switch {
		case round.Unreachable():
			return &report{agent: api.CalicoNodeAgentStatus{BIRDV4: notAnswering, BIRDV6: notAnswering}}, nil
		case err != nil:
			return nil, err
		}
		rep.agent = agentStatus(st, ipv6)
	}
	if !classes[api.NodeStatusClassBGP] && !classes[api.NodeStatusClassRoutes] {
		return rep, nil
	}
	ps, err := round.Protocols()
	switch {
	case round.Unreachable():
		return &report{agent: api.CalicoNodeAgentStatus{BIRDV4: notAnswering, BIRDV6: notAnswering}}, nil
	case err != nil:
		return nil, err
	}
	if classes[api.NodeStatusClassBGP] {
		var detailErr error
		rep.bgp = bgpStatus(ps, func(name string) netip.Addr {
			// Rare: a Mesh_/Node_/Global_ name that is no address.
			ds, err := round.ProtocolDetails()
			if err != nil {
				detailErr = err
				return netip.Addr{}
			}
			for _, d := range ds {
				if a, err := netip.ParseAddr(d.NeighborAddress); d.Name == name && err == nil {
					return a
				}
			}
			return netip.Addr{}
		})
		if detailErr != nil {
			return nil, detailErr
		}
	}
	if classes[api.NodeStatusClassRoutes] {
		rs, err := round.Routes()
		if err != nil {
			return nil, err
		}
		types := make(map[string]string, len(ps))
		for _, p := range ps {
			types[p.Name] = p.Proto
		}
		rep.routes = routeStatus(rs, types)
	}
	return rep, nil
}

// status is the CalicoNodeStatus status for a spec: the classes it asks
// for, the others empty.
func (rep *report) status(spec *api.CalicoNodeStatusSpec) api.CalicoNodeStatusStatus {
	var st api.CalicoNodeStatusStatus
	if spec.HasClass(api.NodeStatusClassAgent) {
		st.Agent = rep.agent
	}
	if spec.HasClass(api.NodeStatusClassBGP) {
		st.BGP = rep.bgp
	}
	if spec.HasClass(api.NodeStatusClassRoutes) {
		st.Routes = rep.routes
	}
	return st
}

func classSet(classes []string) map[string]bool {
	m := make(map[string]bool, len(classes))
	for _, c := range classes {
		m[c] = true
	}
	return m
}

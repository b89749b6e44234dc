package api

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// KindCalicoNodeStatus asks one node's agent to report its BGP daemon,
// sessions and routes into the object's status (projectcalico.org/v3).
const KindCalicoNodeStatus = "CalicoNodeStatus"

// MaxNodeStatusUpdatePeriod is Calico's limit of spec.updatePeriodSeconds
// (one day).
const MaxNodeStatusUpdatePeriod = 86400

// Classes of CalicoNodeStatus.spec.classes.
const (
	NodeStatusClassAgent  = "Agent"
	NodeStatusClassBGP    = "BGP"
	NodeStatusClassRoutes = "Routes"
)

// NodeStatusClasses lists the classes in Calico's order.
var NodeStatusClasses = []string{NodeStatusClassAgent, NodeStatusClassBGP, NodeStatusClassRoutes}

// BGP daemon states (status.agent.birdV4/birdV6.state).
const (
	BGPDaemonStateReady    = "Ready"
	BGPDaemonStateNotReady = "NotReady"
)

// Peer types (status.bgp.peersV4[].type).
const (
	BGPPeerTypeNodeMesh   = "NodeMesh"
	BGPPeerTypeNodePeer   = "NodePeer"
	BGPPeerTypeGlobalPeer = "GlobalPeer"
)

// BGP session states (status.bgp.peersV4[].state), RFC 4271's.
const (
	BGPSessionStateIdle        = "Idle"
	BGPSessionStateConnect     = "Connect"
	BGPSessionStateActive      = "Active"
	BGPSessionStateOpenSent    = "OpenSent"
	BGPSessionStateOpenConfirm = "OpenConfirm"
	BGPSessionStateEstablished = "Established"
	BGPSessionStateClose       = "Close"
)

// Route types (status.routes.routesV4[].type): FIB routes are the ones
// BIRD selected (it marks them "*"), RIB routes the alternatives.
const (
	RouteTypeFIB = "FIB"
	RouteTypeRIB = "RIB"
)

// Route sources (status.routes.routesV4[].learnedFrom.sourceType).
const (
	RouteSourceKernel   = "Kernel"
	RouteSourceStatic   = "Static"
	RouteSourceDirect   = "Direct"
	RouteSourceNodeMesh = "NodeMesh"
	RouteSourceBGPPeer  = "BGPPeer"
)

// CalicoNodeStatus is a request for one node's status (spec) and that
// node's answer (status), field for field Calico's. Fields Roost does not
// know, in a value written by a newer tool, are kept on read and written
// back unchanged.
type CalicoNodeStatus struct {
	TypeMeta
	Metadata ObjectMeta             `json:"metadata"`
	Spec     CalicoNodeStatusSpec   `json:"spec"`
	Status   CalicoNodeStatusStatus `json:"status"`
}

// CalicoNodeStatusSpec says which node reports what, how often.
type CalicoNodeStatusSpec struct {
	// Node is the name of the node that answers.
	Node string `json:"node,omitempty"`
	// Classes are the parts of the status to fill in: Agent, BGP, Routes.
	Classes []string `json:"classes,omitempty"`
	// UpdatePeriodSeconds is how often the status is refreshed; 0 stops
	// the updates (the last status stays). Required, at most a day.
	UpdatePeriodSeconds *uint32 `json:"updatePeriodSeconds,omitempty"`
}

// CalicoNodeStatusStatus is the node's answer. Every field is written
// even when empty (lastUpdated as null), as Calico does.
type CalicoNodeStatusStatus struct {
	// LastUpdated is when the node last wrote the status (UTC, seconds).
	LastUpdated Time                     `json:"lastUpdated"`
	Agent       CalicoNodeAgentStatus    `json:"agent"`
	BGP         CalicoNodeBGPStatus      `json:"bgp"`
	Routes      CalicoNodeBGPRouteStatus `json:"routes"`
}

// CalicoNodeAgentStatus is the state of the BGP daemon per family.
type CalicoNodeAgentStatus struct {
	BIRDV4 BGPDaemonStatus `json:"birdV4"`
	BIRDV6 BGPDaemonStatus `json:"birdV6"`
}

// BGPDaemonStatus is BIRD's `show status`.
type BGPDaemonStatus struct {
	State                   string `json:"state,omitempty"`
	Version                 string `json:"version,omitempty"`
	RouterID                string `json:"routerID,omitempty"`
	LastBootTime            string `json:"lastBootTime,omitempty"`
	LastReconfigurationTime string `json:"lastReconfigurationTime,omitempty"`
}

// CalicoNodeBGPStatus counts and lists the BGP sessions per family.
type CalicoNodeBGPStatus struct {
	NumberEstablishedV4    int              `json:"numberEstablishedV4"`
	NumberNotEstablishedV4 int              `json:"numberNotEstablishedV4"`
	NumberEstablishedV6    int              `json:"numberEstablishedV6"`
	NumberNotEstablishedV6 int              `json:"numberNotEstablishedV6"`
	PeersV4                []CalicoNodePeer `json:"peersV4,omitempty"`
	PeersV6                []CalicoNodePeer `json:"peersV6,omitempty"`
}

// CalicoNodePeer is one BGP session.
type CalicoNodePeer struct {
	PeerIP string `json:"peerIP,omitempty"`
	Type   string `json:"type,omitempty"`
	State  string `json:"state,omitempty"`
	// Since is when the session's state last changed, as BIRD prints it.
	Since string `json:"since,omitempty"`
}

// CalicoNodeBGPRouteStatus lists BIRD's routes per family.
type CalicoNodeBGPRouteStatus struct {
	RoutesV4 []CalicoNodeRoute `json:"routesV4,omitempty"`
	RoutesV6 []CalicoNodeRoute `json:"routesV6,omitempty"`
}

// CalicoNodeRoute is one route of BIRD's tables.
type CalicoNodeRoute struct {
	Type        string                     `json:"type,omitempty"`
	Destination string                     `json:"destination,omitempty"`
	Gateway     string                     `json:"gateway,omitempty"`
	Interface   string                     `json:"interface,omitempty"`
	LearnedFrom CalicoNodeRouteLearnedFrom `json:"learnedFrom,omitempty"`
}

// CalicoNodeRouteLearnedFrom is where a route came from.
type CalicoNodeRouteLearnedFrom struct {
	SourceType string `json:"sourceType,omitempty"`
	PeerIP     string `json:"peerIP,omitempty"`
}

func (r *CalicoNodeStatus) ResourceKind() string { return KindCalicoNodeStatus }
func (r *CalicoNodeStatus) Meta() *ObjectMeta    { return &r.Metadata }
func (r *CalicoNodeStatus) withTypeMeta() Resource {
	c := *r
	c.TypeMeta.set(KindCalicoNodeStatus)
	return &c
}

// HasClass reports whether the spec asks for class.
func (s *CalicoNodeStatusSpec) HasClass(class string) bool { return slices.Contains(s.Classes, class) }

// UpdatePeriod is spec.updatePeriodSeconds as a duration (0 when unset).
func (s *CalicoNodeStatusSpec) UpdatePeriod() time.Duration {
	if s.UpdatePeriodSeconds == nil {
		return 0
	}
	return time.Duration(*s.UpdatePeriodSeconds) * time.Second
}

// Equal reports whether two specs ask for the same thing.
func (s *CalicoNodeStatusSpec) Equal(o *CalicoNodeStatusSpec) bool {
	return s.Node == o.Node && slices.Equal(s.Classes, o.Classes) && s.UpdatePeriod() == o.UpdatePeriod() &&
		(s.UpdatePeriodSeconds == nil) == (o.UpdatePeriodSeconds == nil)
}

// SameContent reports whether two statuses are equal apart from
// lastUpdated.
func (s *CalicoNodeStatusStatus) SameContent(o *CalicoNodeStatusStatus) bool {
	a, b := *s, *o
	a.LastUpdated, b.LastUpdated = Time{}, Time{}
	return a.Agent == b.Agent &&
		a.BGP.NumberEstablishedV4 == b.BGP.NumberEstablishedV4 && a.BGP.NumberNotEstablishedV4 == b.BGP.NumberNotEstablishedV4 &&
		a.BGP.NumberEstablishedV6 == b.BGP.NumberEstablishedV6 && a.BGP.NumberNotEstablishedV6 == b.BGP.NumberNotEstablishedV6 &&
		slices.Equal(a.BGP.PeersV4, b.BGP.PeersV4) && slices.Equal(a.BGP.PeersV6, b.BGP.PeersV6) &&
		slices.Equal(a.Routes.RoutesV4, b.Routes.RoutesV4) && slices.Equal(a.Routes.RoutesV6, b.Routes.RoutesV6)
}

func (v *validator) calicoNodeStatus(o *CalicoNodeStatus) {
	s := &o.Spec
	switch {
	case s.Node == "":
		v.add("spec.node", nil, "required: the name of the node that reports")
	case !IsDNS1123Subdomain(s.Node):
		v.add("spec.node", s.Node, "must be a node name (DNS-1123 subdomain)")
	}
	if len(s.Classes) == 0 {
		v.add("spec.classes", nil, "required: one or more of %s", joinNames(NodeStatusClasses))
	}
	seen := map[string]bool{}
	for i, c := range s.Classes {
		field := fmt.Sprintf("spec.classes[%d]", i)
		switch {
		case !slices.Contains(NodeStatusClasses, c):
			v.add(field, c, "must be one of %s", joinNames(NodeStatusClasses))
		case seen[c]:
			v.add(field, c, "listed twice")
		}
		seen[c] = true
	}
	switch {
	case s.UpdatePeriodSeconds == nil:
		v.add("spec.updatePeriodSeconds", nil, "required: seconds between updates (0 stops them, at most %d)", MaxNodeStatusUpdatePeriod)
	case *s.UpdatePeriodSeconds > MaxNodeStatusUpdatePeriod:
		v.add("spec.updatePeriodSeconds", *s.UpdatePeriodSeconds, "must be at most %d (one day)", MaxNodeStatusUpdatePeriod)
	}
}

func joinNames(names []string) string { return strings.Join(names, ", ") }

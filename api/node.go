package api

// Node is a host taking part in the network.
type Node struct {
	TypeMeta
	Metadata ObjectMeta  `json:"metadata"`
	Spec     NodeSpec    `json:"spec"`
	Status   *NodeStatus `json:"status,omitempty"`
}

// NodeSpec follows projectcalico.org/v3.
type NodeSpec struct {
	BGP                  *NodeBGPSpec       `json:"bgp,omitempty"`
	IPv4VXLANTunnelAddr  string             `json:"ipv4VXLANTunnelAddr,omitempty"`
	VXLANTunnelMACAddr   string             `json:"vxlanTunnelMACAddr,omitempty"`
	IPv6VXLANTunnelAddr  string             `json:"ipv6VXLANTunnelAddr,omitempty"`
	VXLANTunnelMACAddrV6 string             `json:"vxlanTunnelMACAddrV6,omitempty"`
	OrchRefs             []OrchRef          `json:"orchRefs,omitempty"`
	Wireguard            *NodeWireguardSpec `json:"wireguard,omitempty"`
	Addresses            []NodeAddress      `json:"addresses,omitempty"`
	// Interfaces (Calico's node agent lists the host's interfaces and
	// their addresses) is kept as written and not used by Roost.
	Interfaces    []NodeInterface `json:"interfaces,omitempty"`
	InterfaceName string          `json:"interfaceName,omitempty"`
}

// NodeBGPSpec holds the node's BGP identity. Addresses carry their prefix
// length ("10.0.0.1/24"): the subnet decides CrossSubnet encapsulation.
type NodeBGPSpec struct {
	ASNumber                *ASNumber `json:"asNumber,omitempty"`
	IPv4Address             string    `json:"ipv4Address,omitempty"`
	IPv6Address             string    `json:"ipv6Address,omitempty"`
	IPv4IPIPTunnelAddr      string    `json:"ipv4IPIPTunnelAddr,omitempty"`
	RouteReflectorClusterID string    `json:"routeReflectorClusterID,omitempty"`
}

// OrchRef links the node to an orchestrator's name for it.
type OrchRef struct {
	NodeName     string `json:"nodeName,omitempty"`
	Orchestrator string `json:"orchestrator,omitempty"`
}

// NodeWireguardSpec is kept for compatibility; Roost does not use it.
type NodeWireguardSpec struct {
	InterfaceIPv4Address string `json:"interfaceIPv4Address,omitempty"`
	InterfaceIPv6Address string `json:"interfaceIPv6Address,omitempty"`
}

// NodeAddress is one address of the node.
type NodeAddress struct {
	Address string `json:"address"`
	Type    string `json:"type,omitempty"`
}

// NodeStatus is written by agents; Roost keeps it opaque.
type NodeStatus struct {
	WireguardPublicKey   string         `json:"wireguardPublicKey,omitempty"`
	WireguardPublicKeyV6 string         `json:"wireguardPublicKeyV6,omitempty"`
	PodCIDRs             []string       `json:"podCIDRs,omitempty"`
	BGP                  map[string]any `json:"bgp,omitempty"`
}

func (r *Node) ResourceKind() string   { return KindNode }
func (r *Node) Meta() *ObjectMeta      { return &r.Metadata }
func (r *Node) withTypeMeta() Resource { c := *r; c.TypeMeta.set(KindNode); return &c }

// NodeInterface is one host interface of Calico's Node spec.interfaces.
type NodeInterface struct {
	Name      string   `json:"name"`
	Addresses []string `json:"addresses,omitempty"`
}

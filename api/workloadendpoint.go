package api

// WorkloadEndpoint is one workload interface on a node.
type WorkloadEndpoint struct {
	TypeMeta
	Metadata ObjectMeta           `json:"metadata"`
	Spec     WorkloadEndpointSpec `json:"spec"`
}

// WorkloadEndpointSpec follows projectcalico.org/v3.
type WorkloadEndpointSpec struct {
	Orchestrator               string         `json:"orchestrator,omitempty"`
	Workload                   string         `json:"workload,omitempty"`
	Node                       string         `json:"node,omitempty"`
	ContainerID                string         `json:"containerID,omitempty"`
	Pod                        string         `json:"pod,omitempty"`
	Endpoint                   string         `json:"endpoint,omitempty"`
	ServiceAccountName         string         `json:"serviceAccountName,omitempty"`
	IPNetworks                 []string       `json:"ipNetworks,omitempty"`
	IPNATs                     []IPNAT        `json:"ipNATs,omitempty"`
	IPv4Gateway                string         `json:"ipv4Gateway,omitempty"`
	IPv6Gateway                string         `json:"ipv6Gateway,omitempty"`
	Profiles                   []string       `json:"profiles,omitempty"`
	InterfaceName              string         `json:"interfaceName,omitempty"`
	MAC                        string         `json:"mac,omitempty"`
	Ports                      []EndpointPort `json:"ports,omitempty"`
	AllowSpoofedSourcePrefixes []string       `json:"allowSpoofedSourcePrefixes,omitempty"`
}

// IPNAT is a 1:1 NAT mapping.
type IPNAT struct {
	InternalIP string `json:"internalIP"`
	ExternalIP string `json:"externalIP"`
}

// EndpointPort is a named port of the workload.
type EndpointPort struct {
	Name     string `json:"name"`
	Protocol string `json:"protocol"`
	Port     uint16 `json:"port"`
	HostPort uint16 `json:"hostPort,omitempty"`
	HostIP   string `json:"hostIP,omitempty"`
}

func (r *WorkloadEndpoint) ResourceKind() string { return KindWorkloadEndpoint }
func (r *WorkloadEndpoint) Meta() *ObjectMeta    { return &r.Metadata }
func (r *WorkloadEndpoint) withTypeMeta() Resource {
	c := *r
	c.TypeMeta.set(KindWorkloadEndpoint)
	return &c
}

package api

// IPPool is a range workload addresses come from.
type IPPool struct {
	TypeMeta
	Metadata ObjectMeta `json:"metadata"`
	Spec     IPPoolSpec `json:"spec"`
}

// IPPoolSpec follows projectcalico.org/v3.
type IPPoolSpec struct {
	CIDR             string `json:"cidr"`
	VXLANMode        string `json:"vxlanMode,omitempty"`
	IPIPMode         string `json:"ipipMode,omitempty"`
	NATOutgoing      bool   `json:"natOutgoing,omitempty"`
	Disabled         bool   `json:"disabled,omitempty"`
	DisableBGPExport bool   `json:"disableBGPExport,omitempty"`
	BlockSize        int    `json:"blockSize,omitempty"`
	NodeSelector     string `json:"nodeSelector,omitempty"`
	// NamespaceSelector restricts the pool to workloads of the namespaces
	// it selects (their labels: see NamespaceLabels).
	NamespaceSelector string   `json:"namespaceSelector,omitempty"`
	AllowedUses       []string `json:"allowedUses,omitempty"`
	AssignmentMode    string   `json:"assignmentMode,omitempty"`
}

// Encapsulation modes of ipipMode and vxlanMode.
const (
	EncapNever       = "Never"
	EncapAlways      = "Always"
	EncapCrossSubnet = "CrossSubnet"
)

// allowedUses values.
const (
	UseWorkload     = "Workload"
	UseTunnel       = "Tunnel"
	UseLoadBalancer = "LoadBalancer"
)

// IsIPv6 reports whether the pool's CIDR is IPv6 (false when unparseable).
func (p *IPPool) IsIPv6() bool {
	pfx, err := ParseCIDR(p.Spec.CIDR)
	return err == nil && pfx.Addr().Is6()
}

func (r *IPPool) ResourceKind() string   { return KindIPPool }
func (r *IPPool) Meta() *ObjectMeta      { return &r.Metadata }
func (r *IPPool) withTypeMeta() Resource { c := *r; c.TypeMeta.set(KindIPPool); return &c }

package api

// IPAMConfiguration holds the cluster-wide IPAM settings. There is one,
// named "default". In etcd it is Calico's bare IPAM config JSON at
// /calico/ipam/v2/config (what `calicoctl ipam configure` writes, in the
// field names of IPAMConfigBackend); in files it is written as a v3-style
// document with the v3 IPAMConfiguration field names.
type IPAMConfiguration struct {
	TypeMeta
	Metadata ObjectMeta            `json:"metadata"`
	Spec     IPAMConfigurationSpec `json:"spec"`
}

// IPAMConfigurationSpec follows projectcalico.org/v3 IPAMConfiguration.
type IPAMConfigurationSpec struct {
	// StrictAffinity forbids borrowing addresses from other nodes' blocks.
	StrictAffinity bool `json:"strictAffinity"`
	// MaxBlocksPerHost caps the blocks affine to one node (0: Calico's
	// safeguard of 20).
	MaxBlocksPerHost int `json:"maxBlocksPerHost,omitempty"`
	// AutoAllocateBlocks lets nodes claim blocks (nil: true).
	AutoAllocateBlocks *bool `json:"autoAllocateBlocks,omitempty"`
	// Kept for round trips; Roost does not act on them.
	KubeVirtVMAddressPersistence *string `json:"kubeVirtVMAddressPersistence,omitempty"`
	IPCooldownSeconds            int     `json:"ipCooldownSeconds,omitempty"`
}

// DefaultIPAMConfigName is the name of the one IPAMConfiguration.
const DefaultIPAMConfigName = "default"

// AutoAllocate reports whether nodes may claim blocks.
func (s *IPAMConfigurationSpec) AutoAllocate() bool {
	return s.AutoAllocateBlocks == nil || *s.AutoAllocateBlocks
}

// IPAMConfigBackend is the JSON Calico stores at /calico/ipam/v2/config.
// A field missing from it is false or zero, as Calico reads it.
type IPAMConfigBackend struct {
	StrictAffinity               bool    `json:"strict_affinity,omitempty"`
	AutoAllocateBlocks           bool    `json:"auto_allocate_blocks,omitempty"`
	MaxBlocksPerHost             int     `json:"maxBlocksPerHost,omitempty"`
	KubeVirtVMAddressPersistence *string `json:"kubeVirtVMAddressPersistence,omitempty"`
	IPCooldownSeconds            int     `json:"ipCooldownSeconds,omitempty"`
}

// Backend converts the spec to Calico's stored form.
func (s *IPAMConfigurationSpec) Backend() IPAMConfigBackend {
	return IPAMConfigBackend{
		StrictAffinity: s.StrictAffinity, AutoAllocateBlocks: s.AutoAllocate(), MaxBlocksPerHost: s.MaxBlocksPerHost,
		KubeVirtVMAddressPersistence: s.KubeVirtVMAddressPersistence, IPCooldownSeconds: s.IPCooldownSeconds,
	}
}

// Spec converts Calico's stored form.
func (b IPAMConfigBackend) Spec() IPAMConfigurationSpec {
	auto := b.AutoAllocateBlocks
	return IPAMConfigurationSpec{
		StrictAffinity: b.StrictAffinity, AutoAllocateBlocks: &auto, MaxBlocksPerHost: b.MaxBlocksPerHost,
		KubeVirtVMAddressPersistence: b.KubeVirtVMAddressPersistence, IPCooldownSeconds: b.IPCooldownSeconds,
	}
}

func (r *IPAMConfiguration) ResourceKind() string { return KindIPAMConfiguration }
func (r *IPAMConfiguration) Meta() *ObjectMeta    { return &r.Metadata }
func (r *IPAMConfiguration) withTypeMeta() Resource {
	c := *r
	c.TypeMeta.set(KindIPAMConfiguration)
	return &c
}

// Package api holds Roost's resource model: the projectcalico.org/v3 kinds
// Roost reads and writes, Calico's IPAM records, their defaults, validation
// and YAML/JSON codecs. Every program shares it.
package api

import "time"

// Group and version written into every v3 resource.
const (
	Group      = "projectcalico.org"
	APIVersion = "projectcalico.org/v3"
)

// Kinds.
const (
	KindBGPConfiguration = "BGPConfiguration"
	KindBGPPeer          = "BGPPeer"
	KindNode             = "Node"
	KindIPPool           = "IPPool"
	KindBGPFilter        = "BGPFilter"
	KindWorkloadEndpoint = "WorkloadEndpoint"
	// IPAM records. In etcd they are bare JSON under /calico/ipam/v2/...;
	// in files they are written as v3-style documents of these kinds.
	KindBlockAffinity = "BlockAffinity"
	KindIPAMBlock     = "IPAMBlock"
	KindIPAMHandle    = "IPAMHandle"
	// KindIPAMConfiguration is stored as Calico's /calico/ipam/v2/config.
	KindIPAMConfiguration = "IPAMConfiguration"
)

// TypeMeta is the kind/apiVersion pair of a document.
type TypeMeta struct {
	Kind       string `json:"kind,omitempty"`
	APIVersion string `json:"apiVersion,omitempty"`
	// unknown holds the fields of a stored value that Roost's types lack
	// (a newer Calico wrote them), written back unchanged (unknown.go).
	// Every kind embeds TypeMeta, so every kind keeps them.
	unknown unknownFields
}

func (t *TypeMeta) unknownFields() *unknownFields { return &t.unknown }

// ObjectMeta mirrors the Kubernetes object metadata that Calico stores.
// Fields Roost does not use are kept so that values written by other tools
// survive a read-modify-write.
type ObjectMeta struct {
	Name                       string            `json:"name,omitempty"`
	GenerateName               string            `json:"generateName,omitempty"`
	Namespace                  string            `json:"namespace,omitempty"`
	SelfLink                   string            `json:"selfLink,omitempty"`
	UID                        string            `json:"uid,omitempty"`
	ResourceVersion            string            `json:"resourceVersion,omitempty"`
	Generation                 int64             `json:"generation,omitempty"`
	CreationTimestamp          *time.Time        `json:"creationTimestamp,omitempty"`
	DeletionTimestamp          *time.Time        `json:"deletionTimestamp,omitempty"`
	DeletionGracePeriodSeconds *int64            `json:"deletionGracePeriodSeconds,omitempty"`
	Labels                     map[string]string `json:"labels,omitempty"`
	Annotations                map[string]string `json:"annotations,omitempty"`
	OwnerReferences            []OwnerReference  `json:"ownerReferences,omitempty"`
	Finalizers                 []string          `json:"finalizers,omitempty"`
	ClusterName                string            `json:"clusterName,omitempty"`
	ManagedFields              []map[string]any  `json:"managedFields,omitempty"`
}

// OwnerReference as Kubernetes writes it.
type OwnerReference struct {
	APIVersion         string `json:"apiVersion"`
	Kind               string `json:"kind"`
	Name               string `json:"name"`
	UID                string `json:"uid"`
	Controller         *bool  `json:"controller,omitempty"`
	BlockOwnerDeletion *bool  `json:"blockOwnerDeletion,omitempty"`
}

// Resource is implemented by every kind in this package.
type Resource interface {
	// ResourceKind is the kind constant of the type, independent of TypeMeta.
	ResourceKind() string
	// Meta gives access to the object's metadata.
	Meta() *ObjectMeta
	// withTypeMeta returns a shallow copy with kind and apiVersion set, so
	// encoding never writes to a shared object.
	withTypeMeta() Resource
}

func (t *TypeMeta) set(kind string) { t.Kind, t.APIVersion = kind, APIVersionOf(kind) }

// typeMeta gives access to a resource's kind/apiVersion as decoded.
func (t *TypeMeta) typeMeta() *TypeMeta { return t }

// New returns an empty resource of the given kind (matched exactly), or nil
// for an unknown kind.
func New(kind string) Resource {
	switch kind {
	case KindBGPConfiguration:
		return &BGPConfiguration{}
	case KindBGPPeer:
		return &BGPPeer{}
	case KindNode:
		return &Node{}
	case KindIPPool:
		return &IPPool{}
	case KindBGPFilter:
		return &BGPFilter{}
	case KindWorkloadEndpoint:
		return &WorkloadEndpoint{}
	case KindCalicoNodeStatus:
		return &CalicoNodeStatus{}
	case KindClusterInformation:
		return &ClusterInformation{}
	case KindBFDProfile:
		return &BFDProfile{}
	case KindProfile:
		return &Profile{}
	case KindBlockAffinity:
		return &BlockAffinity{}
	case KindIPAMBlock:
		return &IPAMBlock{}
	case KindIPAMHandle:
		return &IPAMHandle{}
	case KindIPAMConfiguration:
		return &IPAMConfiguration{}
	case KindStatusReport:
		return &StatusReport{}
	}
	return nil
}

// Kinds lists every kind: v3 kinds first, then Roost's (roost.io/v1),
// then the IPAM records.
var Kinds = []string{
	KindBGPConfiguration, KindBGPPeer, KindNode, KindIPPool, KindBGPFilter,
	KindWorkloadEndpoint, KindCalicoNodeStatus, KindClusterInformation, KindProfile, KindBFDProfile, KindBlockAffinity, KindIPAMBlock, KindIPAMHandle, KindIPAMConfiguration,
}

// Namespaced reports whether resources of kind live in a namespace.
func Namespaced(kind string) bool { return kind == KindWorkloadEndpoint }

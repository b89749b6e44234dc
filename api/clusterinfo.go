package api

// KindClusterInformation is Calico's cluster-wide identity record. The
// node agent (calico-node, roost-node) creates "default" at start; calicoctl
// reads it (`calicoctl version`, `calicoctl ipam check`).
const KindClusterInformation = "ClusterInformation"

// DefaultClusterInformationName is the only ClusterInformation in use.
const DefaultClusterInformationName = "default"

// ClusterInformation follows projectcalico.org/v3.
type ClusterInformation struct {
	TypeMeta
	Metadata ObjectMeta             `json:"metadata"`
	Spec     ClusterInformationSpec `json:"spec"`
}

// ClusterInformationSpec follows projectcalico.org/v3.
type ClusterInformationSpec struct {
	// ClusterGUID identifies the cluster: 32 hex digits (a random UUID
	// without dashes), as Calico writes it.
	ClusterGUID string `json:"clusterGUID,omitempty"`
	// ClusterType is a comma-separated list of what the cluster runs.
	ClusterType string `json:"clusterType,omitempty"`
	// CalicoVersion is the running Calico version. Roost leaves it alone:
	// calicoctl refuses to run when it differs from its own version.
	CalicoVersion string `json:"calicoVersion,omitempty"`
	// DatastoreReady false tells Calico's components to stay idle (as
	// during a datastore migration); unset means true.
	DatastoreReady *bool  `json:"datastoreReady,omitempty"`
	Variant        string `json:"variant,omitempty"`
}

// Ready reports spec.datastoreReady (unset: true).
func (s *ClusterInformationSpec) Ready() bool { return s.DatastoreReady == nil || *s.DatastoreReady }

func (r *ClusterInformation) ResourceKind() string { return KindClusterInformation }
func (r *ClusterInformation) Meta() *ObjectMeta    { return &r.Metadata }
func (r *ClusterInformation) withTypeMeta() Resource {
	c := *r
	c.TypeMeta.set(KindClusterInformation)
	return &c
}

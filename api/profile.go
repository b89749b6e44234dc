package api

import (
	"encoding/json"
	"strings"
)

// KindProfile is Calico's Profile. Roost reads it for one purpose: the
// kns.<namespace> profiles that Calico's Kubernetes controllers write for
// every namespace carry the namespace's labels, which IPPool
// namespaceSelectors are evaluated against (see node/ipam).
const KindProfile = "Profile"

// NamespaceProfilePrefix names the profile of a Kubernetes namespace.
const NamespaceProfilePrefix = "kns."

// NamespaceLabelPrefix prefixes a namespace's labels in its profile's
// labelsToApply ("pcns.<label>"), as Calico writes them.
const NamespaceLabelPrefix = "pcns."

// NamespaceNameLabel is the label every namespace has: its name.
const NamespaceNameLabel = "projectcalico.org/name"

// Profile is a Calico Profile. Policy rules are kept as they were read
// (Roost does not enforce policy) so a read-modify-write keeps them.
type Profile struct {
	TypeMeta
	Metadata ObjectMeta  `json:"metadata"`
	Spec     ProfileSpec `json:"spec"`
}

// ProfileSpec: ingress and egress rules unchanged, and labelsToApply.
type ProfileSpec struct {
	Ingress       []json.RawMessage `json:"ingress,omitempty"`
	Egress        []json.RawMessage `json:"egress,omitempty"`
	LabelsToApply map[string]string `json:"labelsToApply,omitempty"`
}

func (r *Profile) ResourceKind() string { return KindProfile }
func (r *Profile) Meta() *ObjectMeta    { return &r.Metadata }
func (r *Profile) withTypeMeta() Resource {
	c := *r
	c.TypeMeta.set(KindProfile)
	return &c
}

// NamespaceLabels are the labels an IPPool namespaceSelector sees for
// namespace ns, as Calico evaluates them: projectcalico.org/name = ns,
// plus the labels of the namespace's kns.<ns> profile (nil: none) — its
// metadata labels and its labelsToApply with the pcns. prefix removed
// (Calico's controllers store the namespace's labels there). An empty ns
// (a request outside any namespace) has no labels at all.
func NamespaceLabels(ns string, profile *Profile) map[string]string {
	if ns == "" {
		return map[string]string{}
	}
	out := map[string]string{}
	if profile != nil {
		for k, v := range profile.Metadata.Labels {
			out[k] = v
		}
		for k, v := range profile.Spec.LabelsToApply {
			if name, ok := strings.CutPrefix(k, NamespaceLabelPrefix); ok {
				out[name] = v
			}
		}
	}
	out[NamespaceNameLabel] = ns
	return out
}

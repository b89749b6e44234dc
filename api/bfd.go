package api

// Roost's own resources live in their own API group, so that Calico's
// tools and agents, which read only projectcalico.org, never see them.
const (
	RoostGroup      = "roost.io"
	RoostAPIVersion = "roost.io/v1"
)

// KindBFDProfile is Roost's BFD timer profile.
const KindBFDProfile = "BFDProfile"

// BFDProfileAnnotation attaches a BFDProfile to BGP sessions: on a BGPPeer
// (its sessions), on the default BGPConfiguration (the node-to-node mesh)
// and on a node.<name> BGPConfiguration (every session of that node). An
// empty value turns BFD off at that level. Annotations survive calicoctl's
// read-modify-write and Calico ignores them.
const BFDProfileAnnotation = "bfd.roost.io/profile"

// BFD defaults and limits. Intervals are milliseconds; the ranges are
// frr-k8s's, so its profiles carry over unchanged.
const (
	DefaultBFDInterval   = 300
	DefaultBFDMultiplier = 3
	MinBFDInterval       = 10
	MaxBFDInterval       = 60000
	MinBFDMultiplier     = 2
	MaxBFDMultiplier     = 255
	MinBFDMinimumTTL     = 1
	MaxBFDMinimumTTL     = 254
)

// BFDProfile holds the BFD timers of the sessions that name it in their
// bfd.roost.io/profile annotation.
type BFDProfile struct {
	TypeMeta
	Metadata ObjectMeta     `json:"metadata"`
	Spec     BFDProfileSpec `json:"spec"`
}

// BFDProfileSpec follows frr-k8s's BFDProfile (without echo mode, which
// BIRD does not implement).
type BFDProfileSpec struct {
	// ReceiveInterval is the minimum interval, in milliseconds, at which
	// this node can receive control packets (BIRD: min rx interval).
	ReceiveInterval *uint32 `json:"receiveInterval,omitempty"`
	// TransmitInterval is the minimum interval, in milliseconds, at which
	// this node wants to send control packets (BIRD: min tx interval).
	TransmitInterval *uint32 `json:"transmitInterval,omitempty"`
	// DetectMultiplier: the session is down after this many missed
	// packets of the peer (BIRD: multiplier).
	DetectMultiplier *uint32 `json:"detectMultiplier,omitempty"`
	// PassiveMode: wait for the peer's packets before sending any.
	PassiveMode *bool `json:"passiveMode,omitempty"`
	// MinimumTTL is the lowest TTL accepted on multihop sessions. BIRD 2
	// does not check it (see docs/bgp.md); it is validated and reported.
	MinimumTTL *uint32 `json:"minimumTtl,omitempty"`
}

func (r *BFDProfile) ResourceKind() string { return KindBFDProfile }
func (r *BFDProfile) Meta() *ObjectMeta    { return &r.Metadata }
func (r *BFDProfile) withTypeMeta() Resource {
	c := *r
	c.TypeMeta.set(KindBFDProfile)
	return &c
}

// APIVersionOf is the apiVersion of a kind: roost.io/v1 for Roost's own
// kinds, projectcalico.org/v3 for the others.
func APIVersionOf(kind string) string {
	if kind == KindBFDProfile {
		return RoostAPIVersion
	}
	return APIVersion
}

// defaultBFDProfile fills in the timers left out, as frr-k8s does.
func defaultBFDProfile(o *BFDProfile) {
	s := &o.Spec
	for _, p := range []**uint32{&s.ReceiveInterval, &s.TransmitInterval} {
		if *p == nil {
			v := uint32(DefaultBFDInterval)
			*p = &v
		}
	}
	if s.DetectMultiplier == nil {
		v := uint32(DefaultBFDMultiplier)
		s.DetectMultiplier = &v
	}
}

func (v *validator) bfdProfile(o *BFDProfile) {
	s := &o.Spec
	for _, f := range []struct {
		name   string
		val    *uint32
		lo, hi uint32
	}{
		{"spec.receiveInterval", s.ReceiveInterval, MinBFDInterval, MaxBFDInterval},
		{"spec.transmitInterval", s.TransmitInterval, MinBFDInterval, MaxBFDInterval},
		{"spec.detectMultiplier", s.DetectMultiplier, MinBFDMultiplier, MaxBFDMultiplier},
		{"spec.minimumTtl", s.MinimumTTL, MinBFDMinimumTTL, MaxBFDMinimumTTL},
	} {
		if f.val != nil && (*f.val < f.lo || *f.val > f.hi) {
			v.add(f.name, *f.val, "must be in %d-%d", f.lo, f.hi)
		}
	}
}

// bfdAnnotation checks the bfd.roost.io/profile annotation of a resource
// that may carry one: a BFDProfile name, or empty (BFD off).
func (v *validator) bfdAnnotation(md *ObjectMeta) {
	val, ok := md.Annotations[BFDProfileAnnotation]
	if !ok || val == "" {
		return
	}
	if !IsDNS1123Subdomain(val) {
		v.add(BFDAnnotationField, val, "must be a BFDProfile name (DNS-1123 subdomain), or empty to turn BFD off")
	}
}

// BFDAnnotationField names the annotation in messages.
const BFDAnnotationField = "metadata.annotations[" + BFDProfileAnnotation + "]"

// BFDProfileOf returns the profile a resource's annotation names and
// whether the annotation is set at all ("" with set: BFD off).
func BFDProfileOf(md *ObjectMeta) (name string, set bool) {
	name, set = md.Annotations[BFDProfileAnnotation]
	return name, set
}

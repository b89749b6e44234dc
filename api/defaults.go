package api

import "strings"

// Calico's defaults.
const (
	DefaultASNumber       ASNumber = 64512
	DefaultBlockSizeV4             = 26
	DefaultBlockSizeV6             = 122
	DefaultNodeSelector            = "all()"
	DefaultBGPConfigName           = "default"
	NodeBGPConfigPrefix            = "node."
	DefaultAssignmentMode          = "Automatic"
)

// Default fills in what Calico fills in when a resource is created.
func Default(r Resource) {
	switch o := r.(type) {
	case *IPPool:
		s := &o.Spec
		if s.CIDR != "" {
			if p, err := ParseCIDR(s.CIDR); err == nil {
				s.CIDR = p.String() // Calico stores the network address
			}
		}
		if s.BlockSize == 0 {
			if o.IsIPv6() {
				s.BlockSize = DefaultBlockSizeV6
			} else {
				s.BlockSize = DefaultBlockSizeV4
			}
		}
		if s.IPIPMode == "" {
			s.IPIPMode = EncapNever
		}
		if s.VXLANMode == "" {
			s.VXLANMode = EncapNever
		}
		if s.NodeSelector == "" {
			s.NodeSelector = DefaultNodeSelector
		}
		if len(s.AllowedUses) == 0 {
			s.AllowedUses = []string{UseWorkload, UseTunnel}
		}
		if s.AssignmentMode == "" {
			s.AssignmentMode = DefaultAssignmentMode
		}
	case *BGPConfiguration:
		// Only the global configuration gets values: on a per-node one an
		// unset field means "inherit", and a default would override.
		if o.Metadata.Name == DefaultBGPConfigName {
			s := &o.Spec
			if s.ASNumber == nil {
				as := DefaultASNumber
				s.ASNumber = &as
			}
			if s.NodeToNodeMeshEnabled == nil {
				t := true
				s.NodeToNodeMeshEnabled = &t
			}
		}
	case *WorkloadEndpoint:
		if o.Metadata.Namespace == "" {
			o.Metadata.Namespace = "default" // as calicoctl does
		}
	case *BFDProfile:
		defaultBFDProfile(o)
	case *BlockAffinity:
		if o.Spec.State == "" {
			o.Spec.State = AffinityConfirmed
		}
	case *BGPFilter:
		for _, rules := range [][]BGPFilterRule{o.Spec.ExportV4, o.Spec.ImportV4, o.Spec.ExportV6, o.Spec.ImportV6} {
			for i := range rules {
				canonical(&rules[i].Action, FilterAccept, FilterReject)
				canonical(&rules[i].MatchOperator, MatchEqual, MatchNotEqual, MatchIn, MatchNotIn)
				canonical(&rules[i].PeerType, PeerTypeEBGP, PeerTypeIBGP)
			}
		}
	}
}

// canonical rewrites a case-insensitive match of one of the allowed values
// to its canonical spelling (Calico's own examples write "accept").
func canonical(v *string, allowed ...string) {
	for _, a := range allowed {
		if strings.EqualFold(*v, a) {
			*v = a
			return
		}
	}
}

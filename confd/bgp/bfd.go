package bgp

import (
	"slices"

	"github.com/roostnet/roost/api"
)

// BFD is a session's BFD setting: the timers of the BFDProfile its
// bfd.roost.io/profile annotation names. The templates write it as
// `bfd { min rx interval ..; min tx interval ..; multiplier ..; }` in the
// session's template, which is `bfd on` with these timers; see docs/bgp.md
// for why not `bfd graceful`.
type BFD struct {
	// Profile is the BFDProfile's name.
	Profile string
	// ReceiveInterval and TransmitInterval in milliseconds (BIRD's min rx
	// interval and min tx interval), Multiplier the detect multiplier.
	ReceiveInterval  int
	TransmitInterval int
	Multiplier       int
	// Passive: wait for the peer's first packet (BIRD's passive on).
	Passive bool
	// MinimumTTL is the profile's minimumTtl (0: unset). BIRD 2 does not
	// check the TTL of multihop BFD packets, so the default templates do
	// not write it; Compute warns when a profile sets it.
	MinimumTTL int
}

// BFDProtocolName is the name of the one `protocol bfd` the default
// templates emit when a session uses BFD (bird_bfd_session_* metrics
// carry it as their name label).
const BFDProtocolName = "roost_bfd"

// Precedence of the annotation, first set wins: for a BGPPeer's sessions
// (reverse ones included) the BGPPeer, then node.<this node>; for the
// node-to-node mesh node.<this node>, then default. An empty value turns
// BFD off at its level.

// bfdFor resolves the BFD setting of the sessions of src (nil: the mesh).
// A profile that does not exist is reported once per referring resource;
// the sessions then have no BFD.
func (cx *computeCtx) bfdFor(src *peerInfo) *BFD {
	type level struct {
		kind, name string
		md         *api.ObjectMeta
	}
	levels := make([]level, 0, 2)
	if src != nil {
		levels = append(levels, level{api.KindBGPPeer, src.name, &src.peer.Metadata})
	}
	if cx.nodeCfg != nil {
		levels = append(levels, level{api.KindBGPConfiguration, api.NodeBGPConfigPrefix + cx.me.name, &cx.nodeCfg.Metadata})
	}
	if src == nil && cx.c.global != nil {
		levels = append(levels, level{api.KindBGPConfiguration, api.DefaultBGPConfigName, &cx.c.global.Metadata})
	}
	for _, l := range levels {
		name, set := api.BFDProfileOf(l.md)
		if !set {
			continue
		}
		if name == "" {
			return nil
		}
		b := cx.bfdProfile(name)
		if b == nil {
			what := "the sessions of this BGPPeer"
			switch l.name {
			case api.DefaultBGPConfigName:
				what = "the node-to-node mesh sessions"
			case api.NodeBGPConfigPrefix + cx.me.name:
				what = "the sessions of node " + cx.me.name + " it applies to"
			}
			cx.warnOnce("bfd/"+l.kind+"/"+l.name, l.kind, l.name, api.BFDAnnotationField,
				"BFDProfile %q does not exist; %s render without BFD", name, what)
			if !slices.Contains(cx.missingBFD, name) {
				cx.missingBFD = append(cx.missingBFD, name)
			}
			return nil
		}
		if src == nil && l.name == api.DefaultBGPConfigName && b.Passive {
			cx.warnOnce("bfd/passive-mesh", api.KindBFDProfile, name, "spec.passiveMode",
				"is true and the default BGPConfiguration applies it to the whole node-to-node mesh: both ends of a mesh session wait, so its BFD never comes up")
		}
		return b
	}
	return nil
}

// bfdProfile returns the BFD setting of a profile (built once per
// Compute), or nil when it does not exist.
func (cx *computeCtx) bfdProfile(name string) *BFD {
	if b, ok := cx.bfd[name]; ok {
		return b
	}
	p := cx.c.bfdProfiles[name]
	if p == nil {
		return nil
	}
	s := &p.Spec
	b := &BFD{
		Profile:          name,
		ReceiveInterval:  intOr(s.ReceiveInterval, api.DefaultBFDInterval),
		TransmitInterval: intOr(s.TransmitInterval, api.DefaultBFDInterval),
		Multiplier:       intOr(s.DetectMultiplier, api.DefaultBFDMultiplier),
		Passive:          s.PassiveMode != nil && *s.PassiveMode,
		MinimumTTL:       intOr(s.MinimumTTL, 0),
	}
	// The datastore validates profiles; the ranges are checked again
	// because these numbers go into BIRD's configuration as they are.
	if !inRange(b.ReceiveInterval, api.MinBFDInterval, api.MaxBFDInterval) ||
		!inRange(b.TransmitInterval, api.MinBFDInterval, api.MaxBFDInterval) ||
		!inRange(b.Multiplier, api.MinBFDMultiplier, api.MaxBFDMultiplier) {
		cx.warnOnce("bfd/range/"+name, api.KindBFDProfile, name, "spec",
			"intervals must be in %d-%d ms and detectMultiplier in %d-%d; the profile is ignored",
			api.MinBFDInterval, api.MaxBFDInterval, api.MinBFDMultiplier, api.MaxBFDMultiplier)
		cx.bfd[name] = nil
		return nil
	}
	if b.MinimumTTL != 0 {
		cx.warnOnce("bfd/ttl/"+name, api.KindBFDProfile, name, "spec.minimumTtl",
			"%d is not enforced: BIRD 2 does not check the TTL of multihop BFD packets", b.MinimumTTL)
	}
	cx.bfd[name] = b
	return b
}

func inRange(v, lo, hi int) bool { return v >= lo && v <= hi }

func intOr(v *uint32, def int) int {
	if v == nil {
		return def
	}
	return int(*v)
}

// bfdKey is the comparable form of a session's BFD setting (zero: none).
func bfdKey(b *BFD) BFD {
	if b == nil {
		return BFD{}
	}
	return *b
}

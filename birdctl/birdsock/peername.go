package birdsock

import (
	"net/netip"
	"strconv"
	"strings"
)

// Roost (like Calico) names its BGP protocols after why the session exists
// and the peer's address: Mesh_<ip> (node-to-node mesh), Node_<ip>
// (node-specific BGPPeer, peer selectors, reverse peerings) and
// Global_<ip> (a BGPPeer for every node), the address with '_' for '.'
// or ':', and _port_<n> when the peer listens on another port than 179.

// Peer types as CalicoNodeStatus writes them.
const (
	PeerTypeNodeMesh   = "NodeMesh"
	PeerTypeNodePeer   = "NodePeer"
	PeerTypeGlobalPeer = "GlobalPeer"
)

var peerPrefixes = []struct{ prefix, typ string }{
	{"Mesh_", PeerTypeNodeMesh},
	{"Node_", PeerTypeNodePeer},
	{"Global_", PeerTypeGlobalPeer},
}

// PeerName is what a BGP protocol name says about its peer.
type PeerName struct {
	Type string     // PeerTypeNodeMesh, PeerTypeNodePeer or PeerTypeGlobalPeer
	Addr netip.Addr // invalid when the name does not encode an address
	Port int        // 0 when the name has no _port_<n> suffix
}

// ParsePeerName decodes Mesh_, Node_ and Global_ protocol names; ok is
// false for other names. A name with a known prefix whose address cannot
// be decoded gives ok with an invalid Addr.
func ParsePeerName(name string) (p PeerName, ok bool) {
	var rest string
	for _, pt := range peerPrefixes {
		if r, found := strings.CutPrefix(name, pt.prefix); found {
			p.Type, rest, ok = pt.typ, r, true
			break
		}
	}
	if !ok {
		return p, false
	}
	if i := strings.LastIndex(rest, "_port_"); i >= 0 {
		if n, err := strconv.ParseUint(rest[i+len("_port_"):], 10, 16); err == nil {
			p.Port, rest = int(n), rest[:i]
		}
	}
	p.Addr = decodeNameIP(rest)
	return p, true
}

// PeerTypeOf is the peer type a protocol name encodes, "" for others.
func PeerTypeOf(name string) string {
	for _, pt := range peerPrefixes {
		if strings.HasPrefix(name, pt.prefix) {
			return pt.typ
		}
	}
	return ""
}

// IPv6 reports whether the peer address is an IPv6 one (IPv4-mapped
// addresses count as IPv4).
func (p PeerName) IPv6() bool { return p.Addr.Is6() && !p.Addr.Is4In6() }

// decodeNameIP reverses the '.'/':' to '_' substitution of protocol names.
func decodeNameIP(s string) netip.Addr {
	parts := strings.Split(s, "_")
	if len(parts) == 4 {
		if a, err := netip.ParseAddr(strings.Join(parts, ".")); err == nil {
			return a
		}
	}
	// IPv4-mapped IPv6 addresses end in a dotted quad: "__ffff_10_0_0_1".
	if len(parts) > 4 {
		tail := strings.Join(parts[len(parts)-4:], ".")
		if v4, err := netip.ParseAddr(tail); err == nil && v4.Is4() {
			head := strings.Join(parts[:len(parts)-4], ":")
			if a, err := netip.ParseAddr(head + ":" + tail); err == nil && a.Is4In6() {
				return a
			}
		}
	}
	if a, err := netip.ParseAddr(strings.Join(parts, ":")); err == nil && a.Is6() {
		return a
	}
	return netip.Addr{}
}

package cli

import (
	"net/netip"
	"strconv"
	"strings"
)

// Peer types by protocol name prefix, as calicoctl node status names them.
var peerTypes = []struct{ prefix, typ string }{
	{"Mesh_", "node-to-node mesh"},
	{"Node_", "node specific"},
	{"Global_", "global"},
}

// peerName is what a BGP protocol name says about its peer.
type peerName struct {
	Type string     // "node-to-node mesh", "node specific", "global"
	Addr netip.Addr // invalid when the name does not encode an address
	Port int        // 0 when the name has no _port_<n> suffix
}

// parsePeerName decodes Mesh_<ip>, Node_<ip> and Global_<ip> protocol
// names, where the IP has '_' for its dots or colons and may be followed by
// _port_<n>. ok is false for names of other protocols. A name with a known
// prefix whose address cannot be decoded gives ok with an invalid Addr.
func parsePeerName(name string) (p peerName, ok bool) {
	var rest string
	for _, pt := range peerTypes {
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

// collapseSpaces joins the words of s with single spaces: BIRD pads the
// BGP state in the Info column ("Active        Socket: Connection refused").
func collapseSpaces(s string) string { return strings.Join(strings.Fields(s), " ") }

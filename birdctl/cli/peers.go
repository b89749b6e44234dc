package cli

import (
	"net/netip"
	"strings"

	"github.com/roostnet/roost/birdctl/birdsock"
)

// peerTypeWords are calicoctl node status's words for the peer types.
var peerTypeWords = map[string]string{
	birdsock.PeerTypeNodeMesh:   "node-to-node mesh",
	birdsock.PeerTypeNodePeer:   "node specific",
	birdsock.PeerTypeGlobalPeer: "global",
}

// peerName is what a BGP protocol name says about its peer.
type peerName struct {
	Type string     // "node-to-node mesh", "node specific", "global"
	Addr netip.Addr // invalid when the name does not encode an address
	Port int        // 0 when the name has no _port_<n> suffix
}

// parsePeerName decodes Roost's protocol names (birdsock.ParsePeerName)
// with node status's words for the type.
func parsePeerName(name string) (peerName, bool) {
	p, ok := birdsock.ParsePeerName(name)
	return peerName{Type: peerTypeWords[p.Type], Addr: p.Addr, Port: p.Port}, ok
}

// collapseSpaces joins the words of s with single spaces: BIRD pads the
// BGP state in the Info column ("Active        Socket: Connection refused").
func collapseSpaces(s string) string { return strings.Join(strings.Fields(s), " ") }

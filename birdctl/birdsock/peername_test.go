package birdsock

import (
	"net/netip"
	"testing"
)

func TestParsePeerName(t *testing.T) {
	for _, c := range []struct {
		name, typ, addr string
		port            int
		ok, v6          bool
	}{
		{"Mesh_10_0_0_2", PeerTypeNodeMesh, "10.0.0.2", 0, true, false},
		{"Node_192_168_1_1_port_1790", PeerTypeNodePeer, "192.168.1.1", 1790, true, false},
		{"Global_fd00__1", PeerTypeGlobalPeer, "fd00::1", 0, true, true},
		{"Node___ffff_10_1_2_3", PeerTypeNodePeer, "::ffff:10.1.2.3", 0, true, false},
		{"Mesh_not_an_ip", PeerTypeNodeMesh, "invalid IP", 0, true, false},
		{"static1", "", "invalid IP", 0, false, false},
	} {
		p, ok := ParsePeerName(c.name)
		if ok != c.ok || p.Type != c.typ || p.Addr.String() != c.addr || p.Port != c.port || p.IPv6() != c.v6 {
			t.Errorf("ParsePeerName(%q) = %+v (%s), %v", c.name, p, p.Addr, ok)
		}
		if ok && p.Addr.IsValid() && p.Addr != netip.MustParseAddr(c.addr) {
			t.Errorf("%q: address %s", c.name, p.Addr)
		}
		if PeerTypeOf(c.name) != c.typ {
			t.Errorf("PeerTypeOf(%q) = %q", c.name, PeerTypeOf(c.name))
		}
	}
}

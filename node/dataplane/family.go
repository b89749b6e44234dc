package dataplane

import (
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/roostnet/roost/node/names"
)

// Address families. IPv4 and IPv6 are programmed alike; what differs is
// named here: the VXLAN device and its overhead, the kernel's metric of
// routes added without one, and the scope the kernel keeps.

// famOf is 4 or 6.
func famOf(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// fi indexes per-family arrays (0: IPv4, 1: IPv6).
func fi(fam int) int {
	if fam == 6 {
		return 1
	}
	return 0
}

func nlFamily(fam int) int {
	if fam == 6 {
		return netlink.FAMILY_V6
	}
	return netlink.FAMILY_V4
}

// routeMetric is the priority the kernel gives a route added without
// one: none for IPv4, 1024 for IPv6 (IP6_RT_PRIO_USER). The agent writes
// it explicitly so that what it reads back is what it wrote.
func routeMetric(fam int) int {
	if fam == 6 {
		return 1024
	}
	return 0
}

// hostBits is the prefix length of a single address.
func hostBits(fam int) int {
	if fam == 6 {
		return 128
	}
	return 32
}

// vxlanDevice is the VXLAN device of a family (Calico's names).
func vxlanDevice(fam int) string {
	if fam == 6 {
		return names.VXLANV6Device
	}
	return names.VXLANDevice
}

// vxlanFam is one family's VXLAN device and its peers: a permanent
// neighbour (tunnel address -> MAC) and FDB entry (MAC -> node address)
// per remote VTEP, as last seen in the kernel and as wanted.
type vxlanFam struct {
	fam    int
	dev    string
	up     bool
	neighs map[netip.Addr]string // permanent neighbours on the device
	fdb    map[string]netip.Addr // permanent FDB entries: MAC -> node address
	vteps  map[string]*vtep      // node -> its VTEP
	byIP   map[netip.Addr]string // tunnel address -> node
	byMAC  map[string]string     // MAC -> node
}

func newVXLANFam(fam int) *vxlanFam {
	return &vxlanFam{fam: fam, dev: vxlanDevice(fam), neighs: map[netip.Addr]string{}, fdb: map[string]netip.Addr{},
		vteps: map[string]*vtep{}, byIP: map[netip.Addr]string{}, byMAC: map[string]string{}}
}

// addr is the node's address of a family (with its subnet's length).
func (n *Node) addr(fam int) netip.Prefix {
	if fam == 6 {
		return n.IPv6
	}
	return n.IPv4
}

// vxlanAddr is the node's VXLAN tunnel address of a family.
func (n *Node) vxlanAddr(fam int) netip.Addr {
	if fam == 6 {
		return n.VXLANV6Addr
	}
	return n.VXLANAddr
}

// vxlanMAC is the MAC of the node's VXLAN device of a family: the one
// the Node records, else Calico's derivation from the name.
func (n *Node) vxlanMAC(fam int) net.HardwareAddr {
	if fam == 6 {
		if n.VXLANMACV6 != nil {
			return n.VXLANMACV6
		}
		return names.VXLANMACV6(n.Name)
	}
	return n.mac()
}

// parentOf is the interface holding this node's address of a family and
// its index.
func (d *Dataplane) parentOf(fam int) (string, int) {
	if fam == 6 {
		return d.parent6, d.parentIndex6
	}
	return d.parent, d.parentIndex
}

package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/node/names"
)

// Tunnel devices: tunl0, vxlan.calico and vxlan-v6.calico, their parent
// interfaces, addresses, MTU and up state.

// findParentLocked finds the interfaces holding this node's IPv4 and
// IPv6 addresses. When the addresses cannot be listed, the parents found
// before are kept (forgetting one would drop the CrossSubnet routes
// through it).
func (d *Dataplane) findParentLocked() error {
	if !d.local.IPv4.IsValid() && !d.local.IPv6.IsValid() {
		d.parent, d.parentIndex = "", 0
		d.parent6, d.parentIndex6 = "", 0
		return nil
	}
	addrs, err := d.nl.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("listing addresses to find the parent interface: %w", err)
	}
	d.parent, d.parentIndex = d.findParent(addrs, d.local.IPv4)
	d.parent6, d.parentIndex6 = d.findParent(addrs, d.local.IPv6)
	return nil
}

// findParent returns the interface holding addr (name and index).
func (d *Dataplane) findParent(addrs []netlink.Addr, addr netip.Prefix) (string, int) {
	if !addr.IsValid() {
		return "", 0
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == addr.Addr() {
			name, ok := d.linkName[a.LinkIndex]
			if !ok {
				continue
			}
			return name, a.LinkIndex
		}
	}
	return "", 0
}

// poolsWant reports whether a pool of the family uses the encapsulation.
func (d *Dataplane) poolsWant(fam int, mode func(*Pool) string) bool {
	for _, p := range d.pools {
		if m := mode(p); famOf(p.CIDR.Addr()) == fam && m != "" && m != api.EncapNever {
			return true
		}
	}
	return false
}

// vxlanMTU is the MTU of a family's VXLAN device (node/mtu).
func (d *Dataplane) vxlanMTU(fam int) int {
	if fam == 6 {
		return d.mtus.VXLANV6
	}
	return d.mtus.VXLAN
}

// ensureDevicesLocked creates, repairs or removes tunl0 and vxlan.calico.
func (d *Dataplane) ensureDevicesLocked() error {
	oldParent, oldParent6, oldIPIP := d.parent, d.parent6, d.ipipUp
	oldVXLAN := [2]bool{d.vx[0].up, d.vx[1].up}
	var errs []error
	if err := d.findParentLocked(); err != nil {
		errs = append(errs, err)
	}
	if err := d.updateMTUsLocked(); err != nil {
		errs = append(errs, err)
	}
	wantIPIP := d.haveLocal && d.local.IPIPAddr.IsValid() && d.poolsWant(4, func(p *Pool) string { return p.IPIPMode })
	up, err := d.ensureIPIPLocked(wantIPIP, oldIPIP)
	d.ipipUp = up
	if err != nil {
		errs = append(errs, err)
	}
	for _, v := range d.vx {
		want := d.haveLocal && d.local.vxlanAddr(v.fam).IsValid() && d.local.addr(v.fam).IsValid() &&
			d.poolsWant(v.fam, func(p *Pool) string { return p.VXLANMode })
		up, err := d.ensureVXLANLocked(v, want, oldVXLAN[fi(v.fam)])
		v.up = up
		if err != nil {
			errs = append(errs, err)
		}
	}
	vxChanged := d.vx[0].up != oldVXLAN[0] || d.vx[1].up != oldVXLAN[1]
	if d.parent != oldParent || d.parent6 != oldParent6 || d.ipipUp != oldIPIP || vxChanged {
		d.allBlocksDirty = true
	}
	if vxChanged {
		for n := range d.nodes {
			d.dirtyVTEPs.add(n)
		}
	}
	return errors.Join(errs...)
}

// ensureAddrLocked leaves exactly addr as a host address (/32 or /128)
// on the link, among the addresses of its family (fam when addr is the
// zero Addr). IPv6 link-local addresses, which the kernel gives every
// device, are left alone.
func (d *Dataplane) ensureAddrLocked(l netlink.Link, addr netip.Addr, fam int, wasUp bool, kind string) error {
	if addr.IsValid() {
		fam = famOf(addr)
	}
	addrs, err := d.nl.AddrList(l, nlFamily(fam))
	if err != nil {
		return err
	}
	found := false
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		ip = ip.Unmap()
		ones, _ := a.Mask.Size()
		if famOf(ip) != fam || ip.IsLinkLocalUnicast() {
			continue
		}
		if addr.IsValid() && ip == addr && ones == hostBits(fam) {
			found = true
			continue
		}
		if err := d.nl.AddrDel(l, &a); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
			return fmt.Errorf("%s: removing address %s: %w", l.Attrs().Name, a.IPNet, err)
		}
	}
	if !found && addr.IsValid() {
		na := &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(addr, hostBits(fam)))}
		if fam == 6 {
			na.Flags = unix.IFA_F_NODAD // a tunnel address has no neighbours to clash with
		}
		if err := d.nl.AddrAdd(l, na); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("%s: adding address %s: %w", l.Attrs().Name, addr, err)
		}
		if wasUp {
			d.drift(kind, l.Attrs().Name, "address restored")
		}
	}
	return nil
}

func (d *Dataplane) drift(kind, dev, what string) {
	d.obs.DriftRepaired(kind)
	d.log.WithField("device", dev).Info("drift repaired: " + what)
}

// tuneLinkLocked sets MTU and up state.
func (d *Dataplane) tuneLinkLocked(l netlink.Link, mtu int, wasUp bool) error {
	a := l.Attrs()
	if mtu > 0 && a.MTU != mtu {
		if err := d.nl.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("%s: setting MTU %d: %w", a.Name, mtu, err)
		}
		if wasUp {
			d.drift("link", a.Name, fmt.Sprintf("MTU %d restored (was %d)", mtu, a.MTU))
		}
	}
	if a.Flags&net.FlagUp == 0 {
		if err := d.nl.LinkSetUp(l); err != nil {
			return fmt.Errorf("%s: setting up: %w", a.Name, err)
		}
		if wasUp {
			d.drift("link", a.Name, "device set up again")
		}
		// Routes through it were flushed when it went down.
		d.linkGone(a.Index)
	}
	return nil
}

func (d *Dataplane) ensureIPIPLocked(want, wasUp bool) (bool, error) {
	l, err := d.nl.LinkByName(names.IPIPDevice)
	if err != nil && !isNotFound(err) {
		return false, fmt.Errorf("%s: %w", names.IPIPDevice, err)
	}
	if !want {
		d.ipipErr = nil
		if err == nil && !d.hold {
			// The ipip module's fallback device cannot be deleted: just
			// take our address off it.
			if aerr := d.ensureAddrLocked(l, netip.Addr{}, 4, false, "link"); aerr != nil {
				return false, aerr
			}
		}
		return false, nil
	}
	if err != nil {
		if aerr := d.nl.LinkAdd(&netlink.Iptun{LinkAttrs: netlink.LinkAttrs{Name: names.IPIPDevice}}); aerr != nil && !errors.Is(aerr, syscall.EEXIST) {
			if errors.Is(aerr, syscall.EOPNOTSUPP) || errors.Is(aerr, syscall.ENOTSUP) {
				if d.ipipErr == nil {
					d.ipipErr = ipipUnsupported(aerr)
					d.obs.Error("ipip")
					d.log.Error(d.ipipErr.Error())
				}
				return false, nil
			}
			return false, fmt.Errorf("creating %s: %w", names.IPIPDevice, aerr)
		}
		if l, err = d.nl.LinkByName(names.IPIPDevice); err != nil {
			return false, fmt.Errorf("%s after creating it: %w", names.IPIPDevice, err)
		}
		if wasUp {
			d.drift("link", names.IPIPDevice, "device recreated")
		}
		d.log.WithField("device", names.IPIPDevice).Info("created IPIP tunnel device")
	}
	d.ipipErr = nil
	d.noteLink(l)
	if err := d.tuneLinkLocked(l, d.mtus.IPIP, wasUp); err != nil {
		return false, err
	}
	if err := d.ensureAddrLocked(l, d.local.IPIPAddr, 4, wasUp, "link"); err != nil {
		return false, err
	}
	return true, nil
}

// ensureVXLANLocked creates, repairs or removes one family's VXLAN
// device: VNI and port as configured, no learning, the node's address of
// the family as local address on its parent interface, the VTEP MAC, the
// MTU and the tunnel address.
func (d *Dataplane) ensureVXLANLocked(v *vxlanFam, want, wasUp bool) (bool, error) {
	dev, fam := v.dev, v.fam
	l, err := d.nl.LinkByName(dev)
	if err != nil && !isNotFound(err) {
		return false, fmt.Errorf("%s: %w", dev, err)
	}
	exists := err == nil
	if !want {
		if exists && !d.hold {
			if err := d.nl.LinkDel(l); err != nil && !isNotFound(err) {
				return false, fmt.Errorf("deleting %s: %w", dev, err)
			}
			d.linkGone(l.Attrs().Index)
			delete(d.linkIdx, dev)
			delete(d.linkName, l.Attrs().Index)
			d.log.WithField("device", dev).Infof("removed VXLAN device (no IPv%d pool uses VXLAN)", fam)
		}
		return false, nil
	}
	mtu := d.vxlanMTU(fam)
	mac := d.local.vxlanMAC(fam)
	src := d.local.addr(fam).Addr().AsSlice()
	parent, parentIndex := d.parentOf(fam)
	if exists {
		x, ok := l.(*netlink.Vxlan)
		if !ok || x.VxlanId != d.cfg.VXLANVNI || x.Port != d.cfg.VXLANPort || x.Learning ||
			(parentIndex != 0 && x.VtepDevIndex != parentIndex) || !x.SrcAddr.Equal(src) {
			d.log.WithField("device", dev).Info("VXLAN device settings differ (VNI, port, learning, parent or source); recreating it")
			if err := d.nl.LinkDel(l); err != nil && !isNotFound(err) {
				return false, fmt.Errorf("deleting %s: %w", dev, err)
			}
			d.linkGone(l.Attrs().Index)
			exists = false
		}
	}
	if !exists {
		x := &netlink.Vxlan{
			LinkAttrs: netlink.LinkAttrs{Name: dev, MTU: mtu, HardwareAddr: mac},
			VxlanId:   d.cfg.VXLANVNI, Port: d.cfg.VXLANPort, Learning: false,
			VtepDevIndex: parentIndex, SrcAddr: src,
		}
		if err := d.nl.LinkAdd(x); err != nil && !errors.Is(err, syscall.EEXIST) {
			return false, fmt.Errorf("creating %s: %w", dev, err)
		}
		if l, err = d.nl.LinkByName(dev); err != nil {
			return false, fmt.Errorf("%s after creating it: %w", dev, err)
		}
		if wasUp {
			d.drift("link", dev, "device recreated")
		}
		d.log.WithFields(logrus.Fields{"device": dev, "mtu": mtu, "parent": parent, "mac": mac.String()}).Info("created VXLAN device")
		clear(v.neighs)
		clear(v.fdb)
		for n := range d.nodes {
			d.dirtyVTEPs.add(n)
		}
	}
	d.noteLink(l)
	if l.Attrs().HardwareAddr.String() != mac.String() {
		if err := d.nl.LinkSetHardwareAddr(l, mac); err != nil {
			return false, fmt.Errorf("%s: setting MAC %s: %w", dev, mac, err)
		}
	}
	if err := d.tuneLinkLocked(l, mtu, wasUp); err != nil {
		return false, err
	}
	if err := d.ensureAddrLocked(l, d.local.vxlanAddr(fam), fam, wasUp, "link"); err != nil {
		return false, err
	}
	return true, nil
}

package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/node/names"
)

// Tunnel devices: tunl0 and vxlan.calico, their parent interface,
// addresses, MTU and up state.

// findParentLocked finds the interface holding this node's IPv4 address.
// When the addresses cannot be listed, the parent found before is kept
// (forgetting it would drop the CrossSubnet routes through it).
func (d *Dataplane) findParentLocked() error {
	if !d.local.IPv4.IsValid() {
		d.parent, d.parentIndex = "", 0
		return nil
	}
	addrs, err := d.nl.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("listing addresses to find the parent interface: %w", err)
	}
	d.parent, d.parentIndex = "", 0
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == d.local.IPv4.Addr() {
			name, ok := d.linkName[a.LinkIndex]
			if !ok {
				continue
			}
			d.parent, d.parentIndex = name, a.LinkIndex
			return nil
		}
	}
	return nil
}

func (d *Dataplane) poolsWant(mode func(*Pool) string) bool {
	for _, p := range d.pools {
		if m := mode(p); m != "" && m != api.EncapNever {
			return true
		}
	}
	return false
}

// ensureDevicesLocked creates, repairs or removes tunl0 and vxlan.calico.
func (d *Dataplane) ensureDevicesLocked() error {
	oldParent, oldIPIP, oldVXLAN := d.parent, d.ipipUp, d.vxlanUp
	var errs []error
	if err := d.findParentLocked(); err != nil {
		errs = append(errs, err)
	}
	if err := d.updateMTUsLocked(); err != nil {
		errs = append(errs, err)
	}
	wantIPIP := d.haveLocal && d.local.IPIPAddr.IsValid() && d.poolsWant(func(p *Pool) string { return p.IPIPMode })
	wantVXLAN := d.haveLocal && d.local.VXLANAddr.IsValid() && d.poolsWant(func(p *Pool) string { return p.VXLANMode })
	up, err := d.ensureIPIPLocked(wantIPIP, oldIPIP)
	d.ipipUp = up
	if err != nil {
		errs = append(errs, err)
	}
	up, err = d.ensureVXLANLocked(wantVXLAN, oldVXLAN)
	d.vxlanUp = up
	if err != nil {
		errs = append(errs, err)
	}
	if d.parent != oldParent || d.ipipUp != oldIPIP || d.vxlanUp != oldVXLAN {
		d.allBlocksDirty = true
	}
	if d.vxlanUp != oldVXLAN {
		for n := range d.nodes {
			d.dirtyVTEPs.add(n)
		}
	}
	return errors.Join(errs...)
}

// ensureAddrLocked leaves exactly addr/32 on the link.
func (d *Dataplane) ensureAddrLocked(l netlink.Link, addr netip.Addr, wasUp bool, kind string) error {
	addrs, err := d.nl.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	found := false
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		if addr.IsValid() && ip.Unmap() == addr && ones == 32 {
			found = true
			continue
		}
		if err := d.nl.AddrDel(l, &a); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
			return fmt.Errorf("%s: removing address %s: %w", l.Attrs().Name, a.IPNet, err)
		}
	}
	if !found && addr.IsValid() {
		if err := d.nl.AddrAdd(l, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(addr, 32))}); err != nil && !errors.Is(err, syscall.EEXIST) {
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
		if err == nil {
			// The ipip module's fallback device cannot be deleted: just
			// take our address off it.
			if aerr := d.ensureAddrLocked(l, netip.Addr{}, false, "link"); aerr != nil {
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
	if err := d.ensureAddrLocked(l, d.local.IPIPAddr, wasUp, "link"); err != nil {
		return false, err
	}
	return true, nil
}

func (d *Dataplane) ensureVXLANLocked(want, wasUp bool) (bool, error) {
	l, err := d.nl.LinkByName(names.VXLANDevice)
	if err != nil && !isNotFound(err) {
		return false, fmt.Errorf("%s: %w", names.VXLANDevice, err)
	}
	exists := err == nil
	if !want {
		if exists {
			if err := d.nl.LinkDel(l); err != nil && !isNotFound(err) {
				return false, fmt.Errorf("deleting %s: %w", names.VXLANDevice, err)
			}
			d.linkGone(l.Attrs().Index)
			delete(d.linkIdx, names.VXLANDevice)
			delete(d.linkName, l.Attrs().Index)
			d.log.WithField("device", names.VXLANDevice).Info("removed VXLAN device (no pool uses VXLAN)")
		}
		return false, nil
	}
	mtu := d.mtus.VXLAN
	mac := d.local.mac()
	src := d.local.IPv4.Addr().AsSlice()
	if exists {
		v, ok := l.(*netlink.Vxlan)
		if !ok || v.VxlanId != d.cfg.VXLANVNI || v.Port != d.cfg.VXLANPort || v.Learning ||
			(d.parentIndex != 0 && v.VtepDevIndex != d.parentIndex) || !v.SrcAddr.Equal(src) {
			d.log.WithField("device", names.VXLANDevice).Info("VXLAN device settings differ (VNI, port, learning, parent or source); recreating it")
			if err := d.nl.LinkDel(l); err != nil && !isNotFound(err) {
				return false, fmt.Errorf("deleting %s: %w", names.VXLANDevice, err)
			}
			d.linkGone(l.Attrs().Index)
			exists = false
		}
	}
	if !exists {
		v := &netlink.Vxlan{
			LinkAttrs: netlink.LinkAttrs{Name: names.VXLANDevice, MTU: mtu, HardwareAddr: mac},
			VxlanId:   d.cfg.VXLANVNI, Port: d.cfg.VXLANPort, Learning: false,
			VtepDevIndex: d.parentIndex, SrcAddr: src,
		}
		if err := d.nl.LinkAdd(v); err != nil && !errors.Is(err, syscall.EEXIST) {
			return false, fmt.Errorf("creating %s: %w", names.VXLANDevice, err)
		}
		if l, err = d.nl.LinkByName(names.VXLANDevice); err != nil {
			return false, fmt.Errorf("%s after creating it: %w", names.VXLANDevice, err)
		}
		if wasUp {
			d.drift("link", names.VXLANDevice, "device recreated")
		}
		d.log.WithFields(logrus.Fields{"device": names.VXLANDevice, "mtu": mtu, "parent": d.parent, "mac": mac.String()}).Info("created VXLAN device")
		clear(d.neighs)
		clear(d.fdb)
		for n := range d.nodes {
			d.dirtyVTEPs.add(n)
		}
	}
	d.noteLink(l)
	if l.Attrs().HardwareAddr.String() != mac.String() {
		if err := d.nl.LinkSetHardwareAddr(l, mac); err != nil {
			return false, fmt.Errorf("%s: setting MAC %s: %w", names.VXLANDevice, mac, err)
		}
	}
	if err := d.tuneLinkLocked(l, mtu, wasUp); err != nil {
		return false, err
	}
	if err := d.ensureAddrLocked(l, d.local.VXLANAddr, wasUp, "link"); err != nil {
		return false, err
	}
	return true, nil
}

package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/node/names"
)

// Apply programs what changed since the last call (everything, when a
// full resync is due).
func (d *Dataplane) Apply() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.inputsReady {
		return nil
	}
	start := time.Now()
	if d.needResync {
		err := d.resyncLocked()
		d.obs.Reconciled(true, time.Since(start))
		return err
	}
	err := d.applyLocked()
	d.obs.Reconciled(false, time.Since(start))
	return err
}

// Resync compares everything with the kernel and repairs differences.
func (d *Dataplane) Resync() error {
	d.mu.Lock()
	d.needResync = true
	d.mu.Unlock()
	return d.Apply()
}

// RequestResync schedules a full resync for the next Apply.
func (d *Dataplane) RequestResync() {
	d.mu.Lock()
	d.needResync = true
	d.mu.Unlock()
	d.poke()
}

// Synced reports whether a full resync has completed.
func (d *Dataplane) Synced() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.lastResync.IsZero()
}

func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, syscall.ENODEV)
}

func (d *Dataplane) applyLocked() error {
	var errs []error
	if d.devicesDirty {
		d.devicesDirty = false
		if err := d.ensureDevicesLocked(); err != nil {
			errs = append(errs, err)
			d.devicesDirty = true
		}
	}
	if d.allBlocksDirty {
		d.allBlocksDirty = false
		for b := range d.blocks {
			d.dirtyBlocks.add(b)
		}
	}
	for b := range d.dirtyBlocks {
		d.setRoute(d.blockRoutes, b, d.blockRoute(b))
	}
	clear(d.dirtyBlocks)
	for k := range d.dirtyWorkloads {
		w := d.workloads[k]
		if w == nil {
			continue
		}
		for _, a := range w.Addrs {
			d.wlOwner[a] = k
			d.setRoute(d.wlRoutes, a, &route{dev: w.Iface, scopeLink: true})
		}
	}
	clear(d.dirtyWorkloads)
	for name := range d.dirtyVTEPs {
		if err := d.syncVTEPLocked(name); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(d.dirtyVTEPs, name)
	}
	nerr := 0
	for dst := range d.dirtyRoutes {
		pending, err := d.programLocked(dst)
		if err != nil {
			nerr++
			if nerr <= 5 {
				errs = append(errs, err)
			}
			d.obs.Error("route")
			continue
		}
		// A route waiting for its device is not retried on every pass:
		// the device's link event (or the next resync) marks it again.
		delete(d.dirtyRoutes, dst)
		if pending {
			d.pending.add(dst)
		} else {
			delete(d.pending, dst)
		}
	}
	if nerr > 5 {
		errs = append(errs, fmt.Errorf("... and %d more route errors", nerr-5))
	}
	d.obs.RoutesProgrammed(len(d.programmed))
	d.failed = len(errs) > 0
	return errors.Join(errs...)
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func netPrefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// linkIndex resolves a device name, asking the kernel on a cache miss.
func (d *Dataplane) linkIndex(name string) (int, bool) {
	if i, ok := d.linkIdx[name]; ok {
		return i, true
	}
	l, err := d.nl.LinkByName(name)
	if err != nil {
		return 0, false
	}
	d.noteLink(l)
	return l.Attrs().Index, true
}

func (d *Dataplane) noteLink(l netlink.Link) {
	a := l.Attrs()
	if old, ok := d.linkName[a.Index]; ok && old != a.Name {
		delete(d.linkIdx, old)
	}
	d.linkIdx[a.Name] = a.Index
	d.linkName[a.Index] = a.Name
}

// toNetlink builds the kernel route; ok false when its device is missing.
func (d *Dataplane) toNetlink(dst netip.Prefix, w *route) (*netlink.Route, bool) {
	r := &netlink.Route{Dst: prefixNet(dst), Protocol: netlink.RouteProtocol(d.cfg.Protocol), Table: unix.RT_TABLE_MAIN, Family: netlink.FAMILY_V4}
	if w.blackhole {
		r.Type = unix.RTN_BLACKHOLE
		return r, true
	}
	idx, ok := d.linkIndex(w.dev)
	if !ok {
		return nil, false
	}
	r.Type = unix.RTN_UNICAST
	r.LinkIndex = idx
	if w.gw.IsValid() {
		r.Gw = w.gw.AsSlice()
	}
	if w.onlink {
		r.Flags = int(netlink.FLAG_ONLINK)
	}
	if w.scopeLink {
		r.Scope = netlink.SCOPE_LINK
	} else {
		r.Scope = netlink.SCOPE_UNIVERSE
	}
	return r, true
}

func routeType(t int) int {
	if t == 0 {
		return unix.RTN_UNICAST
	}
	return t
}

// matches is sameRoute(have, toNetlink(dst, w)) without building the
// netlink route; false also when w's device is unknown.
func (d *Dataplane) matches(have netlink.Route, w *route) bool {
	if w.blackhole {
		return routeType(have.Type) == unix.RTN_BLACKHOLE
	}
	if routeType(have.Type) != unix.RTN_UNICAST {
		return false
	}
	idx, ok := d.linkIdx[w.dev]
	if !ok || have.LinkIndex != idx {
		return false
	}
	if w.gw.IsValid() {
		a, ok := netip.AddrFromSlice(have.Gw)
		if !ok || a.Unmap() != w.gw {
			return false
		}
	} else if len(have.Gw) != 0 {
		return false
	}
	scope := netlink.SCOPE_UNIVERSE
	if w.scopeLink {
		scope = netlink.SCOPE_LINK
	}
	return (have.Flags&int(netlink.FLAG_ONLINK) != 0) == w.onlink && have.Scope == scope
}

// sameRoute compares a kernel route with an intended one.
func sameRoute(have netlink.Route, want *netlink.Route) bool {
	if routeType(have.Type) != routeType(want.Type) {
		return false
	}
	if want.Type == unix.RTN_BLACKHOLE {
		return true
	}
	return have.LinkIndex == want.LinkIndex && have.Gw.Equal(want.Gw) &&
		have.Flags&int(netlink.FLAG_ONLINK) == want.Flags&int(netlink.FLAG_ONLINK) && have.Scope == want.Scope
}

func (d *Dataplane) setProgrammed(dst netip.Prefix, r netlink.Route) {
	if old, ok := d.programmed[dst]; ok && old.LinkIndex != 0 {
		if s := d.progByLink[old.LinkIndex]; s != nil {
			delete(s, dst)
		}
	}
	d.programmed[dst] = r
	if r.LinkIndex != 0 {
		if d.progByLink[r.LinkIndex] == nil {
			d.progByLink[r.LinkIndex] = set[netip.Prefix]{}
		}
		d.progByLink[r.LinkIndex].add(dst)
	}
}

func (d *Dataplane) unsetProgrammed(dst netip.Prefix) {
	if old, ok := d.programmed[dst]; ok {
		if s := d.progByLink[old.LinkIndex]; s != nil {
			delete(s, dst)
		}
		delete(d.programmed, dst)
	}
}

// linkGone forgets the routes the kernel dropped with a link (deleted or
// taken down) and marks them for reprogramming.
func (d *Dataplane) linkGone(idx int) {
	for dst := range d.progByLink[idx] {
		delete(d.programmed, dst)
		d.dirtyRoutes.add(dst)
	}
	delete(d.progByLink, idx)
	if idx != 0 && idx == d.linkIdx[names.VXLANDevice] {
		clear(d.neighs)
		clear(d.fdb)
		for n := range d.vteps {
			d.dirtyVTEPs.add(n)
		}
	}
}

// programLocked makes the kernel's route for dst match the intended one.
// pending: it cannot be done yet (device missing or down, or a foreign
// route holds the destination); a later event or resync retries.
func (d *Dataplane) programLocked(dst netip.Prefix) (pending bool, err error) {
	want := d.want(dst)
	have, has := d.programmed[dst]
	if want == nil {
		delete(d.conflicts, dst)
		if !has {
			return false, nil
		}
		del := have // only this copy escapes (to the netlink call), not have
		if err := d.nl.RouteDel(&del); err != nil && !errors.Is(err, syscall.ESRCH) {
			return false, fmt.Errorf("deleting route %s: %w", dst, err)
		}
		d.unsetProgrammed(dst)
		d.obs.RouteOp("delete")
		d.log.WithField("dst", dst).Debug("route removed")
		return false, nil
	}
	if _, conflict := d.conflicts[dst]; conflict {
		return false, nil // reported already; retried at the next resync
	}
	if has && d.matches(have, want) {
		return false, nil // the common case of a resync: nothing to build
	}
	nr, ok := d.toNetlink(dst, want)
	if !ok {
		return true, nil
	}
	if has && sameRoute(have, nr) {
		return false, nil
	}
	op := "replace"
	if has {
		err = d.nl.RouteReplace(nr)
	} else {
		op = "add"
		err = d.nl.RouteAdd(nr)
		if errors.Is(err, syscall.EEXIST) {
			var foreign int
			foreign, err = d.takeOver(dst, nr)
			if foreign != 0 {
				d.conflicts[dst] = foreign
				d.obs.Error("route_conflict")
				d.log.WithFields(logrus.Fields{"dst": dst, "protocol": foreign, "want": want.String()}).
					Warn("a route this agent did not create holds the destination; leaving it alone")
				return false, nil
			}
		}
	}
	if errors.Is(err, syscall.ENETDOWN) || errors.Is(err, syscall.ENODEV) {
		return true, nil // the device is down or went away: its link event retries
	}
	if err != nil {
		return false, fmt.Errorf("route %s %s: %w", dst, want, err)
	}
	d.setProgrammed(dst, *nr)
	d.obs.RouteOp(op)
	if d.repairKinds[dst] {
		delete(d.repairKinds, dst)
		d.obs.DriftRepaired("route")
		d.log.WithFields(logrus.Fields{"dst": dst, "route": want.String()}).Info("drift repaired: route restored")
	}
	return false, nil
}

// takeOver handles EEXIST on add: a route with our protocol that our
// cache missed is replaced; another protocol's route is reported.
func (d *Dataplane) takeOver(dst netip.Prefix, nr *netlink.Route) (foreign int, err error) {
	existing, err := d.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: nr.Dst, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return 0, err
	}
	for _, e := range existing {
		if e.Priority != nr.Priority {
			continue
		}
		if int(e.Protocol) != d.cfg.Protocol {
			return int(e.Protocol), nil
		}
	}
	return 0, d.nl.RouteReplace(nr)
}

// findParentLocked finds the interface holding this node's IPv4 address.
func (d *Dataplane) findParentLocked() {
	d.parent, d.parentIndex, d.hostMTU = "", 0, 1500
	if !d.local.IPv4.IsValid() {
		return
	}
	addrs, err := d.nl.AddrList(nil, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		d.log.WithError(err).Warn("listing addresses")
		return
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == d.local.IPv4.Addr() {
			name, ok := d.linkName[a.LinkIndex]
			if !ok {
				continue
			}
			d.parent, d.parentIndex = name, a.LinkIndex
			if l, err := d.nl.LinkByName(name); err == nil && l.Attrs().MTU > 0 {
				d.hostMTU = l.Attrs().MTU
			}
			return
		}
	}
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
	d.findParentLocked()
	wantIPIP := d.haveLocal && d.local.IPIPAddr.IsValid() && d.poolsWant(func(p *Pool) string { return p.IPIPMode })
	wantVXLAN := d.haveLocal && d.local.VXLANAddr.IsValid() && d.poolsWant(func(p *Pool) string { return p.VXLANMode })
	var errs []error
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
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
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
	mtu := d.cfg.IPIPMTU
	if mtu == 0 {
		mtu = d.hostMTU - 20
	}
	if err := d.tuneLinkLocked(l, mtu, wasUp); err != nil {
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
	mtu := d.cfg.VXLANMTU
	if mtu == 0 {
		mtu = d.hostMTU - 50
	}
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

// syncVTEPLocked programs (or removes) one remote node's neighbour and
// FDB entry on vxlan.calico.
func (d *Dataplane) syncVTEPLocked(name string) error {
	var want *vtep
	if rn := d.nodes[name]; d.vxlanUp && rn != nil && rn.VXLANAddr.IsValid() && rn.IPv4.IsValid() {
		want = &vtep{tunnelIP: rn.VXLANAddr, mac: rn.mac().String(), nodeIP: rn.IPv4.Addr()}
	}
	old := d.vteps[name]
	idx, haveDev := d.linkIdx[names.VXLANDevice]
	if old != nil && (want == nil || *old != *want) {
		if haveDev {
			if want == nil || want.tunnelIP != old.tunnelIP || want.mac != old.mac {
				if d.neighs[old.tunnelIP] == old.mac {
					hw, _ := net.ParseMAC(old.mac)
					err := d.nl.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, IP: old.tunnelIP.AsSlice(), HardwareAddr: hw})
					if err != nil && !errors.Is(err, syscall.ENOENT) {
						return fmt.Errorf("removing neighbour %s: %w", old.tunnelIP, err)
					}
					delete(d.neighs, old.tunnelIP)
				}
			}
			if want == nil || want.mac != old.mac || want.nodeIP != old.nodeIP {
				if ip, ok := d.fdb[old.mac]; ok && ip == old.nodeIP {
					hw, _ := net.ParseMAC(old.mac)
					err := d.nl.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, IP: old.nodeIP.AsSlice(), HardwareAddr: hw})
					if err != nil && !errors.Is(err, syscall.ENOENT) {
						return fmt.Errorf("removing FDB entry %s: %w", old.mac, err)
					}
					delete(d.fdb, old.mac)
				}
			}
		}
		delete(d.vtepByIP, old.tunnelIP)
		delete(d.vtepByMAC, old.mac)
		delete(d.vteps, name)
	}
	if want == nil {
		return nil
	}
	if !haveDev {
		return nil
	}
	hw, _ := net.ParseMAC(want.mac)
	if d.neighs[want.tunnelIP] != want.mac {
		if err := d.nl.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
			IP: want.tunnelIP.AsSlice(), HardwareAddr: hw}); err != nil {
			d.obs.Error("neigh")
			return fmt.Errorf("neighbour %s -> %s: %w", want.tunnelIP, want.mac, err)
		}
		d.neighs[want.tunnelIP] = want.mac
		if d.repairVTEP[name] {
			d.drift("neigh", names.VXLANDevice, "neighbour "+want.tunnelIP.String()+" restored")
		}
	}
	if ip, ok := d.fdb[want.mac]; !ok || ip != want.nodeIP {
		if err := d.nl.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT,
			IP: want.nodeIP.AsSlice(), HardwareAddr: hw}); err != nil {
			d.obs.Error("fdb")
			return fmt.Errorf("FDB %s -> %s: %w", want.mac, want.nodeIP, err)
		}
		d.fdb[want.mac] = want.nodeIP
		if d.repairVTEP[name] {
			d.drift("fdb", names.VXLANDevice, "FDB entry "+want.mac+" restored")
		}
	}
	delete(d.repairVTEP, name)
	d.vteps[name] = want
	d.vtepByIP[want.tunnelIP] = name
	d.vtepByMAC[want.mac] = name
	return nil
}

// resyncLocked rebuilds the kernel view from scratch and repairs every
// difference.
func (d *Dataplane) resyncLocked() error {
	d.needResync = false
	links, err := d.nl.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		d.needResync = true
		return fmt.Errorf("listing links: %w", err)
	}
	clear(d.linkIdx)
	clear(d.linkName)
	for _, l := range links {
		d.noteLink(l)
	}
	d.devicesDirty = true
	d.allBlocksDirty = true
	for k := range d.workloads {
		d.dirtyWorkloads.add(k)
	}
	// Devices first: recreating one drops its routes.
	if err := d.ensureDevicesLocked(); err != nil {
		d.log.WithError(err).Warn("devices")
	}
	d.devicesDirty = false

	// The kernel's view replaces ours. The previous map is kept for the
	// comparison below and then reused as the next resync's spare, so a
	// resync of 10,000 routes allocates no new 10,000-entry maps.
	before := d.programmed
	d.programmed = d.spareProgrammed
	if d.programmed == nil {
		d.programmed = make(map[netip.Prefix]netlink.Route, len(before))
	}
	clear(d.programmed)
	for _, s := range d.progByLink {
		clear(s)
	}
	var stale []netlink.Route
	err = d.listOwnRoutes(func(r netlink.Route) {
		dst, ok := netPrefix(r.Dst)
		if !ok {
			return
		}
		if r.Priority != 0 {
			stale = append(stale, r) // ours, but not a metric we use
			return
		}
		d.setProgrammed(dst, r)
	})
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		d.programmed, d.spareProgrammed = before, d.programmed
		d.rebuildProgByLink()
		d.needResync = true
		return fmt.Errorf("listing routes: %w", err)
	}
	for i := range stale {
		if err := d.nl.RouteDel(&stale[i]); err != nil && !errors.Is(err, syscall.ESRCH) {
			d.log.WithError(err).WithField("dst", stale[i].Dst).Warn("removing stale route")
		}
	}
	defer func() { clear(before); d.spareProgrammed = before }()
	for dst := range before {
		if _, still := d.programmed[dst]; !still {
			d.repairKinds[dst] = true // deleted behind our back
		}
		d.dirtyRoutes.add(dst)
	}
	for dst := range d.programmed {
		d.dirtyRoutes.add(dst)
	}
	for dst := range d.blockRoutes {
		d.dirtyRoutes.add(dst)
	}
	for dst := range d.wlRoutes {
		d.dirtyRoutes.add(dst)
	}
	clear(d.conflicts)

	// Neighbours and FDB entries on vxlan.calico.
	clear(d.neighs)
	clear(d.fdb)
	if idx, ok := d.linkIdx[names.VXLANDevice]; ok && d.vxlanUp {
		if err := d.loadNeighsLocked(idx); err != nil {
			d.log.WithError(err).Warn("listing VXLAN neighbours")
		}
	}
	oldVteps := d.vteps
	d.vteps = map[string]*vtep{}
	clear(d.vtepByIP)
	clear(d.vtepByMAC)
	for n := range d.nodes {
		d.dirtyVTEPs.add(n)
		if v := oldVteps[n]; v != nil && (d.neighs[v.tunnelIP] != v.mac || d.fdb[v.mac] != v.nodeIP) {
			d.repairVTEP[n] = true
		}
	}
	err = d.applyLocked()
	d.removeStaleNeighsLocked()
	d.lastResync = time.Now()
	return err
}

// routeIterator is implemented by *netlink.Handle: a route dump through a
// callback, without collecting a slice of routes first.
type routeIterator interface {
	RouteListFilteredIter(family int, filter *netlink.Route, filterMask uint64, f func(netlink.Route) (cont bool)) error
}

// listOwnRoutes calls f for every IPv4 route of the main table carrying
// the agent's protocol number.
func (d *Dataplane) listOwnRoutes(f func(netlink.Route)) error {
	filter := &netlink.Route{Protocol: netlink.RouteProtocol(d.cfg.Protocol), Table: unix.RT_TABLE_MAIN}
	mask := uint64(netlink.RT_FILTER_PROTOCOL | netlink.RT_FILTER_TABLE)
	if it, ok := d.nl.(routeIterator); ok {
		return it.RouteListFilteredIter(netlink.FAMILY_V4, filter, mask, func(r netlink.Route) bool {
			f(r)
			return true
		})
	}
	routes, err := d.nl.RouteListFiltered(netlink.FAMILY_V4, filter, mask)
	for _, r := range routes {
		f(r)
	}
	return err
}

// rebuildProgByLink recomputes the per-link index of programmed routes.
func (d *Dataplane) rebuildProgByLink() {
	for _, s := range d.progByLink {
		clear(s)
	}
	for dst, r := range d.programmed {
		if r.LinkIndex != 0 {
			if d.progByLink[r.LinkIndex] == nil {
				d.progByLink[r.LinkIndex] = set[netip.Prefix]{}
			}
			d.progByLink[r.LinkIndex].add(dst)
		}
	}
}

func (d *Dataplane) loadNeighsLocked(idx int) error {
	ns, err := d.nl.NeighList(idx, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return err
	}
	for _, n := range ns {
		if n.LinkIndex != idx || n.State&netlink.NUD_PERMANENT == 0 {
			continue
		}
		if ip, ok := netip.AddrFromSlice(n.IP); ok {
			d.neighs[ip.Unmap()] = n.HardwareAddr.String()
		}
	}
	fdb, err := d.nl.NeighList(idx, unix.AF_BRIDGE)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return err
	}
	for _, n := range fdb {
		if n.LinkIndex != idx || n.State&netlink.NUD_PERMANENT == 0 || len(n.IP) == 0 {
			continue
		}
		if ip, ok := netip.AddrFromSlice(n.IP); ok {
			d.fdb[n.HardwareAddr.String()] = ip.Unmap()
		}
	}
	return nil
}

// removeStaleNeighsLocked deletes permanent entries no VTEP wants.
func (d *Dataplane) removeStaleNeighsLocked() {
	idx, ok := d.linkIdx[names.VXLANDevice]
	if !ok {
		return
	}
	for ip, mac := range d.neighs {
		if _, wanted := d.vtepByIP[ip]; wanted {
			continue
		}
		hw, _ := net.ParseMAC(mac)
		if err := d.nl.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, IP: ip.AsSlice(), HardwareAddr: hw}); err != nil && !errors.Is(err, syscall.ENOENT) {
			d.log.WithError(err).WithField("ip", ip).Warn("removing stale neighbour")
			continue
		}
		delete(d.neighs, ip)
	}
	for mac, ip := range d.fdb {
		if _, wanted := d.vtepByMAC[mac]; wanted {
			continue
		}
		hw, _ := net.ParseMAC(mac)
		if err := d.nl.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, IP: ip.AsSlice(), HardwareAddr: hw}); err != nil && !errors.Is(err, syscall.ENOENT) {
			d.log.WithError(err).WithField("mac", mac).Warn("removing stale FDB entry")
			continue
		}
		delete(d.fdb, mac)
	}
}

// Run programs changes as they come, repairs drift from kernel events
// (when sub is not nil) and resyncs periodically, until ctx ends.
func (d *Dataplane) Run(ctx context.Context, sub Subscriber) {
	events := make(chan Event, 8192)
	var subCancel context.CancelFunc = func() {}
	subscribe := func() bool {
		subCancel()
		if sub == nil {
			return true
		}
		sctx, cancel := context.WithCancel(ctx)
		subCancel = cancel
		if err := sub.Subscribe(sctx, events); err != nil {
			d.log.WithError(err).Error("subscribing to kernel events; relying on periodic resync")
			d.obs.Error("subscribe")
			return false
		}
		return true
	}
	defer func() { subCancel() }()
	subscribed := subscribe()
	d.RequestResync()
	resync := time.NewTicker(d.cfg.ResyncInterval)
	defer resync.Stop()
	var retry <-chan time.Time
	apply := func() {
		if err := d.Apply(); err != nil {
			d.log.WithError(err).Warn("dataplane programming incomplete; retrying")
			retry = time.After(d.cfg.RetryInterval)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			lost := d.HandleEvent(ev)
			// Drain what is already queued before programming.
			for drained := 0; drained < 4096; drained++ {
				select {
				case ev := <-events:
					lost = d.HandleEvent(ev) || lost
					continue
				default:
				}
				break
			}
			if lost {
				d.log.Warn("kernel event subscription lost; resubscribing and resyncing")
				subscribed = subscribe()
				d.RequestResync()
			}
		case <-d.kick:
			apply()
		case <-resync.C:
			if !subscribed {
				subscribed = subscribe()
			}
			d.RequestResync()
		case <-retry:
			retry = nil
			d.poke()
		}
	}
}

// Cleanup removes everything the agent programmed: every route with its
// protocol, vxlan.calico, and its address on tunl0. Other routes stay.
func (d *Dataplane) Cleanup() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	routes, err := d.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: netlink.RouteProtocol(d.cfg.Protocol), Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		errs = append(errs, err)
	}
	for _, r := range routes {
		if err := d.nl.RouteDel(&r); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("deleting route %s: %w", r.Dst, err))
		}
	}
	if l, err := d.nl.LinkByName(names.VXLANDevice); err == nil {
		if err := d.nl.LinkDel(l); err != nil && !isNotFound(err) {
			errs = append(errs, err)
		}
	}
	if l, err := d.nl.LinkByName(names.IPIPDevice); err == nil {
		if err := d.ensureAddrLocked(l, netip.Addr{}, false, "link"); err != nil {
			errs = append(errs, err)
		}
	}
	clear(d.programmed)
	clear(d.progByLink)
	clear(d.neighs)
	clear(d.fdb)
	d.vxlanUp, d.ipipUp = false, false
	d.log.WithField("routes", len(routes)).Info("dataplane cleaned up")
	return errors.Join(errs...)
}

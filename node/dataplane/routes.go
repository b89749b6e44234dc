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
)

// Routes: building the kernel form of an intended route, comparing it
// with what the kernel has, and programming one destination.

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

// toNetlink builds the kernel route; ok false when its device is missing.
func (d *Dataplane) toNetlink(dst netip.Prefix, w *route) (*netlink.Route, bool) {
	fam := famOf(dst.Addr())
	r := &netlink.Route{Dst: prefixNet(dst), Protocol: netlink.RouteProtocol(d.cfg.Protocol), Table: unix.RT_TABLE_MAIN,
		Family: nlFamily(fam), Priority: routeMetric(fam)}
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
	r.Scope = routeScope(fam, w)
	return r, true
}

// routeScope is the scope the kernel keeps for an intended route: link
// for IPv4 device routes that ask for it, universe otherwise (IPv6 keeps
// none).
func routeScope(fam int, w *route) netlink.Scope {
	if w.scopeLink && fam == 4 {
		return netlink.SCOPE_LINK
	}
	return netlink.SCOPE_UNIVERSE
}

func routeType(t int) int {
	if t == 0 {
		return unix.RTN_UNICAST
	}
	return t
}

// matches is sameRoute(have, toNetlink(dst, w)) without building the
// netlink route; false also when w's device is unknown.
func (d *Dataplane) matches(dst netip.Prefix, have netlink.Route, w *route) bool {
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
	return (have.Flags&int(netlink.FLAG_ONLINK) != 0) == w.onlink && have.Scope == routeScope(famOf(dst.Addr()), w)
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
		if d.hold {
			d.heldRoutes.add(dst) // removed once the hold ends (a resync)
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
	delete(d.heldRoutes, dst)
	if _, conflict := d.conflicts[dst]; conflict {
		return false, nil // reported already; retried at the next resync
	}
	if has && d.matches(dst, have, want) {
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
	existing, err := d.nl.RouteListFiltered(nr.Family, &netlink.Route{Dst: nr.Dst, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
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

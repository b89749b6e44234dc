package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Resync: the full comparison with the kernel, at start, periodically
// and after lost events.

// resyncLocked rebuilds the kernel view from scratch and repairs every
// difference.
func (d *Dataplane) resyncLocked() error {
	d.needResync = false
	links, err := d.nl.LinkList()
	if err != nil {
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
	var stale []netlink.Route
	err = d.listOwnRoutes(func() {
		clear(d.programmed)
		for _, s := range d.progByLink {
			clear(s)
		}
		stale = stale[:0]
	}, func(r netlink.Route) {
		dst, ok := netPrefix(r.Dst)
		if !ok {
			return
		}
		if r.Priority != routeMetric(famOf(dst.Addr())) {
			stale = append(stale, r) // ours, but not a metric we use
			return
		}
		d.setProgrammed(dst, r)
	})
	if err != nil {
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
	d.pruneStaleBirdRoutesLocked()
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

	// Neighbours and FDB entries on vxlan.calico and vxlan-v6.calico.
	for _, v := range d.vx {
		clear(v.neighs)
		clear(v.fdb)
		if idx, ok := d.linkIdx[v.dev]; ok && v.up {
			if err := d.loadNeighsLocked(v, idx); err != nil {
				d.log.WithError(err).WithField("device", v.dev).Warn("listing VXLAN neighbours")
			}
		}
		oldVteps := v.vteps
		v.vteps = map[string]*vtep{}
		clear(v.byIP)
		clear(v.byMAC)
		for n := range d.nodes {
			d.dirtyVTEPs.add(n)
			if o := oldVteps[n]; o != nil && (v.neighs[o.tunnelIP] != o.mac || v.fdb[o.mac] != o.nodeIP) {
				d.repairVTEP[n] = true
			}
		}
	}
	err = d.applyLocked()
	for _, v := range d.vx {
		d.removeStaleNeighsLocked(v)
	}
	d.lastResync = time.Now()
	return err
}

// listOwnRoutes calls f for every IPv4 and IPv6 route of the main table
// carrying the agent's protocol number. start is called first, and again
// before every retry of an interrupted dump: f's results so far must be
// dropped.
func (d *Dataplane) listOwnRoutes(start func(), f func(netlink.Route)) error {
	filter := &netlink.Route{Protocol: netlink.RouteProtocol(d.cfg.Protocol), Table: unix.RT_TABLE_MAIN}
	mask := uint64(netlink.RT_FILTER_PROTOCOL | netlink.RT_FILTER_TABLE)
	return d.nl.eachRoute(netlink.FAMILY_ALL, filter, mask, start, func(r netlink.Route) {
		if r.Family == netlink.FAMILY_V4 || r.Family == netlink.FAMILY_V6 {
			f(r)
		}
	})
}

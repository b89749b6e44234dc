package dataplane

import (
	"net"
	"net/netip"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/roostnet/roost/node/names"
)

// HandleEvent folds one kernel event into the dataplane's view, marking
// what needs repair. It reports whether the subscription was lost.
func (d *Dataplane) HandleEvent(ev Event) (lost bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case ev.Lost != nil:
		d.needResync = true
		d.poke()
		return true
	case ev.Route != nil:
		d.onRoute(ev.Route)
	case ev.Link != nil:
		d.onLink(ev.Link)
	case ev.Neigh != nil:
		d.onNeigh(ev.Neigh)
	}
	return false
}

func (d *Dataplane) onRoute(u *netlink.RouteUpdate) {
	r := &u.Route
	if r.Table != unix.RT_TABLE_MAIN || r.Dst == nil || (r.Family != 0 && r.Family != netlink.FAMILY_V4 && r.Family != netlink.FAMILY_V6) {
		return
	}
	dst, ok := netPrefix(r.Dst)
	if !ok {
		return
	}
	metric := routeMetric(famOf(dst.Addr()))
	ours := int(r.Protocol) == d.cfg.Protocol
	switch u.Type {
	case unix.RTM_DELROUTE:
		if have, ok := d.programmed[dst]; ok && ours && r.Priority == have.Priority {
			d.unsetProgrammed(dst)
			if d.want(dst) != nil {
				d.repairKinds[dst] = true
				d.dirtyRoutes.add(dst)
				d.poke()
			}
			return
		}
		if foreign, ok := d.conflicts[dst]; ok && int(r.Protocol) == foreign && r.Priority == metric {
			// The route that held our destination is gone: take it now.
			delete(d.conflicts, dst)
			d.dirtyRoutes.add(dst)
			d.poke()
		}
	case unix.RTM_NEWROUTE:
		if r.Priority != metric {
			return
		}
		if ours {
			if have, ok := d.programmed[dst]; ok && sameRoute(have, r) {
				return // our own write coming back
			}
			d.setProgrammed(dst, *r)
			if nr, ok := d.toNetlinkIfWanted(dst); !ok || !sameRoute(*r, nr) {
				d.dirtyRoutes.add(dst)
				d.poke()
			}
			return
		}
		if _, ok := d.programmed[dst]; ok {
			// Someone replaced our route: do not fight over it.
			d.unsetProgrammed(dst)
			d.conflicts[dst] = int(r.Protocol)
			d.obs.Error("route_conflict")
			d.log.WithFields(logrus.Fields{"dst": dst, "protocol": int(r.Protocol)}).Warn("another program replaced an agent route; leaving it alone")
		}
	}
}

func (d *Dataplane) toNetlinkIfWanted(dst netip.Prefix) (*netlink.Route, bool) {
	w := d.want(dst)
	if w == nil {
		return nil, false
	}
	return d.toNetlink(dst, w)
}

func (d *Dataplane) onLink(u *netlink.LinkUpdate) {
	if u.Link == nil {
		return
	}
	a := u.Link.Attrs()
	ours := a.Name == names.IPIPDevice || a.Name == names.VXLANDevice || a.Name == names.VXLANV6Device
	parent := a.Index != 0 && (a.Index == d.parentIndex || a.Index == d.parentIndex6)
	if u.Header.Type == unix.RTM_DELLINK {
		if _, known := d.linkName[a.Index]; known {
			d.linkGone(a.Index)
			delete(d.linkName, a.Index)
			if d.linkIdx[a.Name] == a.Index {
				delete(d.linkIdx, a.Name)
			}
		}
		if ours || parent || d.hostMTUFrom(a.Name) {
			d.devicesDirty = true
		}
		d.poke()
		return
	}
	_, known := d.linkName[a.Index]
	d.noteLink(u.Link)
	if !known {
		// A device appeared: routes waiting for it can go in now.
		for dst := range d.byDev[a.Name] {
			d.dirtyRoutes.add(dst)
		}
	}
	if a.Flags&net.FlagUp == 0 {
		// The kernel flushed the routes through it.
		if len(d.progByLink[a.Index]) > 0 {
			d.linkGone(a.Index)
		}
	} else if known && len(d.byDev[a.Name]) > 0 && len(d.progByLink[a.Index]) < len(d.byDev[a.Name]) {
		// Up again: retry what could not be programmed while down.
		for dst := range d.byDev[a.Name] {
			if _, ok := d.programmed[dst]; !ok {
				d.dirtyRoutes.add(dst)
			}
		}
	}
	if ours && d.linkDrifted(u.Link) {
		d.devicesDirty = true
	}
	if (parent || d.hostMTUFrom(a.Name)) && a.MTU != d.hostMTU {
		d.devicesDirty = true // tunnel and workload MTUs follow the host's
	}
	d.poke()
}

// linkDrifted reports whether a tunnel device differs from what it should
// be (down, wrong MTU or MAC).
func (d *Dataplane) linkDrifted(l netlink.Link) bool {
	a := l.Attrs()
	if a.Flags&net.FlagUp == 0 {
		return true
	}
	switch a.Name {
	case names.VXLANDevice, names.VXLANV6Device:
		fam := 4
		if a.Name == names.VXLANV6Device {
			fam = 6
		}
		if !d.vx[fi(fam)].up {
			return true
		}
		return a.MTU != d.vxlanMTU(fam) || a.HardwareAddr.String() != d.local.vxlanMAC(fam).String()
	case names.IPIPDevice:
		if !d.ipipUp {
			return false
		}
		return a.MTU != d.mtus.IPIP
	}
	return false
}

func (d *Dataplane) onNeigh(u *netlink.NeighUpdate) {
	n := &u.Neigh
	var v *vxlanFam
	for _, x := range d.vx {
		if idx, ok := d.linkIdx[x.dev]; ok && n.LinkIndex == idx {
			v = x
		}
	}
	if v == nil {
		return
	}
	ip, _ := netip.AddrFromSlice(n.IP)
	ip = ip.Unmap()
	mac := n.HardwareAddr.String()
	bridge := n.Family == unix.AF_BRIDGE
	if u.Type == unix.RTM_DELNEIGH {
		var owner string
		if bridge {
			if _, ok := v.fdb[mac]; !ok {
				return
			}
			delete(v.fdb, mac)
			owner = v.byMAC[mac]
		} else {
			if _, ok := v.neighs[ip]; !ok {
				return
			}
			delete(v.neighs, ip)
			owner = v.byIP[ip]
		}
		if owner != "" {
			d.repairVTEP[owner] = true
			d.dirtyVTEPs.add(owner)
			d.poke()
		}
		return
	}
	// New or changed entry: if it contradicts a VTEP, rewrite that VTEP.
	if bridge {
		if owner, ok := v.byMAC[mac]; ok && v.vteps[owner] != nil && v.vteps[owner].nodeIP != ip {
			delete(v.fdb, mac)
			d.dirtyVTEPs.add(owner)
			d.poke()
		}
		return
	}
	if owner, ok := v.byIP[ip]; ok && v.vteps[owner] != nil && (v.vteps[owner].mac != mac || n.State&netlink.NUD_PERMANENT == 0) {
		delete(v.neighs, ip)
		d.dirtyVTEPs.add(owner)
		d.poke()
	}
}

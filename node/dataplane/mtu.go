package dataplane

import (
	"fmt"
	"net"
	"regexp"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/node/mtu"
)

// MTUs: the host MTU, the tunnel and workload MTUs derived from it and
// from the pools' encapsulation (node/mtu), and the MTU file. They are
// worked out again whenever the devices are (pool, node or host
// interface changes, resyncs).

// nodeIfacesLocked are the interfaces holding the node's addresses.
func (d *Dataplane) nodeIfacesLocked() []string {
	var out []string
	for _, p := range []string{d.parent, d.parent6} {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// mtuPattern is the pattern the host MTU is taken from, nil when it is
// taken from the node's interfaces.
func (d *Dataplane) mtuPattern() *regexp.Regexp {
	if d.cfg.MTUIfacePattern != nil {
		return d.cfg.MTUIfacePattern
	}
	if d.parent == "" && d.parent6 == "" {
		return mtu.DefaultIfacePattern
	}
	return nil
}

// hostMTUFrom reports whether the MTU of the interface named name counts
// for the host MTU through the interface pattern.
func (d *Dataplane) hostMTUFrom(name string) bool {
	p := d.mtuPattern()
	return p != nil && p.MatchString(name)
}

// hostMTULocked is the smallest MTU of the node's interfaces (IPv4 and
// IPv6 address), or with a pattern (configured, or Felix's default when the node has no address
// here) the smallest of the up interfaces matching it.
func (d *Dataplane) hostMTULocked() (int, error) {
	pattern := d.mtuPattern()
	if pattern == nil {
		best := 0
		for _, name := range d.nodeIfacesLocked() {
			l, err := d.nl.LinkByName(name)
			if err != nil {
				return 0, fmt.Errorf("host MTU: %s: %w", name, err)
			}
			if m := l.Attrs().MTU; m > 0 && (best == 0 || m < best) {
				best = m
			}
		}
		if best > 0 {
			return best, nil
		}
		pattern = mtu.DefaultIfacePattern
	}
	links, err := d.nl.LinkList()
	if err != nil {
		return 0, fmt.Errorf("host MTU: listing links: %w", err)
	}
	ls := make([]mtu.Link, 0, len(links))
	for _, l := range links {
		a := l.Attrs()
		up := a.Flags&net.FlagUp != 0 && (a.OperState == netlink.OperUp || a.OperState == netlink.OperUnknown)
		ls = append(ls, mtu.Link{Name: a.Name, MTU: a.MTU, Up: up})
	}
	if m, ok := mtu.Smallest(ls, pattern); ok {
		return m, nil
	}
	if d.hostMTU != mtu.Fallback {
		d.log.WithField("pattern", pattern.String()).Warnf("no up interface matches the MTU interface pattern; assuming a host MTU of %d (set FELIX_MTUIFACEPATTERN)", mtu.Fallback)
	}
	return mtu.Fallback, nil
}

func encapOn(mode string) bool { return mode != "" && mode != api.EncapNever }

// encapsLocked says which encapsulations the pools use.
func (d *Dataplane) encapsLocked() mtu.Encaps {
	var e mtu.Encaps
	for _, p := range d.pools {
		v6 := p.CIDR.Addr().Is6()
		if encapOn(p.IPIPMode) && !v6 {
			e.IPIP = true
		}
		if encapOn(p.VXLANMode) {
			if v6 {
				e.VXLANV6 = true
			} else {
				e.VXLAN = true
			}
		}
	}
	return e
}

// updateMTUsLocked works the MTUs out again and keeps the MTU file in
// step. When the host MTU cannot be read, the previous values stay.
func (d *Dataplane) updateMTUsLocked() error {
	host, err := d.hostMTULocked()
	if err != nil {
		return err
	}
	d.hostMTU = host
	m := mtu.Compute(host, d.encapsLocked(), mtu.Overrides{
		IPIP: d.cfg.IPIPMTU, VXLAN: d.cfg.VXLANMTU, VXLANV6: d.cfg.VXLANMTUV6, Workload: d.cfg.WorkloadMTU})
	if m != d.mtus {
		d.log.WithFields(logrus.Fields{"host": m.Host, "ipip": m.IPIP, "vxlan": m.VXLAN, "vxlanV6": m.VXLANV6, "workload": m.Workload}).Info("MTUs")
	}
	d.mtus = m
	return d.writeMTUFileLocked()
}

// writeMTUFileLocked makes the MTU file hold the workload MTU; a file
// changed or removed behind the agent's back is put right.
func (d *Dataplane) writeMTUFileLocked() error {
	if d.cfg.MTUFile == "" || d.mtus.Workload == 0 {
		return nil
	}
	wrote, err := mtu.WriteFile(d.cfg.MTUFile, d.mtus.Workload)
	if err != nil {
		d.obs.Error("mtu_file")
		return err
	}
	if wrote {
		if d.mtuWritten == d.mtus.Workload {
			d.obs.DriftRepaired("mtu_file")
		}
		d.log.WithFields(logrus.Fields{"file": d.cfg.MTUFile, "mtu": d.mtus.Workload}).Info("wrote the workload MTU")
	}
	d.mtuWritten = d.mtus.Workload
	return nil
}

package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/roostnet/roost/node/names"
)

// Cleanup removes everything the agent programmed: every IPv4 and IPv6
// route with its protocol, vxlan.calico, vxlan-v6.calico, its address on
// tunl0 and the MTU file. Other routes stay.
func (d *Dataplane) Cleanup() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	routes, err := d.nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: netlink.RouteProtocol(d.cfg.Protocol), Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		errs = append(errs, err)
	}
	for _, r := range routes {
		if err := d.nl.RouteDel(&r); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("deleting route %s: %w", r.Dst, err))
		}
	}
	for _, v := range d.vx {
		if l, err := d.nl.LinkByName(v.dev); err == nil {
			if err := d.nl.LinkDel(l); err != nil && !isNotFound(err) {
				errs = append(errs, err)
			}
		}
		clear(v.neighs)
		clear(v.fdb)
		v.up = false
	}
	if l, err := d.nl.LinkByName(names.IPIPDevice); err == nil {
		if err := d.ensureAddrLocked(l, netip.Addr{}, 4, false, "link"); err != nil {
			errs = append(errs, err)
		}
	}
	if d.cfg.MTUFile != "" {
		if err := os.Remove(d.cfg.MTUFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing the MTU file: %w", err))
		}
	}
	clear(d.programmed)
	clear(d.progByLink)
	d.ipipUp = false
	d.log.WithField("routes", len(routes)).Info("dataplane cleaned up")
	return errors.Join(errs...)
}

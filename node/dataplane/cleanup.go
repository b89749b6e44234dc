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

// Cleanup removes everything the agent programmed: every route with its
// protocol, vxlan.calico, its address on tunl0 and the MTU file. Other
// routes stay.
func (d *Dataplane) Cleanup() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	routes, err := d.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: netlink.RouteProtocol(d.cfg.Protocol), Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
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
	if d.cfg.MTUFile != "" {
		if err := os.Remove(d.cfg.MTUFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing the MTU file: %w", err))
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

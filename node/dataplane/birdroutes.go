package dataplane

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Stale BIRD routes.
//
// Each BIRD route carries its priority as kernel metric (docs/bgp.md,
// route priority), and BIRD leaves copies behind in two cases:
//
//   - The upgrade: BIRD's kernel protocol installed every route with its
//     default metric 32 until Roost's configuration set `metric 0`. When
//     BIRD loads that configuration its kernel protocol restarts and
//     installs the new routes, but the metric-32 routes stay (kept across
//     the restart, and taken for the ones it installed).
//   - A priority change: BIRD 2.0 deletes the old route naming the new
//     route's metric, which matches nothing, and then adds the new one,
//     so the old route stays.
//
// So roost-node looks for destinations with several BIRD routes (every
// BirdPruneInterval and at every resync). When BIRD says which metric it
// wants for the destination (Config.BirdMetric, from `show route for
// <dst> export kernel_v4 all`), the others go; without that answer only
// metric-32 copies next to a route of another metric go, so a BIRD still
// running an older configuration (metric 32 only) is left alone.

// birdProtocol is RTPROT_BIRD; birdOldMetric is BIRD's default kernel
// metric, which older Roost configurations used for every route.
const (
	birdProtocol  = 12
	birdOldMetric = 32
)

// PruneStaleBirdRoutes removes stale duplicate BIRD routes (see above)
// and returns how many it removed.
func (d *Dataplane) PruneStaleBirdRoutes(ctx context.Context) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pruneStaleBirdRoutesCtx(ctx)
}

func (d *Dataplane) pruneStaleBirdRoutesLocked() int {
	return d.pruneStaleBirdRoutesCtx(context.Background())
}

func (d *Dataplane) pruneStaleBirdRoutesCtx(ctx context.Context) int {
	byDst := map[netip.Prefix][]netlink.Route{}
	filter := &netlink.Route{Protocol: birdProtocol, Table: unix.RT_TABLE_MAIN}
	mask := uint64(netlink.RT_FILTER_PROTOCOL | netlink.RT_FILTER_TABLE)
	err := d.nl.eachRoute(netlink.FAMILY_ALL, filter, mask, func() { clear(byDst) }, func(r netlink.Route) {
		if r.Family != netlink.FAMILY_V4 && r.Family != netlink.FAMILY_V6 {
			return
		}
		if dst, ok := netPrefix(r.Dst); ok {
			byDst[dst] = append(byDst[dst], r)
		}
	})
	if err != nil {
		d.log.WithError(err).Warn("listing BIRD's routes to find stale metric-32 copies")
		return 0
	}
	removed := 0
	for dst, rs := range byDst {
		if len(rs) < 2 {
			continue
		}
		stale := func(r *netlink.Route) bool { return false }
		if want, ok := d.birdMetric(ctx, dst); ok && slices.ContainsFunc(rs, func(r netlink.Route) bool { return r.Priority == want }) {
			stale = func(r *netlink.Route) bool { return r.Priority != want }
		} else if slices.ContainsFunc(rs, func(r netlink.Route) bool { return r.Priority != birdOldMetric }) {
			stale = func(r *netlink.Route) bool { return r.Priority == birdOldMetric }
		}
		for i := range rs {
			if !stale(&rs[i]) {
				continue
			}
			if err := d.nl.RouteDel(&rs[i]); err != nil && !errors.Is(err, syscall.ESRCH) {
				d.log.WithError(err).WithField("dst", dst).Warn("removing a stale metric-32 BIRD route")
				continue
			}
			removed++
			d.log.WithFields(logrus.Fields{"dst": dst, "metric": rs[i].Priority}).Info("removed a stale duplicate BIRD route")
		}
	}
	return removed
}

func (d *Dataplane) birdMetric(ctx context.Context, dst netip.Prefix) (int, bool) {
	if d.cfg.BirdMetric == nil {
		return 0, false
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return d.cfg.BirdMetric(ctx, dst)
}

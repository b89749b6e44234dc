package agent

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/api"
)

// Empty blocks go back to the pool after a grace period, as Calico's
// kube-controllers do (their leakGracePeriod, 15 minutes by default): a
// block of this node that has held no address for that long is released
// when the node keeps another block of the family (ipam.Client.
// ReleaseEmptyBlock checks again, atomically). The period keeps a block
// that just emptied from being released and claimed again by the next
// workload. Each agent looks after its own node's blocks; what it knows
// comes from the block watch, so the cost is per change, not per scan.

// blockGC tracks this node's empty blocks and since when they are empty.
type blockGC struct {
	mu    sync.Mutex
	since map[netip.Prefix]time.Time
	kick  chan struct{}
	now   func() time.Time
}

func newBlockGC() *blockGC {
	return &blockGC{since: map[netip.Prefix]time.Time{}, kick: make(chan struct{}, 1), now: time.Now}
}

// update records a block of this node as seen by the watch (nil: gone or
// not this node's any more).
func (g *blockGC) update(cidr netip.Prefix, b *api.AllocationBlock) {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, tracked := g.since[cidr]
	switch {
	case b != nil && !b.Deleted && b.InUse() == 0:
		if !tracked {
			g.since[cidr] = g.now()
			kick(g.kick)
		}
	case tracked:
		delete(g.since, cidr)
	}
}

// due returns the blocks empty for at least grace, and how long until
// the next one is (0: none tracked).
func (g *blockGC) due(grace time.Duration) ([]netip.Prefix, time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	var out []netip.Prefix
	var next time.Duration
	for cidr, t := range g.since {
		if wait := t.Add(grace).Sub(now); wait <= 0 {
			out = append(out, cidr)
		} else if next == 0 || wait < next {
			next = wait
		}
	}
	return out, next
}

// postpone starts the period of a block again (it could not be released:
// the node's last block of its family, or it changed meanwhile).
func (g *blockGC) postpone(cidr netip.Prefix) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.since[cidr]; ok {
		g.since[cidr] = g.now()
	}
}

// blockGCLoop releases blocks that stayed empty for the grace period.
func (a *Agent) blockGCLoop(ctx context.Context, grace time.Duration) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		due, next := a.gc.due(grace)
		for _, cidr := range due {
			if a.poolBroken() {
				// Which pool the block is of cannot be told: nothing is
				// given back while a pool is broken (docs/roost-node.md).
				a.gc.postpone(cidr)
				continue
			}
			released, err := a.ipam.ReleaseEmptyBlock(ctx, cidr)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				a.fail("ipam", err)
				a.log.WithError(err).WithField("block", cidr).Warn("releasing an empty block; trying again later")
			}
			if !released {
				a.gc.postpone(cidr)
			} else {
				a.log.WithFields(logrus.Fields{"block": cidr, "grace": grace}).Info("released a block that stayed empty for the grace period")
			}
		}
		if len(due) > 0 {
			_, next = a.gc.due(grace)
		}
		if next == 0 {
			next = time.Hour
		}
		timer.Reset(next)
		select {
		case <-ctx.Done():
			return
		case <-a.gc.kick:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-timer.C:
		}
	}
}

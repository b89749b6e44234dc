package dataplane

import (
	"context"
	"time"
)

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
	prune := time.NewTicker(d.cfg.BirdPruneInterval)
	defer prune.Stop()
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
		case <-prune.C:
			d.PruneStaleBirdRoutes(ctx)
		}
	}
}

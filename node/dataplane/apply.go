package dataplane

import (
	"errors"
	"fmt"
	"time"
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
		for a := range d.borrowed {
			d.dirtyBorrowed.add(a)
		}
	}
	for b := range d.dirtyBlocks {
		d.setRoute(d.blockRoutes, b, d.blockRoute(b))
	}
	clear(d.dirtyBlocks)
	for a := range d.dirtyBorrowed {
		d.setRoute(d.borrowRoutes, a, d.borrowRoute(a))
	}
	clear(d.dirtyBorrowed)
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

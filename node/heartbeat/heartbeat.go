// Package heartbeat is the node agent's sign of life in the datastore, and
// how other programs read it: `roost-node run` rewrites its node's status
// report (Calico Felix's, /calico/felix/v2/no-region/host/<node>/status:
// time, uptime) every Interval and deletes it when it stops cleanly; a
// node whose report is younger than TTL counts as alive (birdctl refuses
// to delete such a node and release addresses its workloads still use).
//
// The report lives outside the prefixes confd and the agents watch, so a
// heartbeat costs one write and wakes nobody.
package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

// Interval and TTL are Felix's defaults (ReportingIntervalSecs,
// ReportingTTLSecs): a report every 30 s, stale after 90 s (two missed).
const (
	Interval = 30 * time.Second
	TTL      = 90 * time.Second
)

// Run writes node's report at once and then every interval until ctx
// ends, then deletes it. Failed writes are logged and retried at the next
// tick (a datastore outage must not stop the agent).
func Run(ctx context.Context, ds datastore.Datastore, node string, interval time.Duration, log logrus.FieldLogger) {
	if interval <= 0 {
		interval = Interval
	}
	start := time.Now()
	first, failing := true, false
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		r := &api.StatusReport{Spec: api.StatusReportSpec{
			Time: time.Now().UTC().Format(time.RFC3339Nano), Uptime: time.Since(start).Seconds(), FirstUpdate: first,
		}}
		r.Metadata.Name = node
		wctx, cancel := context.WithTimeout(ctx, interval)
		_, err := ds.Txn(wctx, datastore.Op{Type: datastore.OpPut, Value: r})
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			if !failing {
				log.WithError(err).Warn("heartbeat: could not write the node's status report; retrying")
			}
			failing = true
		case err == nil:
			if failing {
				log.Info("heartbeat: status report written again")
			}
			first, failing = false, false
		}
		select {
		case <-ctx.Done():
			// A clean stop says so at once: the node can be deleted.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			if err := ds.Delete(dctx, datastore.StatusReportKey(node), 0); err != nil && !errors.Is(err, datastore.ErrNotFound) {
				log.WithError(err).Warn("heartbeat: could not delete the node's status report")
			}
			cancel()
			return
		case <-tick.C:
		}
	}
}

// Status is what a node's report says.
type Status struct {
	// Reported is when the last report was written (zero: none).
	Reported time.Time
	// Alive: the report is younger than the TTL.
	Alive bool
	// Key is the report's datastore key.
	Key string
}

// Check reads node's report and judges it at now.
func Check(ctx context.Context, ds datastore.Datastore, node string, now time.Time) (Status, error) {
	st := Status{Key: datastore.StatusReportKey(node)}
	kv, err := ds.Get(ctx, st.Key)
	if errors.Is(err, datastore.ErrNotFound) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("reading the status report of node %s: %w", node, err)
	}
	r, ok := kv.Value.(*api.StatusReport)
	if !ok {
		return st, fmt.Errorf("%s: not a status report", st.Key)
	}
	t, err := r.Spec.Reported()
	if err != nil {
		return st, fmt.Errorf("%s: time %q: %w", st.Key, r.Spec.Time, err)
	}
	st.Reported = t
	st.Alive = now.Sub(t) < TTL
	return st, nil
}

package health

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// SyncLiveness fails a program's liveness once its view of the datastore
// has been out of sync for Timeout while the datastore itself answers a
// fresh connection: the program's own connection is stuck (say, on a
// credential it cannot renew) and a restart helps. While the datastore
// does not answer at all, liveness stays ok — a restart would not help,
// and under Kubernetes it would restart BIRD too and drop healthy BGP
// sessions during an etcd outage.
type SyncLiveness struct {
	// Timeout: how long out of sync before the probe; 0 never fails.
	Timeout time.Duration
	// Probe opens the datastore afresh and checks that it answers (nil:
	// the datastore is taken to answer).
	Probe func(ctx context.Context) error
	// ProbeEvery bounds how often Probe runs (default 30s): the result is
	// reused meanwhile.
	ProbeEvery time.Duration
	// Now is time.Now; tests set it.
	Now func() time.Time

	mu       sync.Mutex
	probedAt time.Time
	probeErr error
}

// Check answers liveness given since, the moment the view last went out
// of sync (zero while in sync). The reason says what was decided.
func (l *SyncLiveness) Check(since time.Time) (ok bool, reason string) {
	if l == nil || l.Timeout <= 0 || since.IsZero() {
		return true, ""
	}
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	out := now().Sub(since)
	if out < l.Timeout {
		return true, ""
	}
	if l.Probe == nil {
		return false, fmt.Sprintf("not in sync with the datastore for %s (limit %s)", out.Round(time.Second), l.Timeout)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	every := l.ProbeEvery
	if every <= 0 {
		every = 30 * time.Second
	}
	if l.probedAt.IsZero() || now().Sub(l.probedAt) >= every {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		l.probeErr = l.Probe(ctx)
		cancel()
		l.probedAt = now()
	}
	if l.probeErr != nil {
		return true, fmt.Sprintf("not in sync with the datastore for %s, but it does not answer a fresh connection either (%v): a restart would not help", out.Round(time.Second), l.probeErr)
	}
	return false, fmt.Sprintf("not in sync with the datastore for %s (limit %s) although it answers a fresh connection: this connection is stuck", out.Round(time.Second), l.Timeout)
}

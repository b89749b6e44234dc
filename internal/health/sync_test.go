package health

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSyncLiveness(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	probes := 0
	var probeErr error
	l := &SyncLiveness{Timeout: time.Minute, Now: func() time.Time { return now },
		Probe: func(context.Context) error { probes++; return probeErr }}
	for _, tc := range []struct {
		name     string
		since    time.Time
		probeErr error
		advance  time.Duration
		ok       bool
		want     string
		probes   int
	}{
		{"in sync", time.Time{}, nil, 0, true, "", 0},
		{"briefly out of sync", now.Add(-30 * time.Second), nil, 0, true, "", 0},
		{"stuck while the datastore answers", now.Add(-2 * time.Minute), nil, 0, false, "this connection is stuck", 1},
		{"probe result reused", now.Add(-2 * time.Minute), errors.New("down"), 10 * time.Second, false, "stuck", 1},
		{"datastore down: a restart would not help", now.Add(-2 * time.Minute), errors.New("no answer"), 30 * time.Second, true, "no answer", 2},
	} {
		probeErr = tc.probeErr
		now = now.Add(tc.advance)
		ok, why := l.Check(tc.since)
		if ok != tc.ok || !strings.Contains(why, tc.want) || probes != tc.probes {
			t.Errorf("%s: ok=%v %q after %d probes", tc.name, ok, why, probes)
		}
	}
	var off *SyncLiveness
	if ok, _ := off.Check(now.Add(-time.Hour)); !ok {
		t.Error("a nil SyncLiveness fails")
	}
}

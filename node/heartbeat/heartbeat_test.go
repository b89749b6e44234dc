package heartbeat

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/internal/dstest"
)

// Reports are written at once and then every interval; a clean stop
// withdraws them; Check judges their age.
func TestRunAndCheck(t *testing.T) {
	ds := dstest.NewFile(t)
	log := logrus.New()
	log.SetOutput(io.Discard)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); Run(ctx, ds, "n1", 20*time.Millisecond, log) }()
	defer func() { stop(); <-done }()

	var first time.Time
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		st, err := Check(context.Background(), ds, "n1", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if first.IsZero() && st.Alive {
			first = st.Reported
		}
		if !first.IsZero() && st.Reported.After(first) {
			break // a second report
		}
		if time.Now().After(deadline) {
			t.Fatalf("no repeated reports: %+v", st)
		}
	}
	if st, _ := Check(context.Background(), ds, "n1", time.Now().Add(TTL+time.Second)); st.Alive {
		t.Error("a report older than the TTL counts as alive")
	}
	if st, _ := Check(context.Background(), ds, "n2", time.Now()); st.Alive || !st.Reported.IsZero() {
		t.Errorf("a node without a report: %+v", st)
	}
	stop()
	<-done
	if _, err := ds.Get(context.Background(), datastore.StatusReportKey("n1")); !errors.Is(err, datastore.ErrNotFound) {
		t.Errorf("after a clean stop: %v", err)
	}
}

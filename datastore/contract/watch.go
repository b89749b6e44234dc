package contract

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/roostnet/roost/datastore"
)

// Recorder consumes a watch the way a careful client does and checks the
// stream's invariants on the way:
//
//   - Added/Modified carry Key, Value (whose key is Key) and Revision > 0;
//     Deleted carries Key and Revision > 0;
//   - outside a relist, change revisions never go down and no (key,
//     revision) pair is delivered twice;
//   - Resync{Relist:true} starts a fresh view that replaces the old one at
//     the next InSync;
//   - Broken carries Key, a *DecodeError for it and Revision > 0, and is
//     part of the view like a value (present and broken); Error has no
//     key.
//
// View is the consumer's picture of the prefix: key -> last event.
type Recorder struct {
	t       testing.TB
	ch      <-chan datastore.Event
	cancel  context.CancelFunc
	timeout time.Duration

	Events    []datastore.Event
	View      map[string]datastore.Event
	Synced    bool
	relisting bool
	pending   map[string]datastore.Event
	lastRev   int64
	seen      map[string]bool // key@rev of changes outside relists
	closed    bool
}

// NewRecorder starts ds.Watch(prefix, rev). seed is what the consumer
// already knows (the listing at rev), nil for rev 0.
func NewRecorder(t testing.TB, ds datastore.Datastore, prefix string, rev int64, seed []datastore.KV, timeout time.Duration) *Recorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r := &Recorder{
		t: t, cancel: cancel, timeout: timeout,
		View: map[string]datastore.Event{}, seen: map[string]bool{}, lastRev: rev,
	}
	if rev == 0 {
		// The initial listing behaves as a relist: key order, not
		// revision order, and it forms the view at InSync.
		r.relisting, r.pending = true, map[string]datastore.Event{}
	}
	for _, kv := range seed {
		r.View[kv.Key] = datastore.Event{Type: datastore.Added, Key: kv.Key, Value: kv.Value, Revision: kv.Revision}
	}
	r.ch = ds.Watch(ctx, prefix, rev)
	return r
}

// Stop cancels the watch.
func (r *Recorder) Stop() { r.cancel() }

// Next returns the next event, failing the test after the timeout or
// when the channel closes.
func (r *Recorder) Next() datastore.Event {
	r.t.Helper()
	ev, ok := r.next(r.timeout)
	if !ok {
		r.t.Fatalf("watch: no event within %s (closed=%v); events so far:\n%s", r.timeout, r.closed, r.Dump())
	}
	return ev
}

func (r *Recorder) next(d time.Duration) (datastore.Event, bool) {
	r.t.Helper()
	if r.closed {
		return datastore.Event{}, false
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case ev, ok := <-r.ch:
		if !ok {
			r.closed = true
			return datastore.Event{}, false
		}
		r.apply(ev)
		return ev, true
	case <-timer.C:
		return datastore.Event{}, false
	}
}

func (r *Recorder) apply(ev datastore.Event) {
	r.t.Helper()
	r.Events = append(r.Events, ev)
	switch ev.Type {
	case datastore.Added, datastore.Modified:
		if ev.Key == "" || ev.Value == nil || ev.Revision <= 0 {
			r.t.Errorf("watch: malformed %s event %s", ev.Type, fmtEvent(ev))
			return
		}
		if k, err := datastore.KeyFor(ev.Value); err != nil || k != ev.Key {
			r.t.Errorf("watch: event key %s but its value belongs at %q (%v)", ev.Key, k, err)
		}
		if r.relisting {
			if ev.Type != datastore.Added {
				r.t.Errorf("watch: %s during a relist (want Added): %s", ev.Type, fmtEvent(ev))
			}
			r.pending[ev.Key] = ev
			return
		}
		r.checkOrder(ev)
		r.View[ev.Key] = ev
	case datastore.Deleted:
		if ev.Key == "" || ev.Revision <= 0 {
			r.t.Errorf("watch: malformed deleted event %s", fmtEvent(ev))
			return
		}
		if r.relisting {
			delete(r.pending, ev.Key)
			return
		}
		r.checkOrder(ev)
		delete(r.View, ev.Key)
	case datastore.Resync:
		r.Synced = false
		if ev.Relist {
			r.relisting = true
			r.pending = map[string]datastore.Event{}
		}
	case datastore.InSync:
		r.Synced = true
		// Every change up to ev.Revision is delivered: later ones come after.
		r.lastRev = max(r.lastRev, ev.Revision)
		if r.relisting {
			r.View, r.pending, r.relisting = r.pending, nil, false
		}
	case datastore.Broken:
		var de *datastore.DecodeError
		if ev.Key == "" || ev.Value != nil || !errors.As(ev.Err, &de) || de.Key != ev.Key || ev.Revision <= 0 {
			r.t.Errorf("watch: malformed broken event %s", fmtEvent(ev))
			return
		}
		if r.relisting {
			r.pending[ev.Key] = ev
			return
		}
		r.checkOrder(ev)
		r.View[ev.Key] = ev
	case datastore.Error:
		if ev.Err == nil || ev.Key != "" {
			r.t.Errorf("watch: malformed error event (want Err and no key): %s", fmtEvent(ev))
		}
	default:
		r.t.Errorf("watch: unknown event type %v", ev.Type)
	}
}

func (r *Recorder) checkOrder(ev datastore.Event) {
	r.t.Helper()
	if ev.Revision < r.lastRev {
		r.t.Errorf("watch: revision went back from %d to %d: %s", r.lastRev, ev.Revision, fmtEvent(ev))
	}
	r.lastRev = ev.Revision
	id := fmt.Sprintf("%s@%d", ev.Key, ev.Revision)
	if r.seen[id] {
		r.t.Errorf("watch: change delivered twice: %s", fmtEvent(ev))
	}
	r.seen[id] = true
}

// WaitSynced reads events until InSync has been seen (and not undone).
func (r *Recorder) WaitSynced() {
	r.t.Helper()
	r.Until("in sync", func() bool { return r.Synced })
}

// Until reads events until cond holds after an event (or holds already).
func (r *Recorder) Until(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(r.timeout)
	for !cond() {
		left := time.Until(deadline)
		if left <= 0 {
			r.t.Fatalf("watch: not %s within %s; events:\n%s", what, r.timeout, r.Dump())
		}
		if _, ok := r.next(left); !ok && r.closed {
			r.t.Fatalf("watch: channel closed before %s; events:\n%s", what, r.Dump())
		}
	}
}

// UntilMatches waits until the view is in sync and equals the store's
// listing of prefix (keys, revisions and values).
func (r *Recorder) UntilMatches(ds datastore.Datastore, prefix string) {
	r.t.Helper()
	var diff string
	r.Until("in sync with the store", func() bool {
		if !r.Synced {
			return false
		}
		diff = r.Diff(ds, prefix)
		return diff == ""
	})
}

// Diff compares the view with the store's listing; "" when equal.
func (r *Recorder) Diff(ds datastore.Datastore, prefix string) string {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	lr, err := ds.List(ctx, prefix)
	if err != nil {
		return "list: " + err.Error()
	}
	var b strings.Builder
	want := map[string]datastore.KV{}
	for _, kv := range lr.KVs {
		want[kv.Key] = kv
		got, ok := r.View[kv.Key]
		switch {
		case !ok:
			fmt.Fprintf(&b, "missing %s@%d\n", kv.Key, kv.Revision)
		case got.Revision != kv.Revision:
			fmt.Fprintf(&b, "%s: view has revision %d, store %d\n", kv.Key, got.Revision, kv.Revision)
		case !sameBytes(got.Value, kv.Value):
			fmt.Fprintf(&b, "%s: values differ\n", kv.Key)
		}
	}
	broken := map[string]*datastore.DecodeError{}
	for _, de := range lr.Invalid {
		broken[de.Key] = de
		got, ok := r.View[de.Key]
		switch {
		case !ok:
			fmt.Fprintf(&b, "missing broken %s@%d\n", de.Key, de.Revision)
		case got.Type != datastore.Broken:
			fmt.Fprintf(&b, "%s: view has a %s event, the store a broken value\n", de.Key, got.Type)
		case got.Revision != de.Revision:
			fmt.Fprintf(&b, "%s: view has broken revision %d, store %d\n", de.Key, got.Revision, de.Revision)
		}
	}
	for k, ev := range r.View {
		if _, ok := want[k]; ok {
			if ev.Type == datastore.Broken {
				fmt.Fprintf(&b, "%s: broken in the view, valid in the store\n", k)
			}
			continue
		}
		if _, ok := broken[k]; !ok {
			fmt.Fprintf(&b, "extra %s\n", k)
		}
	}
	return b.String()
}

// ExpectQuiet fails if a change event (not InSync/Error) arrives within d.
func (r *Recorder) ExpectQuiet(d time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		ev, ok := r.next(left)
		if !ok {
			if r.closed {
				r.t.Fatalf("watch: channel closed unexpectedly")
			}
			return
		}
		switch ev.Type {
		case datastore.InSync, datastore.Error:
		default:
			r.t.Fatalf("watch: unexpected event %s; events:\n%s", fmtEvent(ev), r.Dump())
		}
	}
}

// Changes returns the Added/Modified/Deleted events seen, in order.
func (r *Recorder) Changes() []datastore.Event {
	var out []datastore.Event
	for _, ev := range r.Events {
		switch ev.Type {
		case datastore.Added, datastore.Modified, datastore.Deleted:
			out = append(out, ev)
		}
	}
	return out
}

// Count counts events of a type (and, for Resync, relist flag).
func (r *Recorder) Count(typ datastore.EventType, relist bool) int {
	n := 0
	for _, ev := range r.Events {
		if ev.Type == typ && (typ != datastore.Resync || ev.Relist == relist) {
			n++
		}
	}
	return n
}

// Index returns the position of the first event matching, or -1.
func (r *Recorder) Index(from int, match func(datastore.Event) bool) int {
	for i := from; i < len(r.Events); i++ {
		if match(r.Events[i]) {
			return i
		}
	}
	return -1
}

// Dump prints every event seen, one per line.
func (r *Recorder) Dump() string {
	var b strings.Builder
	for i, ev := range r.Events {
		fmt.Fprintf(&b, "  %3d %s\n", i, fmtEvent(ev))
	}
	keys := make([]string, 0, len(r.View))
	for k := range r.View {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(&b, "  view (synced=%v): %s\n", r.Synced, strings.Join(keys, " "))
	return b.String()
}

func fmtEvent(ev datastore.Event) string {
	s := fmt.Sprintf("%s %s rev=%d", ev.Type, ev.Key, ev.Revision)
	if ev.Type == datastore.Resync {
		s += fmt.Sprintf(" relist=%v", ev.Relist)
	}
	if ev.Err != nil {
		s += " err=" + ev.Err.Error()
	}
	return s
}

// Package runner drives confd: it keeps watches on the datastore prefixes,
// feeds every change to the consumers (BGP model cache, key store), and
// renders when the view is complete and something changed. Renders never
// happen from a partial view, nor while an object is present but broken
// (docs/confd.md, "Broken objects"); bursts coalesce, and a failed render
// is retried with backoff while the last good config stays in place.
package runner

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/confd/render"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/internal/backoff"
)

// Config wires a Runner.
type Config struct {
	Store    datastore.Datastore
	Prefixes []string
	// Apply receives every change (obj nil = deleted), from the runner's
	// goroutine only, so consumers need no locking against renders.
	Apply func(key string, obj api.Resource)
	// Render renders the current state; it is called from the runner's
	// goroutine, so it sees one consistent snapshot.
	Render func(ctx context.Context) (render.Result, error)
	// Retry backoff after a failed render (defaults 500ms .. 30s),
	// jittered (internal/backoff).
	RetryMin, RetryMax time.Duration
	// RenderShare is the CPU budget of renders during sustained churn, a
	// share of one core (default 0.5): a render that cost c — confd's
	// CPU, its check commands' and BIRD's configure round trip — is
	// followed by the next no sooner than c/RenderShare after it started.
	// Below the budget every change renders at once; above it renders
	// coalesce. During a flood of writes (faster than FloodRate per
	// second) renders are also FloodInterval apart, so a burst of 1,000
	// writes costs a handful of renders.
	RenderShare float64
	// MaxReloadRate caps BIRD reconfigures per second (default 20;
	// negative: no cap): after a render that reconfigured BIRD, or tried
	// to, the next starts no sooner than 1/MaxReloadRate after that
	// reconfigure was sent.
	MaxReloadRate float64
	// MinInterval and Quiet, when either is set, replace the budget with
	// a fixed rule: the next render starts MinInterval after the previous
	// one ended (default 100ms), or once no change arrived for Quiet
	// (default 20ms), whichever is first. MaxReloadRate still applies.
	MinInterval time.Duration
	Quiet       time.Duration
	// CPUTime returns the CPU used so far by the process and its waited-for
	// children (default: getrusage); the budget charges its growth over a
	// render. Tests fake it.
	CPUTime  func() time.Duration
	Observer Observer
	Log      logrus.FieldLogger
	// Once makes Run return after the first render, with its error.
	Once bool
}

// Observer hears about what the runner does (metrics, status).
type Observer interface {
	SyncState(inSync bool)
	Event(t datastore.EventType)
	Rendered(res render.Result, err error, took time.Duration)
	// Broken receives the broken objects holding renders (sorted by key)
	// whenever that set changes; empty when renders run again.
	Broken(objs []*datastore.DecodeError)
}

// Status is a snapshot for health endpoints.
type Status struct {
	InSync         bool
	EverInSync     bool
	WatchesRunning int
	LastRender     time.Time
	LastError      error // last render/check/reload error, nil after a success
	LastGoodReload time.Time
	Renders        int
	PendingRetry   bool
	// Events counts datastore events handled; PendingRender says a change
	// is not rendered yet (the view is incomplete or spacing holds it).
	// Both are published after the runner decided what to do with them.
	Events        int
	PendingRender bool
	// OutOfSyncSince is when the view last went out of sync (or the run
	// started); zero while in sync.
	OutOfSyncSince time.Time
	// Broken lists the objects that are present but broken, sorted by
	// key. While there are any, nothing renders: the files (and BIRD)
	// keep the last good configuration.
	Broken []*datastore.DecodeError
}

// Runner is the confd main loop.
type Runner struct {
	cfg     Config
	events  chan tagged
	do      chan func()
	trigger chan struct{}

	mu     sync.Mutex
	status Status
}

type tagged struct {
	watch int
	ev    datastore.Event
}

// New returns a Runner; call Run.
func New(cfg Config) *Runner {
	if cfg.RetryMin == 0 {
		cfg.RetryMin = 500 * time.Millisecond
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 30 * time.Second
	}
	if cfg.CPUTime == nil {
		cfg.CPUTime = processCPU
	}
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	return &Runner{
		cfg:     cfg,
		events:  make(chan tagged, 4096),
		do:      make(chan func(), 16),
		trigger: make(chan struct{}, 1),
	}
}

// Trigger asks for a render (SIGHUP); it never blocks.
func (r *Runner) Trigger() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// Do runs fn on the runner's goroutine and then renders (template edits).
func (r *Runner) Do(ctx context.Context, fn func()) {
	select {
	case r.do <- fn:
	case <-ctx.Done():
	}
}

// Status returns a copy of the current status.
func (r *Runner) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

func (r *Runner) setStatus(f func(*Status)) {
	r.mu.Lock()
	f(&r.status)
	r.mu.Unlock()
}

// watchState tracks one prefix's sync state and, during a relist, which
// keys were seen, so keys that vanished while we were not watching are
// deleted when the relist completes. A broken key counts as present.
type watchState struct {
	prefix string
	inSync bool
	keys   map[string]struct{}
	seen   map[string]struct{} // non-nil during a relist
}

// ErrHeld is wrapped by Run's error with Once when broken objects keep
// the render from running.
var ErrHeld = errors.New("rendering held: objects the configuration depends on are present but broken")

// heldError names the broken objects (the first few) for Once.
func heldError(broken []*datastore.DecodeError) error {
	msgs := make([]string, 0, min(len(broken), 5)+1)
	for _, de := range broken[:min(len(broken), 5)] {
		msgs = append(msgs, de.Error())
	}
	if len(broken) > 5 {
		msgs = append(msgs, fmt.Sprintf("and %d more", len(broken)-5))
	}
	return fmt.Errorf("%w:\n  %s", ErrHeld, strings.Join(msgs, "\n  "))
}

// Run blocks until ctx ends. It returns nil on cancellation.
func (r *Runner) Run(ctx context.Context) error {
	if len(r.cfg.Prefixes) == 0 {
		return errors.New("runner: no prefixes to watch")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watches := make([]*watchState, len(r.cfg.Prefixes))
	var wg sync.WaitGroup
	for i, p := range r.cfg.Prefixes {
		watches[i] = &watchState{prefix: p, keys: map[string]struct{}{}}
		ch := r.cfg.Store.Watch(ctx, p, 0)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for ev := range ch {
				select {
				case r.events <- tagged{i, ev}:
				case <-ctx.Done():
					return
				}
			}
		}(i)
	}
	r.setStatus(func(s *Status) { s.WatchesRunning, s.OutOfSyncSince = len(watches), time.Now() })
	defer func() {
		cancel()
		wg.Wait()
		r.setStatus(func(s *Status) { s.WatchesRunning = 0; s.InSync = false })
	}()

	var (
		dirty    = true // the first complete view always renders
		inSync   = false
		retries  = backoff.New(backoff.Policy{Min: r.cfg.RetryMin, Max: r.cfg.RetryMax})
		retry    *time.Timer
		retryC   <-chan time.Time
		lastSync = false
		events   = 0
		batch    = 0 // changes since the last render started
		// Spacing between renders: hold is armed while a render waits.
		space = newSpacing(r.cfg)
		hold  *time.Timer
		holdC <-chan time.Time
		// resumed: the view just became complete again; render at once.
		resumed bool
		// broken: keys present but broken. Renders wait until there are
		// none (fixed or deleted), keeping the last good configuration.
		broken        = map[string]*datastore.DecodeError{}
		brokenChanged bool
	)
	defer func() {
		for _, t := range []*time.Timer{retry, hold} {
			if t != nil {
				t.Stop()
			}
		}
	}()
	clearBroken := func(key string) {
		if _, ok := broken[key]; ok {
			delete(broken, key)
			brokenChanged = true
			r.cfg.Log.WithField("key", key).Info("Broken datastore object fixed or deleted")
		}
	}
	allInSync := func() bool {
		for _, w := range watches {
			if !w.inSync {
				return false
			}
		}
		return true
	}
	handle := func(t tagged) {
		w, ev := watches[t.watch], t.ev
		events++
		if r.cfg.Observer != nil {
			r.cfg.Observer.Event(ev.Type)
		}
		switch ev.Type {
		case datastore.Added, datastore.Modified:
			w.keys[ev.Key] = struct{}{}
			if w.seen != nil {
				w.seen[ev.Key] = struct{}{}
			}
			clearBroken(ev.Key)
			r.cfg.Apply(ev.Key, ev.Value)
			dirty = true
			batch++
			space.changed(time.Now())
		case datastore.Deleted:
			delete(w.keys, ev.Key)
			clearBroken(ev.Key)
			r.cfg.Apply(ev.Key, nil)
			dirty = true
			batch++
			space.changed(time.Now())
		case datastore.Broken:
			// Present, not deleted: the consumers keep its last good
			// value (if any) and nothing renders until it is fixed.
			w.keys[ev.Key] = struct{}{}
			if w.seen != nil {
				w.seen[ev.Key] = struct{}{}
			}
			var de *datastore.DecodeError
			if !errors.As(ev.Err, &de) {
				de = datastore.NewDecodeError(ev.Key, ev.Revision, ev.Err)
			}
			if old, ok := broken[ev.Key]; !ok || old.Error() != de.Error() {
				broken[ev.Key] = de
				brokenChanged = true
				r.cfg.Log.WithFields(logrus.Fields{"key": ev.Key, "field": de.Field, "value": de.Value}).WithError(de.Err).
					Warn("Datastore object is present but broken; rendering is held at the last good configuration until it is fixed or deleted")
			}
			dirty = true
			batch++
			space.changed(time.Now())
		case datastore.Resync:
			w.inSync = false
			if ev.Relist {
				w.seen = map[string]struct{}{}
			}
			r.cfg.Log.WithFields(logrus.Fields{"prefix": w.prefix, "relist": ev.Relist}).Info("Datastore watch resyncing; rendering paused")
		case datastore.InSync:
			if w.seen != nil {
				for k := range w.keys {
					if _, ok := w.seen[k]; !ok {
						delete(w.keys, k)
						clearBroken(k)
						r.cfg.Apply(k, nil)
						dirty = true
					}
				}
				w.seen = nil
			}
			w.inSync = true
		case datastore.Error:
			r.cfg.Log.WithField("prefix", w.prefix).WithError(ev.Err).
				Warn("Datastore unavailable; the watch keeps retrying and the last configuration stays")
		}
	}

	for {
		select {
		case <-ctx.Done():
			return nil
		case t := <-r.events:
			handle(t)
		case fn := <-r.do:
			fn()
			dirty = true
		case <-r.trigger:
			dirty = true
		case <-retryC:
			retryC = nil
			dirty = true
		case <-holdC:
			holdC = nil
		}
		// Coalesce: take everything already queued before rendering.
	drain:
		for {
			select {
			case t := <-r.events:
				handle(t)
			case fn := <-r.do:
				fn()
				dirty = true
			default:
				break drain
			}
		}
		if brokenChanged {
			brokenChanged = false
			list := sortedBroken(broken)
			r.setStatus(func(s *Status) { s.Broken = list })
			if r.cfg.Observer != nil {
				r.cfg.Observer.Broken(list)
			}
		}
		inSync = allInSync()
		if inSync != lastSync {
			lastSync = inSync
			resumed = inSync
			r.setStatus(func(s *Status) {
				s.InSync = inSync
				s.EverInSync = s.EverInSync || inSync
				s.OutOfSyncSince = time.Time{}
				if !inSync {
					s.OutOfSyncSince = time.Now()
				}
			})
			if r.cfg.Observer != nil {
				r.cfg.Observer.SyncState(inSync)
			}
			r.cfg.Log.WithField("inSync", inSync).Info("Datastore sync state changed")
		}
		if inSync && len(broken) > 0 && r.cfg.Once {
			return heldError(sortedBroken(broken))
		}
		if !inSync || !dirty || len(broken) > 0 || (holdC != nil && !resumed) {
			r.publish(events, dirty)
			continue
		}
		if wait := space.wait(time.Now(), resumed); wait > 0 {
			if hold == nil {
				hold = time.NewTimer(wait)
			} else {
				hold.Reset(wait)
			}
			holdC = hold.C
			r.publish(events, dirty)
			continue
		}
		if hold != nil {
			hold.Stop()
		}
		holdC = nil
		dirty, resumed = false, false
		covered := batch
		batch = 0
		start, cpu0 := time.Now(), r.cfg.CPUTime()
		res, err := r.cfg.Render(ctx)
		end := time.Now()
		took := end.Sub(start)
		// The budget's cost: CPU over the render (capped by what the
		// cores could have done in that time: a child reaped now may
		// have run long before) plus BIRD's configure round trip, which
		// is BIRD's own CPU for it (BIRD is single-threaded).
		cost := min(r.cfg.CPUTime()-cpu0, took*time.Duration(runtime.NumCPU())) + res.Timings.Reload
		// The reconfigure is the render's last stage: it was sent when
		// its round trip began (a failed one: assume at the end).
		var re *render.Error
		switch {
		case res.Reloaded:
			space.rendered(start, end, covered, cost, true, end.Add(-res.Timings.Reload))
		case errors.As(err, &re) && re.Stage == render.StageReload:
			space.rendered(start, end, covered, cost, true, end)
		default:
			space.rendered(start, end, covered, cost, false, time.Time{})
		}
		if ctx.Err() != nil {
			return nil
		}
		if r.cfg.Observer != nil {
			r.cfg.Observer.Rendered(res, err, took)
		}
		if r.cfg.Once {
			return err
		}
		if err != nil {
			wait := retries.Next()
			entry := r.cfg.Log.WithError(err).WithField("retryIn", wait)
			if errors.Is(err, render.ErrDaemonDown) {
				// Expected while BIRD starts or restarts: the checked
				// files are in place and the reload is retried.
				entry.Warn("BIRD not reachable; reload will be retried")
			} else {
				entry.Error("Render failed; keeping the last good configuration")
			}
			if retry == nil {
				retry = time.NewTimer(wait)
			} else {
				retry.Reset(wait)
			}
			retryC = retry.C
		} else {
			retries.Reset()
			if retry != nil {
				retry.Stop()
			}
			retryC = nil
			if len(res.Changed) > 0 {
				r.cfg.Log.WithFields(logrus.Fields{"files": res.Changed, "checked": res.Checked, "reloaded": res.Reloaded, "took": took, "cost": cost}).Info("Configuration updated")
			}
		}
		r.setStatus(func(s *Status) {
			s.Renders++
			s.LastRender = time.Now()
			s.LastError = err
			s.PendingRetry = err != nil
			if err == nil && res.Reloaded {
				s.LastGoodReload = s.LastRender
			}
			s.Events = events
			s.PendingRender = dirty
		})
	}
}

// publish updates the event count and whether a change awaits its render.
func (r *Runner) publish(events int, pending bool) {
	r.setStatus(func(s *Status) { s.Events, s.PendingRender = events, pending })
}

func sortedBroken(m map[string]*datastore.DecodeError) []*datastore.DecodeError {
	out := make([]*datastore.DecodeError, 0, len(m))
	for _, de := range m {
		out = append(out, de)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

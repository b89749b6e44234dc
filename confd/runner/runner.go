// Package runner drives confd: it keeps watches on the datastore prefixes,
// feeds every change to the consumers (BGP model cache, key store), and
// renders when the view is complete and something changed. Renders never
// happen from a partial view, bursts coalesce, and a failed render is
// retried with backoff while the last good config stays in place.
package runner

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/confd/render"
	"github.com/roostnet/roost/datastore"
)

// Defaults of Config.MinInterval and Config.Quiet.
const (
	DefaultMinInterval = 100 * time.Millisecond
	DefaultQuiet       = 20 * time.Millisecond
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
	// Retry backoff after a failed render (defaults 500ms .. 30s).
	RetryMin, RetryMax time.Duration
	// MinInterval spaces renders during sustained churn: the next render
	// starts MinInterval after the end of the previous one (default 100ms;
	// negative: no spacing), or earlier once no change has arrived for
	// Quiet (default 20ms). A change after a quiet spell renders at once;
	// a stream of 1,000 writes over a second costs about ten renders (and
	// BIRD reconfigures) instead of hundreds; and the final state is
	// rendered at most Quiet after the last write (plus a render already
	// under way).
	MinInterval time.Duration
	Quiet       time.Duration
	Observer    Observer
	Log         logrus.FieldLogger
	// Once makes Run return after the first render, with its error.
	Once bool
}

// Observer hears about what the runner does (metrics, status).
type Observer interface {
	SyncState(inSync bool)
	Event(t datastore.EventType)
	Rendered(res render.Result, err error, took time.Duration)
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
	if cfg.MinInterval == 0 {
		cfg.MinInterval = DefaultMinInterval
	}
	if cfg.Quiet <= 0 {
		cfg.Quiet = DefaultQuiet
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

// holdFor says how long a due render waits: none after a quiet spell
// (MinInterval since the last render) or once changes have stopped
// (Quiet since the last one); else until the earlier of the two.
func (r *Runner) holdFor(lastEnd, lastChange time.Time) time.Duration {
	if lastEnd.IsZero() || r.cfg.MinInterval <= 0 {
		return 0
	}
	now := time.Now()
	untilSpaced := r.cfg.MinInterval - now.Sub(lastEnd)
	untilQuiet := r.cfg.Quiet - now.Sub(lastChange)
	if untilSpaced <= 0 || untilQuiet <= 0 {
		return 0
	}
	return min(untilSpaced, untilQuiet)
}

// watchState tracks one prefix's sync state and, during a relist, which
// keys were seen, so keys that vanished while we were not watching are
// deleted when the relist completes.
type watchState struct {
	prefix string
	inSync bool
	keys   map[string]struct{}
	seen   map[string]struct{} // non-nil during a relist
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
	r.setStatus(func(s *Status) { s.WatchesRunning = len(watches) })
	defer func() {
		cancel()
		wg.Wait()
		r.setStatus(func(s *Status) { s.WatchesRunning = 0; s.InSync = false })
	}()

	var (
		dirty    = true // the first complete view always renders
		inSync   = false
		backoff  = time.Duration(0)
		retry    *time.Timer
		retryC   <-chan time.Time
		lastSync = false
		// Spacing between renders (MinInterval, Quiet): hold is armed
		// while a render waits.
		lastEnd, lastChange time.Time
		hold                *time.Timer
		holdC               <-chan time.Time
		// resumed: the view just became complete again; render at once.
		resumed bool
	)
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
		if r.cfg.Observer != nil {
			r.cfg.Observer.Event(ev.Type)
		}
		switch ev.Type {
		case datastore.Added, datastore.Modified:
			w.keys[ev.Key] = struct{}{}
			if w.seen != nil {
				w.seen[ev.Key] = struct{}{}
			}
			r.cfg.Apply(ev.Key, ev.Value)
			dirty = true
			lastChange = time.Now()
		case datastore.Deleted:
			delete(w.keys, ev.Key)
			r.cfg.Apply(ev.Key, nil)
			dirty = true
			lastChange = time.Now()
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
						r.cfg.Apply(k, nil)
						dirty = true
					}
				}
				w.seen = nil
			}
			w.inSync = true
		case datastore.Error:
			r.cfg.Log.WithFields(logrus.Fields{"prefix": w.prefix, "key": ev.Key}).WithError(ev.Err).Warn("Skipping invalid datastore value")
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
		inSync = allInSync()
		if inSync != lastSync {
			lastSync = inSync
			resumed = inSync
			r.setStatus(func(s *Status) {
				s.InSync = inSync
				s.EverInSync = s.EverInSync || inSync
			})
			if r.cfg.Observer != nil {
				r.cfg.Observer.SyncState(inSync)
			}
			r.cfg.Log.WithField("inSync", inSync).Info("Datastore sync state changed")
		}
		if !inSync || !dirty || (holdC != nil && !resumed) {
			continue
		}
		if wait := r.holdFor(lastEnd, lastChange); wait > 0 && !resumed {
			if hold == nil {
				hold = time.NewTimer(wait)
			} else {
				hold.Reset(wait)
			}
			holdC = hold.C
			continue
		}
		dirty, resumed = false, false
		start := time.Now()
		res, err := r.cfg.Render(ctx)
		took := time.Since(start)
		lastEnd = time.Now()
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
			backoff = min(max(backoff*2, r.cfg.RetryMin), r.cfg.RetryMax)
			entry := r.cfg.Log.WithError(err).WithField("retryIn", backoff)
			if errors.Is(err, render.ErrDaemonDown) {
				// Expected while BIRD starts or restarts: the checked
				// files are in place and the reload is retried.
				entry.Warn("BIRD not reachable; reload will be retried")
			} else {
				entry.Error("Render failed; keeping the last good configuration")
			}
			if retry == nil {
				retry = time.NewTimer(backoff)
			} else {
				retry.Reset(backoff)
			}
			retryC = retry.C
		} else {
			backoff = 0
			if retry != nil {
				retry.Stop()
			}
			retryC = nil
			if len(res.Changed) > 0 {
				r.cfg.Log.WithFields(logrus.Fields{"files": res.Changed, "checked": res.Checked, "reloaded": res.Reloaded, "took": took}).Info("Configuration updated")
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
		})
	}
}

package runner

import (
	"syscall"
	"time"
)

// Defaults of the render spacing (see Config).
const (
	// DefaultRenderShare: during sustained churn renders use at most half
	// of one core. At 1,000 nodes a render costs 3-6 ms of CPU (the more,
	// the busier the machine), so confd follows a change every ~10 ms one
	// by one before any change waits.
	DefaultRenderShare = 0.5
	// DefaultMaxReloadRate: BIRD is reconfigured at most 20 times a
	// second, however cheap a reconfigure is.
	DefaultMaxReloadRate = 20.0
	// FloodRate, FloodBatch and FloodInterval: a render that covered at
	// least FloodBatch changes, which arrived faster than FloodRate per
	// second since the previous render started, shows a flood of writes;
	// the next render then also waits until FloodInterval after it
	// started. A flood thus costs about ten renders a second however long
	// it lasts, and its final state is rendered about FloodInterval after
	// the last write. Steady churn below FloodRate never counts as a
	// flood, even when a slow render makes the next one cover several
	// changes, so it cannot lock itself into the flood spacing.
	FloodRate     = 100.0
	FloodBatch    = 4
	FloodInterval = 100 * time.Millisecond
	// DefaultMinInterval and DefaultQuiet are the fixed rule's values
	// when only one of Config.MinInterval and Config.Quiet is set.
	DefaultMinInterval = 100 * time.Millisecond
	DefaultQuiet       = 20 * time.Millisecond
)

// spacing decides when a due render may start. The adaptive rule (the
// default) is a CPU budget: a render that cost c may be followed by the
// next one no sooner than c/share after it started, so renders use at
// most share of one core however fast changes come, and cost no latency
// at all while they stay below it. During a flood of writes (faster than
// FloodRate per second) renders are also FloodInterval apart. The fixed
// rule (an explicit MinInterval or Quiet) replaces both: the next render
// waits until minInterval after the previous one ended, or until no
// change came for quiet, whichever is first.
//
// Under either rule, a render that reconfigured BIRD (or tried to) is
// followed by the next no sooner than 1/maxReloadRate after its
// reconfigure was sent; the next reconfigure is sent later still (after
// templates and check), so reconfigures never exceed that rate.
type spacing struct {
	share       float64
	reloadGap   time.Duration // 0: no cap
	minInterval time.Duration // > 0: the fixed rule
	quiet       time.Duration

	lastStart, lastEnd time.Time
	lastCost           time.Duration
	flood              bool      // the last render covered a flood of writes
	lastReload         time.Time // when the last reconfigure was sent
	lastChange         time.Time
}

func newSpacing(cfg Config) *spacing {
	s := &spacing{share: cfg.RenderShare}
	if s.share <= 0 {
		s.share = DefaultRenderShare
	}
	s.share = min(s.share, 1)
	switch rate := cfg.MaxReloadRate; {
	case rate == 0:
		s.reloadGap = time.Duration(float64(time.Second) / DefaultMaxReloadRate)
	case rate > 0:
		s.reloadGap = time.Duration(float64(time.Second) / rate)
	}
	if cfg.MinInterval > 0 || cfg.Quiet > 0 {
		s.minInterval, s.quiet = cfg.MinInterval, cfg.Quiet
		if s.minInterval <= 0 {
			s.minInterval = DefaultMinInterval
		}
		if s.quiet <= 0 {
			s.quiet = DefaultQuiet
		}
	}
	return s
}

// changed notes a datastore change (the fixed rule's quiet window).
func (s *spacing) changed(now time.Time) { s.lastChange = now }

// rendered records a render: when it ran, how many changes it covered,
// the CPU it cost, and whether it reconfigured BIRD (or tried to), and
// when: reloadAt.
func (s *spacing) rendered(start, end time.Time, batch int, cost time.Duration, reloaded bool, reloadAt time.Time) {
	s.flood = !s.lastStart.IsZero() && batch >= FloodBatch && float64(batch) > FloodRate*start.Sub(s.lastStart).Seconds()
	s.lastStart, s.lastEnd, s.lastCost = start, end, cost
	if reloaded {
		s.lastReload = reloadAt
	}
}

// wait is how long a due render must still wait at now. The first render
// after the view became complete again (resumed) skips the budget but
// not the reload cap.
func (s *spacing) wait(now time.Time, resumed bool) time.Duration {
	var at time.Time // earliest start
	switch {
	case s.lastEnd.IsZero() || resumed:
	case s.minInterval > 0:
		spaced, quiet := s.lastEnd.Add(s.minInterval), s.lastChange.Add(s.quiet)
		at = spaced
		if quiet.Before(spaced) {
			at = quiet
		}
	default:
		at = s.lastStart.Add(time.Duration(float64(s.lastCost) / s.share))
		if f := s.lastStart.Add(FloodInterval); s.flood && f.After(at) {
			at = f
		}
	}
	if s.reloadGap > 0 && !s.lastReload.IsZero() {
		if r := s.lastReload.Add(s.reloadGap); r.After(at) {
			at = r
		}
	}
	return max(at.Sub(now), 0)
}

// processCPU is the CPU time used so far by this process and by its
// children that have been waited for (the check and reload commands).
func processCPU() time.Duration {
	var self, children syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &self) != nil || syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children) != nil {
		return 0
	}
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(children.Utime) + tv(children.Stime)
}

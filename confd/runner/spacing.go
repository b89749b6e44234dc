package runner

import (
	"syscall"
	"time"
)

// Defaults of the render spacing (see Config).
const (
	// DefaultRenderShare: during sustained churn renders use at most a
	// quarter of one core. At 1,000 nodes a render costs ~3 ms of CPU, so
	// confd keeps up with a change every ~12 ms before any change waits.
	DefaultRenderShare = 0.25
	// DefaultMaxReloadRate: BIRD is reconfigured at most 20 times a
	// second, however cheap a reconfigure is.
	DefaultMaxReloadRate = 20.0
	// DefaultMinInterval and DefaultQuiet are the fixed rule's values
	// when only one of Config.MinInterval and Config.Quiet is set.
	DefaultMinInterval = 100 * time.Millisecond
	DefaultQuiet       = 20 * time.Millisecond
)

// spacing decides when a due render may start. The adaptive rule (the
// default) is a CPU budget: a render that cost c may be followed by the
// next one no sooner than c/share after it started, so renders use at
// most share of one core however fast changes come, and cost no latency
// at all while they stay below it. A render that reconfigured BIRD (or
// tried to) is followed by the next no sooner than 1/maxReloadRate after
// it ended, so reconfigures never exceed that rate. The fixed rule (an
// explicit MinInterval or Quiet) replaces the budget: the next render
// waits until minInterval after the previous one ended, or until no
// change came for quiet, whichever is first. The reload cap applies to
// both.
type spacing struct {
	share       float64
	reloadGap   time.Duration // 0: no cap
	minInterval time.Duration // > 0: the fixed rule
	quiet       time.Duration

	lastStart, lastEnd time.Time
	lastCost           time.Duration
	lastReload         time.Time // end of the last render that reconfigured
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

// rendered records a render: when it ran, the CPU it cost, and whether
// it reconfigured BIRD or tried to.
func (s *spacing) rendered(start, end time.Time, cost time.Duration, reloaded bool) {
	s.lastStart, s.lastEnd, s.lastCost = start, end, cost
	if reloaded {
		s.lastReload = end
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

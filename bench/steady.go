package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// steadyRule is a render spacing confd runs with in the steady-churn
// scenario: its default (the adaptive budget) or explicit flags.
type steadyRule struct {
	name string
	args []string
}

var (
	ruleAdaptive = steadyRule{"adaptive (default)", nil}
	// The fixed rule, as the defaults were before the budget.
	ruleFixed = steadyRule{"fixed 100 ms / 20 ms quiet", []string{"--min-render-interval", "100ms", "--render-quiet", "20ms"}}
)

// steadyResult is one steady-churn run.
type steadyResult struct {
	nodes     int
	rule      steadyRule
	withBird  bool
	period    time.Duration
	latencies []time.Duration // write issued -> rendered file shows it
	cpu       time.Duration   // confd's CPU over the window
	childCPU  time.Duration
	window    time.Duration
	renders   int
	reloads   int
	// configures are the `configure` commands BIRD received (proxy stamps).
	configures []time.Time
}

func (r *steadyResult) cpuPerChange() time.Duration {
	return r.cpu / time.Duration(max(len(r.latencies), 1))
}

// minGap is the shortest time between two consecutive configures.
func (r *steadyResult) minGap() time.Duration {
	if len(r.configures) < 2 {
		return 0
	}
	g := time.Duration(1<<63 - 1)
	for i := 1; i < len(r.configures); i++ {
		g = min(g, r.configures[i].Sub(r.configures[i-1]))
	}
	return g
}

// maxPerSecond is the most configures in any one-second window.
func (r *steadyResult) maxPerSecond() int {
	best, j := 0, 0
	for i := range r.configures {
		for r.configures[i].Sub(r.configures[j]) >= time.Second {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// steadyLag is how many rounds of five changes after its add a BGPPeer or
// Node is removed again: far enough apart (0.5 s at a change every 25 ms)
// that no render sees an add and its remove at once, which would hide the
// add.
const steadyLag = 4

// steady measures change latency under sustained churn: changes are
// written on a fixed schedule (one every period, whatever confd does),
// cycling through the same five kinds as the isolated scenario (add a
// global BGPPeer, a Node, a block affinity; remove a peer and a node added
// earlier), and each is timed from its write to the first rendered file
// that shows it.
func (e *env) steady(n, changes int, period time.Duration, rule steadyRule, withBird bool) (*steadyResult, error) {
	if err := e.prepare(n, 4*n); err != nil {
		return nil, err
	}
	r, err := e.start(n, 4, launch{bird: withBird, args: rule.args, proxy: withBird})
	if err != nil {
		return nil, err
	}
	defer r.stop()
	res := &steadyResult{nodes: n, rule: rule, withBird: withBird, period: period}

	// Warm up (not counted) with isolated adds: the first steadyLag
	// rounds' peers, nodes and blocks, which the churn removes later.
	for j := 0; j < 5*steadyLag; j++ {
		if j%5 > 2 {
			continue
		}
		c := r.nthChange(j)
		r.watch.drain("")
		if err := c.put(e.ctx, e.cli); err != nil {
			return nil, err
		}
		if _, err := r.watch.wait(e.ctx, c.file, 30*time.Second, true, c.ok); err != nil {
			return nil, fmt.Errorf("warm-up %s: %w\nconfd log:\n%s", c.kind, err, r.confd.Log())
		}
		time.Sleep(e.opt.gap)
	}
	// Let anything pending (a held render, a reload) finish.
	time.Sleep(500 * time.Millisecond)
	r.watch.drain("")

	type pending struct {
		c      change
		issued time.Time
		dep    int // index of the change that must show first, or -1
		done   bool
	}
	all := make([]*pending, changes)
	for i := range all {
		j := 5*steadyLag + i
		c, dep := r.nthChange(j), -1
		if k := j % 5; k > 2 {
			// Remove the peer or node added steadyLag rounds ago, after
			// its add has shown (when the add was part of the churn).
			c = r.nthChange(j - 5*steadyLag)
			dep = i - 5*steadyLag - 3
		}
		all[i] = &pending{c: c, dep: max(dep, -1)}
	}
	m0, err := scrape(e.ctx, r.confd.Metrics())
	if err != nil {
		return nil, err
	}
	cpu0, _ := cpuTime(r.confd.Pid())
	ch0, _ := childCPUTime(r.confd.Pid())
	w0 := time.Now()

	// The writer: one change every period on a fixed schedule. A change
	// is announced before it is written, so its render cannot be missed.
	issued := make(chan int, changes)
	werr := make(chan error, 1)
	go func() {
		defer close(issued)
		for i, p := range all {
			if d := time.Until(w0.Add(time.Duration(i) * period)); d > 0 {
				time.Sleep(d)
			}
			p.issued = time.Now()
			issued <- i
			if err := p.c.put(e.ctx, e.cli); err != nil {
				werr <- err
				return
			}
		}
	}()
	var open []int // announced, not yet shown
	left := changes
	timeout := time.NewTimer(time.Duration(changes)*period + 60*time.Second)
	defer timeout.Stop()
	for left > 0 {
		select {
		case <-e.ctx.Done():
			return nil, e.ctx.Err()
		case err := <-werr:
			return nil, err
		case <-timeout.C:
			return nil, fmt.Errorf("steady churn: %d of %d changes never showed\nconfd log:\n%s", left, changes, r.confd.Log())
		case i, ok := <-issued:
			if !ok {
				issued = nil
				continue
			}
			open = append(open, i)
		case ev := <-r.watch.events:
			var b []byte
			keep := open[:0]
			for _, i := range open {
				p := all[i]
				if p.c.file != ev.name || ev.at.Before(p.issued) || (p.dep >= 0 && !all[p.dep].done) {
					keep = append(keep, i)
					continue
				}
				if b == nil {
					if b, err = os.ReadFile(filepath.Join(r.out, ev.name)); err != nil {
						return nil, err
					}
				}
				if !p.c.ok(b) {
					keep = append(keep, i)
					continue
				}
				p.done = true
				left--
				res.latencies = append(res.latencies, ev.at.Sub(p.issued))
			}
			open = keep
		}
	}
	cpu1, _ := cpuTime(r.confd.Pid())
	ch1, _ := childCPUTime(r.confd.Pid())
	res.window = time.Since(w0)
	res.cpu, res.childCPU = cpu1-cpu0, ch1-ch0
	if withBird {
		// The last render's reload may still be under way.
		time.Sleep(500 * time.Millisecond)
	}
	m1, err := scrape(e.ctx, r.confd.Metrics())
	if err != nil {
		return nil, err
	}
	res.renders = int(renders(m1) - renders(m0))
	res.reloads = int(reloads(m1) - reloads(m0))
	if r.proxy != nil {
		res.configures = r.proxy.since(w0)
	}
	return res, nil
}

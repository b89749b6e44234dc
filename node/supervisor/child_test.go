package supervisor

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

// starts records when a child was started, from the supervisor's log.
type recorder struct {
	mu     sync.Mutex
	starts []time.Time
	pids   []int
}

func (r *recorder) Fire(e *logrus.Entry) error {
	if e.Message == "started" {
		r.mu.Lock()
		r.starts = append(r.starts, e.Time)
		if pid, ok := e.Data["pid"].(int); ok {
			r.pids = append(r.pids, pid)
		}
		r.mu.Unlock()
	}
	return nil
}
func (r *recorder) Levels() []logrus.Level { return logrus.AllLevels }
func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.starts)
}

func shSpec(name, script string) Spec {
	return Spec{Name: name, Path: "/bin/sh", Args: func(bool) ([]string, error) { return []string{"-c", script}, nil }}
}

func newTestLogger() (*logrus.Logger, *test.Hook, *recorder) {
	l, hook := test.NewNullLogger()
	l.SetLevel(logrus.DebugLevel)
	rec := &recorder{}
	l.AddHook(rec)
	return l, hook, rec
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func alive(pid int) bool {
	// A zombie is dead for our purpose; /proc/<pid>/stat says "Z".
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// A child that keeps failing is restarted with doubling delays up to the
// maximum; the restarts are counted and the exits logged.
func TestRestartBackoff(t *testing.T) {
	l, hook, rec := newTestLogger()
	spec := shSpec("failing", "echo 'level=warning msg=\"about to fail\"'; exit 3")
	spec.BackoffMin, spec.BackoffMax = 50*time.Millisecond, 200*time.Millisecond
	obs := &countObs{}
	c := StartChild(spec, l, obs)
	defer c.Stop()
	waitFor(t, "6 starts", 10*time.Second, func() bool { return rec.count() >= 6 })
	c.Stop()
	rec.mu.Lock()
	starts := append([]time.Time(nil), rec.starts...)
	rec.mu.Unlock()
	want := []time.Duration{50, 100, 200, 200, 200}
	for i, w := range want {
		gap := starts[i+1].Sub(starts[i])
		w *= time.Millisecond
		if gap < w || gap > w+400*time.Millisecond {
			t.Errorf("restart %d after %v, want about %v", i+1, gap, w)
		}
	}
	if st := c.Status(); st.Restarts < 5 || st.Running {
		t.Errorf("status %+v", st)
	}
	if obs.restarts() < 5 {
		t.Errorf("observer saw %d restarts", obs.restarts())
	}
	var exits, forwarded int
	for _, e := range hook.AllEntries() {
		if e.Message == "exited unexpectedly" && e.Data["exit"] == "exit status 3" && e.Data["component"] == "failing" {
			exits++
		}
		if e.Message == "about to fail" && e.Level == logrus.WarnLevel && e.Data["component"] == "failing" {
			forwarded++
		}
	}
	if exits < 5 || forwarded < 5 {
		t.Errorf("logged %d exits and %d forwarded lines", exits, forwarded)
	}
}

// With BackoffJitter the restart delays vary below their ceiling, so hosts
// recovering from one outage do not restart their children in lockstep.
func TestRestartBackoffJitter(t *testing.T) {
	l, hook, rec := newTestLogger()
	spec := shSpec("jittered", "exit 3")
	spec.BackoffMin, spec.BackoffMax, spec.BackoffJitter = 40*time.Millisecond, 40*time.Millisecond, 0.5
	c := StartChild(spec, l, nil)
	defer c.Stop()
	waitFor(t, "6 starts", 10*time.Second, func() bool { return rec.count() >= 6 })
	c.Stop()
	seen := map[string]bool{}
	for _, e := range hook.AllEntries() {
		v, ok := e.Data["retry_in"].(string)
		if !ok || e.Data["component"] != "jittered" {
			continue
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < 20*time.Millisecond || d > 40*time.Millisecond {
			t.Errorf("delay %q outside [20ms, 40ms]", v)
		}
		seen[v] = true
	}
	if len(seen) < 2 {
		t.Errorf("restart delays %v: not jittered", seen)
	}
}

type countObs struct {
	mu sync.Mutex
	n  int
	up map[string]bool
}

func (o *countObs) ChildUp(name string, up bool) {
	o.mu.Lock()
	if o.up == nil {
		o.up = map[string]bool{}
	}
	o.up[name] = up
	o.mu.Unlock()
}
func (o *countObs) ChildRestarted(string) { o.mu.Lock(); o.n++; o.mu.Unlock() }
func (o *countObs) restarts() int         { o.mu.Lock(); defer o.mu.Unlock(); return o.n }

// A child that ran for the stable period restarts after the shortest delay.
func TestBackoffResetsAfterStableRun(t *testing.T) {
	l, _, rec := newTestLogger()
	spec := shSpec("flaky", "sleep 0.15; exit 1")
	spec.BackoffMin, spec.BackoffMax, spec.StableAfter = 50*time.Millisecond, 5*time.Second, 100*time.Millisecond
	c := StartChild(spec, l, nil)
	defer c.Stop()
	waitFor(t, "4 starts", 10*time.Second, func() bool { return rec.count() >= 4 })
	c.Stop()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for i := 1; i < 4; i++ {
		// 150 ms run + 50 ms delay; without the reset the third would wait 200 ms.
		if gap := rec.starts[i].Sub(rec.starts[i-1]); gap > 450*time.Millisecond {
			t.Errorf("start %d came %v after the previous one", i, gap)
		}
	}
}

// Stop sends the stop signal, and removes the whole process group: a
// grandchild left behind is killed too.
func TestStopRemovesProcessGroup(t *testing.T) {
	l, hook, _ := newTestLogger()
	spec := shSpec("parent", "sleep 300 & echo grandchild=$!; wait")
	c := StartChild(spec, l, nil)
	if err := c.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	var grandchild int
	waitFor(t, "the grandchild's pid", 5*time.Second, func() bool {
		for _, e := range hook.AllEntries() {
			if v, ok := strings.CutPrefix(e.Message, "grandchild="); ok {
				grandchild, _ = strconv.Atoi(v)
			}
		}
		return grandchild > 0
	})
	pid := c.Status().PID
	if !alive(pid) || !alive(grandchild) {
		t.Fatalf("processes not running: %d %d", pid, grandchild)
	}
	c.Stop()
	if alive(pid) || alive(grandchild) {
		t.Fatalf("left running: child %v, grandchild %v", alive(pid), alive(grandchild))
	}
	if st := c.Status(); st.Running || st.Ready {
		t.Errorf("status %+v", st)
	}
	c.Stop() // idempotent
}

// A child that ignores SIGTERM is killed after the stop timeout.
func TestStopTimeoutKills(t *testing.T) {
	l, hook, _ := newTestLogger()
	spec := shSpec("stubborn", `trap "" TERM; echo trapped; while :; do sleep 0.05; done`)
	spec.StopTimeout = 300 * time.Millisecond
	c := StartChild(spec, l, nil)
	waitFor(t, "the trap", 5*time.Second, func() bool {
		for _, e := range hook.AllEntries() {
			if e.Message == "trapped" {
				return true
			}
		}
		return false
	})
	pid := c.Status().PID
	start := time.Now()
	c.Stop()
	took := time.Since(start)
	if took < 300*time.Millisecond || took > 3*time.Second {
		t.Errorf("stop took %v", took)
	}
	if alive(pid) {
		t.Fatal("still running")
	}
	if st := c.Status(); !strings.Contains(st.LastExit, "SIGKILL") {
		t.Errorf("last exit %q", st.LastExit)
	}
}

// Ready gates WaitReady and is retried after each start; OnReady runs each
// time with restart set after the first; a custom Stop is used.
func TestReadyAndCustomStop(t *testing.T) {
	l, _, _ := newTestLogger()
	dir := t.TempDir()
	flag := dir + "/ready"
	spec := shSpec("gated", "touch "+flag+"; exec sleep 300")
	var mu sync.Mutex
	var readies []bool
	spec.Ready = func(ctx context.Context, pid int) error {
		for {
			if _, err := os.Stat(flag); err == nil {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	spec.OnReady = func(restart bool) { mu.Lock(); readies = append(readies, restart); mu.Unlock() }
	stopped := make(chan int, 1)
	spec.Stop = func(pid int) error { stopped <- pid; return syscall.Kill(pid, syscall.SIGINT) }
	spec.BackoffMin = 20 * time.Millisecond
	c := StartChild(spec, l, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	first := c.Status().PID
	os.Remove(flag)
	syscall.Kill(first, syscall.SIGKILL)
	waitFor(t, "the restart to be ready", 5*time.Second, func() bool {
		st := c.Status()
		return st.PID != first && st.Ready
	})
	c.Stop()
	mu.Lock()
	defer mu.Unlock()
	if len(readies) != 2 || readies[0] || !readies[1] {
		t.Errorf("OnReady calls %v", readies)
	}
	select {
	case pid := <-stopped:
		if pid == first {
			t.Error("Stop called for the dead process")
		}
	default:
		t.Error("custom Stop not called")
	}
	if c.WaitReady(context.Background()) != nil {
		t.Error("WaitReady after a successful start must succeed")
	}
}

// WaitReady gives up with the context, and reports a child stopped first.
func TestWaitReadyEnds(t *testing.T) {
	l, _, _ := newTestLogger()
	spec := shSpec("never", "exec sleep 300")
	spec.Ready = func(ctx context.Context, int int) error { <-ctx.Done(); return ctx.Err() }
	c := StartChild(spec, l, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.WaitReady(ctx); err == nil {
		t.Fatal("ready")
	}
	c.Stop()
	if err := c.WaitReady(context.Background()); err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("after stop: %v", err)
	}
}

// An executable that cannot start is retried (and logged), not fatal.
func TestStartFailureRetried(t *testing.T) {
	l, hook, _ := newTestLogger()
	spec := Spec{Name: "missing", Path: "/nonexistent/roost-test-binary", Args: func(bool) ([]string, error) { return nil, nil },
		BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond}
	c := StartChild(spec, l, nil)
	waitFor(t, "retries", 5*time.Second, func() bool { return c.Status().Restarts >= 3 })
	c.Stop()
	n := 0
	for _, e := range hook.AllEntries() {
		if e.Message == "could not start" {
			n++
		}
	}
	if n < 3 {
		t.Errorf("%d start failures logged", n)
	}
}

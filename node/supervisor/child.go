// Package supervisor runs BIRD 2 and confd beside roost-node's agent, the
// way calico-node's image runs bird and confd under runit: ordered start
// (the agent registers the node, confd renders, BIRD starts on the rendered
// configuration), restart with exponential backoff when a child dies, child
// output forwarded into roost-node's log with a component field, BIRD
// readiness (socket answers, BGP sessions Established) and an ordered,
// complete shutdown. It also holds the checks of `roost-node health`.
package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/roostnet/roost/internal/backoff"
)

// Spec describes one supervised child process.
type Spec struct {
	Name string   // component name: "bird", "confd"
	Path string   // executable
	Env  []string // complete environment (nil: roost-node's)
	// Args returns the arguments for a start; restart is false for the
	// first start and true for every later one.
	Args func(restart bool) ([]string, error)
	// Ready blocks until the started child is usable (nil: at once). Its
	// context ends when the child exits or is being stopped.
	Ready func(ctx context.Context, pid int) error
	// OnReady runs each time Ready succeeded (restart as for Args).
	OnReady func(restart bool)
	// Stop asks the child to stop (nil: SIGTERM). The supervisor waits
	// StopTimeout for the exit, then kills the process group.
	Stop        func(pid int) error
	StopTimeout time.Duration
	// Restart backoff: the first restart waits BackoffMin, each further
	// failure doubles the delay up to BackoffMax; a child that ran for
	// StableAfter starts again from BackoffMin.
	BackoffMin, BackoffMax, StableAfter time.Duration
	// BackoffJitter is the share of each delay drawn at random below it
	// (backoff.Policy.Jitter); 0 keeps the delays exact.
	BackoffJitter float64
}

// Observer is told about child lifecycle events (metrics).
type Observer interface {
	ChildUp(name string, up bool)
	ChildRestarted(name string)
}

type nopObserver struct{}

func (nopObserver) ChildUp(string, bool)  {}
func (nopObserver) ChildRestarted(string) {}

// ChildStatus is a child's state for /readyz and logs.
type ChildStatus struct {
	Name     string    `json:"name"`
	PID      int       `json:"pid,omitempty"`
	Running  bool      `json:"running"`
	Ready    bool      `json:"ready"`
	Restarts int       `json:"restarts"`
	Since    time.Time `json:"since,omitzero"`
	LastExit string    `json:"lastExit,omitempty"`
}

// Child is a supervised process.
type Child struct {
	spec Spec
	log  *logrus.Entry
	obs  Observer

	mu         sync.Mutex
	st         ChildStatus
	firstReady chan struct{}
	readyOnce  sync.Once

	stopReq  chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

// StartChild starts the child and supervises it until Stop. It returns at
// once; WaitReady waits for the first successful start.
func StartChild(spec Spec, log logrus.FieldLogger, obs Observer) *Child {
	if spec.BackoffMin <= 0 {
		spec.BackoffMin = time.Second
	}
	if spec.BackoffMax < spec.BackoffMin {
		spec.BackoffMax = spec.BackoffMin
	}
	if spec.StopTimeout <= 0 {
		spec.StopTimeout = 10 * time.Second
	}
	if obs == nil {
		obs = nopObserver{}
	}
	c := &Child{spec: spec, log: log.WithField("component", spec.Name), obs: obs,
		st: ChildStatus{Name: spec.Name}, firstReady: make(chan struct{}),
		stopReq: make(chan struct{}), done: make(chan struct{})}
	go c.loop()
	return c
}

// WaitReady returns once the child has been started and found ready, or
// with an error when ctx ends or the child is stopped first.
func (c *Child) WaitReady(ctx context.Context) error {
	select {
	case <-c.firstReady:
		return nil
	default:
	}
	select {
	case <-c.firstReady:
		return nil
	case <-c.done:
		return fmt.Errorf("%s stopped before it was ready", c.spec.Name)
	case <-ctx.Done():
		return fmt.Errorf("waiting for %s: %w", c.spec.Name, context.Cause(ctx))
	}
}

// Stop stops the child (Spec.Stop, then SIGKILL to its process group after
// StopTimeout) and ends supervision. It returns when the process is gone.
func (c *Child) Stop() {
	c.stopOnce.Do(func() { close(c.stopReq) })
	<-c.done
}

// Status reports the child's state.
func (c *Child) Status() ChildStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}

// Signal sends sig to the running child (not to its process group).
func (c *Child) Signal(sig syscall.Signal) error {
	c.mu.Lock()
	pid, running := c.st.PID, c.st.Running
	c.mu.Unlock()
	if !running {
		return fmt.Errorf("%s is not running", c.spec.Name)
	}
	return syscall.Kill(pid, sig)
}

func (c *Child) update(f func(*ChildStatus)) {
	c.mu.Lock()
	f(&c.st)
	c.mu.Unlock()
}

// proc is one started process.
type proc struct {
	cmd    *exec.Cmd
	pid    int
	start  time.Time
	exited chan struct{} // closed once reaped; err holds Wait's result
	err    error
}

func (c *Child) loop() {
	defer close(c.done)
	jitter := c.spec.BackoffJitter
	if jitter <= 0 {
		jitter = -1 // exact delays
	}
	bo := backoff.New(backoff.Policy{Min: c.spec.BackoffMin, Max: c.spec.BackoffMax, Jitter: jitter})
	for n := 0; ; n++ {
		restart := n > 0
		p, err := c.start(restart)
		if err != nil {
			c.log.WithError(err).Error("could not start")
		} else {
			readyCtx, cancelReady := context.WithCancel(context.Background())
			go c.watchReady(readyCtx, p, restart)
			select {
			case <-p.exited:
				cancelReady()
				up := time.Since(p.start)
				c.exited(p, up)
				if up >= c.spec.StableAfter && c.spec.StableAfter > 0 {
					bo.Reset()
				}
			case <-c.stopReq:
				cancelReady()
				c.stop(p)
				return
			}
		}
		delay := bo.Next()
		c.log.WithField("retry_in", delay.String()).Warn("restarting after backoff")
		select {
		case <-time.After(delay):
		case <-c.stopReq:
			c.log.Info("stopped (was waiting to restart)")
			return
		}
		c.obs.ChildRestarted(c.spec.Name)
		c.update(func(s *ChildStatus) { s.Restarts++ })
	}
}

func (c *Child) start(restart bool) (*proc, error) {
	args, err := c.spec.Args(restart)
	if err != nil {
		return nil, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(c.spec.Path, args...)
	cmd.Env = c.spec.Env
	cmd.Stdout, cmd.Stderr = pw, pw
	// Own process group: a terminal's Ctrl-C reaches roost-node only, which
	// stops the children in order; and the group can be killed as a whole
	// (confd runs `bird -p` checks as its own children). Pdeathsig: a
	// killed roost-node leaves nothing behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = onSpawnThread(cmd.Start)
	pw.Close()
	if err != nil {
		pr.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, pid: cmd.Process.Pid, start: time.Now(), exited: make(chan struct{})}
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		forward(pr, c.log)
	}()
	go func() {
		p.err = cmd.Wait()
		// Whatever the child left in its group (confd's `bird -p` checks, a
		// shell's background jobs) goes with it; then the pipe closes.
		killGroup(p.pid)
		select {
		case <-logDone:
		case <-time.After(2 * time.Second):
		}
		pr.Close()
		close(p.exited)
	}()
	c.update(func(s *ChildStatus) { s.PID, s.Running, s.Ready, s.Since = p.pid, true, false, p.start })
	c.obs.ChildUp(c.spec.Name, true)
	c.log.WithFields(logrus.Fields{"pid": p.pid, "cmd": c.spec.Path, "args": args}).Info("started")
	return p, nil
}

func (c *Child) watchReady(ctx context.Context, p *proc, restart bool) {
	if c.spec.Ready != nil {
		if err := c.spec.Ready(ctx, p.pid); err != nil {
			if ctx.Err() == nil {
				c.log.WithError(err).Warn("not ready")
			}
			return
		}
	}
	if ctx.Err() != nil {
		return
	}
	// OnReady first: what it resets must not be read as the new child's.
	if c.spec.OnReady != nil {
		c.spec.OnReady(restart)
	}
	c.update(func(s *ChildStatus) { s.Ready = true })
	c.log.WithFields(logrus.Fields{"pid": p.pid, "after": time.Since(p.start).Round(time.Millisecond).String()}).Info("ready")
	c.readyOnce.Do(func() { close(c.firstReady) })
}

// exited records an unexpected exit and removes what the child left.
func (c *Child) exited(p *proc, up time.Duration) {
	waitGroupGone(p.pid, 2*time.Second)
	reason := exitReason(p.err)
	c.update(func(s *ChildStatus) { s.Running, s.Ready, s.LastExit = false, false, reason })
	c.obs.ChildUp(c.spec.Name, false)
	c.log.WithFields(logrus.Fields{"pid": p.pid, "exit": reason, "uptime": up.Round(time.Millisecond).String()}).Error("exited unexpectedly")
}

// stop ends a running child: Spec.Stop, then SIGKILL after StopTimeout.
func (c *Child) stop(p *proc) {
	c.log.WithField("pid", p.pid).Info("stopping")
	var err error
	if c.spec.Stop != nil {
		err = c.spec.Stop(p.pid)
	} else {
		err = syscall.Kill(p.pid, syscall.SIGTERM)
	}
	if err != nil {
		c.log.WithError(err).Warn("stop request failed; sending SIGTERM")
		_ = syscall.Kill(p.pid, syscall.SIGTERM)
	}
	select {
	case <-p.exited:
	case <-time.After(c.spec.StopTimeout):
		c.log.WithField("timeout", c.spec.StopTimeout.String()).Warn("did not stop in time; sending SIGKILL")
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		<-p.exited
	}
	waitGroupGone(p.pid, 2*time.Second)
	reason := exitReason(p.err)
	c.update(func(s *ChildStatus) { s.Running, s.Ready, s.LastExit = false, false, reason })
	c.obs.ChildUp(c.spec.Name, false)
	c.log.WithFields(logrus.Fields{"pid": p.pid, "exit": reason}).Info("stopped")
}

// killGroup kills whatever is left in the child's process group.
func killGroup(pgid int) {
	if pgid > 1 {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
}

// waitGroupGone waits until no live (non-zombie) process is left in the
// process group, killing it again meanwhile.
func waitGroupGone(pgid int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for len(groupMembers(pgid)) > 0 && time.Now().Before(deadline) {
		killGroup(pgid)
		time.Sleep(10 * time.Millisecond)
	}
}

// groupMembers lists the live processes of a process group, from /proc.
func groupMembers(pgid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may contain spaces.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, err := strconv.Atoi(f[2]); err == nil && g == pgid {
			pids = append(pids, pid)
		}
	}
	return pids
}

func exitReason(err error) string {
	if err == nil {
		return "exit status 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by " + unix.SignalName(ws.Signal())
		}
	}
	return err.Error()
}

// Children are started from one OS thread that never exits: Pdeathsig
// fires when the thread that forked a child ends, and the Go runtime may
// end threads (e.g. after a namespace switch on a locked thread).
var (
	spawnOnce sync.Once
	spawnCh   chan func()
)

func onSpawnThread(f func() error) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for fn := range spawnCh {
				fn()
			}
		}()
	})
	res := make(chan error, 1)
	spawnCh <- func() { res <- f() }
	return <-res
}

// forward copies a child's output into log, one entry per line.
func forward(r io.Reader, log *logrus.Entry) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		logLine(log, sc.Text())
	}
}

// Package lab builds a multi-host Roost lab on one machine: hosts are
// network namespaces on one L2 segment (a bridge in a "switch" namespace),
// etcd runs in the switch namespace, and each host runs BIRD 2 and confd
// (and roost-node) exactly as on a real host. Everything it creates is
// removed by Close, also after failures, in reverse order of creation.
package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options shape a lab.
type Options struct {
	Name    string // short prefix for namespaces (default "rl<pid>")
	Hosts   int
	Subnet  string // host segment, default 10.99.0.0/24; hosts get .11, .12, ...
	BinDir  string // where confd, birdctl, roost-node live (default ./bin)
	Dir     string // working directory; default a new temp dir
	KeepDir bool   // leave Dir on Close (logs)
	// Detach lets processes outlive this program (make demo KEEP=1);
	// Teardown removes such a lab later.
	Detach bool
	Log    func(format string, args ...any)
}

// Lab is a running lab.
type Lab struct {
	Opts     Options
	Dir      string
	Switch   string // switch namespace
	EtcdURL  string
	Hosts    []*Host
	subnet   netip.Prefix
	mu       sync.Mutex
	cleanups []func()
	procs    []*Proc
}

// Host is one lab host.
type Host struct {
	Name   string // node name, e.g. host1
	NS     string // network namespace
	IP     netip.Addr
	Prefix netip.Prefix // IP with the segment's prefix length
	Dir    string       // per-host files: bird config, socket, logs
	lab    *Lab
}

// BirdDir is where confd writes the host's BIRD config.
func (h *Host) BirdDir() string { return filepath.Join(h.Dir, "bird") }

// Socket is the host's BIRD control socket.
func (h *Host) Socket() string { return filepath.Join(h.Dir, "bird.ctl") }

// New creates the switch namespace with etcd and the hosts' namespaces.
func New(ctx context.Context, o Options) (l *Lab, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the lab needs root (network namespaces)")
	}
	for _, bin := range []string{"ip", "bird", "etcd"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("the lab needs %s in PATH (run `make deps`)", bin)
		}
	}
	if o.Name == "" {
		o.Name = fmt.Sprintf("rl%d", os.Getpid()%100000)
	}
	if o.Subnet == "" {
		o.Subnet = "10.99.0.0/24"
	}
	if o.BinDir == "" {
		o.BinDir = "bin"
	}
	if abs, err := filepath.Abs(o.BinDir); err == nil {
		o.BinDir = abs
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	subnet, err := netip.ParsePrefix(o.Subnet)
	if err != nil {
		return nil, fmt.Errorf("subnet: %w", err)
	}
	l = &Lab{Opts: o, subnet: subnet.Masked()}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	if o.Dir != "" {
		l.Dir = o.Dir
		if err := os.MkdirAll(l.Dir, 0o755); err != nil {
			return nil, err
		}
	} else {
		d, err := os.MkdirTemp("", "roost-lab-")
		if err != nil {
			return nil, err
		}
		l.Dir = d
		if !o.KeepDir {
			l.defer_(func() { os.RemoveAll(d) })
		}
	}
	// The switch: a namespace with a bridge, and etcd on the segment.
	l.Switch = o.Name + "-sw"
	if err := l.addNS(l.Switch); err != nil {
		return nil, err
	}
	swIP := l.addr(254)
	if err := l.run(ctx, "ip", "-n", l.Switch, "link", "add", "br0", "type", "bridge"); err != nil {
		return nil, err
	}
	for _, args := range [][]string{
		{"-n", l.Switch, "link", "set", "lo", "up"},
		{"-n", l.Switch, "link", "set", "br0", "up"},
		{"-n", l.Switch, "addr", "add", fmt.Sprintf("%s/%d", swIP, l.subnet.Bits()), "dev", "br0"},
	} {
		if err := l.run(ctx, "ip", args...); err != nil {
			return nil, err
		}
	}
	for i := 1; i <= o.Hosts; i++ {
		if _, err := l.AddHost(ctx, fmt.Sprintf("host%d", i)); err != nil {
			return nil, err
		}
	}
	if err := l.startEtcd(ctx, swIP); err != nil {
		return nil, err
	}
	return l, nil
}

// addr is the subnet's address with the given last byte.
func (l *Lab) addr(last int) netip.Addr {
	a := l.subnet.Addr().As4()
	a[3] = byte(last)
	return netip.AddrFrom4(a)
}

// AddHost creates one more host namespace on the segment.
func (l *Lab) AddHost(ctx context.Context, name string) (*Host, error) {
	idx := len(l.Hosts) + 1
	h := &Host{Name: name, NS: fmt.Sprintf("%s-h%d", l.Opts.Name, idx), IP: l.addr(10 + idx), lab: l}
	h.Prefix = netip.PrefixFrom(h.IP, l.subnet.Bits())
	h.Dir = filepath.Join(l.Dir, name)
	if err := os.MkdirAll(h.BirdDir(), 0o755); err != nil {
		return nil, err
	}
	if err := l.addNS(h.NS); err != nil {
		return nil, err
	}
	vh, vs := fmt.Sprintf("%sh%d", l.Opts.Name, idx), fmt.Sprintf("%ss%d", l.Opts.Name, idx)
	steps := [][]string{
		{"link", "add", vh, "type", "veth", "peer", "name", vs},
		{"link", "set", vh, "netns", h.NS, "name", "eth0"},
		{"link", "set", vs, "netns", l.Switch},
		{"-n", l.Switch, "link", "set", vs, "master", "br0", "up"},
		{"-n", h.NS, "link", "set", "lo", "up"},
		{"-n", h.NS, "link", "set", "eth0", "up"},
		{"-n", h.NS, "addr", "add", h.Prefix.String(), "dev", "eth0"},
		// Like a real host, a default route (to the switch namespace,
		// which forwards nothing further).
		{"-n", h.NS, "route", "add", "default", "via", l.addr(254).String()},
	}
	for _, s := range steps {
		if err := l.run(ctx, "ip", s...); err != nil {
			return nil, err
		}
	}
	// Workloads need forwarding; keep the hosts' kernels alike.
	if err := l.run(ctx, "ip", "netns", "exec", h.NS, "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
		return nil, err
	}
	l.Hosts = append(l.Hosts, h)
	return h, nil
}

func (l *Lab) addNS(name string) error {
	// A namespace left over by a killed run of the same name goes first.
	_ = exec.Command("ip", "netns", "del", name).Run()
	if err := l.run(context.Background(), "ip", "netns", "add", name); err != nil {
		return err
	}
	l.defer_(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	return nil
}

func (l *Lab) startEtcd(ctx context.Context, ip netip.Addr) error {
	url := fmt.Sprintf("http://%s:2379", ip)
	peer := fmt.Sprintf("http://127.0.0.1:2380")
	p, err := l.Start(ctx, l.Switch, "etcd", "etcd",
		"--name", "lab", "--data-dir", filepath.Join(l.Dir, "etcd"),
		"--listen-client-urls", url, "--advertise-client-urls", url,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "lab="+peer, "--heartbeat-interval", "10", "--election-timeout", "100")
	if err != nil {
		return err
	}
	l.EtcdURL = url
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", l.Switch, "etcdctl", "--endpoints", url, "endpoint", "health").CombinedOutput()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || p.Exited() {
			return fmt.Errorf("etcd did not become healthy: %s\n%s", bytes.TrimSpace(out), p.Tail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// run runs a command and returns its output in the error on failure.
func (l *Lab) run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// Exec runs a command inside a namespace and returns its output.
func (l *Lab) Exec(ctx context.Context, ns string, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s (in %s): %w: %s", name, strings.Join(args, " "), ns, err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// defer_ registers a cleanup; cleanups run in reverse order on Close.
func (l *Lab) defer_(f func()) {
	l.mu.Lock()
	l.cleanups = append(l.cleanups, f)
	l.mu.Unlock()
}

// Close stops every process and removes namespaces and files. It is safe
// to call more than once.
func (l *Lab) Close() {
	l.mu.Lock()
	procs := l.procs
	l.procs = nil
	cleanups := l.cleanups
	l.cleanups = nil
	l.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop()
	}
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
}

// Proc is a process the lab started.
type Proc struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
}

// Start runs a long-lived process in namespace ns (root namespace when ns
// is ""), logging to <Dir>/<name>.log. It is stopped by Close.
func (l *Lab) Start(ctx context.Context, ns, name, bin string, args ...string) (*Proc, error) {
	return l.StartEnv(ctx, ns, name, nil, bin, args...)
}

// StartEnv is Start with extra environment variables.
func (l *Lab) StartEnv(ctx context.Context, ns, name string, env []string, bin string, args ...string) (*Proc, error) {
	logPath := filepath.Join(l.Dir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	argv := append([]string{bin}, args...)
	if ns != "" {
		argv = append([]string{"ip", "netns", "exec", ns}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if !l.Opts.Detach {
		// Nothing outlives the lab, even if this program is killed.
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Proc{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	l.Opts.Log("started %s (pid %d)", name, cmd.Process.Pid)
	return p, nil
}

// DumpLogs writes the last lines of every process's log, for failures.
func (l *Lab) DumpLogs(w io.Writer, lines int) {
	l.mu.Lock()
	procs := append([]*Proc(nil), l.procs...)
	l.mu.Unlock()
	for _, p := range procs {
		state := "running"
		if p.Exited() {
			state = fmt.Sprintf("exited: %v", p.err)
		}
		fmt.Fprintf(w, "--- %s (%s), last %d lines of %s\n%s\n", p.Name, state, lines, p.LogPath, p.Tail(lines))
	}
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process group.
func (p *Proc) Signal(sig syscall.Signal) {
	if p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	}
}

// Stop sends SIGTERM, then SIGKILL after 5s, to the whole process group.
func (p *Proc) Stop() {
	if p.Exited() {
		return
	}
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// Tail returns the last n lines of the process's log.
func (p *Proc) Tail(n int) string {
	b, _ := os.ReadFile(p.LogPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Teardown removes a detached lab: it kills every process in the lab's
// namespaces (name prefix), deletes the namespaces and the directory.
func Teardown(name, dir string) error {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return fmt.Errorf("ip netns list: %w", err)
	}
	var errs []error
	for _, line := range strings.Split(string(out), "\n") {
		ns, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if ns == "" || !strings.HasPrefix(ns, name+"-") {
			continue
		}
		pids, _ := exec.Command("ip", "netns", "pids", ns).Output()
		for _, p := range strings.Fields(string(pids)) {
			var pid int
			if _, err := fmt.Sscan(p, &pid); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if err := exec.Command("ip", "netns", "del", ns).Run(); err != nil {
			errs = append(errs, fmt.Errorf("deleting %s: %w", ns, err))
		}
	}
	if dir != "" {
		errs = append(errs, os.RemoveAll(dir))
	}
	return errors.Join(errs...)
}

// Package lab builds a multi-host Roost lab on one machine: hosts are
// network namespaces on L2 segments (bridges in a "switch" namespace),
// etcd runs in the switch namespace on the first segment, and each host
// runs BIRD 2 and confd (and roost-node) exactly as on a real host. With
// more than one segment, a router namespace forwards between them (hosts
// then sit on separate L3 subnets, as CrossSubnet needs). Everything it
// creates is removed by Close, also after failures, in reverse order of
// creation.
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
	Name   string // short prefix for namespaces (default "rl<pid>")
	Hosts  int
	Subnet string // host segment, default 10.99.0.0/24; hosts get .11, .12, ...
	// Segments, when set, replaces Subnet with several host segments
	// (IPv4 /24 or larger, e.g. 10.99.0.0/24 and 10.99.1.0/24), each a
	// bridge of its own. A router namespace <Name>-rt holds .1 on every
	// segment and forwards between them; hosts' default routes point at
	// it. etcd (.254) sits on the first segment.
	Segments []string
	// Segment picks the segment (index into Segments) of the i-th host
	// (0-based) that New creates; default: hosts split in order into
	// equal groups (3 hosts on 2 segments: host1, host2 | host3).
	Segment func(i int) int
	// IPv6 gives every segment an IPv6 /64 too (fd00:99:<segment>::/64;
	// hosts get ::<same last byte as IPv4>, the router ::1) and starts the
	// nodes with IP6 set: dual-stack hosts.
	IPv6    bool
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
	Switch   string // switch namespace (bridges, etcd)
	Router   string // router namespace; "" with a single segment
	EtcdURL  string
	Hosts    []*Host
	Segments []*Segment
	machines int // namespaces attached so far (hosts and others): address and name index
	mu       sync.Mutex
	cleanups []func()
	procs    []*Proc
}

// Segment is one L2 segment: a bridge in the switch namespace.
type Segment struct {
	Index   int
	Prefix  netip.Prefix // e.g. 10.99.0.0/24
	Prefix6 netip.Prefix // fd00:99:<index>::/64 with Options.IPv6
	Bridge  string       // bridge name in the switch namespace
	Gateway netip.Addr   // hosts' default route: the router (.1), or the switch (.254) with one segment
}

// Addr is the segment's address with the given last byte.
func (s *Segment) Addr(last int) netip.Addr {
	a := s.Prefix.Addr().As4()
	a[3] = byte(last)
	return netip.AddrFrom4(a)
}

// Addr6 is the segment's IPv6 address ending in last (invalid without
// IPv6).
func (s *Segment) Addr6(last int) netip.Addr {
	if !s.Prefix6.IsValid() {
		return netip.Addr{}
	}
	a := s.Prefix6.Addr().As16()
	a[15] = byte(last)
	return netip.AddrFrom16(a)
}

// Host is one lab host (or, from AddMachine, another namespace on a
// segment).
type Host struct {
	Name    string // node name, e.g. host1
	NS      string // network namespace
	IP      netip.Addr
	Prefix  netip.Prefix // IP with the segment's prefix length
	IP6     netip.Addr   // with Options.IPv6
	Prefix6 netip.Prefix // IP6/64
	Segment *Segment
	Dir     string // per-host files: bird config, socket, logs
	lab     *Lab

	mu     sync.Mutex
	agents []*Proc // roost-node, confd, BIRD: stopped by StopAgents
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
	if len(o.Segments) == 0 {
		o.Segments = []string{o.Subnet}
	}
	l = &Lab{Opts: o}
	for i, sn := range o.Segments {
		p, err := netip.ParsePrefix(sn)
		if err != nil || !p.Addr().Is4() || p.Bits() > 24 {
			return nil, fmt.Errorf("segment %q: want an IPv4 prefix of /24 or larger", sn)
		}
		sg := &Segment{Index: i, Prefix: p.Masked(), Bridge: fmt.Sprintf("br%d", i)}
		if o.IPv6 {
			sg.Prefix6 = netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 0, 0x99, 0, byte(i)}), 64)
		}
		l.Segments = append(l.Segments, sg)
	}
	if o.Segment == nil {
		n, hosts := len(l.Segments), max(o.Hosts, 1)
		o.Segment = func(i int) int { return i * n / hosts }
		l.Opts.Segment = o.Segment
	}
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
	// The switch: a namespace with a bridge per segment, and etcd on the
	// first segment.
	l.Switch = o.Name + "-sw"
	if err := l.addNS(l.Switch); err != nil {
		return nil, err
	}
	seg0 := l.Segments[0]
	swIP := seg0.Addr(254)
	if err := l.run(ctx, "ip", "-n", l.Switch, "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	for _, sg := range l.Segments {
		for _, args := range [][]string{
			{"-n", l.Switch, "link", "add", sg.Bridge, "type", "bridge"},
			{"-n", l.Switch, "link", "set", sg.Bridge, "up"},
		} {
			if err := l.run(ctx, "ip", args...); err != nil {
				return nil, err
			}
		}
	}
	if err := l.run(ctx, "ip", "-n", l.Switch, "addr", "add", fmt.Sprintf("%s/%d", swIP, seg0.Prefix.Bits()), "dev", seg0.Bridge); err != nil {
		return nil, err
	}
	if len(l.Segments) == 1 {
		seg0.Gateway = swIP
	} else if err := l.addRouter(ctx); err != nil {
		return nil, err
	}
	for i := 0; i < o.Hosts; i++ {
		sg := o.Segment(i)
		if sg < 0 || sg >= len(l.Segments) {
			return nil, fmt.Errorf("Segment(%d) = %d: the lab has %d segments", i, sg, len(l.Segments))
		}
		if _, err := l.AddHostOn(ctx, fmt.Sprintf("host%d", i+1), sg); err != nil {
			return nil, err
		}
	}
	if err := l.startEtcd(ctx, swIP); err != nil {
		return nil, err
	}
	return l, nil
}

// addRouter creates the router namespace: one leg with address .1 on
// every segment, forwarding on. The switch namespace (etcd) routes the
// other segments through it.
func (l *Lab) addRouter(ctx context.Context) error {
	l.Router = l.Opts.Name + "-rt"
	if err := l.addNS(l.Router); err != nil {
		return err
	}
	if err := l.run(ctx, "ip", "-n", l.Router, "link", "set", "lo", "up"); err != nil {
		return err
	}
	for _, sg := range l.Segments {
		sg.Gateway = sg.Addr(1)
		vr, vs := fmt.Sprintf("%sr%d", l.Opts.Name, sg.Index), fmt.Sprintf("%sR%d", l.Opts.Name, sg.Index)
		dev := fmt.Sprintf("eth%d", sg.Index)
		if err := l.plug(ctx, l.Router, dev, vr, vs, sg, netip.PrefixFrom(sg.Gateway, sg.Prefix.Bits())); err != nil {
			return err
		}
		if err := l.addAddr6(ctx, l.Router, dev, sg, 1); err != nil {
			return err
		}
	}
	if err := l.run(ctx, "ip", "netns", "exec", l.Router, "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
		return err
	}
	if l.Opts.IPv6 {
		if err := l.run(ctx, "ip", "netns", "exec", l.Router, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"); err != nil {
			return err
		}
	}
	for _, sg := range l.Segments[1:] {
		if err := l.run(ctx, "ip", "-n", l.Switch, "route", "add", sg.Prefix.String(), "via", l.Segments[0].Gateway.String()); err != nil {
			return err
		}
	}
	return nil
}

// plug connects namespace ns to segment sg with a veth (dev inside ns)
// holding addr. vh and vs are the temporary and switch-side names,
// unique per lab.
func (l *Lab) plug(ctx context.Context, ns, dev, vh, vs string, sg *Segment, addr netip.Prefix) error {
	steps := [][]string{
		{"link", "add", vh, "type", "veth", "peer", "name", vs},
		{"link", "set", vh, "netns", ns, "name", dev},
		{"link", "set", vs, "netns", l.Switch},
		{"-n", l.Switch, "link", "set", vs, "master", sg.Bridge, "up"},
		{"-n", ns, "link", "set", dev, "up"},
		{"-n", ns, "addr", "add", addr.String(), "dev", dev},
	}
	for _, s := range steps {
		if err := l.run(ctx, "ip", s...); err != nil {
			return err
		}
	}
	return nil
}

// addAddr6 gives dev in ns the segment's IPv6 address ending in last
// (nothing without IPv6); no duplicate address detection, so it is usable
// at once.
func (l *Lab) addAddr6(ctx context.Context, ns, dev string, sg *Segment, last int) error {
	if !sg.Prefix6.IsValid() {
		return nil
	}
	p := netip.PrefixFrom(sg.Addr6(last), sg.Prefix6.Bits())
	return l.run(ctx, "ip", "-n", ns, "addr", "add", p.String(), "dev", dev, "nodad")
}

// AddHost creates one more host namespace on the first segment.
func (l *Lab) AddHost(ctx context.Context, name string) (*Host, error) {
	return l.AddHostOn(ctx, name, 0)
}

// AddHostOn creates one more host namespace on segment seg and lists it
// in l.Hosts.
func (l *Lab) AddHostOn(ctx context.Context, name string, seg int) (*Host, error) {
	h, err := l.AddMachine(ctx, name, seg)
	if err != nil {
		return nil, err
	}
	l.Hosts = append(l.Hosts, h)
	return h, nil
}

// AddMachine creates a namespace on segment seg that is not one of the
// lab's Roost hosts (not listed in l.Hosts), e.g. an external BGP router
// a test configures itself. It has eth0 with the next free address, a
// default route to the segment's gateway, forwarding on, and a directory.
func (l *Lab) AddMachine(ctx context.Context, name string, seg int) (*Host, error) {
	if seg < 0 || seg >= len(l.Segments) {
		return nil, fmt.Errorf("%s: no segment %d", name, seg)
	}
	sg := l.Segments[seg]
	l.mu.Lock()
	l.machines++
	idx := l.machines
	l.mu.Unlock()
	if 10+idx >= 250 {
		return nil, fmt.Errorf("%s: the lab is full", name)
	}
	h := &Host{Name: name, NS: fmt.Sprintf("%s-h%d", l.Opts.Name, idx), IP: sg.Addr(10 + idx), Segment: sg, lab: l}
	h.Prefix = netip.PrefixFrom(h.IP, sg.Prefix.Bits())
	if sg.Prefix6.IsValid() {
		h.IP6 = sg.Addr6(10 + idx)
		h.Prefix6 = netip.PrefixFrom(h.IP6, sg.Prefix6.Bits())
	}
	h.Dir = filepath.Join(l.Dir, name)
	if err := os.MkdirAll(h.BirdDir(), 0o755); err != nil {
		return nil, err
	}
	if err := l.addNS(h.NS); err != nil {
		return nil, err
	}
	vh, vs := fmt.Sprintf("%sh%d", l.Opts.Name, idx), fmt.Sprintf("%ss%d", l.Opts.Name, idx)
	if err := l.plug(ctx, h.NS, "eth0", vh, vs, sg, h.Prefix); err != nil {
		return nil, err
	}
	steps := [][]string{
		{"-n", h.NS, "link", "set", "lo", "up"},
		// Like a real host, a default route: to the router between the
		// segments, or to the switch namespace (which forwards nothing
		// further) when there is one segment.
		{"-n", h.NS, "route", "add", "default", "via", sg.Gateway.String()},
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
	if h.IP6.IsValid() {
		if err := l.addAddr6(ctx, h.NS, "eth0", sg, 10+idx); err != nil {
			return nil, err
		}
		if l.Router != "" {
			if err := l.run(ctx, "ip", "-n", h.NS, "-6", "route", "add", "default", "via", sg.Addr6(1).String()); err != nil {
				return nil, err
			}
		}
		if err := l.run(ctx, "ip", "netns", "exec", h.NS, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"); err != nil {
			return nil, err
		}
	}
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
	peer := "http://127.0.0.1:2380"
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

// Close stops every process and removes namespaces and files, in reverse
// order of creation: workloads are detached while their host's agents
// and etcd still run, processes stop before their namespaces go. It is
// safe to call more than once.
func (l *Lab) Close() {
	l.mu.Lock()
	cleanups := l.cleanups
	l.cleanups = nil
	l.mu.Unlock()
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
	l.defer_(p.Stop)
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

// Pid is the process id (`ip netns exec` execs the program: it is the
// program's).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

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
	removePodmanLeftovers(name)
	if dir != "" {
		UnmountUnder(dir)
		errs = append(errs, os.RemoveAll(dir))
	}
	return errors.Join(errs...)
}

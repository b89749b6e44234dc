package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/vishvananda/netlink"

	"github.com/roostnet/roost/tests/lab"
)

// The CNI scenario: the plugin's ADD and DEL as a runtime calls them,
// through libcni (what podman, containerd and CRI-O use), without the
// runtime itself. One lab host (a network namespace running `roost-node
// run --with-bird --with-confd` against one etcd) with the plugin
// installed by `roost-node install-cni`; every container is a network
// namespace of its own. Phases:
//
//  1. sequential: containers added one at a time until the host has n
//     (each ADD timed), then n ADD/DEL pairs of one more container on the
//     full host, then the n removed one at a time (each DEL timed);
//  2. concurrent: n ADDs started at once on the empty host (every one
//     must succeed, with distinct addresses), then n DELs at once.

// cniResult holds the scenario's figures.
type cniResult struct {
	n                   int
	version, delNone    []time.Duration // VERSION (process start); DEL of a container never added
	fillAdd, fullAdd    []time.Duration // ADDs while filling to n; ADDs on the full host
	fullDel, drainDel   []time.Duration // DELs on the full host; DELs while draining
	concAdd, concDel    []time.Duration // each call's latency in the concurrent phase
	concAddWall         time.Duration   // first ADD started → last ADD done
	concDelWall         time.Duration
	concFailed          int
	concDistinct        int // distinct addresses after the concurrent ADDs
	leftVeths           int // cali* devices on the host after the DELs (want 0)
	err                 error
	machine             machine
	start               time.Time
	took                time.Duration
	loadBefore, loadAft string
}

// cniBench runs the scenario with n containers.
func cniBench(ctx context.Context, work string, n int, logf func(string, ...any)) *cniResult {
	r := &cniResult{n: n, start: time.Now(), loadBefore: loadavg()}
	r.err = r.run(ctx, work, logf)
	r.took = time.Since(r.start)
	r.loadAft = loadavg()
	return r
}

func (r *cniResult) run(ctx context.Context, work string, logf func(string, ...any)) error {
	bin, err := filepath.Abs("bin")
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(bin, "roost-cni")); err != nil {
		return fmt.Errorf("%w (run `make build`)", err)
	}
	name := fmt.Sprintf("bcn%d", os.Getpid()%100000)
	l, err := lab.New(ctx, lab.Options{Name: name, Hosts: 1, BinDir: bin, Dir: filepath.Join(work, "cni-lab"), Log: func(string, ...any) {}})
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer l.Close()
	h := l.Hosts[0]
	if err := l.Apply(ctx, lab.ClusterYAML(lab.Pool{Name: "bench-pool", CIDR: "10.210.0.0/16"})); err != nil {
		return err
	}
	if err := l.StartHosts(ctx, l.Hosts); err != nil {
		return err
	}
	for deadline := time.Now().Add(time.Minute); ; {
		if _, err := os.Stat(h.MTUFile()); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("roost-node wrote no MTU file")
		}
		time.Sleep(100 * time.Millisecond)
	}
	cni, err := l.NewCNI(ctx, h, "ROOST_CNI_LOG_LEVEL=warning")
	if err != nil {
		return err
	}

	// Containers: network namespaces named <lab>-c<i>, removed at the end.
	total := 2*r.n + 1
	var nsMu sync.Mutex
	var created []string
	defer func() {
		for _, ns := range created {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	}()
	mkns := func(i int) (string, error) {
		ns := fmt.Sprintf("%s-c%d", name, i)
		_ = exec.Command("ip", "netns", "del", ns).Run()
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			return "", fmt.Errorf("ip netns add %s: %v: %s", ns, err, out)
		}
		nsMu.Lock()
		created = append(created, ns)
		nsMu.Unlock()
		return ns, nil
	}
	rts := make([]*libcni.RuntimeConf, total)
	for i := range total {
		ns, err := mkns(i)
		if err != nil {
			return err
		}
		rts[i] = &libcni.RuntimeConf{ContainerID: fmt.Sprintf("bench%06d%s", i, strings.Repeat("0", 58)), NetNS: "/var/run/netns/" + ns, IfName: "eth0"}
	}
	// The plugin runs where the runtime runs: in the host's namespace
	// (libcni forks it from this OS thread).
	call := func(add bool, rt *libcni.RuntimeConf) (time.Duration, string, error) {
		start := time.Now()
		if add {
			ip, err := cni.Add(ctx, rt)
			return time.Since(start), ip, err
		}
		err := cni.Del(ctx, rt)
		return time.Since(start), "", err
	}

	// What every call pays before doing its work: starting the plugin
	// (VERSION), and that plus its configuration, the datastore
	// connection and the lookups that find nothing (DEL of a container
	// that was never added, no network namespace).
	logf("cni: 50 VERSION calls and 50 DELs of unknown containers")
	for i := range 50 {
		start := time.Now()
		if _, err := cni.Config.GetVersionInfo(ctx, "roost"); err != nil {
			return fmt.Errorf("VERSION: %w", err)
		}
		r.version = append(r.version, time.Since(start))
		d, _, err := call(false, &libcni.RuntimeConf{ContainerID: fmt.Sprintf("unknown%06d", i), IfName: "eth0"})
		if err != nil {
			return fmt.Errorf("DEL of an unknown container: %w", err)
		}
		r.delNone = append(r.delNone, d)
	}

	logf("cni: %d ADDs, one at a time", r.n)
	for i := range r.n {
		d, _, err := call(true, rts[i])
		if err != nil {
			return fmt.Errorf("ADD %d: %w", i, err)
		}
		r.fillAdd = append(r.fillAdd, d)
	}
	logf("cni: %d ADD/DEL pairs on the full host", r.n)
	extra := rts[r.n]
	for range r.n {
		d, _, err := call(true, extra)
		if err != nil {
			return fmt.Errorf("ADD on the full host: %w", err)
		}
		r.fullAdd = append(r.fullAdd, d)
		if d, _, err = call(false, extra); err != nil {
			return fmt.Errorf("DEL on the full host: %w", err)
		}
		r.fullDel = append(r.fullDel, d)
	}
	logf("cni: %d DELs, one at a time", r.n)
	for i := range r.n {
		d, _, err := call(false, rts[i])
		if err != nil {
			return fmt.Errorf("DEL %d: %w", i, err)
		}
		r.drainDel = append(r.drainDel, d)
	}

	logf("cni: %d ADDs at once", r.n)
	conc := rts[r.n+1:]
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		ips  = map[string]bool{}
		errs []string
	)
	start := time.Now()
	for _, rt := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, ip, err := call(true, rt)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				r.concFailed++
				errs = append(errs, err.Error())
				return
			}
			r.concAdd = append(r.concAdd, d)
			ips[ip] = true
		}()
	}
	wg.Wait()
	r.concAddWall = time.Since(start)
	r.concDistinct = len(ips)
	logf("cni: %d DELs at once", r.n)
	start = time.Now()
	for _, rt := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, _, err := call(false, rt)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, "DEL: "+err.Error())
				return
			}
			r.concDel = append(r.concDel, d)
		}()
	}
	wg.Wait()
	r.concDelWall = time.Since(start)
	_ = lab.InNS(h.NS, func() error {
		links, err := netlink.LinkList()
		for _, l := range links {
			if strings.HasPrefix(l.Attrs().Name, "cali") {
				r.leftVeths++
			}
		}
		return err
	})
	if len(errs) > 0 {
		return fmt.Errorf("%d concurrent calls failed, first: %s", len(errs), errs[0])
	}
	if r.concDistinct != r.n {
		return fmt.Errorf("%d concurrent ADDs gave %d distinct addresses", r.n, r.concDistinct)
	}
	if r.leftVeths != 0 {
		return fmt.Errorf("%d cali* devices left on the host after every DEL", r.leftVeths)
	}
	return nil
}

func (r *cniResult) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := r.machine
	p("### Run\n\n| | |\n|---|---|\n")
	p("| machine | %s, %d cores, Linux %s |\n", m.cpu, m.cores, m.kernel)
	p("| software | %s, BIRD %s |\n", m.goVersion, m.bird)
	p("| commit | `%s` |\n", m.commit)
	p("| date | %s (measured %s) |\n", r.start.UTC().Format("2006-01-02 15:04 UTC"), r.took.Round(time.Second))
	p("| load average (1/5/15 min) | before %s, after %s |\n\n", r.loadBefore, r.loadAft)
	if r.err != nil {
		p("**The scenario failed:** %s\n\n", strings.ReplaceAll(r.err.Error(), "\n", " "))
	}
	p("### ADD and DEL through libcni\n\n")
	p("One lab host (`roost-node run --with-bird --with-confd`, etcd in the lab), the plugin installed by `roost-node install-cni`, each container a network namespace; the calls go through libcni as a runtime makes them (plugin process start included, the runtime's own work excluded). IPv4 pool, blocks of 64.\n\n")
	p("| phase | calls | p50 | p99 | max | target |\n|---|---:|---:|---:|---:|---|\n")
	row := func(name string, ds []time.Duration, target time.Duration) {
		if len(ds) == 0 {
			return
		}
		t := ""
		if target > 0 {
			t = fmt.Sprintf("p50 ≤ %s %s", ms(target), mark(pct(ds, 50) <= target))
		}
		p("| %s | %d | %s | %s | %s | %s |\n", name, len(ds), ms(pct(ds, 50)), ms(pct(ds, 99)), ms(pct(ds, 100)), t)
	}
	row("VERSION (starting the plugin)", r.version, 0)
	row("DEL of a container never added (fixed cost of a call)", r.delNone, 0)
	row(fmt.Sprintf("ADD, host filling 0 → %d containers", r.n), r.fillAdd, 50*time.Millisecond)
	row(fmt.Sprintf("ADD on a host with %d containers", r.n), r.fullAdd, 50*time.Millisecond)
	row(fmt.Sprintf("DEL on a host with %d containers", r.n), r.fullDel, 30*time.Millisecond)
	row(fmt.Sprintf("DEL, host draining %d → 0", r.n), r.drainDel, 30*time.Millisecond)
	row(fmt.Sprintf("ADD, %d started at once", r.n), r.concAdd, 0)
	row(fmt.Sprintf("DEL, %d started at once", r.n), r.concDel, 0)
	p("\n| concurrent ADDs | failed | distinct addresses | all done after | DELs all done after | cali* devices left | target |\n|---:|---:|---:|---:|---:|---:|---|\n")
	ok := r.concFailed == 0 && r.concDistinct == r.n && len(r.concAdd) == r.n
	p("| %d | %d | %d | %s | %s | %d | no failed ADD %s |\n\n", r.n, r.concFailed, r.concDistinct, ms(r.concAddWall), ms(r.concDelWall), r.leftVeths, mark(ok))
	return b.String()
}

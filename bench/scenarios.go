package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// env is what every scenario shares: one etcd for the whole run (wiped
// between scenarios), a work directory on disk, the settings.
type env struct {
	ctx  context.Context
	cli  *clientv3.Client
	etcd string
	work string
	opt  options
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// prepare empties etcd and loads an n-node cluster.
func (e *env) prepare(nodes, affinities int) error {
	if err := wipe(e.ctx, e.cli); err != nil {
		return err
	}
	return load(e.ctx, e.cli, clusterKVs(nodes, affinities))
}

// running is confd (and BIRD) up on a rendered cluster.
type running struct {
	confd  confd
	bird   *birdProc
	proxy  *birdProxy // between confd and BIRD, when asked for
	watch  *fileWatch
	out    string
	nodes  int // nodes in the cluster (this one included)
	peers  int // global peers
	blocks int // this node's blocks
	// birdStart: exec of BIRD -> its control socket answers.
	birdStart time.Duration
}

func (r *running) stop() {
	if r.watch != nil {
		r.watch.Close()
	}
	if r.confd != nil {
		r.confd.Stop()
	}
	if r.bird != nil {
		r.bird.Stop()
	}
	if r.proxy != nil {
		r.proxy.Close()
	}
}

// launch says how to run confd: with BIRD or --sync-only, extra flags,
// and whether its `configure` commands go through a recording proxy.
type launch struct {
	bird  bool
	args  []string
	proxy bool
}

func countSessions(b []byte) int { return bytes.Count(b, []byte("\nprotocol bgp ")) }

// start runs confd on the loaded cluster; with l.bird, also BIRD on the
// rendered config, and waits until confd has reloaded it.
func (e *env) start(nodes, blocks int, l launch) (*running, error) {
	withBird := l.bird
	dir, err := os.MkdirTemp(e.work, "run-")
	if err != nil {
		return nil, err
	}
	r := &running{out: filepath.Join(dir, "out"), nodes: nodes, peers: 2, blocks: blocks}
	if err := os.MkdirAll(r.out, 0o755); err != nil {
		return nil, err
	}
	if r.watch, err = watchDir(r.out); err != nil {
		return nil, err
	}
	o := confdOpts{bin: e.opt.confdBin, etcd: e.etcd, outDir: r.out, syncOnly: !withBird, socket: filepath.Join(dir, "bird.ctl"), logDir: dir, extra: append(append([]string(nil), e.opt.confdArgs...), l.args...)}
	if withBird && l.proxy {
		o.socket = filepath.Join(dir, "proxy.ctl")
		if r.proxy, err = startBirdProxy(o.socket, filepath.Join(dir, "bird.ctl")); err != nil {
			r.stop()
			return nil, err
		}
	}
	if r.confd, err = launchConfd(o, e.opt.inproc); err != nil {
		r.stop()
		return nil, err
	}
	want := nodes - 1 + r.peers
	if _, err := r.watch.wait(e.ctx, "peers.cfg", 60*time.Second, true, func(b []byte) bool { return countSessions(b) == want }); err != nil {
		log := r.confd.Log()
		r.stop()
		return nil, fmt.Errorf("first config: %w\nconfd log:\n%s", err, log)
	}
	if withBird {
		t0 := time.Now()
		if r.bird, err = startBird(dir, filepath.Join(r.out, "bird.cfg")); err != nil {
			r.stop()
			return nil, err
		}
		r.birdStart = time.Since(t0)
		// confd's first reload failed (BIRD was not up) and is retried.
		deadline := time.Now().Add(30 * time.Second)
		for {
			m, err := scrape(e.ctx, r.confd.Metrics())
			if err == nil && reloads(m) >= 1 {
				break
			}
			if time.Now().After(deadline) {
				log := r.confd.Log()
				r.stop()
				return nil, fmt.Errorf("confd never reloaded BIRD: %v\nconfd log:\n%s", err, log)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return r, nil
}

// change is one datastore write and what the rendered files show after it.
type change struct {
	kind string
	file string
	put  func(ctx context.Context, cli *clientv3.Client) error
	ok   func([]byte) bool
}

func contains(s string) func([]byte) bool {
	return func(b []byte) bool { return bytes.Contains(b, []byte(s)) }
}

func lacks(s string) func([]byte) bool {
	return func(b []byte) bool { return !bytes.Contains(b, []byte(s)) }
}

func putKV(e kv) func(ctx context.Context, cli *clientv3.Client) error {
	return func(ctx context.Context, cli *clientv3.Client) error {
		_, err := cli.Put(ctx, e.key, e.val)
		return err
	}
}

func delKey(key string) func(ctx context.Context, cli *clientv3.Client) error {
	return func(ctx context.Context, cli *clientv3.Client) error {
		_, err := cli.Delete(ctx, key)
		return err
	}
}

// nthChange cycles through the five kinds of change: add a global BGPPeer,
// add a Node, add a block affinity of this node, remove the peer, remove
// the node. Each round leaves the mesh as it was (plus one block).
func (r *running) nthChange(j int) change {
	round := j / 5
	switch j % 5 {
	case 0:
		p := newPeer(round)
		return change{"BGPPeer add", "peers.cfg", putKV(mustEncode(p)), contains("protocol bgp " + sessionName("Global", peerIP(round)) + " from")}
	case 1:
		i := r.nodes + round
		return change{"Node add", "peers.cfg", putKV(mustEncode(newNode(i, 0))), contains("protocol bgp " + sessionName("Mesh", nodeIP(i)) + " from")}
	case 2:
		c := extraBlock(round)
		return change{"affinity add", "bird_aggr.cfg", putKV(mustEncode(newAffinity(thisNode, c))), contains("route " + c.String() + " blackhole;")}
	case 3:
		p := mustEncode(newPeer(round))
		return change{"BGPPeer remove", "peers.cfg", delKey(p.key), lacks("protocol bgp " + sessionName("Global", peerIP(round)) + " from")}
	default:
		i := r.nodes + round
		n := mustEncode(newNode(i, 0))
		return change{"Node remove", "peers.cfg", delKey(n.key), lacks("protocol bgp " + sessionName("Mesh", nodeIP(i)) + " from")}
	}
}

// sample is one measured change.
type sample struct {
	kind    string
	latency time.Duration // etcd write issued -> rendered file shows it
	put     time.Duration // etcd write round trip
	stages  map[string]time.Duration
	renders int
	birdCPU time.Duration
}

// latencyResult is one size of the change-latency scenario.
type latencyResult struct {
	nodes    int
	withBird bool
	changes  int
	samples  []sample
	cpu      time.Duration // confd CPU over the measured changes
	childCPU time.Duration // its children's (the checks)
	// scrapeCPU is what the harness's metric scrapes cost confd during
	// the window (already subtracted from cpu).
	scrapeCPU time.Duration
	window    time.Duration
	renders   int
	hwmKB     int64
	rssKB     int64
	bytes     int // rendered set size
	birdRSS   int64
	birdHWM   int64
	birdIdle  time.Duration // BIRD CPU per second while idle
	parse     time.Duration // bird -p on the final config (median of 5)
	birdUp    time.Duration // BIRD start on the rendered config
}

var stages = []string{"model", "execute", "write", "check", "reload"}

// latency measures `changes` isolated changes on an n-node mesh.
func (e *env) latency(n, changes int, withBird bool) (*latencyResult, error) {
	if err := e.prepare(n, 4*n); err != nil {
		return nil, err
	}
	r, err := e.start(n, 4, launch{bird: withBird})
	if err != nil {
		return nil, err
	}
	defer r.stop()
	res := &latencyResult{nodes: n, withBird: withBird, changes: changes}

	// With BIRD, the harness reads confd's metrics after every change (to
	// know the render, reload included, is over, and for its stages): the
	// last scrape of one change is the first of the next, polls are 10 ms
	// apart, and their CPU cost inside confd is measured and subtracted.
	var last map[string]float64
	scrapes := 0
	metrics := func() (map[string]float64, error) {
		scrapes++
		return scrape(e.ctx, r.confd.Metrics())
	}
	do := func(j int, measure bool) (*sample, error) {
		c := r.nthChange(j)
		var m0 map[string]float64
		var bird0 time.Duration
		if withBird {
			if last == nil {
				if last, err = metrics(); err != nil {
					return nil, err
				}
			}
			m0 = last
			bird0, _ = cpuTime(r.bird.Pid())
		}
		r.watch.drain("")
		t0 := time.Now()
		if err := c.put(e.ctx, e.cli); err != nil {
			return nil, err
		}
		put := time.Since(t0)
		at, err := r.watch.wait(e.ctx, c.file, 30*time.Second, false, c.ok)
		if err != nil {
			return nil, fmt.Errorf("%s (change %d): %w\nconfd log:\n%s", c.kind, j, err, r.confd.Log())
		}
		s := &sample{kind: c.kind, latency: at.Sub(t0), put: put}
		if withBird {
			// The file is in place before the reload: wait for the render
			// to finish (check and reload included) before the next change.
			deadline := time.Now().Add(30 * time.Second)
			for {
				time.Sleep(10 * time.Millisecond)
				m1, err := metrics()
				if err != nil {
					return nil, err
				}
				if renders(m1) > renders(m0) {
					last = m1
					if measure {
						s.renders = int(renders(m1) - renders(m0))
						s.stages = map[string]time.Duration{}
						for _, st := range stages {
							s.stages[st] = time.Duration((stageSum(m1, st) - stageSum(m0, st)) * float64(time.Second))
						}
						bird1, _ := cpuTime(r.bird.Pid())
						s.birdCPU = bird1 - bird0
					}
					break
				}
				if time.Now().After(deadline) {
					return nil, errors.New("render did not finish")
				}
			}
		}
		return s, nil
	}
	// Warm up (not counted): one round of every kind.
	for j := 0; j < 5; j++ {
		if _, err := do(j, false); err != nil {
			return nil, err
		}
		time.Sleep(e.opt.gap)
	}
	m0, err := scrape(e.ctx, r.confd.Metrics())
	if err != nil {
		return nil, err
	}
	cpu0, _ := cpuTime(r.confd.Pid())
	ch0, _ := childCPUTime(r.confd.Pid())
	scrapes = 0
	w0 := time.Now()
	for j := 5; j < 5+changes; j++ {
		s, err := do(j, true)
		if err != nil {
			return nil, err
		}
		res.samples = append(res.samples, *s)
		if os.Getenv("BENCH_DEBUG") != "" {
			e.logf("  %s: latency %v put %v stages %v birdCPU %v", s.kind, s.latency, s.put, s.stages, s.birdCPU)
		}
		time.Sleep(e.opt.gap)
	}
	cpu1, _ := cpuTime(r.confd.Pid())
	ch1, _ := childCPUTime(r.confd.Pid())
	res.window = time.Since(w0)
	res.cpu = cpu1 - cpu0
	res.childCPU = ch1 - ch0
	if scrapes > 0 {
		// What one scrape costs confd, measured on the idle process.
		const k = 50
		c0, _ := cpuTime(r.confd.Pid())
		for i := 0; i < k; i++ {
			if _, err := scrape(e.ctx, r.confd.Metrics()); err != nil {
				return nil, err
			}
		}
		c1, _ := cpuTime(r.confd.Pid())
		res.scrapeCPU = time.Duration(scrapes) * (c1 - c0) / k
		res.cpu = max(0, res.cpu-res.scrapeCPU)
	}
	m1, err := scrape(e.ctx, r.confd.Metrics())
	if err != nil {
		return nil, err
	}
	res.renders = int(renders(m1) - renders(m0))
	res.hwmKB, _ = statusKB(r.confd.Pid(), "VmHWM")
	res.rssKB, _ = statusKB(r.confd.Pid(), "VmRSS")
	for _, f := range []string{"bird.cfg", "bird_aggr.cfg", "bird_ipam.cfg", "filters.cfg", "peers.cfg"} {
		if st, err := os.Stat(filepath.Join(r.out, f)); err == nil {
			res.bytes += int(st.Size())
		}
	}
	if withBird {
		res.birdUp = r.birdStart
		res.birdRSS, _ = statusKB(r.bird.Pid(), "VmRSS")
		res.birdHWM, _ = statusKB(r.bird.Pid(), "VmHWM")
		b0, _ := cpuTime(r.bird.Pid())
		time.Sleep(time.Second)
		b1, _ := cpuTime(r.bird.Pid())
		res.birdIdle = b1 - b0
		var ps []time.Duration
		for i := 0; i < 5; i++ {
			d, err := birdParse(filepath.Join(r.out, "bird.cfg"))
			if err != nil {
				return nil, err
			}
			ps = append(ps, d)
		}
		res.parse = median(ps)
	}
	return res, nil
}

// burstResult is one burst of Node writes.
type burstResult struct {
	nodes     int
	withBird  bool
	writes    int
	writeTime time.Duration // first write issued -> last write acknowledged
	final     time.Duration // last write issued -> exact final config on disk
	finalAck  time.Duration // last write acknowledged -> exact final config
	renders   int
	reloads   int
	writers   int
	files     int // files written (renamed into place)
	exact     bool
}

// burst: every other node changes its AS number, `writes` Node updates
// issued by `writers` concurrent writers as fast as etcd takes them.
func (e *env) burst(n, reps, writers int, withBird bool) ([]burstResult, error) {
	if err := e.prepare(n+1, 0); err != nil {
		return nil, err
	}
	r, err := e.start(n+1, 0, launch{bird: withBird})
	if err != nil {
		return nil, err
	}
	defer r.stop()
	var out []burstResult
	for rep := 0; rep < reps; rep++ {
		as := 65010 + rep
		res := burstResult{nodes: n + 1, withBird: withBird, writes: n, writers: writers}
		kvs := make([]kv, n)
		for i := range kvs {
			kvs[i] = mustEncode(newNode(i+1, as))
		}
		time.Sleep(300 * time.Millisecond)
		m0, err := scrape(e.ctx, r.confd.Metrics())
		if err != nil {
			return nil, err
		}
		r.watch.drain("")
		type ack struct {
			start, done time.Time
			rev         int64
		}
		acks := make([]ack, n)
		next := make(chan int, n)
		for i := range kvs {
			next <- i
		}
		close(next)
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		t0 := time.Now()
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					s := time.Now()
					resp, err := e.cli.Put(e.ctx, kvs[i].key, kvs[i].val)
					if err != nil {
						errs <- err
						return
					}
					acks[i] = ack{s, time.Now(), resp.Header.Revision}
				}
			}()
		}
		want := []byte(fmt.Sprintf(" as %d;", as))
		type seen struct {
			at  time.Time
			err error
		}
		got := make(chan seen, 1)
		go func() {
			at, err := r.watch.wait(e.ctx, "peers.cfg", 60*time.Second, false, func(b []byte) bool { return bytes.Count(b, want) == n })
			got <- seen{at, err}
		}()
		wg.Wait()
		select {
		case err := <-errs:
			return nil, err
		default:
		}
		last := acks[0]
		var lastAck time.Time
		for _, a := range acks {
			if a.rev > last.rev {
				last = a
			}
			if a.done.After(lastAck) {
				lastAck = a.done
			}
		}
		res.writeTime = lastAck.Sub(t0)
		s := <-got
		if s.err != nil {
			return nil, fmt.Errorf("burst: %w\nconfd log:\n%s", s.err, r.confd.Log())
		}
		res.final = s.at.Sub(last.start)
		res.finalAck = max(0, s.at.Sub(lastAck))
		// Let anything pending finish, then count.
		time.Sleep(time.Second)
		m1, err := scrape(e.ctx, r.confd.Metrics())
		if err != nil {
			return nil, err
		}
		res.renders = int(renders(m1) - renders(m0))
		res.reloads = int(reloads(m1) - reloads(m0))
		res.files = int(m1["roost_confd_files_written_total"] - m0["roost_confd_files_written_total"])
		exact, err := e.exact(r.out)
		if err != nil {
			return nil, err
		}
		res.exact = exact
		out = append(out, res)
	}
	return out, nil
}

// exact renders the datastore once with `confd --onetime --sync-only`
// into a fresh directory and compares every file with dir.
func (e *env) exact(dir string) (bool, error) {
	ref, err := os.MkdirTemp(e.work, "ref-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(ref)
	cmd := exec.Command(e.opt.confdBin, "--onetime", "--sync-only", "--nodename", thisNode, "--datastore-type", "etcdv3",
		"--etcd-endpoints", e.etcd, "--output-dir", ref, "--log-level", "error", "--secrets-dir", filepath.Join(ref, "secrets"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return false, fmt.Errorf("confd --onetime: %v: %s", err, out)
	}
	for _, f := range []string{"bird.cfg", "bird_aggr.cfg", "bird_ipam.cfg", "filters.cfg", "peers.cfg"} {
		a, err1 := os.ReadFile(filepath.Join(dir, f))
		b, err2 := os.ReadFile(filepath.Join(ref, f))
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			return false, nil
		}
	}
	return true, nil
}

// coldResult is one cold start of bin/confd.
type coldResult struct {
	first  time.Duration // exec -> complete first config on disk
	hwmKB  int64         // VmHWM right after the first config
	hwm2KB int64         // VmHWM two seconds later
	rssKB  int64         // VmRSS two seconds later
}

func (e *env) cold(nodes, affinities, reps int) ([]coldResult, error) {
	if err := e.prepare(nodes, affinities); err != nil {
		return nil, err
	}
	var out []coldResult
	for rep := 0; rep < reps; rep++ {
		dir, err := os.MkdirTemp(e.work, "cold-")
		if err != nil {
			return nil, err
		}
		outDir := filepath.Join(dir, "out")
		os.MkdirAll(outDir, 0o755)
		w, err := watchDir(outDir)
		if err != nil {
			return nil, err
		}
		want := nodes - 1 + 2
		p, err := startConfd(confdOpts{bin: e.opt.confdBin, etcd: e.etcd, outDir: outDir, syncOnly: true, logDir: dir, extra: e.opt.confdArgs})
		if err != nil {
			w.Close()
			return nil, err
		}
		at, err := w.wait(e.ctx, "peers.cfg", 60*time.Second, false, func(b []byte) bool { return countSessions(b) == want })
		if err != nil {
			log := p.Log()
			p.Stop()
			w.Close()
			return nil, fmt.Errorf("cold start: %w\n%s", err, log)
		}
		res := coldResult{first: at.Sub(p.started)}
		res.hwmKB, _ = statusKB(p.Pid(), "VmHWM")
		time.Sleep(2 * time.Second)
		res.hwm2KB, _ = statusKB(p.Pid(), "VmHWM")
		res.rssKB, _ = statusKB(p.Pid(), "VmRSS")
		p.Stop()
		w.Close()
		os.RemoveAll(dir)
		out = append(out, res)
	}
	return out, nil
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// pct is the p-th percentile (nearest rank).
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	k := int(p/100*float64(len(s))+0.999999) - 1
	return s[min(max(k, 0), len(s)-1)]
}

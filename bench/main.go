// Command bench is Roost's performance harness: it runs a real etcd on
// free loopback ports, loads a Calico-style full-mesh cluster into it,
// runs the real confd (bin/confd as a child process; -inproc runs the
// same code, config.Load + app.New + Run, inside the harness) and, for the
// check/reload figures, a real BIRD 2 in its own network namespace, and
// measures change latency, CPU per change, burst coalescing, cold start,
// the node agent's dataplane benchmarks and, on a lab of network
// namespaces (tests/lab), iperf3 throughput per pool mode, and the CNI
// plugin's ADD and DEL through libcni on a lab host. It prints a Markdown report
// and, with -out, writes it into docs/performance.md between the
// `<!-- bench:begin -->` and `<!-- bench:end -->` markers.
//
//	go run ./bench                    # quick (the default of `make bench`)
//	go run ./bench -full              # 200 changes per size, 3 repetitions
//	go run ./bench -only latency -sizes 1000 -changes 200
//
// Needs root (network namespaces), etcd, bird, iperf3 and bin/ (make build);
// the CalicoNodeStatus scenario runs bin/roost-node, bin/confd and
// bin/birdctl in a two-host lab (tests/lab), the CNI scenario
// bin/roost-cni on a one-host lab.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	sizes         []int
	changes       int
	reps          int
	gap           time.Duration
	steadySizes   []int
	steadyChanges int
	period        time.Duration
	burstNodes    int
	burstReps     int
	coldNodes     int
	coldAff       int
	coldReps      int
	nodeCount     int
	iperfTime     int
	iperfReps     int
	// CalicoNodeStatus scenario
	statusRoutes int
	statusPeriod time.Duration
	statusWindow time.Duration
	// CNI scenario
	cniContainers int
	only          map[string]bool
	out           string
	confdBin      string
	confdArgs     []string
	inproc        bool
	full          bool
	cpuprofile    string
}

func (o *options) want(s string) bool { return len(o.only) == 0 || o.only[s] }

func main() {
	os.Exit(run())
}

func run() int {
	var (
		o                              options
		sizes, steadySizes, only, work string
	)
	flag.BoolVar(&o.full, "full", false, "full run: 200 changes per size, 3 repetitions of everything (~15 min)")
	flag.StringVar(&sizes, "sizes", "3,100,1000,5000", "cluster sizes (nodes in the full mesh) for the latency scenarios")
	flag.IntVar(&o.changes, "changes", 0, "measured changes per size (default 60, -full 200)")
	flag.IntVar(&o.reps, "reps", 0, "repetitions of each latency run (default 1, -full 3); medians are reported")
	flag.DurationVar(&o.gap, "gap", 150*time.Millisecond, "idle time between two measured changes (isolated changes)")
	flag.StringVar(&steadySizes, "steady-sizes", "100,1000", "cluster sizes for the steady-churn scenario")
	flag.IntVar(&o.steadyChanges, "steady-changes", 0, "changes per steady-churn run (default 200, -full 400)")
	flag.DurationVar(&o.period, "period", 25*time.Millisecond, "steady churn: one change written every period, whatever confd does")
	flag.IntVar(&o.burstNodes, "burst", 1000, "Node writes in the burst scenario (on a cluster of that many nodes plus this one)")
	flag.IntVar(&o.burstReps, "burst-reps", 0, "bursts per mode (default 2, -full 5)")
	flag.IntVar(&o.coldNodes, "cold-nodes", 5000, "nodes for the cold start")
	flag.IntVar(&o.coldAff, "cold-affinities", 20000, "block affinities for the cold start")
	flag.IntVar(&o.coldReps, "cold-reps", 0, "cold starts (default 3, -full 7)")
	flag.IntVar(&o.nodeCount, "node-count", 0, "repetitions of the Go benchmarks (node agent, confd/bgp) (default 3, -full 5)")
	flag.IntVar(&o.iperfTime, "iperf-time", 0, "seconds per iperf3 run in the dataplane scenario (default 5, -full 10)")
	flag.IntVar(&o.iperfReps, "iperf-reps", 0, "iperf3 runs per path (default 1, -full 3); host paths run that many times before and after the workloads")
	flag.IntVar(&o.statusRoutes, "status-routes", 1000, "routes the reporting node's BIRD holds in the status scenario")
	flag.DurationVar(&o.statusPeriod, "status-period", 10*time.Second, "updatePeriodSeconds of the status scenario's request")
	flag.DurationVar(&o.statusWindow, "status-window", 0, "each measured window of the status scenario (default 60s, -full 120s)")
	flag.IntVar(&o.cniContainers, "cni-containers", 100, "containers on the host in the CNI scenario (and ADDs started at once)")
	flag.StringVar(&only, "only", "", "comma-separated subset: latency,bird,steady,burst,cold,node,micro,dataplane,status,cni")
	flag.StringVar(&o.out, "out", "", "write the report into this Markdown file (between bench markers)")
	flag.StringVar(&o.confdBin, "confd", "bin/confd", "confd binary (make build)")
	confdArgs := flag.String("confd-args", "", "more flags for every confd the harness runs, e.g. \"--render-cpu-share 0.3\" (space-separated)")
	flag.BoolVar(&o.inproc, "inproc", false, "run confd inside the harness (same code path; for -cpuprofile; CPU figures then include the harness)")
	flag.StringVar(&work, "workdir", "", "scratch directory (default: a new one under $TMPDIR; keep it on a disk, not tmpfs, for realistic fsync costs)")
	keep := flag.Bool("keep", false, "keep the scratch directory (rendered configs, logs)")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the harness process (with -inproc: confd's too)")
	flag.Parse()

	def := func(p *int, quick, full int) {
		if *p == 0 {
			*p = quick
			if o.full {
				*p = full
			}
		}
	}
	o.confdArgs = strings.Fields(*confdArgs)
	def(&o.changes, 60, 200)
	def(&o.reps, 1, 3)
	def(&o.steadyChanges, 200, 400)
	def(&o.burstReps, 2, 5)
	def(&o.coldReps, 3, 7)
	def(&o.nodeCount, 3, 5)
	def(&o.iperfTime, 5, 10)
	def(&o.iperfReps, 1, 3)
	if o.statusWindow == 0 {
		o.statusWindow = 60 * time.Second
		if o.full {
			o.statusWindow = 120 * time.Second
		}
	}
	for _, l := range []struct {
		flag, val string
		into      *[]int
	}{{"sizes", sizes, &o.sizes}, {"steady-sizes", steadySizes, &o.steadySizes}} {
		for _, s := range strings.Split(l.val, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 2 {
				fmt.Fprintf(os.Stderr, "bench: -%s: %q is not a cluster size (>= 2)\n", l.flag, s)
				return 2
			}
			*l.into = append(*l.into, n)
		}
	}
	if only != "" {
		o.only = map[string]bool{}
		for _, s := range strings.Split(only, ",") {
			o.only[strings.TrimSpace(s)] = true
		}
	}
	if abs, err := filepath.Abs(o.confdBin); err == nil {
		o.confdBin = abs
	}
	if _, err := os.Stat(o.confdBin); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v (run `make build` first)\n", err)
		return 1
	}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if work == "" {
		d, err := os.MkdirTemp("", "roost-bench-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		work = d
		if *keep {
			fmt.Fprintln(os.Stderr, "bench: scratch directory", d)
		} else {
			defer os.RemoveAll(d)
		}
	}
	rep := &report{opt: o, start: time.Now(), loadBefore: loadavg()}
	rep.machine = machineInfo()

	needEtcd := o.want("latency") || o.want("bird") || o.want("steady") || o.want("burst") || o.want("cold")
	var e *env
	if needEtcd {
		srv, err := startEtcd(work)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		defer srv.Stop()
		cli, err := srv.Client()
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		defer cli.Close()
		e = &env{ctx: ctx, cli: cli, etcd: srv.URL, work: work, opt: o}
		rep.etcdVersion = etcdVersion(ctx, cli, srv.URL)
	}
	failed := false
	fail := func(what string, err error) {
		failed = true
		fmt.Fprintf(os.Stderr, "bench: %s: %v\n", what, err)
		rep.errors = append(rep.errors, fmt.Sprintf("%s: %v", what, err))
	}
	for _, mode := range []struct {
		name string
		bird bool
	}{{"latency", false}, {"bird", true}} {
		if !o.want(mode.name) {
			continue
		}
		for _, n := range o.sizes {
			var runs []*latencyResult
			for i := 0; i < o.reps && ctx.Err() == nil; i++ {
				e.logf("%s: %d nodes, run %d/%d (%d changes)", mode.name, n, i+1, o.reps, o.changes)
				r, err := e.latency(n, o.changes, mode.bird)
				if err != nil {
					fail(fmt.Sprintf("%s at %d nodes", mode.name, n), err)
					break
				}
				e.logf("  p50 %v p99 %v cpu/change %v renders %d", pct(r.latencies(), 50), pct(r.latencies(), 99), r.cpuPerChange(), r.renders)
				runs = append(runs, r)
			}
			if len(runs) > 0 {
				rep.latency = append(rep.latency, runs)
			}
		}
	}
	if o.want("steady") && ctx.Err() == nil {
		for _, c := range []struct {
			rule steadyRule
			bird bool
		}{{ruleAdaptive, false}, {ruleFixed, false}, {ruleAdaptive, true}, {ruleFixed, true}} {
			for _, n := range o.steadySizes {
				var runs []*steadyResult
				for i := 0; i < o.reps && ctx.Err() == nil; i++ {
					e.logf("steady churn: %d nodes, %s, bird=%v, run %d/%d (%d changes, one every %v)", n, c.rule.name, c.bird, i+1, o.reps, o.steadyChanges, o.period)
					r, err := e.steady(n, o.steadyChanges, o.period, c.rule, c.bird)
					if err != nil {
						fail(fmt.Sprintf("steady churn at %d nodes (%s, bird=%v)", n, c.rule.name, c.bird), err)
						break
					}
					e.logf("  p50 %v p99 %v cpu/change %v renders %d reloads %d configures/s max %d (min gap %v)", pct(r.latencies, 50), pct(r.latencies, 99), r.cpuPerChange(), r.renders, r.reloads, r.maxPerSecond(), r.minGap())
					runs = append(runs, r)
				}
				if len(runs) > 0 {
					rep.steady = append(rep.steady, runs)
				}
			}
		}
	}
	if o.want("burst") && ctx.Err() == nil {
		for _, c := range []struct {
			bird    bool
			writers int
		}{{false, 16}, {false, 1}, {true, 16}, {true, 1}} {
			e.logf("burst: %d Node writes by %d writer(s), bird=%v, %d reps", o.burstNodes, c.writers, c.bird, o.burstReps)
			rs, err := e.burst(o.burstNodes, o.burstReps, c.writers, c.bird)
			if err != nil {
				fail("burst", err)
				continue
			}
			for _, r := range rs {
				e.logf("  writes %v, renders %d, reloads %d, last write -> final %v, exact %v", r.writeTime, r.renders, r.reloads, r.final, r.exact)
			}
			rep.bursts = append(rep.bursts, rs)
		}
	}
	if o.want("cold") && ctx.Err() == nil {
		e.logf("cold start: %d nodes, %d affinities, %d reps", o.coldNodes, o.coldAff, o.coldReps)
		rs, err := e.cold(o.coldNodes, o.coldAff, o.coldReps)
		if err != nil {
			fail("cold start", err)
		} else {
			for _, r := range rs {
				e.logf("  first config %v, VmHWM %d kB (%d kB after 2s)", r.first, r.hwmKB, r.hwm2KB)
			}
			rep.cold = rs
		}
	}
	if o.want("node") && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "bench: node agent: node/dataplane benchmarks, %d runs\n", o.nodeCount)
		rs, err := nodeBenchmarks(ctx, o.nodeCount)
		if err != nil {
			fail("node agent benchmarks", err)
		}
		rep.node = rs
	}
	if o.want("micro") && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "bench: confd/bgp Go benchmarks, %d runs\n", o.nodeCount)
		rs, err := microBenchmarks(ctx, o.nodeCount)
		if err != nil {
			fail("confd/bgp benchmarks", err)
		}
		rep.micro = rs
	}
	if o.want("dataplane") && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "bench: dataplane: iperf3 on the lab, %d s × %d per path\n", o.iperfTime, o.iperfReps)
		r := dataplaneBench(ctx, work, o.iperfTime, o.iperfReps)
		r.machine = rep.machine
		if r.err != nil {
			fail("dataplane", r.err)
		}
		rep.dataplane = r
	}
	var status *statusResult
	if o.want("status") && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "bench: CalicoNodeStatus: %d routes, period %v, windows of %v\n", o.statusRoutes, o.statusPeriod, o.statusWindow)
		r, err := statusCost(ctx, work, o.statusRoutes, o.statusPeriod, o.statusWindow, func(f string, a ...any) {
			fmt.Fprintf(os.Stderr, "bench: "+f+"\n", a...)
		})
		if err != nil {
			fail("CalicoNodeStatus", err)
		}
		status = r
	}
	var cniRes *cniResult
	if o.want("cni") && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "bench: CNI: ADD/DEL through libcni, %d containers\n", o.cniContainers)
		cniRes = cniBench(ctx, work, o.cniContainers, func(f string, a ...any) {
			fmt.Fprintf(os.Stderr, "bench: "+f+"\n", a...)
		})
		cniRes.machine = rep.machine
		if cniRes.err != nil {
			fail("CNI", cniRes.err)
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "bench: interrupted")
		return 1
	}
	rep.loadAfter = loadavg()
	rep.took = time.Since(rep.start)
	mainRan := false
	for _, s := range []string{"latency", "bird", "burst", "cold", "node", "micro"} {
		mainRan = mainRan || o.want(s)
	}
	type block struct{ begin, end, md string }
	var blocks []block
	if mainRan {
		blocks = append(blocks, block{beginMark, endMark, rep.markdown()})
	}
	if rep.dataplane != nil {
		blocks = append(blocks, block{dpBeginMark, dpEndMark, rep.dataplane.markdown()})
	}
	if status != nil {
		blocks = append(blocks, block{stBeginMark, stEndMark, status.markdown()})
	}
	if cniRes != nil {
		blocks = append(blocks, block{cniBeginMark, cniEndMark, cniRes.markdown()})
	}
	for _, bl := range blocks {
		fmt.Print(bl.md)
		if o.out == "" {
			continue
		}
		if err := writeBlock(o.out, bl.begin, bl.end, bl.md); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "bench: wrote %s (%s)\n", o.out, bl.begin)
	}
	if failed {
		return 1
	}
	return 0
}

func (r *latencyResult) latencies() []time.Duration {
	out := make([]time.Duration, len(r.samples))
	for i, s := range r.samples {
		out[i] = s.latency
	}
	return out
}

func (r *latencyResult) cpuPerChange() time.Duration {
	if len(r.samples) == 0 {
		return 0
	}
	return r.cpu / time.Duration(len(r.samples))
}

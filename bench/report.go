package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roostnet/roost/confd/runner"
)

type machine struct {
	cpu, kernel, goVersion, bird, commit string
	cores                                int
}

func machineInfo() machine {
	m := machine{cores: runtime.NumCPU(), goVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				if i := strings.IndexByte(l, ':'); i > 0 {
					m.cpu = strings.TrimSpace(l[i+1:])
				}
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	if bin, err := birdBinary(); err == nil {
		out, _ := exec.Command(bin, "--version").CombinedOutput()
		m.bird = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "BIRD version "))
	}
	if out, err := exec.Command("git", "describe", "--always", "--dirty", "--abbrev=12").Output(); err == nil {
		m.commit = strings.TrimSpace(string(out))
	}
	return m
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func etcdVersion(ctx context.Context, cli *clientv3.Client, url string) string {
	st, err := cli.Status(ctx, url)
	if err != nil {
		return "?"
	}
	return st.Version
}

// goBench is one Go benchmark over several runs.
type goBench struct {
	pkg     string
	name    string
	nsPerOp []float64
	cpuMs   []float64 // cpu-ms/op when the benchmark reports it
	bytes   []float64 // B/op
	allocs  []float64 // allocs/op
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+(\d+)\s+(.*)$`)

// goBenchmarks runs `go test -bench` on one package and collects the
// results by benchmark name, in order of appearance.
func goBenchmarks(ctx context.Context, pkg, pattern, benchtime string, count int) ([]*goBench, error) {
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	cmd := exec.CommandContext(ctx, goBin, "test", "-run", "^$", "-bench", pattern, "-benchmem",
		"-benchtime", benchtime, "-count", strconv.Itoa(count), pkg)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go test %s: %v\n%s", pkg, err, out)
	}
	byName := map[string]*goBench{}
	var res []*goBench
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		gb := byName[m[1]]
		if gb == nil {
			gb = &goBench{pkg: strings.TrimPrefix(pkg, "./"), name: m[1]}
			byName[m[1]] = gb
			res = append(res, gb)
		}
		f := strings.Fields(m[4])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				gb.nsPerOp = append(gb.nsPerOp, v)
			case "cpu-ms/op":
				gb.cpuMs = append(gb.cpuMs, v)
			case "B/op":
				gb.bytes = append(gb.bytes, v)
			case "allocs/op":
				gb.allocs = append(gb.allocs, v)
			}
		}
	}
	if len(res) == 0 {
		return nil, fmt.Errorf("no benchmark results from %s:\n%s", pkg, out)
	}
	return res, nil
}

// nodeBenchmarks runs node/dataplane's benchmarks, each in its own
// throwaway network namespace (node/internal/nstest).
func nodeBenchmarks(ctx context.Context, count int) ([]*goBench, error) {
	return goBenchmarks(ctx, "./node/dataplane/",
		"^(BenchmarkProgram10kWorkloadRoutesCold|BenchmarkNoopResync10k|Benchmark1000RemoteVTEPs|BenchmarkOneNodeChangeAmong1000)$", "5x", count)
}

// microBenchmarks runs confd's in-memory benchmarks: the BGP model and
// templates without etcd or files.
func microBenchmarks(ctx context.Context, count int) ([]*goBench, error) {
	return goBenchmarks(ctx, "./confd/bgp/", "^(BenchmarkCompute|BenchmarkComputeRender|BenchmarkApplyNode)$", "1s", count)
}

func medianF(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

type report struct {
	opt                   options
	machine               machine
	etcdVersion           string
	start                 time.Time
	took                  time.Duration
	loadBefore, loadAfter string
	latency               [][]*latencyResult // per (mode, size): repetitions
	steady                [][]*steadyResult  // per (rule, mode, size): repetitions
	bursts                [][]burstResult
	cold                  []coldResult
	node                  []*goBench
	micro                 []*goBench
	dataplane             *dpResult
	errors                []string
}

// ms formats a duration in milliseconds, to a precision that fits it.
func ms(d time.Duration) string {
	f := float64(d) / float64(time.Millisecond)
	switch {
	case f == 0:
		return "0"
	case f < 0.1:
		return fmt.Sprintf("%.1f µs", f*1000)
	case f < 1:
		return fmt.Sprintf("%.2f ms", f)
	case f < 100:
		return fmt.Sprintf("%.1f ms", f)
	default:
		return fmt.Sprintf("%.0f ms", f)
	}
}

func mb(kb int64) string { return fmt.Sprintf("%.1f MB", float64(kb)/1024) }

func mark(ok bool) string {
	if ok {
		return "✅"
	}
	return "❌"
}

// medianOver applies f to each repetition and takes the median.
func medianOver(runs []*latencyResult, f func(*latencyResult) time.Duration) time.Duration {
	var v []time.Duration
	for _, r := range runs {
		v = append(v, f(r))
	}
	return median(v)
}

func stageMedian(r *latencyResult, st string) time.Duration {
	var v []time.Duration
	for _, s := range r.samples {
		v = append(v, s.stages[st])
	}
	return median(v)
}

func (rep *report) markdown() string {
	var b strings.Builder
	o := rep.opt
	m := rep.machine
	mode := "quick"
	if o.full {
		mode = "full"
	}
	confdMode := "`bin/confd` child process"
	if o.inproc {
		confdMode = "in-process (`-inproc`)"
	}
	if len(o.confdArgs) > 0 {
		confdMode += " with `" + strings.Join(o.confdArgs, " ") + "`"
	}
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("### Run\n\n")
	p("| | |\n|---|---|\n")
	p("| machine | %s, %d cores, Linux %s |\n", m.cpu, m.cores, m.kernel)
	p("| software | %s, BIRD %s, etcd %s |\n", m.goVersion, m.bird, rep.etcdVersion)
	p("| commit | `%s` |\n", m.commit)
	p("| date | %s (took %s) |\n", rep.start.UTC().Format("2006-01-02 15:04 UTC"), rep.took.Round(time.Second))
	p("| load average (1/5/15 min) | before %s, after %s |\n", rep.loadBefore, rep.loadAfter)
	p("| settings | %s mode: %d changes × %d run(s) per size, %s idle between changes; steady churn: %d changes, one every %s; %d-write bursts × %d, %d cold starts, node benchmarks × %d; confd %s |\n",
		mode, o.changes, o.reps, o.gap, o.steadyChanges, o.period, o.burstNodes, o.burstReps, o.coldReps, o.nodeCount, confdMode)
	p("\n")
	if len(rep.errors) > 0 {
		p("**Errors:**\n\n")
		for _, e := range rep.errors {
			p("- %s\n", strings.SplitN(e, "\n", 2)[0])
		}
		p("\n")
	}

	var syncRuns, birdRuns [][]*latencyResult
	for _, runs := range rep.latency {
		if runs[0].withBird {
			birdRuns = append(birdRuns, runs)
		} else {
			syncRuns = append(syncRuns, runs)
		}
	}
	if len(syncRuns) > 0 {
		p("### 1. Change → config latency, watch mode, `--sync-only`\n\n")
		p("etcd write issued → the rendered file holds the change (inotify on the output directory). Medians over runs of the per-run percentiles.\n\n")
		p("| nodes | BGP sessions | config size | changes | p50 | p99 | max | etcd put p50 | renders / change | confd CPU / change | confd VmHWM | target |\n")
		p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, runs := range syncRuns {
			r0 := runs[0]
			p50 := medianOver(runs, func(r *latencyResult) time.Duration { return pct(r.latencies(), 50) })
			p99 := medianOver(runs, func(r *latencyResult) time.Duration { return pct(r.latencies(), 99) })
			mx := medianOver(runs, func(r *latencyResult) time.Duration { return pct(r.latencies(), 100) })
			put := medianOver(runs, func(r *latencyResult) time.Duration {
				var v []time.Duration
				for _, s := range r.samples {
					v = append(v, s.put)
				}
				return median(v)
			})
			cpu := medianOver(runs, (*latencyResult).cpuPerChange)
			var hwm int64
			var rend float64
			for _, r := range runs {
				hwm = max(hwm, r.hwmKB)
				rend += float64(r.renders) / float64(len(r.samples)) / float64(len(runs))
			}
			target := ""
			switch r0.nodes {
			case 1000:
				target = fmt.Sprintf("p50 ≤ 10 ms %s, p99 ≤ 30 ms %s, CPU ≤ 15 ms %s", mark(p50 <= 10*time.Millisecond), mark(p99 <= 30*time.Millisecond), mark(cpu <= 15*time.Millisecond))
			case 5000:
				target = fmt.Sprintf("p50 ≤ 50 ms %s", mark(p50 <= 50*time.Millisecond))
			}
			p("| %d | %d | %d kB | %d×%d | %s | %s | %s | %s | %.2f | %s | %s | %s |\n", r0.nodes, r0.nodes-1+2, r0.bytes/1024, len(r0.samples), len(runs),
				ms(p50), ms(p99), ms(mx), ms(put), rend, ms(cpu), mb(hwm), target)
		}
		p("\nPer kind of change (p50, first run):\n\n")
		kinds := []string{"BGPPeer add", "BGPPeer remove", "Node add", "Node remove", "affinity add"}
		p("| nodes | %s |\n|---:|%s\n", strings.Join(kinds, " | "), strings.Repeat("---:|", len(kinds)))
		for _, runs := range syncRuns {
			p("| %d |", runs[0].nodes)
			for _, k := range kinds {
				var v []time.Duration
				for _, s := range runs[0].samples {
					if s.kind == k {
						v = append(v, s.latency)
					}
				}
				p(" %s |", ms(median(v)))
			}
			p("\n")
		}
		p("\n")
	}
	if len(birdRuns) > 0 {
		p("### 2. With the check (`bird -p`) and a real BIRD 2 `configure`\n\n")
		p("Same changes, confd without `--sync-only`; BIRD runs on the rendered bird.cfg in its own network namespace. *File* is write → file in place (model, templates, staging, check, rename); *+ configure* adds confd's `configure` round trip to BIRD. Stages are medians per change from confd's `roost_confd_render_stage_seconds`.\n\n")
		p("| nodes | file p50 | file p99 | + configure p50 | + configure p99 | model | execute | write | check | configure | confd CPU / change (+ check processes) | BIRD CPU / change | `bird -p` alone | BIRD start | BIRD RSS | BIRD idle CPU |\n")
		p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, runs := range birdRuns {
			r0 := runs[0]
			e2e := func(r *latencyResult, q float64) time.Duration {
				var v []time.Duration
				for _, s := range r.samples {
					v = append(v, s.latency+s.stages["reload"])
				}
				return pct(v, q)
			}
			birdCPU := medianOver(runs, func(r *latencyResult) time.Duration {
				var t time.Duration
				for _, s := range r.samples {
					t += s.birdCPU
				}
				return t / time.Duration(max(len(r.samples), 1))
			})
			p("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s/s |\n", r0.nodes,
				ms(medianOver(runs, func(r *latencyResult) time.Duration { return pct(r.latencies(), 50) })),
				ms(medianOver(runs, func(r *latencyResult) time.Duration { return pct(r.latencies(), 99) })),
				ms(medianOver(runs, func(r *latencyResult) time.Duration { return e2e(r, 50) })),
				ms(medianOver(runs, func(r *latencyResult) time.Duration { return e2e(r, 99) })),
				ms(stageMedian(r0, "model")), ms(stageMedian(r0, "execute")), ms(stageMedian(r0, "write")),
				ms(stageMedian(r0, "check")), ms(stageMedian(r0, "reload")),
				ms(medianOver(runs, (*latencyResult).cpuPerChange))+" (+ "+ms(medianOver(runs, func(r *latencyResult) time.Duration {
					return r.childCPU / time.Duration(max(len(r.samples), 1))
				}))+")",
				ms(birdCPU), ms(medianOver(runs, func(r *latencyResult) time.Duration { return r.parse })),
				ms(medianOver(runs, func(r *latencyResult) time.Duration { return r.birdUp })),
				mb(r0.birdRSS), ms(r0.birdIdle))
		}
		p("\n")
	}
	// 3: CPU per change at 1,000 nodes, from the two latency scenarios.
	var cpuRows []string
	for _, runs := range rep.latency {
		r0 := runs[0]
		if r0.nodes != 1000 {
			continue
		}
		confd := medianOver(runs, (*latencyResult).cpuPerChange)
		if !r0.withBird {
			cpuRows = append(cpuRows, fmt.Sprintf("| watch, `--sync-only` | %s | – | – | %s | ≤ 15 ms %s |", ms(confd), ms(confd), mark(confd <= 15*time.Millisecond)))
			continue
		}
		check := medianOver(runs, func(r *latencyResult) time.Duration { return r.childCPU / time.Duration(max(len(r.samples), 1)) })
		bird := medianOver(runs, func(r *latencyResult) time.Duration {
			var t time.Duration
			for _, s := range r.samples {
				t += s.birdCPU
			}
			return t / time.Duration(max(len(r.samples), 1))
		})
		cpuRows = append(cpuRows, fmt.Sprintf("| watch, check + BIRD `configure` | %s | %s | %s | %s | confd ≤ 15 ms %s |", ms(confd), ms(check), ms(bird), ms(confd+check+bird), mark(confd <= 15*time.Millisecond)))
	}
	for _, runs := range rep.steady {
		if r0 := runs[0]; r0.nodes == 1000 && r0.rule.args == nil && !r0.withBird {
			var v []time.Duration
			for _, r := range runs {
				v = append(v, r.cpuPerChange())
			}
			c := median(v)
			cpuRows = append(cpuRows, fmt.Sprintf("| steady churn (4), `--sync-only` | %s | – | – | %s | ≤ 8 ms %s |", ms(c), ms(c), mark(c <= 8*time.Millisecond)))
		}
	}
	if len(cpuRows) > 0 {
		p("### 3. CPU per change at 1,000 nodes\n\n")
		p("`utime + stime` of the confd process (`/proc/<pid>/stat`) over the measured changes, divided by their number; the check processes (`bird -p`, confd's waited-for children) and the BIRD daemon are counted apart. Calico's confd: 1.19 CPU-s per change at 1,000 nodes.\n\n")
		p("| mode | confd | check processes | BIRD | total | target |\n|---|---:|---:|---:|---:|---|\n")
		for _, row := range cpuRows {
			p("%s\n", row)
		}
		p("\n")
	}
	if len(rep.steady) > 0 {
		p("### 4. Steady churn: a change every %s\n\n", o.period)
		p("Changes written on a fixed schedule whatever confd does — the same five kinds as in 1, a BGPPeer or Node removed %d rounds after its add — each timed from its write to the first rendered file that shows it. *Isolated p50* is the same size's figure from 1 (2 for the BIRD rows). The fixed rule is the spacing confd used before the CPU budget (`--min-render-interval 100ms --render-quiet 20ms`, still available as explicit flags). With BIRD, a proxy on its control socket stamps every `configure` confd sends: the most in any one second and the shortest gap between two (the cap: %g per second, %s apart). Medians over runs.\n\n", steadyLag, runner.DefaultMaxReloadRate, ms(time.Duration(float64(time.Second)/runner.DefaultMaxReloadRate)))
		p("| spacing | mode | nodes | changes | isolated p50 | p50 | p99 | max | renders / change | confd CPU / change | BIRD configures: most in 1 s · shortest gap | target |\n")
		p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
		isolated := func(nodes int, bird bool) string {
			for _, runs := range rep.latency {
				if runs[0].nodes == nodes && runs[0].withBird == bird {
					return ms(medianOver(runs, func(r *latencyResult) time.Duration { return pct(r.latencies(), 50) }))
				}
			}
			return "–"
		}
		capGap := time.Duration(float64(time.Second) / runner.DefaultMaxReloadRate)
		for _, runs := range rep.steady {
			r0 := runs[0]
			med := func(f func(*steadyResult) time.Duration) time.Duration {
				var v []time.Duration
				for _, r := range runs {
					v = append(v, f(r))
				}
				return median(v)
			}
			p50 := med(func(r *steadyResult) time.Duration { return pct(r.latencies, 50) })
			p99 := med(func(r *steadyResult) time.Duration { return pct(r.latencies, 99) })
			mx := med(func(r *steadyResult) time.Duration { return pct(r.latencies, 100) })
			cpu := med((*steadyResult).cpuPerChange)
			var rend float64
			most, gap := 0, time.Duration(1<<63-1)
			for _, r := range runs {
				rend += float64(r.renders) / float64(max(len(r.latencies), 1)) / float64(len(runs))
				most = max(most, r.maxPerSecond())
				if len(r.configures) > 1 {
					gap = min(gap, r.minGap())
				}
			}
			md, conf := "sync-only", "–"
			if r0.withBird {
				md = "check + BIRD configure"
				conf = fmt.Sprintf("%d · %s", most, ms(gap))
				if gap == time.Duration(1<<63-1) {
					conf = fmt.Sprintf("%d · –", most)
				}
			}
			var target []string
			if r0.rule.args == nil {
				switch {
				case r0.withBird:
					target = append(target, fmt.Sprintf("≤ %g configures/s %s", runner.DefaultMaxReloadRate, mark(most <= int(runner.DefaultMaxReloadRate) && (gap >= capGap || gap == time.Duration(1<<63-1)))))
				case r0.nodes == 100:
					target = append(target, "p50 ≤ 5 ms "+mark(p50 <= 5*time.Millisecond))
				case r0.nodes == 1000:
					target = append(target, "p50 ≤ 10 ms "+mark(p50 <= 10*time.Millisecond), "p99 ≤ 30 ms "+mark(p99 <= 30*time.Millisecond), "CPU ≤ 8 ms "+mark(cpu <= 8*time.Millisecond))
				}
			}
			p("| %s | %s | %d | %d×%d | %s | %s | %s | %s | %.2f | %s | %s | %s |\n", r0.rule.name, md, r0.nodes, len(r0.latencies), len(runs),
				isolated(r0.nodes, r0.withBird), ms(p50), ms(p99), ms(mx), rend, ms(cpu), conf, strings.Join(target, ", "))
		}
		p("\n")
	}
	if len(rep.bursts) > 0 {
		p("### 5. Burst: Node writes as fast as etcd takes them\n\n")
		p("Every node of a %d-node mesh except this one changes its AS number: one Node write each, issued by 16 concurrent writers (etcd batches them) or by one writer back to back. *Final* is from the moment the write etcd ordered last was issued to the moment the rendered peers.cfg holds every update; *exact* compares all files with a `confd --onetime` render of the same datastore afterwards. The target on the count is for the 16-writer burst; one writer back to back is steady churn at etcd's pace, where renders follow the CPU budget.\n\n", o.burstNodes+1)
		p("| mode | writers | writes | write time | renders | reloads | files written | last write → final config | exact | target (16 writers: ≤ 20 renders/reloads; ≤ 200 ms, exact) |\n")
		p("|---|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
		for _, rs := range rep.bursts {
			for _, r := range rs {
				md := "sync-only"
				n := r.renders
				if r.withBird {
					md = "check + BIRD configure"
					n = max(r.renders, r.reloads)
				}
				count := "–"
				if r.writers >= 16 {
					count = mark(n <= 20)
				}
				p("| %s | %d | %d | %s | %d | %d | %d | %s | %v | %s %s |\n", md, r.writers, r.writes, ms(r.writeTime), r.renders, r.reloads, r.files, ms(r.final), r.exact,
					count, mark(r.final <= 200*time.Millisecond && r.exact))
			}
		}
		p("\n")
	}
	if len(rep.cold) > 0 {
		p("### 6. Cold start of `bin/confd`\n\n")
		var first []time.Duration
		var hwm, hwm2, rss []float64
		for _, c := range rep.cold {
			first = append(first, c.first)
			hwm = append(hwm, float64(c.hwmKB))
			hwm2 = append(hwm2, float64(c.hwm2KB))
			rss = append(rss, float64(c.rssKB))
		}
		sort.Slice(first, func(i, j int) bool { return first[i] < first[j] })
		p("%d nodes (full mesh), %d block affinities in etcd (4 per node; confd watches only its own node's), `--sync-only`: exec → the complete first config on disk. Peak RSS is VmHWM of the process.\n\n", o.coldNodes, o.coldAff)
		p("| starts | first config median | min | max | VmHWM at first config | VmHWM 2 s later | VmRSS 2 s later | target |\n|---:|---:|---:|---:|---:|---:|---:|---|\n")
		fc := median(first)
		h := medianF(hwm2)
		p("| %d | %s | %s | %s | %s | %s | %s | ≤ 1 s %s, ≤ 100 MB %s |\n\n", len(first), ms(fc), ms(first[0]), ms(first[len(first)-1]),
			mb(int64(medianF(hwm))), mb(int64(h)), mb(int64(medianF(rss))), mark(fc <= time.Second), mark(h <= 100*1024))
	}
	if len(rep.node) > 0 {
		p("### 7. roost-node dataplane (node/dataplane benchmarks, real kernel, throwaway network namespaces)\n\n")
		p("| benchmark | runs | median wall / op | median CPU / op | target |\n|---|---:|---:|---:|---|\n")
		for _, nb := range rep.node {
			wall := time.Duration(medianF(nb.nsPerOp))
			cpu := "–"
			if len(nb.cpuMs) > 0 {
				cpu = ms(time.Duration(medianF(nb.cpuMs) * float64(time.Millisecond)))
			}
			target := ""
			switch nb.name {
			case "BenchmarkProgram10kWorkloadRoutesCold":
				target = "10,000 routes ≤ 2 s " + mark(wall <= 2*time.Second)
			case "BenchmarkNoopResync10k":
				c := medianF(nb.cpuMs)
				if len(nb.cpuMs) == 0 {
					c = float64(wall) / 1e6
				}
				target = "≤ 50 ms CPU " + mark(c <= 50)
			}
			p("| %s | %d | %s | %s | %s |\n", strings.TrimPrefix(nb.name, "Benchmark"), len(nb.nsPerOp), ms(wall), cpu, target)
		}
		p("\n")
	}
	if len(rep.micro) > 0 {
		p("### 8. confd in memory (confd/bgp Go benchmarks: model, templates)\n\n")
		p("`Compute` is this node's BGP model from the indexed cache; `ComputeRender` is one Node change applied, the model computed and the five default templates executed (no etcd, no files); `ApplyNode` is one Node event into the cache. Medians of %d runs.\n\n", o.nodeCount)
		p("| benchmark | time / op | B / op | allocs / op |\n|---|---:|---:|---:|\n")
		for _, gb := range rep.micro {
			p("| %s | %s | %.0f | %.0f |\n", strings.TrimPrefix(gb.name, "Benchmark"), ms(time.Duration(medianF(gb.nsPerOp))), medianF(gb.bytes), medianF(gb.allocs))
		}
		p("\n")
	}
	return b.String()
}

// The generated blocks of docs/performance.md: the main scenarios, the
// dataplane throughput and the CalicoNodeStatus cost (blocks of their own,
// so that `-only dataplane` or `-only status` replaces only that and the
// other scenarios' figures stay).
const (
	beginMark    = "<!-- bench:begin -->"
	endMark      = "<!-- bench:end -->"
	dpBeginMark  = "<!-- bench:dataplane:begin -->"
	dpEndMark    = "<!-- bench:dataplane:end -->"
	stBeginMark  = "<!-- bench:status:begin -->"
	stEndMark    = "<!-- bench:status:end -->"
	cniBeginMark = "<!-- bench:cni:begin -->"
	cniEndMark   = "<!-- bench:cni:end -->"
)

// writeBlock replaces the block between beginMark and endMark in path,
// appending it when the markers are missing.
func writeBlock(path, beginMark, endMark, md string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	section := beginMark + "\n<!-- Generated by `make bench` (go run ./bench); edits here are overwritten. -->\n\n" + md + endMark
	s := string(old)
	i, j := strings.Index(s, beginMark), strings.Index(s, endMark)
	if i >= 0 && j > i {
		s = s[:i] + section + s[j+len(endMark):]
	} else {
		if s == "" {
			s = "# Performance\n\n"
		}
		s += "\n" + section + "\n"
	}
	return os.WriteFile(path, []byte(s), 0o644)
}

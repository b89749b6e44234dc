package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/roostnet/roost/birdctl/birdsock"
	"github.com/roostnet/roost/tests/lab"
)

// statusResult is the cost of answering a CalicoNodeStatus request: two
// lab hosts (network namespaces, each running `roost-node run --with-bird
// --with-confd` against one etcd), host2 advertising `routes` blocks to
// host1; host1 answers one request (Agent, BGP, Routes) every `period`.
type statusResult struct {
	routes   int           // BGP routes host1 imports from host2
	period   time.Duration // updatePeriodSeconds
	window   time.Duration // each measured window
	answered time.Duration // request written → first answer stored
	objBytes int           // the stored CalicoNodeStatus
	// CPU (utime+stime) per window: without the request, then with it.
	nodeIdle, nodeReq time.Duration // host1's roost-node
	birdIdle, birdReq time.Duration // host1's BIRD
	obsIdle, obsReq   time.Duration // host2's roost-node (sees host1's writes)
	// host1's roost_node_status_* counters over the measured window.
	writes, rounds, unchanged float64
	// the run, for the report
	machine               machine
	start                 time.Time
	took                  time.Duration
	loadBefore, loadAfter string
}

// share is cpu as a percentage of one core over window.
func share(cpu, window time.Duration) float64 { return 100 * cpu.Seconds() / window.Seconds() }

// status runs the scenario.
func statusCost(ctx context.Context, work string, routes int, period, window time.Duration, logf func(string, ...any)) (*statusResult, error) {
	bin, err := filepath.Abs("bin")
	if err != nil {
		return nil, err
	}
	l, err := lab.New(ctx, lab.Options{Name: fmt.Sprintf("bst%d", os.Getpid()), Hosts: 2, BinDir: bin,
		Dir: filepath.Join(work, "status-lab"), Log: func(string, ...any) {}})
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	defer l.Close()
	h1, h2 := l.Hosts[0], l.Hosts[1]
	if err := l.Apply(ctx, lab.ClusterYAML(lab.Pool{Name: "bench-pool", CIDR: "10.200.0.0/16", BlockSize: 29})); err != nil {
		return nil, err
	}
	// host2's blocks: host1 learns one BGP route per block.
	var y bytes.Buffer
	for i := range routes {
		cidr := fmt.Sprintf("10.200.%d.%d/29", i/32, i%32*8)
		fmt.Fprintf(&y, "---\napiVersion: projectcalico.org/v3\nkind: BlockAffinity\nmetadata: {name: %s}\nspec: {node: %s, cidr: %s, state: confirmed}\n",
			strings.NewReplacer(".", "-", "/", "-").Replace(h2.Name+"-"+cidr), h2.Name, cidr)
		fmt.Fprintf(&y, "---\napiVersion: projectcalico.org/v3\nkind: IPAMBlock\nmetadata: {name: %s}\nspec: {cidr: %s, affinity: \"host:%s\", allocations: [null, null, null, null, null, null, null, null], unallocated: [0, 1, 2, 3, 4, 5, 6, 7], attributes: []}\n",
			strings.NewReplacer(".", "-", "/", "-").Replace(cidr), cidr, h2.Name)
	}
	if err := l.Apply(ctx, y.String()); err != nil {
		return nil, fmt.Errorf("blocks: %w", err)
	}
	var nodes []*lab.Proc
	for _, h := range l.Hosts {
		p, err := l.StartNode(ctx, h)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, p)
	}
	for _, h := range l.Hosts {
		if err := l.WaitNode(ctx, h, time.Minute); err != nil {
			return nil, err
		}
		if err := l.StartConfdAndBird(ctx, h); err != nil {
			return nil, err
		}
	}
	if _, err := l.WaitEstablished(ctx, l.Hosts, 1, time.Minute); err != nil {
		return nil, err
	}
	mesh := "Mesh_" + strings.ReplaceAll(h2.IP.String(), ".", "_")
	imported := 0
	for deadline := time.Now().Add(2 * time.Minute); imported < routes; {
		c, err := birdsock.Dial(ctx, h1.Socket())
		if err == nil {
			var d *birdsock.ProtocolDetail
			if d, err = c.ProtocolDetail(ctx, mesh); err == nil && len(d.Channels) > 0 {
				imported = d.Channels[0].Imported
			}
			c.Close()
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("host1 imported %d of %d routes from host2 (%v)", imported, routes, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	bird1, err := childPid(nodes[0].Pid(), "bird")
	if err != nil {
		return nil, err
	}
	r := &statusResult{routes: imported, period: period, window: window, machine: machineInfo(), start: time.Now(), loadBefore: loadavg()}
	measure := func() (node, bird, obs time.Duration, err error) {
		pids := []int{nodes[0].Pid(), bird1, nodes[1].Pid()}
		before := make([]time.Duration, len(pids))
		for i, p := range pids {
			if before[i], err = cpuTime(p); err != nil {
				return
			}
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
			return
		case <-time.After(window):
		}
		out := make([]time.Duration, len(pids))
		for i, p := range pids {
			var after time.Duration
			if after, err = cpuTime(p); err != nil {
				return
			}
			out[i] = after - before[i]
		}
		return out[0], out[1], out[2], nil
	}
	logf("status: %d routes imported; idle window of %v", imported, window)
	if r.nodeIdle, r.birdIdle, r.obsIdle, err = measure(); err != nil {
		return nil, err
	}

	asked := time.Now()
	if err := l.Apply(ctx, fmt.Sprintf(`apiVersion: projectcalico.org/v3
kind: CalicoNodeStatus
metadata: {name: bench-status}
spec: {node: %s, classes: [Agent, BGP, Routes], updatePeriodSeconds: %d}
`, h1.Name, int(period/time.Second))); err != nil {
		return nil, err
	}
	for {
		out, err := l.Birdctl(ctx, nil, "get", "caliconodestatus", "bench-status", "-o", "json")
		if err != nil {
			return nil, err
		}
		if !strings.Contains(out, `"lastUpdated": null`) {
			r.answered = time.Since(asked)
			var c bytes.Buffer
			if err := json.Compact(&c, []byte(out)); err == nil {
				r.objBytes = c.Len()
			}
			break
		}
		if time.Since(asked) > 2*period {
			return nil, fmt.Errorf("no answer within two periods (%v)", 2*period)
		}
		time.Sleep(50 * time.Millisecond)
	}
	counters := func() (map[string]float64, error) {
		_, body, err := l.HTTPGet(ctx, h1, 9098, "/metrics")
		if err != nil {
			return nil, err
		}
		m := map[string]float64{}
		re := regexp.MustCompile(`(?m)^(roost_node_status_(?:writes|rounds|unchanged)_total)(?:\{[^}]*\})? (\S+)$`)
		for _, s := range re.FindAllStringSubmatch(body, -1) {
			v, _ := strconv.ParseFloat(s[2], 64)
			m[s[1]] += v
		}
		return m, nil
	}
	// Let the first period pass, then measure the steady state.
	time.Sleep(period)
	c0, err := counters()
	if err != nil {
		return nil, err
	}
	logf("status: request answered in %v; measuring %v", r.answered.Round(time.Millisecond), window)
	if r.nodeReq, r.birdReq, r.obsReq, err = measure(); err != nil {
		return nil, err
	}
	c1, err := counters()
	if err != nil {
		return nil, err
	}
	r.writes = c1["roost_node_status_writes_total"] - c0["roost_node_status_writes_total"]
	r.rounds = c1["roost_node_status_rounds_total"] - c0["roost_node_status_rounds_total"]
	r.unchanged = c1["roost_node_status_unchanged_total"] - c0["roost_node_status_unchanged_total"]
	r.took, r.loadAfter = time.Since(r.start), loadavg()
	return r, nil
}

// childPid finds the child of pid whose command is comm.
func childPid(pid int, comm string) (int, error) {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, f := range strings.Fields(string(b)) {
			c, _ := os.ReadFile("/proc/" + f + "/comm")
			if strings.TrimSpace(string(c)) == comm {
				return strconv.Atoi(f)
			}
		}
	}
	return 0, fmt.Errorf("no %s child of pid %d", comm, pid)
}

// markdown is the scenario's block of docs/performance.md.
func (r *statusResult) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := r.machine
	p("### Run\n\n| | |\n|---|---|\n")
	p("| machine | %s, %d cores, Linux %s |\n", m.cpu, m.cores, m.kernel)
	p("| software | %s, BIRD %s |\n", m.goVersion, m.bird)
	p("| commit | `%s` |\n", m.commit)
	p("| date | %s (measured %s) |\n", r.start.UTC().Format("2006-01-02 15:04 UTC"), r.took.Round(time.Second))
	p("| load average (1/5/15 min) | before %s, after %s |\n\n", r.loadBefore, r.loadAfter)
	p("### Cost of one request\n\n")
	p("Two lab hosts (network namespaces, each `roost-node run --with-bird --with-confd` on one etcd); host2 advertises %d blocks, so host1's BIRD holds %d BGP routes. `utime + stime` over %v without a request, then over %v while host1 answers one request for Agent, BGP and Routes every %v (after its first answer). host2 answers nothing but watches every CalicoNodeStatus, so it decodes host1's writes.\n\n",
		r.routes, r.routes, r.window, r.window, r.period)
	node := r.nodeReq - r.nodeIdle
	bird := r.birdReq - r.birdIdle
	p("| | without request | with request | cost of the request |\n|---|---:|---:|---:|\n")
	p("| host1 roost-node | %.2f %% | %.2f %% | %.2f %% of a core |\n", share(r.nodeIdle, r.window), share(r.nodeReq, r.window), share(node, r.window))
	p("| host1 BIRD | %.2f %% | %.2f %% | %.2f %% of a core |\n", share(r.birdIdle, r.window), share(r.birdReq, r.window), share(bird, r.window))
	p("| host2 roost-node (observer) | %.2f %% | %.2f %% | %.2f %% of a core |\n", share(r.obsIdle, r.window), share(r.obsReq, r.window), share(r.obsReq-r.obsIdle, r.window))
	total := share(node+bird, r.window)
	p("\n| answered after | stored object | BIRD query rounds | writes | unchanged, not written | reporting node (roost-node + BIRD) | target |\n|---:|---:|---:|---:|---:|---:|---|\n")
	p("| %s | %d kB | %.0f in %v | %.0f | %.0f | %.2f %% of a core | ≤ 1 %% %s |\n\n", ms(r.answered), r.objBytes/1024, r.rounds, r.window, r.writes, r.unchanged, total, mark(total <= 1))
	return b.String()
}

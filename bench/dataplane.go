package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/roostnet/roost/tests/lab"
)

// The dataplane scenario: iperf3 TCP throughput on the lab (tests/lab:
// hosts are network namespaces on bridges, running roost-node, confd and
// BIRD as on real hosts), host to host and workload to workload in each
// pool mode, on one machine in one run, so the ratios to host-to-host
// show what each mode costs. Three hosts: host1 and host2 share a subnet,
// host3 sits behind a router (CrossSubnet encapsulates only toward it).

// dpRun is one measured path.
type dpRun struct {
	name     string // e.g. "workloads, VXLAN"
	path     string // e.g. "host1 → host2"
	baseline string // name of the host-to-host row it is compared with ("" for host rows)
	mtu      int    // workload MTU (0: host)
	gbps     []float64
	retrans  []int
	ratios   []float64 // to the host run just before each of its runs
	dfSize   int       // full-size DF ping payload
	dfErr    string
}

func (r *dpRun) medianGbps() float64 { return medianF(r.gbps) }

func (r *dpRun) medianRetrans() int {
	v := make([]float64, len(r.retrans))
	for i, x := range r.retrans {
		v[i] = float64(x)
	}
	return int(math.Round(medianF(v)))
}

type dpResult struct {
	runs       []*dpRun
	seconds    int
	reps       int
	iperf      string
	err        error
	machine    machine
	start      time.Time
	took       time.Duration
	loadBefore string
	loadAfter  string
}

func (r *dpResult) row(name string) *dpRun {
	for _, x := range r.runs {
		if x.name == name {
			return x
		}
	}
	return nil
}

const (
	dpHostSame  = "hosts, same subnet"
	dpHostCross = "hosts, across the router"
)

// dataplaneBench builds the lab and measures every path; res.err says
// why it stopped early (the rows measured so far are kept).
func dataplaneBench(ctx context.Context, work string, seconds, reps int) *dpResult {
	res := &dpResult{seconds: seconds, reps: reps, start: time.Now(), loadBefore: loadavg()}
	res.err = res.measure(ctx, work)
	res.took, res.loadAfter = time.Since(res.start), loadavg()
	return res
}

func (res *dpResult) measure(ctx context.Context, work string) error {
	if _, err := exec.LookPath("iperf3"); err != nil {
		return errors.New("iperf3 is not installed (`make bench` installs it: scripts/install-deps.sh bench)")
	}
	seconds, reps := res.seconds, res.reps
	if out, err := exec.Command("iperf3", "--version").Output(); err == nil {
		res.iperf, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	}
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "bench: dataplane: "+format+"\n", args...) }
	l, err := lab.New(ctx, lab.Options{Hosts: 3, Segments: []string{"10.99.0.0/24", "10.99.1.0/24"},
		BinDir: "bin", Dir: filepath.Join(work, "lab")})
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer l.Close()
	h1, h2, h3 := l.Hosts[0], l.Hosts[1], l.Hosts[2]
	if err := l.Apply(ctx, dpPoolYAML("Never")); err != nil {
		return err
	}
	if err := l.StartHosts(ctx, l.Hosts); err != nil {
		return err
	}
	if _, err := l.WaitEstablished(ctx, l.Hosts, 2, 60*time.Second); err != nil {
		return err
	}
	m := &meter{l: l, ctx: ctx, seconds: seconds}
	run := func(r *dpRun, fromNS, toNS string, to netip.Addr) (float64, error) {
		g, rt, err := m.iperf(fromNS, toNS, to)
		if err != nil {
			return 0, fmt.Errorf("%s (%s): %w", r.name, r.path, err)
		}
		r.gbps, r.retrans = append(r.gbps, g), append(r.retrans, rt)
		logf("%-50s %s: %6.2f Gbit/s, %d retransmits", r.name, r.path, g, rt)
		return g, nil
	}
	hostSame := &dpRun{name: dpHostSame, path: "host1 → host2"}
	hostCross := &dpRun{name: dpHostCross, path: "host1 → host3"}
	res.runs = append(res.runs, hostSame, hostCross)
	// A workload run is paired with a host run of the same path just
	// before it: the ratio of the pair is robust to the machine's load
	// drifting during the run.
	hostPath := map[string]func() (float64, error){
		dpHostSame:  func() (float64, error) { return run(hostSame, h1.NS, h2.NS, h2.IP) },
		dpHostCross: func() (float64, error) { return run(hostCross, h1.NS, h3.NS, h3.IP) },
	}
	measure := func(r *dpRun, fromNS, toNS string, to netip.Addr) error {
		for i := 0; i < reps; i++ {
			hg, err := hostPath[r.baseline]()
			if err != nil {
				return err
			}
			g, err := run(r, fromNS, toNS, to)
			if err != nil {
				return err
			}
			if hg > 0 {
				r.ratios = append(r.ratios, g/hg)
			}
		}
		return nil
	}
	for _, mode := range []struct {
		label, vxlan string
		mtu          int
	}{{"BGP routes (no encapsulation)", "Never", 1500}, {"VXLAN", "Always", 1450}, {"CrossSubnet", "CrossSubnet", 1450}} {
		logf("pool mode %s", mode.vxlan)
		if err := l.Apply(ctx, dpPoolYAML(mode.vxlan)); err != nil {
			return err
		}
		if err := waitMTU(ctx, l.Hosts, mode.mtu); err != nil {
			return err
		}
		// New workloads: they take the MTU of the mode.
		tag := strings.ToLower(mode.vxlan)
		var ws []*lab.Workload
		for _, h := range l.Hosts {
			w, err := l.AddWorkload(ctx, h, h.Name+"-"+tag)
			if err != nil {
				return err
			}
			ws = append(ws, w)
		}
		paths := []struct {
			from, to *lab.Workload
			base     string
			suffix   string
		}{{ws[0], ws[1], dpHostSame, ""}}
		if mode.vxlan == "CrossSubnet" {
			paths[0].suffix = ", same subnet (direct)"
			paths = append(paths, struct {
				from, to *lab.Workload
				base     string
				suffix   string
			}{ws[0], ws[2], dpHostCross, ", across the router (VXLAN)"})
		}
		for _, p := range paths {
			r := &dpRun{name: "workloads, " + mode.label + p.suffix, path: p.from.Host.Name + " → " + p.to.Host.Name, baseline: p.base, mtu: mode.mtu}
			res.runs = append(res.runs, r)
			if err := waitPing(ctx, l, p.from, p.to.IP); err != nil {
				return fmt.Errorf("%s: %w", r.name, err)
			}
			r.dfSize = mode.mtu - 28
			if out, err := l.Exec(ctx, p.from.NS, nil, "ping", "-M", "do", "-s", strconv.Itoa(r.dfSize), "-c", "3", "-i", "0.2", "-W", "2", "-q", p.to.IP.String()); err != nil {
				r.dfErr = firstLine(strings.TrimSpace(out))
				if r.dfErr == "" {
					r.dfErr = err.Error()
				}
			}
			if err := measure(r, p.from.NS, p.to.NS, p.to.IP); err != nil {
				return err
			}
		}
	}
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func dpPoolYAML(vxlanMode string) string {
	return lab.ClusterYAML(lab.Pool{Name: "bench-pool", VXLANMode: vxlanMode})
}

// waitMTU waits until every host's MTU file holds want.
func waitMTU(ctx context.Context, hosts []*lab.Host, want int) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		bad := ""
		for _, h := range hosts {
			b, err := os.ReadFile(h.MTUFile())
			if v, _ := strconv.Atoi(strings.TrimSpace(string(b))); err != nil || v != want {
				bad = fmt.Sprintf("%s: MTU file %q (%v), want %d", h.Name, b, err, want)
			}
		}
		if bad == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New(bad)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitPing waits until w reaches ip (routes in place).
func waitPing(ctx context.Context, l *lab.Lab, w *lab.Workload, ip netip.Addr) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := l.Ping(ctx, w, ip)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
	}
}

// meter runs iperf3 between lab namespaces.
type meter struct {
	l       *lab.Lab
	ctx     context.Context
	seconds int
	port    int
}

// iperf runs one TCP test from fromNS to the server it starts in toNS
// and returns the received throughput and the sender's retransmits.
func (m *meter) iperf(fromNS, toNS string, to netip.Addr) (float64, int, error) {
	m.port++
	port := strconv.Itoa(5201 + m.port%1000)
	srv, err := m.l.Start(m.ctx, toNS, fmt.Sprintf("iperf3-server-%d", m.port), "iperf3", "-s", "-1", "--forceflush", "-p", port)
	if err != nil {
		return 0, 0, err
	}
	defer srv.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(srv.LogPath)
		if strings.Contains(string(b), "Server listening") {
			break
		}
		if srv.Exited() || time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("iperf3 server did not start: %s", srv.Tail(5))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// -O 1: leave out the first second (slow start).
	out, err := m.l.Exec(m.ctx, fromNS, nil, "iperf3", "-c", to.String(), "-p", port, "-t", strconv.Itoa(m.seconds), "-O", "1", "-J")
	if err != nil {
		return 0, 0, err
	}
	var r struct {
		End struct {
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return 0, 0, fmt.Errorf("iperf3 -J: %w", err)
	}
	if r.Error != "" {
		return 0, 0, errors.New("iperf3: " + r.Error)
	}
	return r.End.SumReceived.BitsPerSecond / 1e9, r.End.SumSent.Retransmits, nil
}

// markdown is the dataplane block of the report.
func (r *dpResult) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := r.machine
	p("### Run\n\n| | |\n|---|---|\n")
	p("| machine | %s, %d cores, Linux %s |\n", m.cpu, m.cores, m.kernel)
	p("| software | %s, BIRD %s, %s |\n", m.goVersion, m.bird, r.iperf)
	p("| commit | `%s` |\n", m.commit)
	p("| date | %s (took %s) |\n", r.start.UTC().Format("2006-01-02 15:04 UTC"), r.took.Round(time.Second))
	p("| load average (1/5/15 min) | before %s, after %s |\n", r.loadBefore, r.loadAfter)
	p("| settings | `iperf3 -t %d -O 1`, %d run(s) per workload path |\n\n", r.seconds, r.reps)
	if r.err != nil {
		p("**Error:** %s\n\n", firstLine(r.err.Error()))
	}
	p("### Throughput per pool mode\n\n")
	p("One TCP stream (`iperf3 -t %d -O 1`, %s), medians of %d run(s) per workload path; each workload run follows a host run over the same path (same subnet, or across the router), and *ratio* is the median of those pairs' ratios, so a change of the machine's load during the run cancels out. The lab's hosts are network namespaces joined by veth pairs and a bridge (host3 behind a router namespace), so every figure is CPU-bound on this machine and the ratios, not the absolute rates, are what carries over. Workloads are attached after each pool switch and so have that mode's MTU; *DF ping* is a full-size ping (payload MTU − 28) with Don't Fragment set between the same workloads.\n\n", r.seconds, r.iperf, r.reps)
	p("| path | | MTU | throughput | retransmits | ratio to hosts | DF ping |\n|---|---|---:|---:|---:|---:|---|\n")
	for _, x := range r.runs {
		mtu, ratio, df := "1500 (host)", "1.00", "–"
		if x.baseline != "" {
			mtu = strconv.Itoa(x.mtu)
			ratio = fmt.Sprintf("%.2f", medianF(x.ratios))
			df = fmt.Sprintf("%d bytes ✅", x.dfSize)
			if x.dfErr != "" {
				df = fmt.Sprintf("%d bytes ❌ %s", x.dfSize, x.dfErr)
			}
		}
		p("| %s | %s | %s | %.2f Gbit/s | %d | %s | %s |\n", x.name, x.path, mtu, x.medianGbps(), x.medianRetrans(), ratio, df)
	}
	if v, h := r.row("workloads, VXLAN"), r.row(dpHostSame); v != nil && h != nil && len(v.ratios) > 0 {
		ratio := medianF(v.ratios)
		p("\nTarget: VXLAN ≥ 0.8 of host throughput %s (%.2f), with no more retransmits than host to host %s (%d vs %d).\n",
			mark(ratio >= 0.8), ratio, mark(v.medianRetrans() <= h.medianRetrans()), v.medianRetrans(), h.medianRetrans())
	}
	p("\n")
	return b.String()
}

package dataplane_test

import (
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/node/dataplane"
	"github.com/roostnet/roost/node/internal/nstest"
)

const benchWorkloads = 10000

// cpuClock measures this process's CPU time (user + system, all threads)
// over the timed parts of a benchmark; report adds it as cpu-ms/op.
type cpuClock struct {
	total   time.Duration
	started time.Duration
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (c *cpuClock) start() { c.started = processCPU() }
func (c *cpuClock) stop()  { c.total += processCPU() - c.started }
func (c *cpuClock) report(b *testing.B) {
	b.ReportMetric(float64(c.total)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

// benchHost is a namespace with an uplink and 100 workload-style veths.
func benchHost(b *testing.B, ifaces int) (*nstest.NS, []string) {
	ns := nstest.New(b, "bench")
	ns.Dummy(b, "eth0")
	ns.Addr(b, "eth0", "10.0.0.1/16")
	var names []string
	for i := range ifaces {
		n := fmt.Sprintf("cali%011x", i)
		ns.Dummy(b, n)
		names = append(names, n)
	}
	return ns, names
}

func workloadAddr(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i >> 8), byte(i)}), 32)
}

func loadWorkloads(d *dataplane.Dataplane, ifaces []string) {
	d.SetNode(dataplane.Node{Name: "n1", IPv4: netip.MustParsePrefix("10.0.0.1/16")})
	for i := range benchWorkloads {
		d.SetWorkload(dataplane.Workload{Key: fmt.Sprintf("default/w%d", i), Iface: ifaces[i%len(ifaces)], Addrs: []netip.Prefix{workloadAddr(i)}})
	}
}

// BenchmarkProgram10kWorkloadRoutesCold: a fresh dataplane programs
// 10,000 workload /32 routes (over 100 interfaces) into an empty kernel
// table, including its initial full sync.
func BenchmarkProgram10kWorkloadRoutesCold(b *testing.B) {
	ns, ifaces := benchHost(b, 100)
	var cpu cpuClock
	defer cpu.report(b)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		d := dataplane.New(dataplane.Config{NodeName: "n1"}, dataplane.Kernel(ns.NL), quiet(), nil)
		loadWorkloads(d, ifaces)
		b.StartTimer()
		cpu.start()
		if err := d.Apply(); err != nil {
			b.Fatal(err)
		}
		cpu.stop()
		b.StopTimer()
		if st := d.Status(); st.Routes != benchWorkloads {
			b.Fatalf("%d routes programmed", st.Routes)
		}
		if err := d.Cleanup(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(benchWorkloads), "routes/op")
}

// BenchmarkNoopResync10k: a full comparison with the kernel when all
// 10,000 routes are already right (no writes).
func BenchmarkNoopResync10k(b *testing.B) {
	ns, ifaces := benchHost(b, 100)
	d := dataplane.New(dataplane.Config{NodeName: "n1"}, dataplane.Kernel(ns.NL), quiet(), nil)
	loadWorkloads(d, ifaces)
	if err := d.Apply(); err != nil {
		b.Fatal(err)
	}
	var cpu cpuClock
	b.ResetTimer()
	cpu.start()
	for range b.N {
		if err := d.Resync(); err != nil {
			b.Fatal(err)
		}
	}
	cpu.stop()
	cpu.report(b)
}

const benchVTEPs = 1000

func loadVTEPs(d *dataplane.Dataplane) {
	d.SetPool(dataplane.Pool{CIDR: netip.MustParsePrefix("10.128.0.0/9"), IPIPMode: api.EncapNever, VXLANMode: api.EncapAlways})
	d.SetNode(dataplane.Node{Name: "n0", IPv4: netip.MustParsePrefix("10.0.0.1/16"), VXLANAddr: netip.MustParseAddr("10.128.0.1")})
	for i := 1; i <= benchVTEPs; i++ {
		d.SetNode(remoteNode(i, 0))
		d.SetBlock(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 128 + byte(i>>10), byte(i >> 2), byte(i&3) << 6}), 26), fmt.Sprintf("n%d", i))
	}
}

func remoteNode(i, shift int) dataplane.Node {
	return dataplane.Node{Name: fmt.Sprintf("n%d", i),
		IPv4:      netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1 + byte(shift), byte(i >> 8), byte(i)}), 16),
		VXLANAddr: netip.AddrFrom4([4]byte{10, 128 + byte(i>>10), byte(i >> 2), byte(i&3)<<6 | 1})}
}

// Benchmark1000RemoteVTEPs: from cold, vxlan.calico plus, for 1,000 remote
// nodes, a permanent neighbour, an FDB entry and a route to their block.
func Benchmark1000RemoteVTEPs(b *testing.B) {
	ns := nstest.New(b, "bench")
	ns.Dummy(b, "eth0")
	ns.Addr(b, "eth0", "10.0.0.1/16")
	var cpu cpuClock
	defer cpu.report(b)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		d := dataplane.New(dataplane.Config{NodeName: "n0"}, dataplane.Kernel(ns.NL), quiet(), nil)
		loadVTEPs(d)
		b.StartTimer()
		cpu.start()
		if err := d.Apply(); err != nil {
			b.Fatal(err)
		}
		cpu.stop()
		b.StopTimer()
		if st := d.Status(); st.Routes != benchVTEPs || !st.VXLANReady {
			b.Fatalf("status %+v", st)
		}
		if err := d.Cleanup(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(benchVTEPs), "vteps/op")
}

// BenchmarkOneNodeChangeAmong1000: one remote node changes its address;
// only its VTEP and its block's route are rewritten.
func BenchmarkOneNodeChangeAmong1000(b *testing.B) {
	ns := nstest.New(b, "bench")
	ns.Dummy(b, "eth0")
	ns.Addr(b, "eth0", "10.0.0.1/16")
	d := dataplane.New(dataplane.Config{NodeName: "n0"}, dataplane.Kernel(ns.NL), quiet(), nil)
	loadVTEPs(d)
	if err := d.Apply(); err != nil {
		b.Fatal(err)
	}
	var cpu cpuClock
	b.ResetTimer()
	cpu.start()
	for i := range b.N {
		d.SetNode(remoteNode(500, 1+i%2))
		if err := d.Apply(); err != nil {
			b.Fatal(err)
		}
	}
	cpu.stop()
	cpu.report(b)
	_ = netlink.FAMILY_V4
}

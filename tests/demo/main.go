// Command demo runs Roost's main job on one machine: a lab of hosts (network
// namespaces on one L2 segment, or on two L3 subnets joined by a router
// namespace with -mode crosssubnet) with one etcd, and on every host BIRD 2,
// confd and roost-node started as on a real host. It attaches workloads,
// waits for BGP to converge, shows `birdctl node status` and the routes,
// pings every workload from every other one, prints a summary and tears
// everything down (also on Ctrl-C or failure). With -ipv6 the hosts and
// workloads are dual-stack (an IPv6 pool next to the IPv4 one, IPv6 BGP
// sessions, pings over both families). Run it with `make demo`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/roostnet/roost/tests/lab"
)

func main() {
	hosts := flag.Int("hosts", 3, "number of hosts")
	workloads := flag.Int("workloads", 2, "workloads per host")
	mode := flag.String("mode", envOr("MODE", "bgp"), "pool mode: bgp (no encapsulation), vxlan or crosssubnet (two subnets, VXLAN only between them) [$MODE]")
	keep := flag.Bool("keep", os.Getenv("KEEP") == "1", "leave the lab running and print how to use it [$KEEP=1]")
	ipv6 := flag.Bool("ipv6", os.Getenv("IPV6") == "1", "dual-stack: IPv6 on the hosts, an IPv6 pool, IPv6 sessions and pings [$IPV6=1]")
	bin := flag.String("bin", "bin", "directory with confd, birdctl and roost-node")
	down := flag.Bool("down", false, "tear down a lab left by KEEP=1")
	flag.Parse()
	if *down {
		if err := teardown(); err != nil {
			fmt.Fprintln(os.Stderr, "teardown:", err)
			os.Exit(1)
		}
		return
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *hosts, *workloads, *mode, *keep, *ipv6, *bin); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func step(format string, args ...any) {
	fmt.Printf("\n==> "+format+"\n", args...)
}

func run(ctx context.Context, nHosts, nWorkloads int, mode string, keep, ipv6 bool, bin string) (err error) {
	var vxlan string
	opts := lab.Options{Hosts: nHosts, BinDir: bin, KeepDir: keep, Detach: keep, IPv6: ipv6}
	families := 1
	if ipv6 {
		families = 2
	}
	switch mode {
	case "bgp":
		vxlan = "Never"
	case "vxlan":
		vxlan = "Always"
	case "crosssubnet":
		vxlan = "CrossSubnet"
		opts.Segments = []string{"10.99.0.0/24", "10.99.1.0/24"}
		if nHosts < 3 {
			return errors.New("MODE=crosssubnet needs at least 3 hosts")
		}
	default:
		return fmt.Errorf("MODE=%q: use bgp, vxlan or crosssubnet", mode)
	}
	start := time.Now()
	if len(opts.Segments) > 1 {
		step("Creating a lab of %d hosts (network namespaces on two subnets joined by a router) with etcd", nHosts)
	} else {
		step("Creating a lab of %d hosts (network namespaces on one segment) with etcd", nHosts)
	}
	l, err := lab.New(ctx, opts)
	if err != nil {
		return err
	}
	if keep {
		if err := os.WriteFile(stateFile, []byte(l.Opts.Name+"\n"+l.Dir+"\n"), 0o644); err != nil {
			return err
		}
		// The lab stays up even after a failure, for inspection.
		defer func() {
			if err != nil {
				fmt.Printf("\nThe lab is left up for inspection (KEEP=1): logs in %s, remove it with `make demo-down`.\n", l.Dir)
			}
		}()
	}
	if !keep {
		defer func() {
			if err != nil {
				step("Logs")
				l.DumpLogs(os.Stdout, 15)
			}
			step("Tearing down")
			l.Close()
			fmt.Println("Removed every namespace, process and file the demo created.")
		}()
	}
	for _, h := range l.Hosts {
		if h.Prefix6.IsValid() {
			fmt.Printf("    %-6s netns %-12s %s, %s\n", h.Name, h.NS, h.Prefix, h.Prefix6)
		} else {
			fmt.Printf("    %-6s netns %-12s %s\n", h.Name, h.NS, h.Prefix)
		}
	}
	fmt.Printf("    etcd   netns %-12s %s\n", l.Switch, l.EtcdURL)
	if l.Router != "" {
		var legs []string
		for _, sg := range l.Segments {
			legs = append(legs, sg.Gateway.String())
		}
		fmt.Printf("    router netns %-12s %s (forwards between the subnets)\n", l.Router, strings.Join(legs, ", "))
	}

	resources := fmt.Sprintf(`apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 64512, nodeToNodeMeshEnabled: true, logSeverityScreen: Info}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: demo-pool}
spec: {cidr: 10.244.0.0/16, blockSize: 26, vxlanMode: %s, ipipMode: Never, natOutgoing: false}
`, vxlan)
	if ipv6 {
		step("Applying a BGPConfiguration, an IPv4 and an IPv6 pool (mode %s)", mode)
		resources += fmt.Sprintf(`---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: demo-pool-v6}
spec: {cidr: "fd00:244::/64", blockSize: 122, vxlanMode: %s, ipipMode: Never, natOutgoing: false}
`, vxlan)
	} else {
		step("Applying a BGPConfiguration and an IP pool (mode %s)", mode)
	}
	if err := l.Apply(ctx, resources); err != nil {
		return err
	}

	step("Starting roost-node, confd and BIRD on every host")
	if err := l.StartHosts(ctx, l.Hosts); err != nil {
		return err
	}

	step("Attaching %d workloads per host", nWorkloads)
	var all []*lab.Workload
	for _, h := range l.Hosts {
		for i := 1; i <= nWorkloads; i++ {
			w, err := l.AddWorkload(ctx, h, fmt.Sprintf("%s-w%d", h.Name, i))
			if err != nil {
				return err
			}
			var ips []string
			for _, ip := range w.IPs {
				ips = append(ips, ip.String())
			}
			fmt.Printf("    %-9s on %s -> %s\n", w.Name, h.Name, strings.Join(ips, ", "))
			all = append(all, w)
		}
	}

	step("Waiting for every BGP session to be Established")
	sessions := families * (nHosts - 1)
	converge, err := l.WaitEstablished(ctx, l.Hosts, sessions, 60*time.Second)
	if err != nil {
		return err
	}
	fmt.Printf("    converged in %s\n", converge.Round(time.Millisecond))

	for _, h := range l.Hosts {
		step("birdctl node status on %s", h.Name)
		out, err := l.Birdctl(ctx, h, "node", "status")
		if err != nil {
			return err
		}
		fmt.Print(out)
	}
	h0 := l.Hosts[0]
	if mode != "bgp" {
		// Remote blocks' routes are roost-node's (BIRD does not program
		// routes of encapsulated pools); wait for them before showing.
		if err := waitBlockRoutes(ctx, l, "-4", 30*time.Second); err != nil {
			return err
		}
		if ipv6 {
			if err := waitBlockRoutes(ctx, l, "-6", 30*time.Second); err != nil {
				return err
			}
		}
	}
	step("Routing table of %s (proto bird: learned over BGP; proto 80: programmed by roost-node)", h0.Name)
	out, err := l.Exec(ctx, h0.NS, nil, "ip", "route")
	if err != nil {
		return err
	}
	fmt.Print(out)
	routes := strings.Count(out, "\n")
	if ipv6 {
		step("IPv6 routing table of %s (proto bird: BGP; proto 80: roost-node; /128s: local workloads)", h0.Name)
		out6, err := l.Exec(ctx, h0.NS, nil, "ip", "-6", "route", "show", "table", "main")
		if err != nil {
			return err
		}
		for _, line := range strings.Split(strings.TrimSpace(out6), "\n") {
			// The kernel's own link-local and multicast routes are noise here.
			if !strings.HasPrefix(line, "fe80::") && !strings.HasPrefix(line, "multicast ") {
				fmt.Println(line)
				routes++
			}
		}
	}
	if mode == "crosssubnet" {
		fmt.Printf("    %s reaches blocks of hosts on its own subnet %s directly (via <node ip> dev eth0),\n", h0.Name, h0.Segment.Prefix)
		if ipv6 {
			fmt.Printf("    and blocks of hosts behind the router through vxlan.calico (IPv6: vxlan-v6.calico, encapsulated).\n")
		} else {
			fmt.Printf("    and blocks of hosts behind the router through vxlan.calico (encapsulated).\n")
		}
	}

	if ipv6 {
		step("Pinging every workload from every other workload, over IPv4 and IPv6")
	} else {
		step("Pinging every workload from every other workload")
	}
	ok, failed := 0, 0
	pingStart := time.Now()
	deadline := time.Now().Add(30 * time.Second)
	for _, from := range all {
		for _, to := range all {
			if from == to {
				continue
			}
			for _, ip := range to.IPs {
				// Routes may still be arriving right after convergence.
				var perr error
				for {
					if perr = l.Ping(ctx, from, ip); perr == nil || time.Now().After(deadline) {
						break
					}
					time.Sleep(200 * time.Millisecond)
				}
				if perr != nil {
					failed++
					fmt.Printf("    FAIL %s/%s -> %s/%s (%s)\n", from.Host.Name, from.Name, to.Host.Name, to.Name, ip)
				} else {
					ok++
				}
			}
		}
	}
	fmt.Printf("    %d/%d pings answered in %s\n", ok, ok+failed, time.Since(pingStart).Round(time.Millisecond))

	// Workloads get the MTU roost-node worked out for the pool's mode, so
	// a full-size packet with Don't Fragment set crosses the tunnel.
	mtu, err := os.ReadFile(h0.MTUFile())
	if err != nil {
		return err
	}
	size := 0
	if _, err := fmt.Sscan(string(mtu), &size); err != nil {
		return fmt.Errorf("MTU file %s: %w", h0.MTUFile(), err)
	}
	size -= 28 // IPv4 and ICMP headers
	step("Full-size pings with Don't Fragment set (workload MTU %s, payload %d bytes)", strings.TrimSpace(string(mtu)), size)
	dfOK := 0
	for _, to := range all {
		if to.Host == h0 {
			continue
		}
		from := all[0]
		if out, err := l.Exec(ctx, from.NS, nil, "ping", "-M", "do", "-s", fmt.Sprint(size), "-c", "1", "-W", "2", "-q", to.IP.String()); err != nil {
			failed++
			fmt.Printf("    FAIL %s -> %s/%s: %s\n", from.Name, to.Host.Name, to.Name, strings.TrimSpace(out))
		} else {
			dfOK++
		}
	}
	fmt.Printf("    %d answered\n", dfOK)

	step("Summary")
	stack := "IPv4"
	if ipv6 {
		stack = "dual-stack (IPv4 and IPv6)"
	}
	fmt.Printf("    hosts %d, workloads %d, mode %s, %s\n", nHosts, len(all), mode, stack)
	fmt.Printf("    BGP sessions: %d per host, all Established; converged in %s\n", sessions, converge.Round(time.Millisecond))
	fmt.Printf("    routes on %s: %d; pings %d ok, %d failed; total %s\n", h0.Name, routes, ok, failed, time.Since(start).Round(time.Millisecond))

	if keep {
		step("The lab stays up (KEEP=1)")
		fmt.Printf("    enter a host:        ip netns exec %s bash\n", h0.NS)
		fmt.Printf("    BGP status there:    ip netns exec %s env BIRD_SOCKET=%s %s node status\n", h0.NS, h0.Socket(), l.Bin("birdctl"))
		fmt.Printf("    resources:           ip netns exec %s env DATASTORE_TYPE=etcdv3 ETCD_ENDPOINTS=%s %s get nodes -o wide\n", l.Switch, l.EtcdURL, l.Bin("birdctl"))
		fmt.Printf("    logs:                %s/*.log\n", l.Dir)
		fmt.Printf("    tear down:           make demo-down\n")
	}
	if failed > 0 {
		return errors.New("some workloads could not reach each other")
	}
	return nil
}

// waitBlockRoutes waits until every host has a route of the family
// ("-4" or "-6") to every other host's blocks (roost-node programs those
// for VXLAN pools).
func waitBlockRoutes(ctx context.Context, l *lab.Lab, family string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		missing := ""
		for _, h := range l.Hosts {
			out, err := l.Exec(ctx, h.NS, nil, "ip", family, "route", "show", "proto", "80")
			if err != nil {
				return err
			}
			if n := strings.Count(out, " via "); n < len(l.Hosts)-1 {
				missing = fmt.Sprintf("%s has %d of %d remote block routes (ip %s)", h.Name, n, len(l.Hosts)-1, family)
				break
			}
		}
		if missing == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New(missing)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stateFile remembers a lab left running by KEEP=1 for `make demo-down`.
const stateFile = "/run/roost-demo-lab"

func teardown() error {
	b, err := os.ReadFile(stateFile)
	if errors.Is(err, os.ErrNotExist) {
		fmt.Println("No demo lab is running.")
		return nil
	}
	if err != nil {
		return err
	}
	parts := strings.Fields(string(b))
	if len(parts) != 2 {
		return fmt.Errorf("%s is malformed", stateFile)
	}
	if err := lab.Teardown(parts[0], parts[1]); err != nil {
		return err
	}
	fmt.Printf("Removed lab %s (%s).\n", parts[0], parts[1])
	return os.Remove(stateFile)
}

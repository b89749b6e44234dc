package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roostnet/roost/tests/lab"
)

// cluster is a lab under test.
type cluster struct {
	t   *testing.T
	ctx context.Context
	*lab.Lab
	workloads []*lab.Workload
}

// Timeouts: generous for a loaded 2-core machine; tests poll and move on
// as soon as the condition holds.
const (
	convergeTimeout = 60 * time.Second
	pingTimeout     = 30 * time.Second
)

// poolYAML is the lab's BGP configuration (mesh on or off) and one IPv4
// pool with the given vxlanMode.
func poolYAML(mesh bool, vxlanMode string) string {
	return lab.ClusterYAML(lab.Pool{Name: "e2e-pool", VXLANMode: vxlanMode, NoMesh: !mesh})
}

func (c *cluster) apply(yaml string) {
	c.t.Helper()
	if err := c.Apply(c.ctx, yaml); err != nil {
		c.t.Fatalf("apply: %v", err)
	}
}

func (c *cluster) birdctl(h *lab.Host, args ...string) string {
	c.t.Helper()
	out, err := c.Birdctl(c.ctx, h, args...)
	if err != nil {
		c.t.Fatalf("birdctl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// start starts the agents of hosts (roost-node, then confd and BIRD).
func (c *cluster) start(hosts []*lab.Host, opts ...lab.StartOption) {
	c.t.Helper()
	if err := c.StartHosts(c.ctx, hosts, opts...); err != nil {
		c.t.Fatalf("starting agents: %v", err)
	}
}

// addWorkloads attaches n workloads to each host.
func (c *cluster) addWorkloads(hosts []*lab.Host, n int) []*lab.Workload {
	c.t.Helper()
	var ws []*lab.Workload
	for _, h := range hosts {
		for i := 1; i <= n; i++ {
			w, err := c.AddWorkload(c.ctx, h, fmt.Sprintf("%s-w%d", h.Name, i))
			if err != nil {
				c.t.Fatalf("workload on %s: %v", h.Name, err)
			}
			ws = append(ws, w)
		}
	}
	c.workloads = append(c.workloads, ws...)
	return ws
}

// eventually polls f until it returns nil, failing t after timeout with
// f's last error; it returns how long it took.
func (c *cluster) eventually(timeout time.Duration, what string, f func() error) time.Duration {
	c.t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		err := f()
		if err == nil {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: not reached within %s: %v", what, timeout, err)
		}
		select {
		case <-c.ctx.Done():
			c.t.Fatalf("%s: %v", what, c.ctx.Err())
		case <-time.After(150 * time.Millisecond):
		}
	}
}

// ---- BGP sessions ----

// sessions are a host's expected BGP peers (addresses), all Established.
type sessions map[*lab.Host][]netip.Addr

// mesh expects a session from every host to every other.
func mesh(hosts []*lab.Host) sessions {
	want := sessions{}
	for _, h := range hosts {
		want[h] = nil
		for _, o := range hosts {
			if o != h {
				want[h] = append(want[h], o.IP)
			}
		}
	}
	return want
}

// peers returns h's sessions by peer address.
func (c *cluster) peers(h *lab.Host) (map[netip.Addr]lab.PeerState, error) {
	ps, err := c.Peers(c.ctx, h)
	if err != nil {
		return nil, err
	}
	m := map[netip.Addr]lab.PeerState{}
	for _, p := range ps {
		a, err := netip.ParseAddr(p.Address)
		if err != nil {
			return nil, fmt.Errorf("%s: session %s has address %q", h.Name, p.Protocol, p.Address)
		}
		m[a] = p
	}
	return m, nil
}

func established(p lab.PeerState) bool { return p.BGPState == "Established" }

// checkSessions reports the first host whose sessions are not exactly
// want, all Established.
func (c *cluster) checkSessions(want sessions) (map[*lab.Host]map[netip.Addr]lab.PeerState, error) {
	all := map[*lab.Host]map[netip.Addr]lab.PeerState{}
	for h, addrs := range want {
		got, err := c.peers(h)
		if err != nil {
			return nil, err
		}
		all[h] = got
		for _, a := range addrs {
			p, ok := got[a]
			if !ok {
				return nil, fmt.Errorf("%s: no session to %s", h.Name, a)
			}
			if !established(p) {
				return nil, fmt.Errorf("%s: session %s is %s %s", h.Name, p.Protocol, p.State, p.Info)
			}
		}
		if len(got) != len(addrs) {
			var names []string
			for _, p := range got {
				names = append(names, p.Protocol)
			}
			return nil, fmt.Errorf("%s: %d sessions (%s), want %d (%v)", h.Name, len(got), strings.Join(names, ", "), len(addrs), addrs)
		}
	}
	return all, nil
}

// waitSessions waits until every host in want has exactly the expected
// sessions, all Established, and returns them.
func (c *cluster) waitSessions(want sessions) map[*lab.Host]map[netip.Addr]lab.PeerState {
	c.t.Helper()
	var all map[*lab.Host]map[netip.Addr]lab.PeerState
	c.eventually(convergeTimeout, "BGP sessions", func() (err error) {
		all, err = c.checkSessions(want)
		return err
	})
	return all
}

// ---- IPAM and nodes ----

// blocks returns the IPAM blocks by affine node.
func (c *cluster) blocks() (map[string][]netip.Prefix, error) {
	out, err := c.Birdctl(c.ctx, nil, "get", "ipamblocks", "-o", "json")
	if err != nil {
		return nil, err
	}
	var items []struct {
		Spec struct {
			CIDR     string `json:"cidr"`
			Affinity string `json:"affinity"`
		} `json:"spec"`
	}
	if err := decodeList(out, &items); err != nil {
		return nil, fmt.Errorf("ipamblocks: %w", err)
	}
	m := map[string][]netip.Prefix{}
	for _, it := range items {
		p, err := netip.ParsePrefix(it.Spec.CIDR)
		if err != nil {
			return nil, fmt.Errorf("ipamblock cidr %q: %w", it.Spec.CIDR, err)
		}
		node, ok := strings.CutPrefix(it.Spec.Affinity, "host:")
		if ok {
			m[node] = append(m[node], p)
		}
	}
	return m, nil
}

// vxlanAddr returns the node's VXLAN tunnel address.
func (c *cluster) vxlanAddr(h *lab.Host) (netip.Addr, error) {
	out, err := c.Birdctl(c.ctx, nil, "get", "node", h.Name, "-o", "json")
	if err != nil {
		return netip.Addr{}, err
	}
	var items []struct {
		Spec struct {
			VXLAN string `json:"ipv4VXLANTunnelAddr"`
		} `json:"spec"`
	}
	if err := decodeList(out, &items); err != nil || len(items) != 1 {
		return netip.Addr{}, fmt.Errorf("node %s: %v: %s", h.Name, err, out)
	}
	if items[0].Spec.VXLAN == "" {
		return netip.Addr{}, fmt.Errorf("node %s has no VXLAN tunnel address yet", h.Name)
	}
	return netip.ParseAddr(items[0].Spec.VXLAN)
}

// decodeList decodes birdctl -o json output: one object, an array, or a
// List with items.
func decodeList[T any](out string, items *[]T) error {
	s := strings.TrimSpace(out)
	switch {
	case strings.HasPrefix(s, "["):
		return json.Unmarshal([]byte(s), items)
	case strings.HasPrefix(s, "{"):
		var l struct {
			Items *[]T `json:"items"`
		}
		if err := json.Unmarshal([]byte(s), &l); err == nil && l.Items != nil {
			*items = *l.Items
			return nil
		}
		var one T
		if err := json.Unmarshal([]byte(s), &one); err != nil {
			return err
		}
		*items = []T{one}
		return nil
	}
	return fmt.Errorf("not JSON: %q", s)
}

// ---- kernel routes ----

// kroute is one route of `ip -j route`.
type kroute struct {
	Dst      string   `json:"dst"`
	Gateway  string   `json:"gateway"`
	Dev      string   `json:"dev"`
	Protocol string   `json:"protocol"`
	Type     string   `json:"type"`
	Flags    []string `json:"flags"`
}

func (r kroute) onlink() bool {
	for _, f := range r.Flags {
		if f == "onlink" {
			return true
		}
	}
	return false
}

func (r kroute) String() string {
	s := r.Dst
	if r.Type != "" && r.Type != "unicast" {
		s = r.Type + " " + s
	}
	if r.Gateway != "" {
		s += " via " + r.Gateway
	}
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	s += " proto " + r.Protocol
	if r.onlink() {
		s += " onlink"
	}
	return s
}

// routes returns h's main table by destination (a /32 written without
// its length by ip is keyed with it).
func (c *cluster) routes(h *lab.Host) (map[netip.Prefix]kroute, error) {
	out, err := c.Exec(c.ctx, h.NS, nil, "ip", "-j", "-4", "route", "show", "table", "main")
	if err != nil {
		return nil, err
	}
	var rs []kroute
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		return nil, fmt.Errorf("ip -j route: %w: %s", err, out)
	}
	m := map[netip.Prefix]kroute{}
	for _, r := range rs {
		if r.Dst == "default" {
			continue
		}
		dst := r.Dst
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		p, err := netip.ParsePrefix(dst)
		if err != nil {
			continue
		}
		m[p] = r
	}
	return m, nil
}

// routeWant describes the expected route to a remote block.
type routeWant struct {
	via    netip.Addr
	dev    string
	proto  string // "bird" (BGP, programmed by BIRD) or "80" (roost-node)
	onlink bool
}

func (w routeWant) check(r kroute) error {
	if r.Gateway != w.via.String() || r.Dev != w.dev || r.Protocol != w.proto || (w.onlink && !r.onlink()) {
		on := ""
		if w.onlink {
			on = " onlink"
		}
		return fmt.Errorf("route %s, want via %s dev %s proto %s%s", r, w.via, w.dev, w.proto, on)
	}
	return nil
}

// noEncap expects BIRD's route straight to the owner's node address.
func noEncap(_, owner *lab.Host) (routeWant, error) {
	return routeWant{via: owner.IP, dev: "eth0", proto: "bird"}, nil
}

// vxlanTo expects roost-node's route through vxlan.calico.
func (c *cluster) vxlanTo(_, owner *lab.Host) (routeWant, error) {
	a, err := c.vxlanAddr(owner)
	if err != nil {
		return routeWant{}, err
	}
	return routeWant{via: a, dev: "vxlan.calico", proto: "80", onlink: true}, nil
}

// crossSubnet expects roost-node's direct route on the same subnet and
// its VXLAN route across subnets.
func (c *cluster) crossSubnet(from, owner *lab.Host) (routeWant, error) {
	if from.Segment == owner.Segment {
		return routeWant{via: owner.IP, dev: "eth0", proto: "80", onlink: true}, nil
	}
	return c.vxlanTo(from, owner)
}

// checkBlockRoutes checks that every host routes every other host's
// IPv4 blocks as want says, and returns the number of routes checked.
func (c *cluster) checkBlockRoutes(hosts []*lab.Host, want func(from, owner *lab.Host) (routeWant, error)) (int, error) {
	return c.checkBlockRoutesFam(hosts, 4, want)
}

// waitBlockRoutes waits until checkBlockRoutes passes.
func (c *cluster) waitBlockRoutes(hosts []*lab.Host, want func(from, owner *lab.Host) (routeWant, error)) int {
	c.t.Helper()
	var n int
	c.eventually(convergeTimeout, "routes to every block", func() (err error) {
		n, err = c.checkBlockRoutes(hosts, want)
		return err
	})
	return n
}

// ---- traffic ----

// ping sends one echo at a time from w to ip until one is answered or
// the deadline passes.
func (c *cluster) ping(w *lab.Workload, ip netip.Addr, deadline time.Time) error {
	var err error
	for {
		_, err = c.Exec(c.ctx, w.NS, nil, "ping", "-c", "1", "-W", "1", "-q", ip.String())
		if err == nil || time.Now().After(deadline) || c.ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pingAll pings every workload from every other one (a few at a time)
// and fails t with every pair that got no answer.
func (c *cluster) pingAll(ws []*lab.Workload) {
	c.t.Helper()
	var pairs []pingPair
	for _, a := range ws {
		for _, b := range ws {
			if a != b {
				pairs = append(pairs, pingPair{a, b})
			}
		}
	}
	c.pingPairs(pairs...)
}

func (c *cluster) pingPairs(pairs ...pingPair) {
	c.t.Helper()
	start := time.Now()
	deadline := start.Add(pingTimeout)
	var (
		mu    sync.Mutex
		fails []string
		wg    sync.WaitGroup
		sem   = make(chan struct{}, 6)
	)
	for _, p := range pairs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := c.ping(p.from, p.to.IP, deadline); err != nil {
				mu.Lock()
				fails = append(fails, fmt.Sprintf("%s/%s -> %s/%s (%s)", p.from.Host.Name, p.from.Name, p.to.Host.Name, p.to.Name, p.to.IP))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(fails) > 0 {
		c.t.Fatalf("%d of %d pings unanswered: %s", len(fails), len(pairs), strings.Join(fails, "; "))
	}
	c.t.Logf("%d/%d workload pairs ping in %s", len(pairs), len(pairs), time.Since(start).Round(time.Millisecond))
}

// pingPair is a ping from one workload to another.
type pingPair struct{ from, to *lab.Workload }

// ---- external BIRD ----

// extRouter is a BIRD the test configures itself, in a namespace of its
// own on a segment: an upstream router with its own AS.
type extRouter struct {
	c    *cluster
	Host *lab.Host
	AS   int
	cfg  string
	proc *lab.Proc
}

// addExtRouter creates the router's namespace on segment 0 and starts
// its BIRD with config(); it peers with nothing until configured so.
func (c *cluster) addExtRouter(name string, as int) *extRouter {
	c.t.Helper()
	m, err := c.AddMachine(c.ctx, name, 0)
	if err != nil {
		c.t.Fatalf("%s: %v", name, err)
	}
	return &extRouter{c: c, Host: m, AS: as, cfg: filepath.Join(m.Dir, "bird.conf")}
}

// configure writes the router's BIRD config: one eBGP session per
// neighbour (with password when not empty), importing everything,
// exporting nothing. It starts BIRD the first time and reconfigures it
// afterwards.
func (r *extRouter) configure(neighbors []*lab.Host, peerAS int, password string) {
	c := r.c
	c.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "# External router %s (AS %d), written by the e2e test.\n", r.Host.Name, r.AS)
	fmt.Fprintf(&b, "router id %s;\nprotocol device {}\n", r.Host.IP)
	for _, n := range neighbors {
		fmt.Fprintf(&b, "protocol bgp host_%s {\n  local %s as %d;\n  neighbor %s as %d;\n", strings.ReplaceAll(n.IP.String(), ".", "_"), r.Host.IP, r.AS, n.IP, peerAS)
		if password != "" {
			fmt.Fprintf(&b, "  password %q;\n", password)
		}
		b.WriteString("  connect delay time 1;\n  connect retry time 5;\n  error wait time 1,5;\n  ipv4 { import all; export none; };\n}\n")
	}
	if err := os.WriteFile(r.cfg, []byte(b.String()), 0o644); err != nil {
		c.t.Fatal(err)
	}
	if r.proc == nil {
		p, err := c.Start(c.ctx, r.Host.NS, r.Host.Name+"-bird", "bird", "-f", "-c", r.cfg, "-s", r.Host.Socket(), "-P", filepath.Join(r.Host.Dir, "bird.pid"))
		if err != nil {
			c.t.Fatalf("%s: %v", r.Host.Name, err)
		}
		r.proc = p
		return
	}
	out, err := r.birdctl("configure", r.cfg)
	if err != nil {
		c.t.Fatalf("%s: configure: %v: %s", r.Host.Name, err, out)
	}
}

// birdctl runs birdctl against the router's BIRD socket.
func (r *extRouter) birdctl(args ...string) (string, error) {
	return r.c.Exec(r.c.ctx, r.Host.NS, []string{"BIRD_SOCKET=" + r.Host.Socket()}, r.c.Bin("birdctl"), args...)
}

// received returns the prefixes in the router's BIRD table with the
// address they were received from.
func (r *extRouter) received() (map[netip.Prefix][]string, error) {
	out, err := r.birdctl("show", "route", "-o", "json")
	if err != nil {
		return nil, err
	}
	var rs []struct {
		Prefix   string `json:"prefix"`
		Protocol string `json:"protocol"`
		From     string `json:"from"`
		NextHops []struct {
			Gateway string `json:"gateway"`
		} `json:"nextHops"`
	}
	if err := decodeList(out, &rs); err != nil {
		return nil, fmt.Errorf("show route: %w", err)
	}
	m := map[netip.Prefix][]string{}
	for _, x := range rs {
		p, err := netip.ParsePrefix(x.Prefix)
		if err != nil {
			continue
		}
		gw := x.From
		if len(x.NextHops) > 0 && x.NextHops[0].Gateway != "" {
			gw = x.NextHops[0].Gateway
		}
		m[p] = append(m[p], gw)
	}
	return m, nil
}

// hasEveryBlock checks that the router received every host's blocks,
// each with the owner as next hop.
func (r *extRouter) hasEveryBlock(hosts []*lab.Host) (int, error) {
	blocks, err := r.c.blocks()
	if err != nil {
		return 0, err
	}
	got, err := r.received()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, h := range hosts {
		if len(blocks[h.Name]) == 0 {
			return 0, fmt.Errorf("%s has no block yet", h.Name)
		}
		for _, b := range blocks[h.Name] {
			gws, ok := got[b]
			if !ok {
				return 0, fmt.Errorf("%s did not receive %s's block %s (has %d prefixes)", r.Host.Name, h.Name, b, len(got))
			}
			if !contains(gws, h.IP.String()) {
				return 0, fmt.Errorf("%s has %s's block %s via %v, want via %s", r.Host.Name, h.Name, b, gws, h.IP)
			}
			n++
		}
	}
	return n, nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

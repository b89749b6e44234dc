// Package dataplane programs the kernel for the node agent (docs/roost-node.md):
// routes to workloads, blackholes for this node's blocks, routes to other
// nodes' blocks and to addresses other nodes borrowed from a block
// (through tunl0, vxlan.calico / vxlan-v6.calico, or directly for
// CrossSubnet pools inside the subnet), the tunnel devices, and a
// permanent neighbour and FDB entry per remote VTEP. IPv4 and IPv6 are
// handled alike (family.go names what differs).
//
// Inputs (nodes, pools, blocks, workloads) arrive one change at a time;
// each marks only what it affects dirty (indexes by node, block, device
// and route destination), and Apply programs only the dirty entries. The
// kernel is compared with the intended state in full only by Resync (at
// start and periodically). Kernel events (routes, links, neighbours)
// mark the affected entries dirty so drift is repaired within moments.
//
// Ownership: every route the agent writes carries Config.Protocol (80).
// Routes with any other protocol — BIRD's, the admin's — are never
// replaced or removed; a destination held by such a route is reported as
// a conflict and left alone.
package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/node/mtu"
	"github.com/roostnet/roost/node/names"
)

// Config tunes the dataplane.
type Config struct {
	NodeName string
	// Protocol marks owned routes (default names.RouteProtocol = 80).
	Protocol int
	// VXLANVNI (4096) and VXLANPort (4789) of vxlan.calico.
	VXLANVNI, VXLANPort int
	// IPIPMTU, VXLANMTU and VXLANMTUV6; 0 derives them from the host MTU
	// (minus 20, 50 and 70: node/mtu).
	IPIPMTU, VXLANMTU, VXLANMTUV6 int
	// WorkloadMTU replaces the computed workload MTU (0: computed).
	WorkloadMTU int
	// MTUIfacePattern, when set, makes the host MTU the smallest MTU of
	// the up interfaces matching it (Felix's MTUIfacePattern) instead of
	// the MTU of the interfaces holding the node's addresses.
	MTUIfacePattern *regexp.Regexp
	// MTUFile receives the workload MTU for the CNI plugin and `workload
	// add` ("": not written).
	MTUFile string
	// ResyncInterval between full comparisons with the kernel (90s).
	ResyncInterval time.Duration
	// RetryInterval after a failed operation (1s).
	RetryInterval time.Duration
	// BirdMetric, when set, tells which kernel metric BIRD wants for its
	// route to dst (ok false: unknown, or BIRD exports none), so that a
	// duplicate BIRD route left behind by a priority change is removed
	// (see birdroutes.go). Unset: only BIRD's old metric-32 duplicates go.
	BirdMetric func(ctx context.Context, dst netip.Prefix) (metric int, ok bool)
	// BirdPruneInterval between checks for duplicate BIRD routes (10s).
	BirdPruneInterval time.Duration
	// WaitForInputs: program nothing until InputsReady is called, so that
	// a restart never acts on a partial view (e.g. removing vxlan.calico
	// because the pools were not loaded yet).
	WaitForInputs bool
}

func (c *Config) defaults() {
	if c.Protocol == 0 {
		c.Protocol = names.RouteProtocol
	}
	if c.VXLANVNI == 0 {
		c.VXLANVNI = 4096
	}
	if c.VXLANPort == 0 {
		c.VXLANPort = 4789
	}
	if c.ResyncInterval == 0 {
		c.ResyncInterval = 90 * time.Second
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = time.Second
	}
	if c.BirdPruneInterval == 0 {
		c.BirdPruneInterval = 10 * time.Second
	}
}

// Node is what the dataplane needs of a Node resource.
type Node struct {
	Name        string
	IPv4        netip.Prefix // address with the subnet's prefix length
	IPv6        netip.Prefix // likewise
	IPIPAddr    netip.Addr
	VXLANAddr   netip.Addr
	VXLANMAC    net.HardwareAddr // nil: derived from the name
	VXLANV6Addr netip.Addr
	VXLANMACV6  net.HardwareAddr // nil: derived from the name
}

// NodeFromAPI converts a Node resource.
func NodeFromAPI(n *api.Node) Node {
	out := Node{Name: n.Metadata.Name}
	if b := n.Spec.BGP; b != nil {
		out.IPv4 = nodeAddr(b.IPv4Address, 4)
		out.IPv6 = nodeAddr(b.IPv6Address, 6)
		if a, err := netip.ParseAddr(b.IPv4IPIPTunnelAddr); err == nil && a.Is4() {
			out.IPIPAddr = a
		}
	}
	if a, err := netip.ParseAddr(n.Spec.IPv4VXLANTunnelAddr); err == nil && a.Is4() {
		out.VXLANAddr = a
	}
	if a, err := netip.ParseAddr(n.Spec.IPv6VXLANTunnelAddr); err == nil && a.Is6() && !a.Is4In6() {
		out.VXLANV6Addr = a
	}
	if m, err := net.ParseMAC(n.Spec.VXLANTunnelMACAddr); err == nil && len(m) == 6 {
		out.VXLANMAC = m
	}
	if m, err := net.ParseMAC(n.Spec.VXLANTunnelMACAddrV6); err == nil && len(m) == 6 {
		out.VXLANMACV6 = m
	}
	return out
}

// nodeAddr parses a Node address of family fam ("10.0.0.1/24" or a bare
// address, which counts as a host prefix); the zero Prefix otherwise.
func nodeAddr(s string, fam int) netip.Prefix {
	ip, pfx, err := api.ParseAddrMaybeCIDR(s)
	if err != nil || famOf(ip.Unmap()) != fam {
		return netip.Prefix{}
	}
	ip = ip.Unmap()
	if !pfx.IsValid() {
		return netip.PrefixFrom(ip, ip.BitLen())
	}
	return netip.PrefixFrom(ip, pfx.Bits())
}

func (n *Node) mac() net.HardwareAddr {
	if n.VXLANMAC != nil {
		return n.VXLANMAC
	}
	return names.VXLANMAC(n.Name)
}

func (n *Node) equal(o *Node) bool {
	return n.Name == o.Name && n.IPv4 == o.IPv4 && n.IPv6 == o.IPv6 && n.IPIPAddr == o.IPIPAddr && n.VXLANAddr == o.VXLANAddr &&
		n.VXLANV6Addr == o.VXLANV6Addr && n.mac().String() == o.mac().String() && n.vxlanMAC(6).String() == o.vxlanMAC(6).String()
}

// Pool is what the dataplane needs of an IPPool.
type Pool struct {
	CIDR      netip.Prefix
	IPIPMode  string
	VXLANMode string
}

// PoolFromAPI converts an IPPool (ok false for invalid pools). IPv6
// pools have no IPIP.
func PoolFromAPI(p *api.IPPool) (Pool, bool) {
	pfx, err := api.ParseCIDR(p.Spec.CIDR)
	if err != nil {
		return Pool{}, false
	}
	m := func(s string) string {
		if s == "" {
			return api.EncapNever
		}
		return s
	}
	out := Pool{CIDR: pfx, IPIPMode: m(p.Spec.IPIPMode), VXLANMode: m(p.Spec.VXLANMode)}
	if pfx.Addr().Is6() {
		out.IPIPMode = api.EncapNever
	}
	return out, true
}

// Block is what the dataplane needs of an IPAM block: its node, and the
// addresses other nodes borrowed from it.
type Block struct {
	CIDR     netip.Prefix
	Node     string                // affinity ("" for none)
	Borrowed map[netip.Addr]string // address -> node holding it
}

// BlockFromAPI converts an IPAM block (ok false for an invalid CIDR).
func BlockFromAPI(b *api.AllocationBlock) (Block, bool) {
	cidr, err := b.Prefix()
	if err != nil {
		return Block{}, false
	}
	out := Block{CIDR: cidr, Node: b.AffinityNode()}
	for _, x := range b.Borrowed() {
		if out.Borrowed == nil {
			out.Borrowed = map[netip.Addr]string{}
		}
		out.Borrowed[api.AddrAt(cidr, x.Ordinal)] = x.Node
	}
	return out, true
}

// Workload is a local workload interface and its addresses.
type Workload struct {
	Key   string // namespace/name
	Iface string
	Addrs []netip.Prefix // host routes: IPv4 /32, IPv6 /128
}

// WorkloadFromAPI converts a WorkloadEndpoint.
func WorkloadFromAPI(w *api.WorkloadEndpoint) Workload {
	out := Workload{Key: w.Metadata.Namespace + "/" + w.Metadata.Name, Iface: w.Spec.InterfaceName}
	for _, n := range w.Spec.IPNetworks {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			a, aerr := netip.ParseAddr(n)
			if aerr != nil {
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() || p.Addr().Zone() != "" {
			continue
		}
		out.Addrs = append(out.Addrs, p.Masked())
	}
	return out
}

// route is an intended route in the main table.
type route struct {
	blackhole bool
	dev       string
	gw        netip.Addr
	onlink    bool
	scopeLink bool // IPv4 only: the kernel keeps no scope on IPv6 routes
}

func (r *route) String() string {
	if r.blackhole {
		return "blackhole"
	}
	s := "dev " + r.dev
	if r.gw.IsValid() {
		s = "via " + r.gw.String() + " " + s
	}
	if r.onlink {
		s += " onlink"
	}
	if r.scopeLink {
		s += " scope link"
	}
	return s
}

// vtep is a remote VXLAN endpoint.
type vtep struct {
	tunnelIP netip.Addr
	mac      string
	nodeIP   netip.Addr
}

// Observer receives the dataplane's measurements (see the agent's
// Prometheus metrics). Methods must be cheap and thread-safe.
type Observer interface {
	RouteOp(op string)                     // add, replace, delete
	RoutesProgrammed(n int)                // routes the agent owns in the kernel
	DriftRepaired(kind string)             // route, link, neigh, fdb
	Error(kind string)                     // route, link, neigh, ipip, ...
	Reconciled(full bool, d time.Duration) // one Apply or Resync
}

type nopObserver struct{}

func (nopObserver) RouteOp(string)                 {}
func (nopObserver) RoutesProgrammed(int)           {}
func (nopObserver) DriftRepaired(string)           {}
func (nopObserver) Error(string)                   {}
func (nopObserver) Reconciled(bool, time.Duration) {}

type set[K comparable] map[K]struct{}

func (s set[K]) add(k K) { s[k] = struct{}{} }

// Dataplane holds the intended state and what it believes the kernel has.
type Dataplane struct {
	cfg Config
	nl  complete // every dump retried until whole
	log logrus.FieldLogger
	obs Observer

	mu sync.Mutex

	// Inputs.
	local     Node
	haveLocal bool
	nodes     map[string]*Node
	pools     map[netip.Prefix]*Pool
	// clusterRoutes: which pools' routes to other nodes BIRD programs
	// (BGPConfiguration programClusterRoutes); the agent programs the rest.
	clusterRoutes api.ClusterRoutePolicy
	blocks        map[netip.Prefix]string // block -> affine node
	byNode        map[string]set[netip.Prefix]
	workloads     map[string]*Workload
	// Addresses borrowed from blocks: host prefix -> the node holding it,
	// indexed by block and by node.
	borrowed      map[netip.Prefix]string
	borrowedIn    map[netip.Prefix][]netip.Prefix
	borrowedBy    map[string]set[netip.Prefix]
	borrowRoutes  map[netip.Prefix]*route
	dirtyBorrowed set[netip.Prefix]

	// Intended routes, per source; workload routes win over routes to
	// borrowed addresses, which win over block routes, for the same
	// destination.
	blockRoutes map[netip.Prefix]*route
	wlRoutes    map[netip.Prefix]*route
	wlOwner     map[netip.Prefix]string
	byDev       map[string]set[netip.Prefix]
	vx          [2]*vxlanFam // per family (fi): VXLAN device and VTEPs

	// Dirty state, consumed by Apply.
	dirtyBlocks    set[netip.Prefix]
	dirtyWorkloads set[string]
	dirtyRoutes    set[netip.Prefix]
	pending        set[netip.Prefix] // wanted, waiting for a device
	dirtyVTEPs     set[string]
	allBlocksDirty bool
	devicesDirty   bool
	needResync     bool
	failed         bool // the last Apply left something undone

	// The kernel as last seen.
	linkIdx    map[string]int
	linkName   map[int]string
	programmed map[netip.Prefix]netlink.Route
	// spareProgrammed is an empty map kept for the next resync.
	spareProgrammed map[netip.Prefix]netlink.Route
	progByLink      map[int]set[netip.Prefix]
	conflicts       map[netip.Prefix]int // destination -> foreign protocol

	// Devices. parent and parentIndex are those of the interface holding
	// the node's IPv4 address; the ...6 ones of its IPv6 address.
	parent       string
	parentIndex  int
	parent6      string
	parentIndex6 int
	hostMTU      int      // node/mtu: the smallest of the parents', or by pattern
	mtus         mtu.MTUs // computed from hostMTU and the pools
	mtuWritten   int      // the value last written to cfg.MTUFile
	ipipUp       bool
	ipipErr      error
	kick         chan struct{}
	lastResync   time.Time
	repairKinds  map[netip.Prefix]bool // routes deleted behind our back
	repairVTEP   map[string]bool       // VTEP entries deleted behind our back
	inputsReady  bool

	// hold postpones every removal (SetHold): an input is broken, so
	// what looks unwanted may only be unknown.
	hold       bool
	heldRoutes set[netip.Prefix] // routes kept that would have been removed
}

// New returns a dataplane programming through nl.
func New(cfg Config, nl Netlink, log logrus.FieldLogger, obs Observer) *Dataplane {
	cfg.defaults()
	if log == nil {
		log = logrus.StandardLogger()
	}
	if obs == nil {
		obs = nopObserver{}
	}
	return &Dataplane{
		cfg: cfg, nl: complete{nl}, log: log.WithField("component", "dataplane"), obs: obs,
		local: Node{Name: cfg.NodeName}, nodes: map[string]*Node{}, pools: map[netip.Prefix]*Pool{},
		clusterRoutes: api.ClusterRoutes(nil),
		blocks:        map[netip.Prefix]string{}, byNode: map[string]set[netip.Prefix]{}, workloads: map[string]*Workload{},
		blockRoutes: map[netip.Prefix]*route{}, wlRoutes: map[netip.Prefix]*route{}, wlOwner: map[netip.Prefix]string{},
		byDev: map[string]set[netip.Prefix]{}, vx: [2]*vxlanFam{newVXLANFam(4), newVXLANFam(6)},
		borrowed: map[netip.Prefix]string{}, borrowedIn: map[netip.Prefix][]netip.Prefix{}, borrowedBy: map[string]set[netip.Prefix]{},
		borrowRoutes: map[netip.Prefix]*route{}, dirtyBorrowed: set[netip.Prefix]{},
		dirtyBlocks: set[netip.Prefix]{}, dirtyWorkloads: set[string]{}, dirtyRoutes: set[netip.Prefix]{}, pending: set[netip.Prefix]{}, dirtyVTEPs: set[string]{},
		linkIdx: map[string]int{}, linkName: map[int]string{}, programmed: map[netip.Prefix]netlink.Route{},
		conflicts: map[netip.Prefix]int{}, progByLink: map[int]set[netip.Prefix]{},
		kick: make(chan struct{}, 1), needResync: true, devicesDirty: true,
		repairKinds: map[netip.Prefix]bool{}, repairVTEP: map[string]bool{}, inputsReady: !cfg.WaitForInputs,
		heldRoutes: set[netip.Prefix]{},
	}
}

// SetHold holds (true) or resumes (false) the removal of kernel state.
// The agent holds it while an object the dataplane depends on is present
// but broken (docs/roost-node.md, "Broken objects"): the object's last
// good value stays in the inputs, and what cannot be known at all (a
// broken pool after a restart) must not be taken for absent. While held,
// routes, tunnel devices and addresses, and VTEP neighbour and FDB
// entries are added and changed but never removed. Resuming runs a full
// resync, which removes what is no longer wanted.
func (d *Dataplane) SetHold(hold bool) {
	d.mu.Lock()
	was := d.hold
	d.hold = hold
	if !hold {
		clear(d.heldRoutes)
	}
	d.mu.Unlock()
	switch {
	case hold && !was:
		d.log.Warn("removals held: an input is broken; nothing is removed from the kernel until it is fixed or deleted")
	case !hold && was:
		d.log.Info("removals resumed: resyncing with the kernel")
		d.RequestResync()
	}
}

// InputsReady tells a dataplane created with WaitForInputs that it has
// been given the complete state (nodes, pools, blocks, workloads).
func (d *Dataplane) InputsReady() {
	d.mu.Lock()
	d.inputsReady = true
	d.mu.Unlock()
	d.poke()
}

func (d *Dataplane) poke() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// SetNode records a node (this one or another).
func (d *Dataplane) SetNode(n Node) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n.Name == d.cfg.NodeName {
		if d.haveLocal && d.local.equal(&n) {
			return
		}
		d.local, d.haveLocal = n, true
		// Subnet, parent device and tunnel addresses may all change.
		d.devicesDirty = true
		d.allBlocksDirty = true
		for name := range d.nodes {
			d.dirtyVTEPs.add(name)
		}
		d.poke()
		return
	}
	if old, ok := d.nodes[n.Name]; ok && old.equal(&n) {
		return
	}
	c := n
	d.nodes[n.Name] = &c
	d.markNode(n.Name)
}

// DeleteNode forgets a node.
func (d *Dataplane) DeleteNode(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if name == d.cfg.NodeName {
		d.haveLocal = false
		d.local = Node{Name: name}
		d.devicesDirty, d.allBlocksDirty = true, true
		d.poke()
		return
	}
	if _, ok := d.nodes[name]; !ok {
		return
	}
	delete(d.nodes, name)
	d.markNode(name)
}

func (d *Dataplane) markNode(name string) {
	for b := range d.byNode[name] {
		d.dirtyBlocks.add(b)
	}
	for a := range d.borrowedBy[name] {
		d.dirtyBorrowed.add(a)
	}
	d.dirtyVTEPs.add(name)
	d.poke()
}

// SetPool records a pool.
func (d *Dataplane) SetPool(p Pool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if old, ok := d.pools[p.CIDR]; ok && *old == p {
		return
	}
	c := p
	d.pools[p.CIDR] = &c
	d.markPool(p.CIDR)
}

// SetClusterRoutes sets who programs the routes to other nodes' blocks of
// unencapsulated pools (api.ClusterRoutes of the default BGPConfiguration):
// BIRD (the default), or this agent, straight to nodes in this node's
// subnet as for CrossSubnet pools.
func (d *Dataplane) SetClusterRoutes(p api.ClusterRoutePolicy) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.clusterRoutes == p {
		return
	}
	d.clusterRoutes = p
	for cidr := range d.pools {
		d.markPool(cidr)
	}
}

// DeletePool forgets a pool.
func (d *Dataplane) DeletePool(cidr netip.Prefix) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.pools[cidr]; !ok {
		return
	}
	delete(d.pools, cidr)
	d.markPool(cidr)
}

func (d *Dataplane) markPool(cidr netip.Prefix) {
	// Blocks inside the pool change; the devices may appear or go.
	for b := range d.blocks {
		if cidr.Overlaps(b) {
			d.dirtyBlocks.add(b)
			for _, a := range d.borrowedIn[b] {
				d.dirtyBorrowed.add(a)
			}
		}
	}
	d.devicesDirty = true
	d.poke()
}

// SetBlock records that block is affine to node ("" for none).
func (d *Dataplane) SetBlock(cidr netip.Prefix, node string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if old, ok := d.blocks[cidr]; ok {
		if old == node {
			return
		}
		delete(d.byNode[old], cidr)
	}
	d.blocks[cidr] = node
	if d.byNode[node] == nil {
		d.byNode[node] = set[netip.Prefix]{}
	}
	d.byNode[node].add(cidr)
	d.dirtyBlocks.add(cidr)
	d.poke()
}

// DeleteBlock forgets a block.
func (d *Dataplane) DeleteBlock(cidr netip.Prefix) {
	d.mu.Lock()
	defer d.mu.Unlock()
	old, ok := d.blocks[cidr]
	if !ok {
		return
	}
	delete(d.byNode[old], cidr)
	delete(d.blocks, cidr)
	d.dirtyBlocks.add(cidr)
	d.setBorrowedLocked(cidr, nil)
	d.poke()
}

// SetBorrowed records the addresses of block that other nodes than its
// owner hold (address -> node; nil: none), from the allocations' node
// attribute (api.AllocationBlock.Borrowed). Each is routed to its node
// like a block of its own: through the tunnel of an encapsulated pool,
// by BIRD (learned over BGP) otherwise.
func (d *Dataplane) SetBorrowed(block netip.Prefix, borrowed map[netip.Addr]string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.setBorrowedLocked(block, borrowed)
}

func (d *Dataplane) setBorrowedLocked(block netip.Prefix, borrowed map[netip.Addr]string) {
	old := d.borrowedIn[block]
	if len(old) == 0 && len(borrowed) == 0 {
		return
	}
	same := len(old) == len(borrowed)
	for _, p := range old {
		if !same || borrowed[p.Addr()] != d.borrowed[p] {
			same = false
			break
		}
	}
	if same {
		return
	}
	for _, p := range old {
		if n := d.borrowed[p]; n != "" {
			delete(d.borrowedBy[n], p)
		}
		delete(d.borrowed, p)
		d.dirtyBorrowed.add(p)
	}
	var now []netip.Prefix
	for a, n := range borrowed {
		p := netip.PrefixFrom(a, a.BitLen())
		if !block.Contains(a) {
			continue
		}
		now = append(now, p)
		d.borrowed[p] = n
		if d.borrowedBy[n] == nil {
			d.borrowedBy[n] = set[netip.Prefix]{}
		}
		d.borrowedBy[n].add(p)
		d.dirtyBorrowed.add(p)
	}
	if len(now) == 0 {
		delete(d.borrowedIn, block)
	} else {
		d.borrowedIn[block] = now
	}
	d.poke()
}

// SetWorkload records a local workload.
func (d *Dataplane) SetWorkload(w Workload) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := w
	c.Addrs = append([]netip.Prefix(nil), w.Addrs...)
	if old, ok := d.workloads[w.Key]; ok && old.Iface == c.Iface && equalPrefixes(old.Addrs, c.Addrs) {
		return
	}
	if old, ok := d.workloads[w.Key]; ok {
		d.dropWorkloadRoutes(old)
	}
	d.workloads[w.Key] = &c
	d.dirtyWorkloads.add(w.Key)
	d.poke()
}

// DeleteWorkload forgets a local workload.
func (d *Dataplane) DeleteWorkload(key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	old, ok := d.workloads[key]
	if !ok {
		return
	}
	d.dropWorkloadRoutes(old)
	delete(d.workloads, key)
	d.poke()
}

func equalPrefixes(a, b []netip.Prefix) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (d *Dataplane) dropWorkloadRoutes(w *Workload) {
	for _, a := range w.Addrs {
		if d.wlOwner[a] == w.Key {
			d.setRoute(d.wlRoutes, a, nil)
			delete(d.wlOwner, a)
		}
	}
}

// setRoute updates one source map, keeping the per-device index and
// marking the destination dirty when the intended route changed.
func (d *Dataplane) setRoute(m map[netip.Prefix]*route, dst netip.Prefix, r *route) {
	old := m[dst]
	if old == nil && r == nil {
		return
	}
	if old != nil && r != nil && *old == *r {
		return
	}
	if old != nil && old.dev != "" {
		if s := d.byDev[old.dev]; s != nil {
			delete(s, dst)
		}
	}
	if r == nil {
		delete(m, dst)
	} else {
		m[dst] = r
		if r.dev != "" {
			if d.byDev[r.dev] == nil {
				d.byDev[r.dev] = set[netip.Prefix]{}
			}
			d.byDev[r.dev].add(dst)
		}
	}
	d.dirtyRoutes.add(dst)
}

// want is the intended route for dst (nil: none).
func (d *Dataplane) want(dst netip.Prefix) *route {
	if r := d.wlRoutes[dst]; r != nil {
		return r
	}
	if r := d.borrowRoutes[dst]; r != nil {
		return r
	}
	return d.blockRoutes[dst]
}

// poolOf finds the (most specific) pool containing block.
func (d *Dataplane) poolOf(block netip.Prefix) *Pool {
	var best *Pool
	for _, p := range d.pools {
		if p.CIDR.Bits() <= block.Bits() && p.CIDR.Contains(block.Addr()) && (best == nil || p.CIDR.Bits() > best.CIDR.Bits()) {
			best = p
		}
	}
	return best
}

// SameSubnet reports whether the remote node IP is inside this node's
// subnet (the CrossSubnet decision: no encapsulation when true).
func SameSubnet(local netip.Prefix, remote netip.Addr) bool {
	return local.IsValid() && remote.IsValid() && local.Masked().Contains(remote)
}

// blockRoute computes the route for one block.
func (d *Dataplane) blockRoute(cidr netip.Prefix) *route {
	owner, ok := d.blocks[cidr]
	if !ok || owner == "" {
		return nil
	}
	if owner == d.cfg.NodeName {
		if cidr.Bits() == cidr.Addr().BitLen() {
			return nil // a /32 block: nothing to blackhole
		}
		return &route{blackhole: true}
	}
	return d.routeToNode(cidr, owner)
}

// borrowRoute computes the route for an address a node borrowed from a
// block: none when this node holds it (its workload route covers it).
func (d *Dataplane) borrowRoute(dst netip.Prefix) *route {
	n, ok := d.borrowed[dst]
	if !ok || n == d.cfg.NodeName {
		return nil
	}
	return d.routeToNode(dst, n)
}

// routeToNode is the route to dst, held by another node: through the
// tunnel its pool asks for, straight to the node for CrossSubnet pools
// inside the subnet, and none (BIRD's job) without encapsulation.
func (d *Dataplane) routeToNode(dst netip.Prefix, owner string) *route {
	fam := famOf(dst.Addr())
	pool := d.poolOf(dst)
	rn := d.nodes[owner]
	if pool == nil || rn == nil || !rn.addr(fam).IsValid() {
		return nil
	}
	raddr := rn.addr(fam).Addr()
	same := SameSubnet(d.local.addr(fam), raddr)
	encap := func(mode string) bool {
		return mode == api.EncapAlways || (mode == api.EncapCrossSubnet && !same)
	}
	switch {
	case encap(pool.VXLANMode):
		tun := rn.vxlanAddr(fam)
		if !d.vx[fi(fam)].up || !tun.IsValid() {
			return nil
		}
		if dst.Bits() == hostBits(fam) && dst.Addr() == tun {
			// The node's own tunnel address, borrowed: its neighbour
			// entry resolves it, no gateway needed (nor allowed).
			return &route{dev: vxlanDevice(fam), scopeLink: true}
		}
		return &route{dev: vxlanDevice(fam), gw: tun, onlink: true}
	case fam == 4 && encap(pool.IPIPMode):
		if !d.ipipUp {
			return nil
		}
		return &route{dev: names.IPIPDevice, gw: raddr, onlink: true}
	case pool.VXLANMode == api.EncapCrossSubnet || (fam == 4 && pool.IPIPMode == api.EncapCrossSubnet) ||
		(same && !d.clusterRoutes.BIRDPrograms(pool.IPIPMode, pool.VXLANMode, fam == 6)):
		// Same subnet: straight to the node over the host interface (also
		// for unencapsulated pools that programClusterRoutes leaves here).
		parent, _ := d.parentOf(fam)
		if parent == "" {
			return nil
		}
		return &route{dev: parent, gw: raddr, onlink: true}
	}
	return nil // no encapsulation: BIRD programs these routes (or none can reach the node)
}

// Status is a snapshot for health output and tests.
type Status struct {
	Routes       int
	Parent       string
	HostMTU      int
	ParentV6     string   `json:",omitempty"`
	MTU          mtu.MTUs // host, tunnel and workload MTUs
	IPIPReady    bool
	VXLANReady   bool
	VXLANV6Ready bool
	IPIPError    string
	Conflicts    int // destinations held by routes of another protocol
	Pending      int // routes waiting for their device to exist or be up
	// Held: removals are held (SetHold); HeldRoutes are routes kept that
	// would otherwise have been removed.
	Held       bool
	HeldRoutes int
}

// Status returns the current state.
func (d *Dataplane) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := Status{Routes: len(d.programmed), Parent: d.parent, HostMTU: d.hostMTU, ParentV6: d.parent6, MTU: d.mtus, IPIPReady: d.ipipUp,
		VXLANReady: d.vx[0].up, VXLANV6Ready: d.vx[1].up, Conflicts: len(d.conflicts), Pending: len(d.pending),
		Held: d.hold, HeldRoutes: len(d.heldRoutes)}
	if d.ipipErr != nil {
		s.IPIPError = d.ipipErr.Error()
	}
	return s
}

// ErrNoIPIP marks the error reported when the kernel cannot create tunl0.
var ErrNoIPIP = errors.New("the kernel has no IPIP support")

func ipipUnsupported(err error) error {
	return fmt.Errorf("%w: creating %s (type ipip) failed: %v; load or build the kernel's ipip module (CONFIG_NET_IPIP, `modprobe ipip`) "+
		"or use vxlanMode instead of ipipMode; routes to remote blocks of IPIP pools are not programmed, everything else keeps working",
		ErrNoIPIP, names.IPIPDevice, err)
}

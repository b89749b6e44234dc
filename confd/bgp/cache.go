package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/api/selector"
	"github.com/roostnet/roost/confd/birdfmt"
	"github.com/roostnet/roost/datastore"
)

// Cache is an indexed in-memory copy of the resources the BGP model reads:
// BGPConfigurations (default and node.<name>), BGPPeers, Nodes, IPPools,
// BGPFilters, BlockAffinities and BFDProfiles. It is updated one key at a
// time (Apply) and keeps indexes so that Compute touches only what it needs:
//
//   - nodes by name, node addresses -> node names, per family a list of
//     nodes sorted by address (the mesh walks it; kept sorted by binary
//     insertion, O(log n) search per change);
//   - route-reflector nodes;
//   - for every distinct selector of a BGPPeer, the set of matching nodes,
//     updated when a node's labels change (O(#selectors) per node change)
//     or a selector appears (O(#nodes) once);
//   - BGPPeers split into global, by spec.node, with nodeSelector, with
//     peerSelector, and by peerIP address;
//   - BGPFilters compiled once per change;
//   - block affinities by node;
//   - BFDProfiles by name.
//
// A Cache is safe for concurrent use: Apply takes a write lock, Compute a
// read lock.
type Cache struct {
	mu      sync.RWMutex
	version uint64
	keys    map[string]struct{}

	global  *api.BGPConfiguration
	nodeCfg map[string]*api.BGPConfiguration // by node name

	nodes  map[string]*nodeInfo
	byIP   map[netip.Addr][]*nodeInfo
	sorted [2][]*nodeInfo // per family (0: v4, 1: v6), by address then name
	rr     map[string]*nodeInfo

	selectors map[string]*selEntry // by selector text as written

	peers        map[string]*peerInfo
	globalPeers  map[string]*peerInfo
	nodePeers    map[string]map[string]*peerInfo // by spec.node
	nodeSelPeers map[string]*peerInfo
	peerSelPeers map[string]*peerInfo
	peersByIP    map[netip.Addr]map[string]*peerInfo

	pools      map[string]*api.IPPool
	filters    map[string]*compiledFilter
	affinities map[string]map[string]*api.BlockAffinity // node -> cidr -> affinity

	bfdProfiles map[string]*api.BFDProfile
}

// nodeInfo is a Node with what Compute needs precomputed.
type nodeInfo struct {
	name   string
	labels map[string]string
	as     uint32 // 0: not set on the node
	rrID   string
	// rrIDErr holds an invalid routeReflectorClusterID (ignored).
	rrIDErr string
	addrs   [2]nodeAddr
	// meshDesc is the description of mesh sessions to the node.
	meshDesc string
}

type nodeAddr struct {
	addr    netip.Addr // invalid when the node has none
	str     string     // "10.0.0.1"
	cidr    string     // "10.0.0.1/24" (or the bare address)
	network string     // "10.0.0.0/24" or ""
	nameIP  string     // "10_0_0_1"
	// Session names to this address (default port), built once.
	meshName, nodeName string
}

type selEntry struct {
	text    string
	sel     selector.Selector
	err     error
	refs    int
	matches map[string]*nodeInfo
}

type peerInfo struct {
	name    string
	peer    *api.BGPPeer
	ip      netip.Addr // valid when peerIP is set and parses
	port    int        // from peerIP, 0 when not given
	ipErr   error
	nodeSel *selEntry
	peerSel *selEntry
	global  bool // neither node nor nodeSelector
	reverse bool // reversePeering Auto (the default)
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{
		keys:         map[string]struct{}{},
		nodeCfg:      map[string]*api.BGPConfiguration{},
		nodes:        map[string]*nodeInfo{},
		byIP:         map[netip.Addr][]*nodeInfo{},
		rr:           map[string]*nodeInfo{},
		selectors:    map[string]*selEntry{},
		peers:        map[string]*peerInfo{},
		globalPeers:  map[string]*peerInfo{},
		nodePeers:    map[string]map[string]*peerInfo{},
		nodeSelPeers: map[string]*peerInfo{},
		peerSelPeers: map[string]*peerInfo{},
		peersByIP:    map[netip.Addr]map[string]*peerInfo{},
		pools:        map[string]*api.IPPool{},
		filters:      map[string]*compiledFilter{},
		affinities:   map[string]map[string]*api.BlockAffinity{},
		bfdProfiles:  map[string]*api.BFDProfile{},
	}
}

// Version counts the changes applied so far.
func (c *Cache) Version() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.version
}

// Keys returns the keys currently held, sorted (for relists: a key not
// seen again before the next in-sync is deleted by the caller).
func (c *Cache) Keys() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]string, 0, len(c.keys))
	for k := range c.keys {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Relevant reports whether Apply would keep an object under key (kinds
// the BGP model does not read, such as WorkloadEndpoints, IPAM blocks and
// handles, are ignored).
func Relevant(key string) bool {
	info, err := datastore.ParseKey(key)
	if err != nil {
		return false
	}
	switch info.Kind {
	case api.KindBGPConfiguration, api.KindBGPPeer, api.KindNode, api.KindIPPool, api.KindBGPFilter, api.KindBlockAffinity,
		api.KindBFDProfile:
		return true
	}
	return false
}

// Apply stores obj under key (a Calico etcd key, see datastore.KeyFor), or
// deletes what key holds when obj is nil. The name and, for affinities,
// the node and CIDR come from the key. Keys of kinds the model does not
// read are ignored. The objects must not be modified afterwards.
func (c *Cache) Apply(key string, obj api.Resource) error {
	info, err := datastore.ParseKey(key)
	if err != nil {
		return err
	}
	if !Relevant(key) {
		return nil
	}
	if obj != nil && obj.ResourceKind() != info.Kind {
		return fmt.Errorf("key %s holds a %s, got a %s", key, info.Kind, obj.ResourceKind())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.version++
	if obj == nil {
		delete(c.keys, key)
	} else {
		c.keys[key] = struct{}{}
	}
	switch info.Kind {
	case api.KindBGPConfiguration:
		c.setConfig(info.Name, asKind[*api.BGPConfiguration](obj))
	case api.KindBGPPeer:
		c.setPeer(info.Name, asKind[*api.BGPPeer](obj))
	case api.KindNode:
		c.setNode(info.Name, asKind[*api.Node](obj))
	case api.KindIPPool:
		if p := asKind[*api.IPPool](obj); p != nil {
			c.pools[info.Name] = p
		} else {
			delete(c.pools, info.Name)
		}
	case api.KindBGPFilter:
		if f := asKind[*api.BGPFilter](obj); f != nil {
			c.filters[info.Name] = compileFilter(info.Name, f)
		} else {
			delete(c.filters, info.Name)
		}
	case api.KindBlockAffinity:
		c.setAffinity(info.Node, info.CIDR, asKind[*api.BlockAffinity](obj))
	case api.KindBFDProfile:
		if p := asKind[*api.BFDProfile](obj); p != nil {
			c.bfdProfiles[info.Name] = p
		} else {
			delete(c.bfdProfiles, info.Name)
		}
	}
	return nil
}

// Set stores obj under the key derived from it (datastore.KeyFor).
func (c *Cache) Set(obj api.Resource) error {
	key, err := datastore.KeyFor(obj)
	if err != nil {
		return err
	}
	return c.Apply(key, obj)
}

func asKind[T api.Resource](obj api.Resource) T {
	var zero T
	if obj == nil {
		return zero
	}
	return obj.(T)
}

func (c *Cache) setConfig(name string, cfg *api.BGPConfiguration) {
	if name == api.DefaultBGPConfigName {
		c.global = cfg
		return
	}
	node, ok := strings.CutPrefix(name, api.NodeBGPConfigPrefix)
	if !ok {
		return // not a name Calico gives meaning to
	}
	if cfg == nil {
		delete(c.nodeCfg, node)
	} else {
		c.nodeCfg[node] = cfg
	}
}

func (c *Cache) setAffinity(node, cidr string, a *api.BlockAffinity) {
	m := c.affinities[node]
	if a == nil {
		delete(m, cidr)
		if len(m) == 0 {
			delete(c.affinities, node)
		}
		return
	}
	if m == nil {
		m = map[string]*api.BlockAffinity{}
		c.affinities[node] = m
	}
	m[cidr] = a
}

// --- nodes ---

func newNodeInfo(name string, n *api.Node) *nodeInfo {
	ni := &nodeInfo{name: name, labels: n.Metadata.Labels, meshDesc: "Mesh to node " + name}
	if b := n.Spec.BGP; b != nil {
		if b.ASNumber != nil {
			ni.as = uint32(*b.ASNumber)
		}
		if id := b.RouteReflectorClusterID; id != "" {
			// The id goes into the config unquoted: keep only a valid
			// IPv4-form id (api validation requires one).
			if a, err := netip.ParseAddr(id); err == nil && a.Is4() {
				ni.rrID = a.String()
			} else {
				ni.rrIDErr = id
			}
		}
		ni.addrs[0] = parseNodeAddr(b.IPv4Address, false)
		ni.addrs[1] = parseNodeAddr(b.IPv6Address, true)
	}
	return ni
}

func parseNodeAddr(s string, want6 bool) nodeAddr {
	if s == "" {
		return nodeAddr{}
	}
	a, p, err := api.ParseAddrMaybeCIDR(s)
	if err != nil || a.Zone() != "" || a.Is6() != want6 || a.Is4In6() {
		return nodeAddr{}
	}
	na := nodeAddr{addr: a, str: a.String(), cidr: a.String()}
	if p.IsValid() {
		na.cidr = p.String()
		na.network = p.Masked().String()
	}
	na.nameIP, _ = birdfmt.NameIP(na.str)
	na.meshName, na.nodeName = "Mesh_"+na.nameIP, "Node_"+na.nameIP
	return na
}

func (c *Cache) setNode(name string, n *api.Node) {
	old := c.nodes[name]
	if old != nil {
		c.unindexNode(old)
	}
	if n == nil {
		delete(c.nodes, name)
		for _, s := range c.selectors {
			delete(s.matches, name)
		}
		return
	}
	ni := newNodeInfo(name, n)
	c.nodes[name] = ni
	c.indexNode(ni)
	for _, s := range c.selectors {
		if s.sel != nil && s.sel.Evaluate(ni.labels) {
			s.matches[name] = ni
		} else {
			delete(s.matches, name)
		}
	}
}

func (c *Cache) indexNode(ni *nodeInfo) {
	if ni.rrID != "" {
		c.rr[ni.name] = ni
	}
	for f := range ni.addrs {
		a := ni.addrs[f].addr
		if !a.IsValid() {
			continue
		}
		list := append(c.byIP[a], ni)
		slices.SortFunc(list, func(x, y *nodeInfo) int { return strings.Compare(x.name, y.name) })
		c.byIP[a] = list
		i, _ := slices.BinarySearchFunc(c.sorted[f], ni, func(x, t *nodeInfo) int { return cmpNode(f, x, t) })
		c.sorted[f] = slices.Insert(c.sorted[f], i, ni)
	}
}

func (c *Cache) unindexNode(ni *nodeInfo) {
	delete(c.rr, ni.name)
	for f := range ni.addrs {
		a := ni.addrs[f].addr
		if !a.IsValid() {
			continue
		}
		list := slices.DeleteFunc(c.byIP[a], func(x *nodeInfo) bool { return x == ni })
		if len(list) == 0 {
			delete(c.byIP, a)
		} else {
			c.byIP[a] = list
		}
		if i, ok := slices.BinarySearchFunc(c.sorted[f], ni, func(x, t *nodeInfo) int { return cmpNode(f, x, t) }); ok {
			c.sorted[f] = slices.Delete(c.sorted[f], i, i+1)
		}
	}
}

func cmpNode(f int, x, y *nodeInfo) int {
	if d := x.addrs[f].addr.Compare(y.addrs[f].addr); d != 0 {
		return d
	}
	return strings.Compare(x.name, y.name)
}

// --- selectors ---

func (c *Cache) acquireSelector(text string) *selEntry {
	if s := c.selectors[text]; s != nil {
		s.refs++
		return s
	}
	s := &selEntry{text: text, refs: 1, matches: map[string]*nodeInfo{}}
	s.sel, s.err = selector.Parse(text)
	if s.sel != nil {
		for name, ni := range c.nodes {
			if s.sel.Evaluate(ni.labels) {
				s.matches[name] = ni
			}
		}
	}
	c.selectors[text] = s
	return s
}

func (c *Cache) releaseSelector(s *selEntry) {
	if s == nil {
		return
	}
	s.refs--
	if s.refs <= 0 {
		delete(c.selectors, s.text)
	}
}

// --- peers ---

func (c *Cache) setPeer(name string, p *api.BGPPeer) {
	if old := c.peers[name]; old != nil {
		c.unindexPeer(old)
	}
	if p == nil {
		return
	}
	pi := &peerInfo{name: name, peer: p}
	s := &p.Spec
	pi.global = s.Node == "" && s.NodeSelector == ""
	pi.reverse = s.ReversePeering == nil || *s.ReversePeering != api.ReversePeeringManual
	if s.PeerIP != "" {
		a, port, err := api.ParseIPPort(s.PeerIP)
		if err != nil {
			pi.ipErr = err
		} else {
			pi.ip, pi.port = a.Unmap(), int(port)
		}
	}
	if s.NodeSelector != "" {
		pi.nodeSel = c.acquireSelector(s.NodeSelector)
	}
	if s.PeerSelector != "" {
		pi.peerSel = c.acquireSelector(s.PeerSelector)
	}
	c.peers[name] = pi
	switch {
	case pi.global:
		c.globalPeers[name] = pi
	case s.Node != "":
		m := c.nodePeers[s.Node]
		if m == nil {
			m = map[string]*peerInfo{}
			c.nodePeers[s.Node] = m
		}
		m[name] = pi
	default:
		c.nodeSelPeers[name] = pi
	}
	if pi.peerSel != nil {
		c.peerSelPeers[name] = pi
	}
	if pi.ip.IsValid() {
		m := c.peersByIP[pi.ip]
		if m == nil {
			m = map[string]*peerInfo{}
			c.peersByIP[pi.ip] = m
		}
		m[name] = pi
	}
}

func (c *Cache) unindexPeer(pi *peerInfo) {
	delete(c.peers, pi.name)
	delete(c.globalPeers, pi.name)
	delete(c.nodeSelPeers, pi.name)
	delete(c.peerSelPeers, pi.name)
	if n := pi.peer.Spec.Node; n != "" {
		if m := c.nodePeers[n]; m != nil {
			delete(m, pi.name)
			if len(m) == 0 {
				delete(c.nodePeers, n)
			}
		}
	}
	if pi.ip.IsValid() {
		if m := c.peersByIP[pi.ip]; m != nil {
			delete(m, pi.name)
			if len(m) == 0 {
				delete(c.peersByIP, pi.ip)
			}
		}
	}
	c.releaseSelector(pi.nodeSel)
	c.releaseSelector(pi.peerSel)
}

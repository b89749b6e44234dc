package bgp

import (
	"cmp"
	"crypto/sha256"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/confd/birdfmt"
)

// Options select the node and the host-local settings of a Compute.
type Options struct {
	// NodeName is the node to compute the model for (required).
	NodeName string
	// RouterID is the value of CALICO_ROUTER_ID: "" (use the node's IPv4
	// address), "hash" (derive one from the node name: needed on IPv6-only
	// nodes) or an explicit IPv4 router id.
	RouterID string
	// SecretsDir holds BGP passwords: the password of secretKeyRef
	// {name: N, key: K} is the file <SecretsDir>/N/K, trimmed of one
	// trailing newline. Empty: passwords cannot be resolved (the sessions
	// that need one are disabled, with a warning).
	SecretsDir string
}

// Defaults Roost uses where Calico's resources leave a value open.
const (
	DefaultPort           = 179
	defaultHoldTime       = 240 // BIRD's default; keepalive must not exceed it
	maxHoldTime           = 65535
	defaultDeviceScanTime = 10
	defaultKernelScanTime = 2
)

// tunnelInterfaces are the globs of devices whose routes are never
// exported to iBGP peers: roost-node's IPIP and VXLAN devices (tunl0,
// vxlan.calico, vxlan-v6.calico) and Calico's other *.cali devices.
var tunnelInterfaces = []string{"tunl0", "*.calico", "*.cali"}

// Session priorities: a lower value wins when two sources produce a
// session to the same ip:port.
const (
	prioGlobal = iota
	prioNode
	prioReverse
	prioMesh
)

// candidate is a session before deduplication; options are materialized
// only for the winners.
type candidate struct {
	prio    int
	addr    netip.Addr
	port    int
	typ     string
	as      uint32
	localAS uint32 // 0: this node's AS (or the BGPPeer's localASNumber)
	src     *peerInfo
	node    *nodeInfo // node at the other end, or nil
	reverse bool
}

// Compute builds the Model of opts.NodeName. The returned problems name
// the resource and field of everything left out or degraded; a Problem
// with Fatal set (see Fatal) means the Model must not be rendered, and the
// Model is nil when nothing sensible can be computed (unknown node, no
// router id). Cost is linear in the number of nodes and peers involved.
func Compute(c *Cache, opts Options) (*Model, []error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	ps := &problems{}
	me := c.nodes[opts.NodeName]
	if opts.NodeName == "" {
		ps.fatal("", "", "", "no node name given (NODENAME)")
		return nil, ps.list
	}
	if me == nil {
		ps.fatal(api.KindNode, opts.NodeName, "", "not found in the datastore; nothing to render for this node")
		return nil, ps.list
	}
	if me.rrIDErr != "" {
		ps.warn(api.KindNode, me.name, "spec.bgp.routeReflectorClusterID", "%q is not in IPv4 form; the node is not treated as a route reflector", me.rrIDErr)
	}
	global := c.global
	if global == nil {
		global = &api.BGPConfiguration{}
	}
	nodeCfg := c.nodeCfg[opts.NodeName]

	m := &Model{
		NodeName:                opts.NodeName,
		ASNumber:                c.nodeAS(me),
		MeshEnabled:             global.Spec.NodeToNodeMeshEnabled == nil || *global.Spec.NodeToNodeMeshEnabled,
		RouteReflectorClusterID: me.rrID,
		ListenPort:              c.listenPort(opts.NodeName),
		DeviceScanTime:          defaultDeviceScanTime,
		KernelScanTime:          defaultKernelScanTime,
		KernelLearn:             true,
		KernelPersist:           true,
		KernelGracefulRestart:   true,
		KernelMergePaths:        true,
	}
	if rid, src, ok := routerID(opts, me, ps); ok {
		m.RouterID, m.RouterIDSource = rid, src
	} else {
		return nil, ps.list
	}
	m.LogLevel, m.BirdDebug = logLevel(global, nodeCfg)
	if bm := bindMode(global, nodeCfg); bm == api.BindModeNodeIP {
		m.BindMode = bm
	}
	m.IgnoredInterfaces = slices.Clone(global.Spec.IgnoredInterfaces)
	m.DirectExcludes = directExcludes(global)

	cx := &computeCtx{
		c: c, m: m, me: me, global: global, nodeCfg: nodeCfg, ps: ps,
		secrets:     newSecretReader(opts.SecretsDir),
		usedFilters: map[string]*compiledFilter{},
		warned:      map[string]bool{},
		bfd:         map[string]*BFD{},
	}
	m.V4 = cx.family(famV4)
	m.V6 = cx.family(famV6)
	for _, f := range []*Family{m.V4, m.V6} {
		if f.Enabled {
			m.Families = append(m.Families, f)
		}
		for _, p := range f.Peers {
			if p.BFD != nil {
				m.BFDSessions++
			}
		}
	}
	if m.BFDSessions > 0 {
		m.BFDProtocol = BFDProtocolName
	}
	slices.Sort(cx.missingBFD)
	m.MissingBFDProfiles = cx.missingBFD
	for _, cf := range cx.usedFilters {
		m.Filters = append(m.Filters, cf.model())
	}
	slices.SortFunc(m.Filters, func(a, b *Filter) int { return strings.Compare(a.Name, b.Name) })
	return m, ps.list
}

type computeCtx struct {
	c           *Cache
	m           *Model
	me          *nodeInfo
	global      *api.BGPConfiguration
	nodeCfg     *api.BGPConfiguration
	ps          *problems
	secrets     *secretReader
	usedFilters map[string]*compiledFilter
	warned      map[string]bool // one warning per BGPPeer+topic
	bfd         map[string]*BFD // by profile name; nil value: unusable
	missingBFD  []string        // profiles named but missing
}

func (cx *computeCtx) warnOnce(id, kind, name, field, format string, args ...any) {
	if cx.warned[id] {
		return
	}
	cx.warned[id] = true
	cx.ps.warn(kind, name, field, format, args...)
}

// globalAS is the default BGPConfiguration's asNumber, else 64512.
func (c *Cache) globalAS() uint32 {
	if c.global != nil && c.global.Spec.ASNumber != nil {
		return uint32(*c.global.Spec.ASNumber)
	}
	return uint32(api.DefaultASNumber)
}

// peerIPAS is the remote AS of a peerIP BGPPeer: its asNumber, else (it
// is optional in Calico) the AS of the node at that address, else the
// global AS.
func (c *Cache) peerIPAS(pi *peerInfo, peerNode *nodeInfo) uint32 {
	if as := uint32(pi.peer.Spec.ASNumber); as != 0 {
		return as
	}
	if peerNode != nil {
		return c.nodeAS(peerNode)
	}
	return c.globalAS()
}

// nodeAS is a node's effective AS: its own, else the global one.
func (c *Cache) nodeAS(n *nodeInfo) uint32 {
	if n.as != 0 {
		return n.as
	}
	return c.globalAS()
}

// peerIsNode reports whether the peerIP BGPPeer pi designates node n (whose
// address it names): a node is identified by address and AS, so a peer
// with another AS at a node's address is some other speaker there (no
// inherited listen port, no reverse session, no node-to-node passivity).
// A peer without asNumber takes the AS of the node it names, so it is
// that node.
func (c *Cache) peerIsNode(pi *peerInfo, n *nodeInfo) bool {
	as := uint32(pi.peer.Spec.ASNumber)
	return as == 0 || as == c.nodeAS(n)
}

// listenPort is a node's BGP port: node.<name> listenPort, else the global
// one, else 179.
func (c *Cache) listenPort(node string) int {
	if nc := c.nodeCfg[node]; nc != nil && nc.Spec.ListenPort != 0 {
		return int(nc.Spec.ListenPort)
	}
	if c.global != nil && c.global.Spec.ListenPort != 0 {
		return int(c.global.Spec.ListenPort)
	}
	return DefaultPort
}

func routerID(opts Options, me *nodeInfo, ps *problems) (id, source string, ok bool) {
	switch v := strings.TrimSpace(opts.RouterID); v {
	case "":
		if a := me.addrs[famV4].addr; a.IsValid() {
			return a.String(), "ipv4", true
		}
		ps.fatal(api.KindNode, me.name, "spec.bgp.ipv4Address",
			"the node has no IPv4 address, so BIRD has no router id: set CALICO_ROUTER_ID to \"hash\" or to an IPv4 router id")
		return "", "", false
	case "hash":
		// Calico's derivation, so that a node keeps its router id when it
		// moves from Calico to Roost: the first four bytes of SHA-256 of
		// the node name, the first lowered by 32 when above 223 (BGP
		// refuses multicast and reserved router ids).
		sum := sha256.Sum256([]byte(me.name))
		b := [4]byte{sum[0], sum[1], sum[2], sum[3]}
		if b[0] > 223 {
			b[0] -= 32
		}
		if b == [4]byte{} {
			b[3] = 1 // 0.0.0.0 is not a valid router id
		}
		return netip.AddrFrom4(b).String(), "hash", true
	default:
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Is4() || a.IsUnspecified() {
			ps.fatal("", "", "CALICO_ROUTER_ID", "%q is neither \"hash\" nor a non-zero IPv4 address", v)
			return "", "", false
		}
		return a.String(), "explicit", true
	}
}

func logLevel(global, nodeCfg *api.BGPConfiguration) (level, debug string) {
	sev := global.Spec.LogSeverityScreen
	if nodeCfg != nil && nodeCfg.Spec.LogSeverityScreen != "" {
		sev = nodeCfg.Spec.LogSeverityScreen
	}
	switch strings.ToLower(sev) {
	case "debug":
		return "debug", "all"
	case "", "info":
		return "info", "{ states }"
	default: // warning, error, fatal, none
		return "none", "off"
	}
}

func bindMode(global, nodeCfg *api.BGPConfiguration) string {
	if nodeCfg != nil && nodeCfg.Spec.BindMode != nil {
		return *nodeCfg.Spec.BindMode
	}
	if global.Spec.BindMode != nil {
		return *global.Spec.BindMode
	}
	return ""
}

func directExcludes(global *api.BGPConfiguration) []string {
	out := []string{"cali*", "kube-ipvs*"}
	for _, i := range global.Spec.IgnoredInterfaces {
		if !slices.Contains(out, i) {
			out = append(out, i)
		}
	}
	return out
}

func (cx *computeCtx) family(fam int) *Family {
	f := &Family{Version: 4, Channel: "ipv4", Suffix: "v4", TunnelInterfaces: tunnelInterfaces}
	if fam == famV6 {
		f.Version, f.Channel, f.Suffix = 6, "ipv6", "v6"
	}
	mine := cx.me.addrs[fam]
	if !mine.addr.IsValid() {
		cx.skippedFamily(fam)
		return f
	}
	f.Enabled = true
	f.IP, f.CIDR, f.Network = mine.str, mine.cidr, mine.network
	f.Peers, f.Templates = cx.peers(fam)
	for _, p := range f.Peers {
		if p.ReachableBy == "" {
			continue
		}
		dest := p.IP + "/32"
		if fam == famV6 {
			dest = p.IP + "/128"
		}
		if i := slices.IndexFunc(f.StaticRoutes, func(r StaticRoute) bool { return r.Dest == dest }); i >= 0 {
			if f.StaticRoutes[i].Via != p.ReachableBy {
				cx.ps.warn(api.KindBGPPeer, p.BGPPeer, "spec.reachableBy", "peer %s is already reachable via %s; gateway %s ignored", p.IP, f.StaticRoutes[i].Via, p.ReachableBy)
			}
			continue
		}
		f.StaticRoutes = append(f.StaticRoutes, StaticRoute{Dest: dest, Via: p.ReachableBy})
	}
	slices.SortFunc(f.StaticRoutes, func(a, b StaticRoute) int { return cmpPrefixStr(a.Dest, b.Dest) })
	f.Blocks = cx.blocks(fam)
	cx.pools(fam, f)
	cx.services(fam, f)
	f.Communities = cx.communities(fam)
	f.NormalRoutePriority = normalRoutePriority(cx.global, fam)
	f.MaxPriority = MaxPriority
	f.NormalLocalPref = MaxPriority - f.NormalRoutePriority
	return f
}

// normalRoutePriority is the default BGPConfiguration's
// ipv4NormalRoutePriority / ipv6NormalRoutePriority, else 1024 (as
// Calico: node.<name> configurations do not override it).
func normalRoutePriority(global *api.BGPConfiguration, fam int) int {
	v := global.Spec.IPv4NormalRoutePriority
	if fam == famV6 {
		v = global.Spec.IPv6NormalRoutePriority
	}
	if v != nil && *v >= 1 && *v < MaxPriority {
		return *v
	}
	return DefaultNormalRoutePriority
}

// skippedFamily warns about explicit peers of a family this node lacks.
func (cx *computeCtx) skippedFamily(fam int) {
	for _, pi := range cx.explicitPeers() {
		if pi.ip.IsValid() && famOf(pi.ip) == fam {
			cx.ps.warn(api.KindBGPPeer, pi.name, "spec.peerIP", "node %s has no IPv%d address; no session to %s", cx.me.name, 4+2*fam, pi.ip)
		}
	}
}

func famOf(a netip.Addr) int {
	if a.Is4() {
		return famV4
	}
	return famV6
}

// explicitPeers are the BGPPeers that apply to this node: global ones,
// spec.node == this node, and nodeSelector matching this node. Sorted by
// name.
func (cx *computeCtx) explicitPeers() []*peerInfo {
	c := cx.c
	var out []*peerInfo
	for _, pi := range c.globalPeers {
		out = append(out, pi)
	}
	for _, pi := range c.nodePeers[cx.me.name] {
		out = append(out, pi)
	}
	for _, pi := range c.nodeSelPeers {
		if pi.nodeSel.matches[cx.me.name] != nil {
			out = append(out, pi)
		}
	}
	slices.SortFunc(out, func(a, b *peerInfo) int { return strings.Compare(a.name, b.name) })
	return out
}

type sessionKey struct {
	addr netip.Addr
	port int
}

func (cx *computeCtx) peers(fam int) ([]*Peer, []*SessionTemplate) {
	c, me := cx.c, cx.me
	myAddr := me.addrs[fam].addr
	var cands []candidate
	index := map[sessionKey]int{}
	add := func(cd candidate) {
		if cd.addr == myAddr {
			return // never peer with ourselves
		}
		k := sessionKey{cd.addr, cd.port}
		if i, ok := index[k]; ok {
			if better(cd, cands[i]) {
				cands[i] = cd
			}
			return
		}
		index[k] = len(cands)
		cands = append(cands, cd)
	}

	// Explicit peerings of this node.
	for _, pi := range cx.explicitPeers() {
		prio, typ := prioNode, "node"
		if pi.global {
			prio, typ = prioGlobal, "global"
		}
		if !cx.usable(pi) {
			continue
		}
		switch {
		case pi.ip.IsValid():
			if famOf(pi.ip) != fam {
				continue
			}
			var peerNode *nodeInfo
			for _, n := range c.byIP[pi.ip] {
				if n != me && c.peerIsNode(pi, n) {
					peerNode = n
					break
				}
			}
			port := pi.port
			if port == 0 {
				port = DefaultPort
				if peerNode != nil {
					port = c.listenPort(peerNode.name)
				}
			}
			add(candidate{prio: prio, addr: pi.ip, port: port, typ: typ, as: c.peerIPAS(pi, peerNode), src: pi, node: peerNode})
		case pi.peerSel != nil:
			for _, n := range pi.peerSel.matches {
				if n == me || !n.addrs[fam].addr.IsValid() {
					continue
				}
				add(candidate{prio: prio, addr: n.addrs[fam].addr, port: c.listenPort(n.name), typ: typ, as: c.nodeAS(n), src: pi, node: n})
			}
		}
	}

	// Reverse peerings: BGPPeers of other nodes that select this node
	// (peerSelector) or name one of its addresses (peerIP).
	reverseFrom := func(pi *peerInfo, localAS uint32) {
		if !cx.usable(pi) {
			return
		}
		each := func(n *nodeInfo) {
			if n == me || !n.addrs[fam].addr.IsValid() {
				return
			}
			as := c.nodeAS(n)
			if l := pi.peer.Spec.LocalASNumber; l != nil {
				as = uint32(*l)
			}
			add(candidate{prio: prioReverse, addr: n.addrs[fam].addr, port: c.listenPort(n.name), typ: "node", as: as, localAS: localAS, src: pi, node: n, reverse: true})
		}
		switch {
		case pi.global:
			for _, n := range c.sorted[fam] {
				each(n)
			}
		case pi.peer.Spec.Node != "":
			if n := c.nodes[pi.peer.Spec.Node]; n != nil {
				each(n)
			}
		case pi.nodeSel != nil:
			for _, n := range pi.nodeSel.matches {
				each(n)
			}
		}
	}
	for _, pi := range c.peerSelPeers {
		if pi.reverse && pi.peerSel.matches[me.name] != nil {
			reverseFrom(pi, 0)
		}
	}
	for _, pi := range c.peersByIP[myAddr] {
		if pi.reverse && c.peerIsNode(pi, me) {
			reverseFrom(pi, uint32(pi.peer.Spec.ASNumber))
		}
	}

	// (addr, port) is unique after deduplication, so this order is total.
	cmpCand := func(a, b candidate) int {
		return cmp.Or(a.addr.Compare(b.addr), cmp.Compare(a.port, b.port))
	}
	slices.SortFunc(cands, cmpCand)

	// Node-to-node mesh: the lowest priority, so a mesh session is only
	// added where no other session to that ip:port exists. The node list
	// is sorted by address, so the result is merged in order.
	if cx.m.MeshEnabled && me.rrID == "" {
		globalAS := c.globalAS()
		merged := make([]candidate, 0, len(cands)+len(c.sorted[fam]))
		i := 0
		var last candidate
		for _, n := range c.sorted[fam] {
			if n == me || n.rrID != "" {
				continue
			}
			cd := candidate{prio: prioMesh, addr: n.addrs[fam].addr, port: c.listenPort(n.name), typ: "mesh", as: n.as, node: n}
			if cd.as == 0 {
				cd.as = globalAS // the peer's effective AS, as the peer itself uses it
			}
			if cd.addr == myAddr {
				continue
			}
			if _, taken := index[sessionKey{cd.addr, cd.port}]; taken {
				continue
			}
			if last.node != nil && last.addr == cd.addr && last.port == cd.port {
				continue // two nodes claim one address: one session
			}
			last = cd
			for i < len(cands) && cmpCand(cands[i], cd) < 0 {
				merged = append(merged, cands[i])
				i++
			}
			merged = append(merged, cd)
		}
		cands = append(merged, cands[i:]...)
	}

	fs := &famState{fam: fam, byOpts: map[optsKey]*SessionTemplate{}, byContent: map[tmplKey]*SessionTemplate{}, origins: map[*SessionTemplate][]string{}}
	store := make([]Peer, len(cands))
	out := make([]*Peer, len(cands))
	for i := range cands {
		cx.materialize(fs, &cands[i], &store[i])
		out[i] = &store[i]
	}
	return out, fs.templates
}

// better orders candidates for the same ip:port: lower priority value
// first, then BGPPeer name, then peer node name (deterministic whatever
// the map iteration order was).
func better(a, b candidate) bool {
	if a.prio != b.prio {
		return a.prio < b.prio
	}
	an, bn := "", ""
	if a.src != nil {
		an = a.src.name
	}
	if b.src != nil {
		bn = b.src.name
	}
	if an != bn {
		return an < bn
	}
	ann, bnn := "", ""
	if a.node != nil {
		ann = a.node.name
	}
	if b.node != nil {
		bnn = b.node.name
	}
	return ann < bnn
}

// usable reports (once) BGPPeers that cannot produce sessions.
func (cx *computeCtx) usable(pi *peerInfo) bool {
	switch {
	case pi.ipErr != nil:
		cx.warnOnce(pi.name+"/ip", api.KindBGPPeer, pi.name, "spec.peerIP", "%v; peer ignored", pi.ipErr)
		return false
	case pi.nodeSel != nil && pi.nodeSel.err != nil:
		cx.warnOnce(pi.name+"/nodesel", api.KindBGPPeer, pi.name, "spec.nodeSelector", "%v; peer ignored", pi.nodeSel.err)
		return false
	case pi.peerSel != nil && pi.peerSel.err != nil:
		cx.warnOnce(pi.name+"/peersel", api.KindBGPPeer, pi.name, "spec.peerSelector", "%v; peer ignored", pi.peerSel.err)
		return false
	case !pi.ip.IsValid() && pi.peerSel == nil:
		cx.warnOnce(pi.name+"/none", api.KindBGPPeer, pi.name, "spec.peerIP", "neither peerIP nor peerSelector is set; peer ignored")
		return false
	}
	return true
}

func seconds(d *api.Duration) int {
	if d == nil || d.Duration <= 0 {
		return 0
	}
	s := int(math.Round(d.Seconds()))
	return max(s, 1)
}

// optsKey identifies the inputs SessionOptions are derived from, so that
// the options of sessions sharing them are built once per Compute.
type optsKey struct {
	src      *peerInfo // nil: mesh
	ebgp     bool
	rrClient bool
	localAS  uint32
	reverse  bool
}

// tmplKey is the content of SessionOptions in comparable form; sessions
// with equal keys share one SessionTemplate.
type tmplKey struct {
	localAS                  uint32
	ebgp                     bool
	source                   string
	listenPort               int
	strictBind, rr           bool
	rrID                     string
	password                 Secret
	ttl                      bool
	multihop, gr, keep, hold int
	nextHop                  string
	allowLocal               int
	filters                  string
	bfd                      BFD
	disabled                 string
}

func keyOf(o *SessionOptions) tmplKey {
	k := tmplKey{
		localAS: o.LocalAS, ebgp: o.IsEBGP, source: o.SourceAddress, listenPort: o.ListenPort,
		strictBind: o.StrictBind, rr: o.RRClient, rrID: o.RRClusterID, password: o.Password,
		ttl: o.TTLSecurity, multihop: o.Multihop, gr: o.GracefulRestartTime, keep: o.KeepaliveTime,
		hold: o.HoldTime, nextHop: o.NextHop, allowLocal: o.NumAllowLocalAS,
		bfd:      bfdKey(o.BFD),
		disabled: o.DisabledReason,
	}
	if len(o.Filters) > 0 {
		var b strings.Builder
		for _, f := range o.Filters {
			b.WriteString(f.Name)
			b.WriteByte(0)
		}
		k.filters = b.String()
	}
	return k
}

// famState is the per-family memo of a Compute.
type famState struct {
	fam       int
	byOpts    map[optsKey]*SessionTemplate
	byContent map[tmplKey]*SessionTemplate
	templates []*SessionTemplate
	origins   map[*SessionTemplate][]string
}

func (cx *computeCtx) materialize(fs *famState, cd *candidate, p *Peer) {
	fam := fs.fam
	me, m := cx.me, cx.m
	mine := &me.addrs[fam]
	*p = Peer{Type: cd.typ, Port: cd.port, PortSet: cd.port != DefaultPort, AS: cd.as, Reverse: cd.reverse}
	var na *nodeAddr
	if cd.node != nil && cd.node.addrs[fam].addr == cd.addr {
		na = &cd.node.addrs[fam]
		p.IP = na.str
	} else {
		p.IP = cd.addr.String()
	}

	// Name.
	var base string
	switch {
	case na != nil && cd.typ == "mesh":
		base = na.meshName
	case na != nil && cd.typ == "node":
		base = na.nodeName
	default:
		prefix := "Node_"
		switch cd.typ {
		case "mesh":
			prefix = "Mesh_"
		case "global":
			prefix = "Global_"
		}
		n, _ := birdfmt.NameIP(p.IP)
		base = prefix + n
	}
	if p.Port != DefaultPort {
		base += "_port_" + strconv.Itoa(p.Port)
	}
	p.Name = base

	// Other end.
	peerRR := ""
	if cd.node != nil {
		p.PeerNode = cd.node.name
		peerRR = cd.node.rrID
		// Calico's rule: the node whose address is greater as a string
		// (lexically, not numerically) connects; the other waits.
		p.Passive = p.IP > mine.str
	}
	switch {
	case cd.typ == "mesh":
		p.Description = cd.node.meshDesc
	case cd.reverse:
		p.Description = "BGPPeer " + cd.src.name + " (reverse, from node " + cd.node.name + ")"
	default:
		p.Description = "BGPPeer " + cd.src.name
	}
	if cd.src != nil {
		p.BGPPeer = cd.src.name
		spec := &cd.src.peer.Spec
		if spec.ReachableBy != "" && !cd.reverse {
			if gw, err := netip.ParseAddr(spec.ReachableBy); err == nil && famOf(gw) == fam {
				p.ReachableBy = gw.String()
			} else {
				cx.warnOnce(cd.src.name+"/reach", api.KindBGPPeer, cd.src.name, "spec.reachableBy", "%q is not an IPv%d address; no static route to the peer", spec.ReachableBy, 4+2*fam)
			}
		}
	}

	// Options, shared by every session with the same inputs.
	localAS := m.ASNumber
	if cd.localAS != 0 {
		localAS = cd.localAS
	} else if cd.src != nil && cd.src.peer.Spec.LocalASNumber != nil && !cd.reverse {
		localAS = uint32(*cd.src.peer.Spec.LocalASNumber)
	}
	ebgp := p.AS != localAS
	k := optsKey{src: cd.src, ebgp: ebgp, localAS: localAS, reverse: cd.reverse,
		rrClient: me.rrID != "" && !ebgp && peerRR != me.rrID}
	t := fs.byOpts[k]
	if t == nil {
		t = cx.template(fs, k)
		fs.byOpts[k] = t
	}
	origin := "node-to-node mesh"
	if cd.src != nil {
		origin = "BGPPeer " + cd.src.name
		if cd.reverse {
			origin += " (reverse)"
		}
	}
	if !slices.Contains(fs.origins[t], origin) {
		fs.origins[t] = append(fs.origins[t], origin)
		if t.Description != "" {
			t.Description += ", "
		}
		t.Description += origin
	}
	p.Template = t.Name
	p.SessionOptions = &t.SessionOptions
}

// template builds the options for k and returns the template holding
// them (an existing one when the content is equal).
func (cx *computeCtx) template(fs *famState, k optsKey) *SessionTemplate {
	fam, me, m := fs.fam, cx.me, cx.m
	o := SessionOptions{
		LocalAS:       k.localAS,
		IsEBGP:        k.ebgp,
		ListenPort:    m.ListenPort,
		SourceAddress: me.addrs[fam].str,
	}
	if k.rrClient {
		o.RRClient, o.RRClusterID = true, me.rrID
	}
	var spec *api.BGPPeerSpec
	var pw *api.BGPPassword
	if k.src == nil {
		pw = cx.global.Spec.NodeMeshPassword
		o.GracefulRestartTime = seconds(cx.global.Spec.NodeMeshMaxRestartTime)
		if pw != nil && pw.SecretKeyRef != nil {
			cx.password(&o, api.KindBGPConfiguration, api.DefaultBGPConfigName, "spec.nodeMeshPassword", pw.SecretKeyRef)
		}
	} else {
		spec = &k.src.peer.Spec
		name := k.src.name
		if spec.SourceAddress != nil && *spec.SourceAddress == api.SourceAddressNone {
			o.SourceAddress = ""
		}
		o.GracefulRestartTime = seconds(spec.MaxRestartTime)
		if pw = spec.Password; pw != nil && pw.SecretKeyRef != nil {
			cx.password(&o, api.KindBGPPeer, name, "spec.password", pw.SecretKeyRef)
		}
		if spec.TTLSecurity != nil && *spec.TTLSecurity > 0 {
			o.TTLSecurity, o.Multihop = true, int(*spec.TTLSecurity)
		}
		if ka := seconds(spec.KeepaliveTime); ka > 0 {
			if ka > maxHoldTime {
				cx.warnOnce(name+"/keepalive", api.KindBGPPeer, name, "spec.keepaliveTime", "%ds is above BIRD's limit; using %ds", ka, maxHoldTime)
				ka = maxHoldTime
			}
			o.KeepaliveTime = ka
			if ka > defaultHoldTime/3 {
				// BIRD requires keepalive <= hold time (default 240 s);
				// keep the usual 1:3 ratio.
				o.HoldTime = min(3*ka, maxHoldTime)
			}
		}
		switch {
		case spec.NextHopMode != nil && *spec.NextHopMode == api.NextHopSelf:
			o.NextHop = "self"
		case spec.NextHopMode != nil && *spec.NextHopMode == api.NextHopKeep:
			o.NextHop = "keep"
		case spec.KeepOriginalNextHop && k.ebgp:
			o.NextHop = "keep" // legacy field: eBGP only (iBGP keeps it anyway)
		}
		o.NextHopSelf, o.NextHopKeep = o.NextHop == "self", o.NextHop == "keep"
		if spec.NumAllowedLocalASNumbers != nil {
			o.NumAllowLocalAS = int(*spec.NumAllowedLocalASNumbers)
		}
		for i, fname := range spec.Filters {
			cf := cx.c.filters[fname]
			switch {
			case cf == nil:
				cx.warnOnce(name+"/filter/"+fname, api.KindBGPPeer, name, fmt.Sprintf("spec.filters[%d]", i),
					"BGPFilter %q does not exist; the sessions of this BGPPeer render without it", fname)
				continue
			case cf.err != nil:
				if !cx.warned["filter/"+fname] {
					cx.warned["filter/"+fname] = true
					cx.ps.fatal(api.KindBGPFilter, fname, "", "%v", cf.err)
				}
				continue
			}
			cx.usedFilters[fname] = cf
			o.Filters = append(o.Filters, PeerFilter{
				Name:   fname,
				Import: cf.call(fam, dirImport, !k.ebgp),
				Export: cf.call(fam, dirExport, !k.ebgp),
			})
		}
	}
	if m.BindMode == api.BindModeNodeIP {
		o.SourceAddress, o.StrictBind = me.addrs[fam].str, true
	}
	o.BFD = cx.bfdFor(k.src)
	ck := keyOf(&o)
	if t := fs.byContent[ck]; t != nil {
		return t
	}
	t := &SessionTemplate{
		Name:           "Tmpl_v" + strconv.Itoa(4+2*fam) + "_" + strconv.Itoa(len(fs.templates)+1),
		SessionOptions: o,
	}
	fs.byContent[ck] = t
	fs.templates = append(fs.templates, t)
	return t
}

// password resolves a secret into o. A secret that cannot be used makes
// the sessions disabled (never rendered without their password: that would
// fail open), with a problem reported once per resource. An optional
// secret that does not exist means no password, as in Kubernetes.
func (cx *computeCtx) password(o *SessionOptions, kind, name, field string, ref *api.SecretKeySelector) {
	field += ".secretKeyRef"
	v, err := cx.secrets.read(ref)
	var reason, msg string
	switch {
	case isMissing(err) && ref.Optional != nil && *ref.Optional:
		return
	case isMissing(err):
		reason, msg = "missing", err.Error()
	case err != nil:
		reason, msg = "unreadable", err.Error()
	case v == "":
		reason, msg = "empty", fmt.Sprintf("secret %s/%s is empty", ref.Name, ref.Key)
	case birdfmt.CheckString(v) != nil:
		reason, msg = "unquotable", fmt.Sprintf("password from secret %s/%s: %v", ref.Name, ref.Key, birdfmt.CheckString(v))
	case len(v) > maxMD5KeyBytes:
		reason, msg = "too-long", fmt.Sprintf("password from secret %s/%s is %d bytes; Linux TCP-MD5 keys hold at most %d", ref.Name, ref.Key, len(v), maxMD5KeyBytes)
	default:
		o.Password = Secret(v)
		return
	}
	cx.warnOnce(kind+"/"+name+"/pw", kind, name, field, "%s; its sessions are rendered disabled", msg)
	o.Disabled = true
	o.SecretProblem = &SecretProblem{Kind: kind, Name: name, Field: field, Secret: ref.Name + "/" + ref.Key, Reason: reason}
	o.DisabledReason = birdfmt.Printable(fmt.Sprintf("%s %s: %s: %s", kind, name, field, msg))
}

func (cx *computeCtx) blocks(fam int) []Block {
	var out []Block
	type pb struct {
		p netip.Prefix
		b Block
	}
	var tmp []pb
	for cidr, a := range cx.c.affinities[cx.me.name] {
		if !a.Routed() {
			continue // pending: not ours yet
		}
		p, err := api.ParseCIDR(cidr)
		if err != nil || famOf(p.Addr()) != fam {
			continue
		}
		tmp = append(tmp, pb{p, Block{CIDR: p.String(), Blackhole: p.Bits() < p.Addr().BitLen()}})
	}
	slices.SortFunc(tmp, func(a, b pb) int { return cmpPrefix(a.p, b.p) })
	for _, t := range tmp {
		out = append(out, t.b)
	}
	return out
}

func cmpPrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

func cmpPrefixStr(a, b string) int {
	pa, errA := netip.ParsePrefix(a)
	pb, errB := netip.ParsePrefix(b)
	if errA != nil || errB != nil {
		return strings.Compare(a, b)
	}
	return cmpPrefix(pa, pb)
}

func (cx *computeCtx) pools(fam int, f *Family) {
	type pp struct {
		p    netip.Prefix
		pool Pool
	}
	var tmp []pp
	policy := api.ClusterRoutes(cx.global)
	if policy.IPIP {
		cx.warnOnce("programClusterRoutes", api.KindBGPConfiguration, api.DefaultBGPConfigName, "spec.programClusterRoutes",
			"%s asks BIRD to program IPIP routes, which BIRD 2 cannot (Calico deprecates it too): roost-node keeps programming them",
			*cx.global.Spec.ProgramClusterRoutes)
	}
	for name, pool := range cx.c.pools {
		p, err := api.ParseCIDR(pool.Spec.CIDR)
		if err != nil {
			cx.ps.warn(api.KindIPPool, name, "spec.cidr", "%q is not a CIDR; pool ignored", pool.Spec.CIDR)
			continue
		}
		if famOf(p.Addr()) != fam {
			continue
		}
		s := &pool.Spec
		ipip, vxlan := cmp.Or(s.IPIPMode, api.EncapNever), cmp.Or(s.VXLANMode, api.EncapNever)
		tmp = append(tmp, pp{p, Pool{
			CIDR:             p.String(),
			IPIPMode:         ipip,
			VXLANMode:        vxlan,
			Encapsulated:     ipip != api.EncapNever || vxlan != api.EncapNever,
			Disabled:         s.Disabled,
			DisableBGPExport: s.DisableBGPExport,
			Export:           !s.Disabled && !s.DisableBGPExport,
			BIRDPrograms:     policy.BIRDPrograms(ipip, vxlan, fam == 6),
		}})
	}
	slices.SortFunc(tmp, func(a, b pp) int { return cmpPrefix(a.p, b.p) })
	for _, t := range tmp {
		if i := len(f.Pools); i > 0 && f.Pools[i-1].CIDR == t.pool.CIDR {
			continue // two pools with one CIDR: keep one
		}
		f.Pools = append(f.Pools, t.pool)
		if t.pool.Export {
			f.ExportPools = append(f.ExportPools, t.pool.CIDR)
		}
		if t.pool.DisableBGPExport {
			f.NoExportPools = append(f.NoExportPools, t.pool.CIDR)
		}
		if t.pool.Encapsulated {
			f.EncapPools = append(f.EncapPools, t.pool.CIDR)
		}
		if !t.pool.BIRDPrograms {
			f.NodeAgentPools = append(f.NodeAgentPools, t.pool.CIDR)
		}
	}
}

func (cx *computeCtx) services(fam int, f *Family) {
	s := &cx.global.Spec
	type sv struct {
		p    netip.Prefix
		kind string
	}
	var tmp []sv
	for _, set := range []struct {
		kind, field string
		list        []api.ServiceIPBlock
	}{
		{"cluster", "spec.serviceClusterIPs", s.ServiceClusterIPs},
		{"external", "spec.serviceExternalIPs", s.ServiceExternalIPs},
		{"loadbalancer", "spec.serviceLoadBalancerIPs", s.ServiceLoadBalancerIPs},
	} {
		for i, b := range set.list {
			p, err := api.ParseCIDR(b.CIDR)
			if err != nil {
				cx.ps.warn(api.KindBGPConfiguration, api.DefaultBGPConfigName, fmt.Sprintf("%s[%d].cidr", set.field, i), "%q is not a CIDR; ignored", b.CIDR)
				continue
			}
			if famOf(p.Addr()) == fam {
				tmp = append(tmp, sv{p, set.kind})
			}
		}
	}
	slices.SortFunc(tmp, func(a, b sv) int { return cmp.Or(cmpPrefix(a.p, b.p), strings.Compare(a.kind, b.kind)) })
	for _, t := range tmp {
		n := len(f.Services)
		if n > 0 && f.Services[n-1].CIDR == t.p.String() {
			if !slices.Contains(f.Services[n-1].Kinds, t.kind) {
				f.Services[n-1].Kinds = append(f.Services[n-1].Kinds, t.kind)
			}
			continue
		}
		f.Services = append(f.Services, Service{CIDR: t.p.String(), Kinds: []string{t.kind}})
		f.ServiceCIDRs = append(f.ServiceCIDRs, t.p.String())
	}
}

// communities merges prefixAdvertisements: the node.<name> configuration
// replaces the global list when it has one. Community names resolve
// against the node configuration's communities first, then the global ones.
func (cx *computeCtx) communities(fam int) []PrefixCommunities {
	src, srcName := cx.global, api.DefaultBGPConfigName
	if cx.nodeCfg != nil && len(cx.nodeCfg.Spec.PrefixAdvertisements) > 0 {
		src, srcName = cx.nodeCfg, cx.nodeCfg.Metadata.Name
		if srcName == "" {
			srcName = api.NodeBGPConfigPrefix + cx.me.name
		}
	}
	names := map[string]string{}
	for _, c := range cx.global.Spec.Communities {
		names[c.Name] = c.Value
	}
	if cx.nodeCfg != nil {
		for _, c := range cx.nodeCfg.Spec.Communities {
			names[c.Name] = c.Value
		}
	}
	byCIDR := map[netip.Prefix]*PrefixCommunities{}
	for i, pa := range src.Spec.PrefixAdvertisements {
		field := fmt.Sprintf("spec.prefixAdvertisements[%d]", i)
		p, err := api.ParseCIDR(pa.CIDR)
		if err != nil {
			cx.ps.warn(api.KindBGPConfiguration, srcName, field+".cidr", "%q is not a CIDR; ignored", pa.CIDR)
			continue
		}
		if famOf(p.Addr()) != fam {
			continue
		}
		pc := byCIDR[p]
		if pc == nil {
			pc = &PrefixCommunities{CIDR: p.String()}
			byCIDR[p] = pc
		}
		for j, v := range pa.Communities {
			value := v
			if nv, ok := names[v]; ok {
				value = nv
			}
			c, err := birdfmt.ParseCommunity(value)
			if err != nil {
				cx.ps.warn(api.KindBGPConfiguration, srcName, fmt.Sprintf("%s.communities[%d]", field, j),
					"%q is neither a community value nor a name defined in spec.communities; ignored", v)
				continue
			}
			lit := c.Literal()
			if c.Large {
				if !slices.Contains(pc.Large, lit) {
					pc.Large = append(pc.Large, lit)
				}
			} else if !slices.Contains(pc.Standard, lit) {
				pc.Standard = append(pc.Standard, lit)
			}
		}
	}
	keys := make([]netip.Prefix, 0, len(byCIDR))
	for k := range byCIDR {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, cmpPrefix)
	out := make([]PrefixCommunities, 0, len(keys))
	for _, k := range keys {
		pc := byCIDR[k]
		if len(pc.Standard)+len(pc.Large) == 0 {
			continue
		}
		slices.SortFunc(pc.Standard, cmpLiteral)
		slices.SortFunc(pc.Large, cmpLiteral)
		out = append(out, *pc)
	}
	return out
}

// cmpLiteral orders "(a,b[,c])" literals numerically.
func cmpLiteral(a, b string) int {
	pa := strings.Split(strings.Trim(a, "()"), ",")
	pb := strings.Split(strings.Trim(b, "()"), ",")
	for i := 0; i < len(pa) && i < len(pb); i++ {
		x, _ := strconv.ParseUint(pa[i], 10, 64)
		y, _ := strconv.ParseUint(pb[i], 10, 64)
		if d := cmp.Compare(x, y); d != 0 {
			return d
		}
	}
	return cmp.Compare(len(pa), len(pb))
}

// Package agent is `roost-node run`: it registers the node, keeps its
// tunnel addresses in step with the pools, reports that it is alive
// (node/heartbeat), and drives the dataplane from
// datastore watches on nodes, pools, IPAM blocks and this node's workload
// endpoints, re-detecting the node's address periodically. It answers the
// node's CalicoNodeStatus requests (package nodestatus) and serves
// /healthz, /readyz and /metrics.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netns"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/birdctl/birdsock"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/internal/backoff"
	"github.com/roostnet/roost/internal/clip"
	"github.com/roostnet/roost/internal/health"
	"github.com/roostnet/roost/internal/nsutil"
	"github.com/roostnet/roost/node/dataplane"
	"github.com/roostnet/roost/node/heartbeat"
	"github.com/roostnet/roost/node/ipam"
	"github.com/roostnet/roost/node/names"
	"github.com/roostnet/roost/node/natoutgoing"
	"github.com/roostnet/roost/node/nodestatus"
	"github.com/roostnet/roost/node/startup"
	"github.com/roostnet/roost/node/workload"
)

// Options wires the agent to its environment.
type Options struct {
	Startup            startup.Config
	Dataplane          dataplane.Config
	AutodetectInterval time.Duration // 0: 30s
	HeartbeatInterval  time.Duration // 0: heartbeat.Interval
	Listen             string        // "" : no HTTP server
	IPForward          bool          // set net.ipv4.ip_forward=1 (and IPv6 forwarding with an IPv6 address)
	// BlockReleaseGrace: how long a block of this node must stay empty
	// before it is given back (0: never).
	BlockReleaseGrace time.Duration

	DS       datastore.Datastore
	NL       dataplane.Netlink    // the host namespace's kernel
	Sub      dataplane.Subscriber // kernel events (nil: resync only)
	Detector *startup.Detector    // address autodetection
	HostNS   netns.NsHandle       // for sysctls (zero: current namespace)
	Log      logrus.FieldLogger
	Metrics  *Metrics // nil: new
	// BirdSocket is BIRD's control socket: the agent answers this node's
	// CalicoNodeStatus requests from it. "": it does not.
	BirdSocket string
	// SyncLiveness fails /healthz when the agent stays out of sync with
	// a datastore that answers (nil: never).
	SyncLiveness *health.SyncLiveness
}

// Agent is one running node agent.
type Agent struct {
	opts    Options
	ds      datastore.Datastore
	log     logrus.FieldLogger
	metrics *Metrics
	dp      *dataplane.Dataplane
	nat     *natoutgoing.Manager
	ipam    *ipam.Client
	name    string

	mu         sync.Mutex
	addrs      startup.Addrs
	synced     map[string]bool
	registered bool
	inputsSent bool
	tunnels    ipam.TunnelAddrs
	lastErr    string
	listenAddr string
	gc         *blockGC
	// broken: objects the agent reads that are present but broken, by
	// key. While there is any, the dataplane removes nothing and IPAM is
	// not cleaned up (docs/roost-node.md, "Broken objects").
	broken   map[string]brokenObj
	ipamHeld string
	// outOfSync: when a watch last went out of sync (zero while all are
	// in sync).
	outOfSync time.Time

	tunnelKick   chan struct{}
	redetectKick chan struct{}
	loops        sync.WaitGroup
}

// Resources the agent watches.
const (
	resNodes     = "nodes"
	resPools     = "ippools"
	resBlocks    = "blocks"
	resWorkloads = "workloadendpoints"
	resBGPConfig = "bgpconfigurations"
)

// New prepares an agent; Start runs it.
func New(o Options) *Agent {
	if o.Log == nil {
		o.Log = logrus.StandardLogger()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
	if o.AutodetectInterval <= 0 {
		o.AutodetectInterval = 30 * time.Second
	}
	return &Agent{opts: o, ds: o.DS, log: o.Log, metrics: o.Metrics, outOfSync: time.Now(),
		synced:     map[string]bool{resNodes: false, resPools: false, resBlocks: false, resWorkloads: false, resBGPConfig: false},
		broken:     map[string]brokenObj{},
		tunnelKick: make(chan struct{}, 1), redetectKick: make(chan struct{}, 1), gc: newBlockGC()}
}

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (a *Agent) fail(kind string, err error) {
	a.metrics.Error(kind)
	a.mu.Lock()
	a.lastErr = err.Error()
	a.mu.Unlock()
}

// Start registers the node (failing on a bad or duplicate address), then
// starts the background loops; they stop when ctx ends.
func (a *Agent) Start(ctx context.Context) error {
	name, err := startup.NodeName(a.opts.Startup.NodeName)
	if err != nil {
		return err
	}
	a.name = name
	a.log = a.log.WithField("node", name)
	if f := a.opts.Startup.NodenameFile; f != "" {
		if err := startup.WriteNodenameFile(f, name); err != nil {
			return fmt.Errorf("startup: %w", err)
		}
	}
	as, err := startup.ParseAS(a.opts.Startup.AS)
	if err != nil {
		return err
	}
	addrs, err := startup.ResolveAddrs(&a.opts.Startup, a.opts.Detector)
	if err != nil {
		return fmt.Errorf("startup: %w", err)
	}
	if _, err := startup.Register(ctx, a.ds, name, addrs, as, a.log); err != nil {
		return fmt.Errorf("startup: %w", err)
	}
	a.mu.Lock()
	a.addrs, a.registered = addrs, true
	a.mu.Unlock()
	fields := logrus.Fields{}
	if addrs.V4.IsValid() {
		fields["ipv4"], fields["ipv4_interface"] = addrs.V4.String(), addrs.V4Iface
	}
	if addrs.V6.IsValid() {
		fields["ipv6"], fields["ipv6_interface"] = addrs.V6.String(), addrs.V6Iface
	}
	a.log.WithFields(fields).Info("node addresses")
	if _, err := startup.EnsureDefaultPools(ctx, a.ds, a.opts.Startup.Pool, addrs.V6.IsValid(), a.log); err != nil {
		return fmt.Errorf("startup: %w", err)
	}
	ci, err := startup.EnsureClusterInformation(ctx, a.ds, a.opts.Startup.ClusterType, a.log)
	if err != nil {
		return fmt.Errorf("startup: %w", err)
	}
	if !ci.Spec.Ready() {
		a.log.Warn("ClusterInformation default says datastoreReady: false (a datastore migration?); Calico's components stay idle, roost-node carries on")
	}
	if a.opts.IPForward {
		if err := a.inHost(func() error { return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644) }); err != nil {
			a.log.WithError(err).Warn("could not enable net.ipv4.ip_forward")
		}
		a.forwardIPv6(addrs)
	}

	// WorkloadEndpoints written before Roost used Calico's names get
	// them (calicoctl and Felix refuse the old ones). A failure is not
	// fatal: Attach and Detach migrate the ones they touch.
	if n, err := workload.MigrateNames(ctx, a.ds, name); err != nil {
		a.log.WithError(err).Warn("renaming WorkloadEndpoints to Calico's names")
	} else if n > 0 {
		a.log.WithField("count", n).Info("renamed WorkloadEndpoints to Calico's names")
	}

	a.ipam = ipam.New(a.ds, name, ipam.WithLogger(a.log))
	cfg := a.opts.Dataplane
	cfg.NodeName = name
	cfg.WaitForInputs = true
	if a.opts.BirdSocket != "" && cfg.BirdMetric == nil {
		cfg.BirdMetric = birdKernelMetric(a.opts.BirdSocket)
	}
	a.dp = dataplane.New(cfg, a.opts.NL, a.log, a.metrics)
	natCfg := natoutgoing.Config{ResyncInterval: cfg.ResyncInterval, WaitForInputs: true}
	if nsutil.Given(a.opts.HostNS) {
		natCfg.NetNS = int(a.opts.HostNS)
	}
	a.nat = natoutgoing.New(natCfg, a.log, a.metrics)

	a.goLoop(func() { a.dp.Run(ctx, a.opts.Sub) })
	a.goLoop(func() { a.nat.Run(ctx) })
	a.goLoop(func() { a.tunnelLoop(ctx) })
	for _, w := range a.watches() {
		a.goLoop(func() { a.watchLoop(ctx, w) })
	}
	if a.opts.Startup.Autodetecting() {
		a.goLoop(func() { a.redetectLoop(ctx) })
	}
	if a.opts.BlockReleaseGrace > 0 {
		a.goLoop(func() { a.blockGCLoop(ctx, a.opts.BlockReleaseGrace) })
	}
	a.goLoop(func() { a.syncGauge(ctx) })
	a.goLoop(func() { heartbeat.Run(ctx, a.ds, name, a.opts.HeartbeatInterval, a.log) })
	if a.opts.BirdSocket != "" {
		rep := nodestatus.New(nodestatus.Options{
			DS: a.ds, Node: name, Socket: a.opts.BirdSocket, Log: a.log.WithField("component", "nodestatus"),
			Registerer: a.metrics.Registry,
			IPv6: func() bool {
				a.mu.Lock()
				defer a.mu.Unlock()
				return a.addrs.V6.IsValid()
			},
		})
		a.goLoop(func() { rep.Run(ctx) })
	}
	kick(a.tunnelKick)
	return nil
}

func (a *Agent) goLoop(f func()) {
	a.loops.Add(1)
	go func() {
		defer a.loops.Done()
		f()
	}()
}

// Wait returns when every background loop has stopped (after ctx ends).
func (a *Agent) Wait() { a.loops.Wait() }

func (a *Agent) inHost(fn func() error) error {
	if nsutil.Given(a.opts.HostNS) {
		return nsutil.Do(a.opts.HostNS, fn)
	}
	return fn()
}

// Run starts the agent, serves HTTP and blocks until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		a.Wait()
	}()
	if err := a.Start(ctx); err != nil {
		a.fail("startup", err)
		return err
	}
	if a.opts.Listen == "" {
		<-ctx.Done()
		return nil
	}
	ln, err := net.Listen("tcp", a.opts.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", a.opts.Listen, err)
	}
	a.mu.Lock()
	a.listenAddr = ln.Addr().String()
	a.mu.Unlock()
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	a.log.WithField("listen", ln.Addr().String()).Info("serving /healthz, /readyz and /metrics")
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ListenAddr is the HTTP server's address once it listens.
func (a *Agent) ListenAddr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.listenAddr
}

// Dataplane gives access to the dataplane (tests, status).
func (a *Agent) Dataplane() *dataplane.Dataplane { return a.dp }

// NATOutgoing gives access to the NAT outgoing manager (tests, status).
func (a *Agent) NATOutgoing() *natoutgoing.Manager { return a.nat }

// Status is what /healthz and /readyz report.
type Status struct {
	Alive      bool                `json:"alive"`
	Ready      bool                `json:"ready"`
	Node       string              `json:"node"`
	IPv4       string              `json:"ipv4,omitempty"`
	IPv6       string              `json:"ipv6,omitempty"`
	IPIPTunnel string              `json:"ipipTunnelAddr,omitempty"`
	VXLAN      string              `json:"vxlanTunnelAddr,omitempty"`
	VXLANV6    string              `json:"vxlanV6TunnelAddr,omitempty"`
	InSync     map[string]bool     `json:"inSync"`
	Dataplane  *dataplane.Status   `json:"dataplane,omitempty"`
	NAT        *natoutgoing.Status `json:"natOutgoing,omitempty"`
	LastError  string              `json:"lastError,omitempty"`
	// LiveReason says why the agent is not alive, or what liveness saw.
	LiveReason string `json:"liveReason,omitempty"`
	// Broken lists the objects that are present but broken (key, field,
	// value and error): while there is any, nothing is removed from the
	// kernel and IPAM is not cleaned up, and the agent is not ready.
	Broken []string `json:"broken,omitempty"`
	// IPAMHeld says why tunnel addresses and blocks were last left as
	// they are (an IP pool present but broken); "" when they are managed.
	IPAMHeld string `json:"ipamHeld,omitempty"`

	// inSync: registered, every watch in sync, the dataplane synced (ready
	// but for broken objects).
	inSync bool
}

// Status reports the agent's state.
func (a *Agent) Status() Status {
	a.mu.Lock()
	st := Status{Alive: a.registered, Node: a.name, InSync: map[string]bool{}, LastError: a.lastErr, IPAMHeld: a.ipamHeld}
	if a.addrs.V4.IsValid() {
		st.IPv4 = a.addrs.V4.String()
	}
	if a.addrs.V6.IsValid() {
		st.IPv6 = a.addrs.V6.String()
	}
	if a.tunnels.IPIP.IsValid() {
		st.IPIPTunnel = a.tunnels.IPIP.String()
	}
	if a.tunnels.VXLAN.IsValid() {
		st.VXLAN = a.tunnels.VXLAN.String()
	}
	if a.tunnels.VXLANV6.IsValid() {
		st.VXLANV6 = a.tunnels.VXLANV6.String()
	}
	outOfSync := a.outOfSync
	all := a.registered
	for k, v := range a.synced {
		st.InSync[k] = v
		all = all && v
	}
	for _, b := range a.broken {
		st.Broken = append(st.Broken, b.err.Error())
	}
	a.mu.Unlock()
	sort.Strings(st.Broken)
	if a.dp != nil {
		ds := a.dp.Status()
		st.Dataplane = &ds
		all = all && a.dp.Synced()
	} else {
		all = false
	}
	if a.nat != nil {
		ns := a.nat.Status()
		st.NAT = &ns
	}
	st.inSync = all
	st.Ready = all && len(st.Broken) == 0
	if st.Alive {
		st.Alive, st.LiveReason = a.opts.SyncLiveness.Check(outOfSync)
	}
	return st
}

// Reason says why the agent is not ready ("" when it is).
func (s Status) Reason() string {
	var missing []string
	for k, ok := range s.InSync {
		if !ok {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	switch {
	case s.Ready:
		return ""
	case !s.Alive:
		return "the node is not registered yet"
	case len(missing) > 0:
		return "the agent is not in sync yet: " + strings.Join(missing, ", ")
	case !s.inSync:
		return "the dataplane has not completed its first sync"
	case len(s.Broken) > 0:
		return fmt.Sprintf("%d datastore object(s) present but broken, nothing is removed meanwhile: %s", len(s.Broken), s.Broken[0])
	}
	return "not ready"
}

func (a *Agent) syncGauge(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		a.updateGauges()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Agent) updateGauges() {
	b := func(x bool) float64 {
		if x {
			return 1
		}
		return 0
	}
	st := a.Status()
	// In sync is ready but for broken objects (they have their own metric).
	a.metrics.inSync.Set(b(st.inSync))
	if st.Dataplane != nil {
		a.metrics.tunnelReady.WithLabelValues(names.IPIPDevice).Set(b(st.Dataplane.IPIPReady))
		a.metrics.tunnelReady.WithLabelValues(names.VXLANDevice).Set(b(st.Dataplane.VXLANReady))
		a.metrics.tunnelReady.WithLabelValues(names.VXLANV6Device).Set(b(st.Dataplane.VXLANV6Ready))
	}
	if st.NAT != nil {
		a.metrics.natReady.Set(b(st.NAT.Programmed))
	}
}

// watch describes one watched prefix.
type watch struct {
	name   string
	prefix string
	set    func(key string, v api.Resource)
	del    func(key string)
}

func (a *Agent) watches() []watch {
	poolCIDR := map[string]netip.Prefix{} // pool key -> CIDR (deletes carry no value)
	var poolMu sync.Mutex
	return []watch{
		{name: resNodes, prefix: datastore.KindPrefix(api.KindNode),
			set: func(key string, v api.Resource) {
				n, ok := v.(*api.Node)
				if !ok {
					return
				}
				a.dp.SetNode(dataplane.NodeFromAPI(n))
				if n.Metadata.Name == a.name {
					kick(a.tunnelKick) // labels may change which pools apply
				}
			},
			del: func(key string) {
				info, err := datastore.ParseKey(key)
				if err != nil {
					return
				}
				a.dp.DeleteNode(info.Name)
				if info.Name == a.name {
					a.log.Warn("this node's Node resource was deleted; registering again")
					kick(a.redetectKick)
				}
			}},
		{name: resPools, prefix: datastore.KindPrefix(api.KindIPPool),
			set: func(key string, v api.Resource) {
				p, ok := v.(*api.IPPool)
				if !ok {
					return
				}
				dp, ok := dataplane.PoolFromAPI(p)
				poolMu.Lock()
				old, had := poolCIDR[key]
				if ok {
					poolCIDR[key] = dp.CIDR
				} else {
					delete(poolCIDR, key)
				}
				poolMu.Unlock()
				if had && (!ok || old != dp.CIDR) {
					a.dp.DeletePool(old)
				}
				if ok {
					a.dp.SetPool(dp)
				}
				if np, err := natoutgoing.PoolFromAPI(p); err == nil {
					a.nat.SetPool(key, np)
				} else {
					a.log.WithError(err).Warn("NAT outgoing: keeping what was known of the pool")
				}
				kick(a.tunnelKick)
			},
			del: func(key string) {
				poolMu.Lock()
				old, had := poolCIDR[key]
				delete(poolCIDR, key)
				poolMu.Unlock()
				if had {
					a.dp.DeletePool(old)
				}
				a.nat.DeletePool(key)
				kick(a.tunnelKick)
			}},
		{name: resBlocks, prefix: datastore.BlockPrefix,
			set: func(key string, v api.Resource) {
				b, ok := v.(*api.IPAMBlock)
				if !ok {
					return
				}
				blk, ok := dataplane.BlockFromAPI(&b.Spec)
				if !ok {
					return
				}
				if b.Spec.Deleted {
					a.dp.DeleteBlock(blk.CIDR)
					a.gc.update(blk.CIDR, nil)
					return
				}
				a.dp.SetBlock(blk.CIDR, blk.Node)
				a.dp.SetBorrowed(blk.CIDR, blk.Borrowed)
				if blk.Node == a.name {
					a.gc.update(blk.CIDR, &b.Spec)
				} else {
					a.gc.update(blk.CIDR, nil)
				}
			},
			del: func(key string) {
				info, err := datastore.ParseKey(key)
				if err != nil {
					return
				}
				if cidr, err := api.ParseCIDR(info.CIDR); err == nil {
					a.dp.DeleteBlock(cidr)
					a.gc.update(cidr, nil)
				}
			}},
		// programClusterRoutes of the default BGPConfiguration: which
		// pools' routes to other nodes this agent programs (confd has
		// BIRD program the others).
		// Only the default one (node.<name> overrides are confd's).
		{name: resBGPConfig, prefix: datastore.KindPrefix(api.KindBGPConfiguration) + api.DefaultBGPConfigName,
			set: func(key string, v api.Resource) {
				if c, ok := v.(*api.BGPConfiguration); ok && c.Metadata.Name == api.DefaultBGPConfigName {
					a.dp.SetClusterRoutes(api.ClusterRoutes(c))
				}
			},
			del: func(key string) {
				if info, err := datastore.ParseKey(key); err == nil && info.Name == api.DefaultBGPConfigName {
					a.dp.SetClusterRoutes(api.ClusterRoutes(nil))
				}
			}},
		{name: resWorkloads, prefix: datastore.KindPrefix(api.KindWorkloadEndpoint),
			set: func(key string, v api.Resource) {
				w, ok := v.(*api.WorkloadEndpoint)
				if !ok {
					return
				}
				wl := dataplane.WorkloadFromAPI(w)
				if w.Spec.Node != a.name || w.Spec.InterfaceName == "" {
					a.dp.DeleteWorkload(wl.Key) // moved away, or never ours
					return
				}
				a.dp.SetWorkload(wl)
			},
			del: func(key string) {
				info, err := datastore.ParseKey(key)
				if err != nil {
					return
				}
				a.dp.DeleteWorkload(info.Namespace + "/" + info.Name)
			}},
	}
}

func (a *Agent) setSynced(name string, v bool) {
	a.mu.Lock()
	a.synced[name] = v
	all := true
	for _, s := range a.synced {
		all = all && s
	}
	switch {
	case all:
		a.outOfSync = time.Time{}
	case a.outOfSync.IsZero():
		a.outOfSync = time.Now()
	}
	first := all && !a.inputsSent
	if first {
		a.inputsSent = true
	}
	a.mu.Unlock()
	if first {
		a.log.Info("datastore in sync; programming the dataplane")
		a.dp.InputsReady()
		a.nat.InputsReady()
	}
}

// watchLoop follows one prefix, restarting the watch if it ends early.
func (a *Agent) watchLoop(ctx context.Context, w watch) {
	log := a.log.WithField("resource", w.name)
	known := map[string]bool{}
	// A watch that keeps ending (the backend closes it) is restarted
	// after a growing delay; one that got in sync starts over from Min.
	bo := backoff.New(backoff.Policy{Min: time.Second, Max: 30 * time.Second})
	for ctx.Err() == nil {
		var relist map[string]bool
		// A fresh watch starts with a full listing: treat it as a relist.
		relist = map[string]bool{}
		a.setSynced(w.name, false)
		for ev := range a.ds.Watch(ctx, w.prefix, 0) {
			a.metrics.events.WithLabelValues(w.name, ev.Type.String()).Inc()
			switch ev.Type {
			case datastore.Added, datastore.Modified:
				known[ev.Key] = true
				if relist != nil {
					relist[ev.Key] = true
				}
				a.setBroken(w.name, ev.Key, nil)
				w.set(ev.Key, ev.Value)
			case datastore.Deleted:
				delete(known, ev.Key)
				a.setBroken(w.name, ev.Key, nil)
				w.del(ev.Key)
			case datastore.Broken:
				// Present, not deleted: the dataplane keeps the last good
				// value (if it had one) and removes nothing meanwhile.
				known[ev.Key] = true
				if relist != nil {
					relist[ev.Key] = true
				}
				var de *datastore.DecodeError
				if !errors.As(ev.Err, &de) {
					de = datastore.NewDecodeError(ev.Key, ev.Revision, ev.Err)
				}
				a.setBroken(w.name, ev.Key, de)
			case datastore.Resync:
				a.setSynced(w.name, false)
				if ev.Relist {
					relist = map[string]bool{}
				}
				log.WithField("relist", ev.Relist).Info("datastore watch resyncing")
			case datastore.InSync:
				if relist != nil {
					for k := range known {
						if !relist[k] {
							delete(known, k)
							a.setBroken(w.name, k, nil)
							w.del(k)
						}
					}
					relist = nil
				}
				a.setSynced(w.name, true)
				bo.Reset()
			case datastore.Error:
				a.fail("datastore", ev.Err)
				log.WithError(ev.Err).Warn("datastore unavailable; the watch keeps retrying and the dataplane stays as it is")
			}
		}
		if ctx.Err() == nil {
			delay := bo.Next()
			log.WithField("retry_in", delay.String()).Warn("datastore watch ended; restarting")
			_ = backoff.Sleep(ctx, delay) // a cancelled ctx ends the loop
		}
	}
}

// poolBroken tells whether an IP pool is present but broken.
func (a *Agent) poolBroken() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, b := range a.broken {
		if b.resource == resPools {
			return true
		}
	}
	return false
}

// brokenObj is an object of a watched resource that is present but broken.
type brokenObj struct {
	resource string
	err      *datastore.DecodeError
}

// setBroken records (de set) or clears (de nil) key as broken, and holds
// the dataplane's removals while anything is.
func (a *Agent) setBroken(resource, key string, de *datastore.DecodeError) {
	a.mu.Lock()
	old, had := a.broken[key]
	switch {
	case de != nil:
		a.broken[key] = brokenObj{resource, de}
	case had:
		delete(a.broken, key)
	default:
		a.mu.Unlock()
		return
	}
	n := len(a.broken)
	a.mu.Unlock()
	if had {
		a.metrics.broken.DeleteLabelValues(old.resource, key, old.err.Field, clip.Value(old.err.Value))
	}
	log := a.log.WithFields(logrus.Fields{"resource": resource, "key": key})
	if de != nil {
		a.metrics.broken.WithLabelValues(resource, key, de.Field, clip.Value(de.Value)).Set(1)
		if !had || old.err.Error() != de.Error() {
			log.WithFields(logrus.Fields{"field": de.Field, "value": de.Value}).WithError(de.Err).
				Warn("datastore object is present but broken: the dataplane and IPAM state that may depend on it stay as they are until it is fixed or deleted")
		}
	} else {
		log.Info("broken datastore object fixed or deleted")
	}
	a.dp.SetHold(n > 0)
	if resource == resPools {
		kick(a.tunnelKick) // IPAM holds (or resumes) on broken pools
	}
}

// tunnelLoop keeps the tunnel addresses in step with the pools and gives
// back empty blocks whose pool is gone.
func (a *Agent) tunnelLoop(ctx context.Context) {
	var retry <-chan time.Time
	bo := backoff.New(backoff.Policy{Min: 500 * time.Millisecond, Max: 30 * time.Second})
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.tunnelKick:
		case <-retry:
		}
		retry = nil
		// Let a burst of pool changes settle.
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
		if err := a.reconcileIPAM(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			a.fail("ipam", err)
			delay := bo.Next()
			a.log.WithError(err).WithField("retry_in", delay.String()).Warn("tunnel addresses: retrying")
			retry = time.After(delay)
			continue
		}
		bo.Reset()
	}
}

func (a *Agent) reconcileIPAM(ctx context.Context) error {
	pools, broken, err := ipam.ListPoolsAll(ctx, a.ds)
	if err != nil {
		return err
	}
	held := ""
	if len(broken) > 0 {
		held = fmt.Sprintf("%d IP pool(s) present but broken (%v): tunnel addresses and blocks stay as they are until fixed or deleted", len(broken), broken[0])
	}
	a.mu.Lock()
	changed := held != a.ipamHeld
	a.ipamHeld = held
	a.mu.Unlock()
	if held != "" {
		// Whether a broken pool needs a tunnel address or holds a block
		// cannot be told: give back nothing until it is fixed or deleted
		// (its event kicks this loop again).
		if changed {
			a.log.Warn("IPAM held: " + held)
		}
		return nil
	}
	t, err := a.ipam.ReconcileTunnels(ctx, pools)
	a.mu.Lock()
	a.tunnels = t
	a.mu.Unlock()
	if err != nil {
		return err
	}
	var cidrs []netip.Prefix
	for _, p := range pools {
		if c, err := api.ParseCIDR(p.Spec.CIDR); err == nil {
			cidrs = append(cidrs, c)
		}
	}
	_, err = a.ipam.ReleaseEmptyBlocks(ctx, func(b netip.Prefix) bool {
		for _, c := range cidrs {
			if c.Overlaps(b) {
				return true
			}
		}
		return false
	})
	return err
}

// forwardIPv6 turns IPv6 forwarding on once the node has an IPv6 address
// (workload traffic is forwarded; Felix does the same).
func (a *Agent) forwardIPv6(addrs startup.Addrs) {
	if !a.opts.IPForward || !addrs.V6.IsValid() {
		return
	}
	if err := a.inHost(func() error { return os.WriteFile("/proc/sys/net/ipv6/conf/all/forwarding", []byte("1"), 0o644) }); err != nil {
		a.log.WithError(err).Warn("could not enable net.ipv6.conf.all.forwarding")
	}
}

// redetectLoop re-runs address autodetection and updates the Node when
// the address changed (or the Node disappeared).
func (a *Agent) redetectLoop(ctx context.Context) {
	t := time.NewTicker(a.opts.AutodetectInterval)
	defer t.Stop()
	for {
		force := false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.redetectKick:
			force = true
		}
		addrs, err := startup.ResolveAddrs(&a.opts.Startup, a.opts.Detector)
		if err != nil {
			a.fail("startup", err)
			a.log.WithError(err).Warn("address re-detection failed; keeping the registered address")
			continue
		}
		a.mu.Lock()
		same := addrs.V4 == a.addrs.V4 && addrs.V6 == a.addrs.V6
		a.mu.Unlock()
		if same && !force {
			continue
		}
		as, _ := startup.ParseAS(a.opts.Startup.AS)
		if _, err := startup.Register(ctx, a.ds, a.name, addrs, as, a.log); err != nil {
			a.fail("startup", err)
			a.log.WithError(err).Error("updating the Node with the new address")
			continue
		}
		a.mu.Lock()
		old := a.addrs
		a.addrs = addrs
		a.mu.Unlock()
		if !same {
			a.log.WithFields(logrus.Fields{"old": old.V4, "new": addrs.V4, "old6": old.V6, "new6": addrs.V6}).Info("node address changed")
			if !old.V6.IsValid() {
				a.forwardIPv6(addrs)
			}
		}
		kick(a.tunnelKick)
	}
}

// birdKernelMetric asks BIRD which metric it wants for its kernel route to
// dst, for the dataplane's removal of stale duplicate BIRD routes. The
// kernel protocols are kernel_v4 and kernel_v6 (templates/bird.cfg.template).
func birdKernelMetric(socket string) func(context.Context, netip.Prefix) (int, bool) {
	return func(ctx context.Context, dst netip.Prefix) (int, bool) {
		c, err := birdsock.Dial(ctx, socket)
		if err != nil {
			return 0, false
		}
		defer c.Close()
		proto := "kernel_v4"
		if dst.Addr().Is6() {
			proto = "kernel_v6"
		}
		m, ok, err := c.KernelMetric(ctx, dst.String(), proto)
		return m, ok && err == nil
	}
}

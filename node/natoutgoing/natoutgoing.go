// Package natoutgoing masquerades what leaves an IP pool with
// natOutgoing for a destination outside every pool, as calico-node does,
// so that workloads reach hosts and networks that have no route back to
// the pools. Traffic between pools is never translated. IPv4 and IPv6
// pools alike.
//
// It uses nftables (github.com/google/nftables, over netlink) in a table
// of Roost's own, `table inet roost`:
//
//	set pools4, pools6   every pool's CIDR (interval sets)
//	set masq4, masq6     the CIDRs of the pools with natOutgoing
//	chain nat-outgoing   type nat hook postrouting priority srcnat; policy accept
//	    ip saddr @masq4 ip daddr != @pools4 counter masquerade
//	    ip6 saddr @masq6 ip6 daddr != @pools6 counter masquerade
//
// Pools change set elements only: the chain keeps two rules whatever the
// number of pools. The table exists while some pool has natOutgoing; it
// is removed when none has, and by Cleanup. No other table is touched.
// The kernel's copy is compared with the intended one after every pool
// change, on nftables events (another program editing the table), and
// periodically; a difference is put right in one atomic transaction.
package natoutgoing

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/internal/backoff"
)

// DefaultTable is the name of Roost's table (family inet).
const DefaultTable = "roost"

// Config tunes a Manager.
type Config struct {
	Table          string        // default DefaultTable
	ResyncInterval time.Duration // full comparison with the kernel (default 90s)
	RetryInterval  time.Duration // first retry after a failure (default 1s, doubling up to the resync interval)
	// NetNS is a file descriptor of the network namespace to program
	// (0: the current one).
	NetNS int
	// WaitForInputs: change nothing until InputsReady, so that a restart
	// never removes the table because the pools were not loaded yet.
	WaitForInputs bool
}

func (c *Config) defaults() {
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if c.ResyncInterval <= 0 {
		c.ResyncInterval = 90 * time.Second
	}
	if c.RetryInterval <= 0 {
		c.RetryInterval = time.Second
	}
}

// Observer receives measurements (the agent's Prometheus metrics).
type Observer interface {
	DriftRepaired(kind string) // "nat"
	Error(kind string)         // "nat"
}

type nopObserver struct{}

func (nopObserver) DriftRepaired(string) {}
func (nopObserver) Error(string)         {}

// Pool is what NAT outgoing needs of an IPPool.
type Pool struct {
	CIDR        netip.Prefix
	NATOutgoing bool
	// LoadBalancerOnly pools hold no workloads: like Felix, they are not
	// in the pool sets, so traffic to them is masqueraded.
	LoadBalancerOnly bool
}

// PoolFromAPI converts an IPPool (disabled pools count: their workloads
// still run).
func PoolFromAPI(p *api.IPPool) (Pool, error) {
	cidr, err := api.ParseCIDR(p.Spec.CIDR)
	if err != nil {
		return Pool{}, fmt.Errorf("IPPool %s: cidr %q: %w", p.Metadata.Name, p.Spec.CIDR, err)
	}
	lb := len(p.Spec.AllowedUses) > 0
	for _, u := range p.Spec.AllowedUses {
		lb = lb && u == api.UseLoadBalancer
	}
	return Pool{CIDR: cidr.Masked(), NATOutgoing: p.Spec.NATOutgoing, LoadBalancerOnly: lb}, nil
}

// Status is a snapshot for /readyz and tests.
type Status struct {
	Table      string `json:"table"`
	NATPools   int    `json:"natPools"`   // pools with natOutgoing
	Programmed bool   `json:"programmed"` // the kernel holds what is intended (the table, or its absence)
	Error      string `json:"error,omitempty"`
}

// ErrNoNATSupport marks a failure that points at missing kernel support.
var ErrNoNATSupport = errors.New("the kernel lacks the nftables NAT support NAT outgoing needs")

// Manager keeps Roost's NAT table in step with the pools.
type Manager struct {
	cfg Config
	log logrus.FieldLogger
	obs Observer

	mu          sync.Mutex
	pools       map[string]Pool // by pool name
	inputsReady bool
	applied     *ruleset // what the kernel was last made or found to hold
	programmed  bool
	lastErr     error
	kick        chan struct{}
	writes      atomic.Int64       // transactions sent (tests)
	chainType   nftables.ChainType // tests: a type the kernel refuses here
}

// New returns a Manager; Run drives it.
func New(cfg Config, log logrus.FieldLogger, obs Observer) *Manager {
	cfg.defaults()
	if log == nil {
		log = logrus.StandardLogger()
	}
	if obs == nil {
		obs = nopObserver{}
	}
	return &Manager{cfg: cfg, log: log.WithFields(logrus.Fields{"component": "nat-outgoing", "table": "inet " + cfg.Table}), obs: obs,
		pools: map[string]Pool{}, inputsReady: !cfg.WaitForInputs, kick: make(chan struct{}, 1)}
}

func (m *Manager) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// SetPool records a pool by name.
func (m *Manager) SetPool(name string, p Pool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.pools[name]; ok && old == p {
		return
	}
	m.pools[name] = p
	m.poke()
}

// DeletePool forgets a pool.
func (m *Manager) DeletePool(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.pools[name]; !ok {
		return
	}
	delete(m.pools, name)
	m.poke()
}

// InputsReady tells a Manager created with WaitForInputs that it has
// every pool.
func (m *Manager) InputsReady() {
	m.mu.Lock()
	m.inputsReady = true
	m.mu.Unlock()
	m.poke()
}

// Status returns the current state.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := Status{Table: "inet " + m.cfg.Table, Programmed: m.programmed}
	for _, p := range m.pools {
		if p.NATOutgoing {
			st.NATPools++
		}
	}
	if m.lastErr != nil {
		st.Error = m.lastErr.Error()
	}
	return st
}

// desiredLocked is the ruleset the pools ask for.
func (m *Manager) desiredLocked() ruleset {
	var all4, all6, masq4, masq6 []netip.Prefix
	for _, p := range m.pools {
		v6 := p.CIDR.Addr().Is6()
		if !p.LoadBalancerOnly {
			if v6 {
				all6 = append(all6, p.CIDR)
			} else {
				all4 = append(all4, p.CIDR)
			}
		}
		if p.NATOutgoing {
			if v6 {
				masq6 = append(masq6, p.CIDR)
			} else {
				masq4 = append(masq4, p.CIDR)
			}
		}
	}
	return ruleset{
		table: len(masq4)+len(masq6) > 0,
		elems: map[string][]nftables.SetElement{
			setPools4: intervalElements(merge(all4)), setMasq4: intervalElements(merge(masq4)),
			setPools6: intervalElements(merge(all6)), setMasq6: intervalElements(merge(masq6)),
		},
	}
}

// Reconcile compares the kernel with the intended table once and puts
// right what differs.
func (m *Manager) Reconcile() error {
	m.mu.Lock()
	if !m.inputsReady {
		m.mu.Unlock()
		return nil
	}
	want := m.desiredLocked()
	applied := m.applied
	m.mu.Unlock()

	err := m.reconcile(want, applied)
	if err != nil && supportErr(err) && want.table {
		// Missing support, or a race with another program (a table
		// that vanished between reading and writing)? A second try
		// tells them apart.
		err = m.reconcile(want, nil)
		if err != nil && supportErr(err) {
			err = fmt.Errorf("%w: %s; load or build the kernel's nf_tables, nft_chain_nat, nft_masq, nf_nat and nf_conntrack "+
				"(CONFIG_NF_TABLES, CONFIG_NF_TABLES_INET, CONFIG_NFT_NAT, CONFIG_NFT_MASQ, CONFIG_NF_NAT, CONFIG_NF_CONNTRACK; "+
				"see docs/install.md), or set natOutgoing: false on the pools; pool traffic leaves unmasqueraded, everything else keeps working",
				ErrNoNATSupport, strings.ReplaceAll(err.Error(), "\n", "; "))
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		if m.lastErr == nil || m.lastErr.Error() != err.Error() {
			m.log.WithError(err).Error("NAT outgoing not programmed")
		}
		m.obs.Error("nat")
		m.lastErr, m.programmed, m.applied = err, false, nil
		return err
	}
	if m.lastErr != nil {
		m.log.Info("NAT outgoing programmed again")
	}
	m.lastErr, m.programmed, m.applied = nil, true, &want
	return nil
}

// supportErr reports errors a kernel without the needed nftables parts
// gives (unknown netlink family, subsystem, expression or chain type).
func supportErr(err error) bool {
	for _, e := range []syscall.Errno{syscall.ENOENT, syscall.EOPNOTSUPP, syscall.EPROTONOSUPPORT, syscall.EAFNOSUPPORT} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (m *Manager) conn() (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if m.cfg.NetNS > 0 {
		opts = append(opts, nftables.WithNetNSFd(m.cfg.NetNS))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables netlink socket: %w", err)
	}
	return c, nil
}

// reconcile reads the kernel's table and writes what differs from want.
// applied is what the kernel held after the last pass (nil: unknown): a
// difference from it that the pools did not cause is drift.
func (m *Manager) reconcile(want ruleset, applied *ruleset) error {
	c, err := m.conn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	have, err := m.read(c)
	if err != nil {
		if !want.table && supportErr(err) {
			return nil // no NAT wanted, and no nftables to hold a table
		}
		return fmt.Errorf("reading table inet %s: %w", m.cfg.Table, err)
	}
	drift := func(what string) {
		m.obs.DriftRepaired("nat")
		m.log.WithField("what", what).Info("drift repaired: the NAT table was changed behind Roost's back")
	}
	hadTable := applied != nil && applied.table
	switch {
	case !want.table && !have.exists:
		return nil
	case !want.table:
		c.DelTable(m.table())
		m.writes.Add(1)
		if err := c.Flush(); err != nil && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("removing table inet %s: %w", m.cfg.Table, err)
		}
		m.log.Info("removed the NAT table (no pool has natOutgoing)")
		return nil
	case !have.exists || have.shape != "":
		why := "created"
		switch {
		case have.exists:
			why = "rebuilt: " + have.shape
			if hadTable {
				drift(have.shape)
			}
		case hadTable:
			why = "recreated"
			drift("table deleted")
		}
		m.build(c, want, have.exists)
		m.writes.Add(1)
		if err := c.Flush(); err != nil {
			return fmt.Errorf("writing table inet %s: %w", m.cfg.Table, err)
		}
		m.log.WithField("natRanges", countRanges(want)).Info("NAT table " + why)
		return nil
	}
	var changed []string
	for _, name := range setNames {
		if sameElements(have.elems[name], want.elems[name]) {
			continue
		}
		s := m.set(name)
		c.FlushSet(s)
		if len(want.elems[name]) > 0 {
			if err := c.SetAddElements(s, want.elems[name]); err != nil {
				return fmt.Errorf("set %s: %w", name, err)
			}
		}
		changed = append(changed, name)
	}
	if len(changed) == 0 {
		return nil
	}
	m.writes.Add(1)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("updating the sets of table inet %s: %w", m.cfg.Table, err)
	}
	if hadTable && slices.ContainsFunc(changed, func(n string) bool { return sameElements(applied.elems[n], want.elems[n]) }) {
		drift("set elements")
	}
	m.log.WithField("sets", changed).Info("NAT pool sets updated")
	return nil
}

// countRanges counts the masqueraded ranges (for logs).
func countRanges(r ruleset) int {
	n := 0
	for _, name := range []string{setMasq4, setMasq6} {
		for _, e := range r.elems[name] {
			if !e.IntervalEnd {
				n++
			}
		}
	}
	return n
}

// Cleanup removes Roost's table (for uninstalling; other tables stay).
func (m *Manager) Cleanup() error {
	c, err := m.conn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	if _, err := c.ListTableOfFamily(m.cfg.Table, nftables.TableFamilyINet); err != nil {
		if supportErr(err) {
			return nil // absent (or no nftables at all)
		}
		return fmt.Errorf("looking up table inet %s: %w", m.cfg.Table, err)
	}
	c.DelTable(m.table())
	if err := c.Flush(); err != nil && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("removing table inet %s: %w", m.cfg.Table, err)
	}
	m.mu.Lock()
	m.applied, m.programmed = nil, false
	m.mu.Unlock()
	m.log.Info("removed the NAT table")
	return nil
}

// Run reconciles after pool changes, on nftables events and periodically,
// until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	var (
		events <-chan *nftables.MonitorEvents
		stop   = func() {}
		check  <-chan time.Time // a debounced check after events
		retry  <-chan time.Time
	)
	bo := backoff.New(backoff.Policy{Min: m.cfg.RetryInterval, Max: m.cfg.ResyncInterval})
	subscribe := func() {
		stop()
		ch, s, err := m.subscribe()
		if err != nil {
			events, stop = nil, func() {}
			m.log.WithError(err).Warn("watching nftables events failed; relying on the periodic resync")
			return
		}
		events, stop = ch, s
	}
	defer func() { stop() }()
	subscribe()
	resync := time.NewTicker(m.cfg.ResyncInterval)
	defer resync.Stop()
	run := func() {
		check, retry = nil, nil
		if err := m.Reconcile(); err != nil {
			retry = time.After(bo.Next())
			return
		}
		bo.Reset()
	}
	run()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.kick:
			run()
		case <-retry:
			run()
		case <-check:
			run()
		case <-resync.C:
			if events == nil {
				subscribe()
			}
			run()
		case evs, ok := <-events:
			if !ok || lost(evs) {
				m.log.Warn("nftables event subscription lost; resubscribing and checking the table")
				subscribe()
				run()
				continue
			}
			if check == nil && m.concerns(evs) {
				// Let a burst (another program's ruleset load) settle.
				check = time.After(50 * time.Millisecond)
			}
		}
	}
}

// subscribe watches nftables changes in the namespace.
func (m *Manager) subscribe() (<-chan *nftables.MonitorEvents, func(), error) {
	c, err := m.conn()
	if err != nil {
		return nil, nil, err
	}
	mon := nftables.NewMonitor(nftables.WithMonitorEventBuffer(256))
	ch, err := c.AddGenerationalMonitor(mon)
	if err != nil {
		c.CloseLasting()
		return nil, nil, err
	}
	stop := func() {
		_ = mon.Close()
		c.CloseLasting()
		go func() {
			for range ch { // let the monitor's goroutine finish
			}
		}()
	}
	return ch, stop, nil
}

func lost(evs *nftables.MonitorEvents) bool {
	return evs == nil || evs.GeneratedBy != nil && evs.GeneratedBy.Type == nftables.MonitorEventTypeOOB
}

// concerns reports whether a transaction may have touched Roost's table:
// table, chain, set and rule events name their table; element events do
// not, so they always count.
func (m *Manager) concerns(evs *nftables.MonitorEvents) bool {
	for _, e := range evs.Changes {
		var t *nftables.Table
		switch d := e.Data.(type) {
		case *nftables.Table:
			t = d
		case *nftables.Chain:
			t = d.Table
		case *nftables.Set:
			t = d.Table
		case *nftables.Rule:
			t = d.Table
		case []nftables.SetElement:
			return true
		}
		if t != nil && t.Name == m.cfg.Table && (t.Family == nftables.TableFamilyINet || t.Family == nftables.TableFamilyUnspecified) {
			return true
		}
	}
	return false
}

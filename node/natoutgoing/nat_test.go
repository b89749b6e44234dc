package natoutgoing

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/roostnet/roost/node/internal/nstest"
)

func quiet() logrus.FieldLogger {
	l := logrus.New()
	l.SetLevel(logrus.WarnLevel)
	return l
}

type counter struct {
	mu          sync.Mutex
	drift, errs int
}

func (c *counter) DriftRepaired(string) { c.mu.Lock(); c.drift++; c.mu.Unlock() }
func (c *counter) Error(string)         { c.mu.Lock(); c.errs++; c.mu.Unlock() }
func (c *counter) drifts() int          { c.mu.Lock(); defer c.mu.Unlock(); return c.drift }

func eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: still failing after %s: %v", what, d, err)
}

// Addresses of the test network:
//
//	workload W (pool A: 10.244.0.5, fd00:244::5)
//	   | veth wl0 (host: 192.168.77.1, fd00:77::1)
//	host H (forwarding; runs NAT outgoing)
//	   | veth eth0: H 172.16.0.1, fd00:16::1 -- X 172.16.0.2, fd00:16::2
//	outside X: routes only 172.16.0.0/24 and fd00:16::/64 (no route to
//	   pool A); also holds 10.245.0.9 and fd00:245::9, addresses of pool
//	   B (no natOutgoing) that H routes to it.
type family struct {
	name      string
	wl, hostX netip.Addr // the workload's address; H's address facing X
	x, xPoolB netip.Addr // X's address; X's address in pool B
	poolA     netip.Prefix
	poolB     netip.Prefix
}

var families = []family{
	{"IPv4", netip.MustParseAddr("10.244.0.5"), netip.MustParseAddr("172.16.0.1"), netip.MustParseAddr("172.16.0.2"), netip.MustParseAddr("10.245.0.9"),
		netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.245.0.0/16")},
	{"IPv6", netip.MustParseAddr("fd00:244::5"), netip.MustParseAddr("fd00:16::1"), netip.MustParseAddr("fd00:16::2"), netip.MustParseAddr("fd00:245::9"),
		netip.MustParsePrefix("fd00:244::/48"), netip.MustParsePrefix("fd00:245::/48")},
}

type testNet struct {
	h, w, x *nstest.NS
	server  *udpServer
}

func addr(t *testing.T, ns *nstest.NS, dev, cidr string) {
	t.Helper()
	l, err := ns.NL.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	a.Flags = unix.IFA_F_NODAD
	if err := ns.NL.AddrAdd(l, a); err != nil {
		t.Fatalf("%s %s: %v", dev, cidr, err)
	}
}

func newTestNet(t *testing.T) *testNet {
	n := &testNet{h: nstest.New(t, "host"), w: nstest.New(t, "wl"), x: nstest.New(t, "out")}
	for _, ns := range []*nstest.NS{n.h, n.w, n.x} {
		// Link-local addresses usable at once (no duplicate address
		// detection delaying neighbour discovery).
		ns.Sysctl(t, "net.ipv6.conf.default.accept_dad", "0")
	}
	nstest.Veth(t, n.h, "wl0", n.w, "eth0")
	nstest.Veth(t, n.h, "eth0", n.x, "eth0")
	for _, s := range []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"} {
		n.h.Sysctl(t, s, "1")
	}
	addr(t, n.h, "wl0", "192.168.77.1/24")
	addr(t, n.h, "wl0", "fd00:77::1/64")
	addr(t, n.w, "eth0", "10.244.0.5/32")
	addr(t, n.w, "eth0", "fd00:244::5/128")
	n.w.Route(t, "192.168.77.1/32", "eth0", "")
	n.w.Route(t, "0.0.0.0/0", "eth0", "192.168.77.1")
	n.w.Route(t, "fd00:77::1/128", "eth0", "")
	n.w.Route(t, "::/0", "eth0", "fd00:77::1")
	n.h.Route(t, "10.244.0.5/32", "wl0", "")
	n.h.Route(t, "fd00:244::5/128", "wl0", "")
	addr(t, n.h, "eth0", "172.16.0.1/24")
	addr(t, n.h, "eth0", "fd00:16::1/64")
	addr(t, n.x, "eth0", "172.16.0.2/24")
	addr(t, n.x, "eth0", "fd00:16::2/64")
	addr(t, n.x, "lo", "10.245.0.9/32")
	addr(t, n.x, "lo", "fd00:245::9/128")
	n.h.Route(t, "10.245.0.9/32", "eth0", "172.16.0.2")
	n.h.Route(t, "fd00:245::9/128", "eth0", "fd00:16::2")
	n.server = startServer(t, n.x)
	return n
}

// udpServer runs in X: it records where each probe came from and
// echoes it; an echo the kernel cannot route (no route back to an
// untranslated pool address) is recorded as such.
type udpServer struct {
	port int
	got  chan probeSeen
}

type probeSeen struct {
	payload string
	from    netip.Addr
	replied error
}

func startServer(t *testing.T, ns *nstest.NS) *udpServer {
	var c *net.UDPConn
	if err := ns.Do(func() (err error) {
		c, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv6unspecified})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	s := &udpServer{port: c.LocalAddr().(*net.UDPAddr).Port, got: make(chan probeSeen, 64)}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			k, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, werr := c.WriteToUDPAddrPort(buf[:k], from)
			s.got <- probeSeen{payload: string(buf[:k]), from: from.Addr().Unmap(), replied: werr}
		}
	}()
	return s
}

var probes int

// probe sends one datagram from the workload (a new socket: a new
// conntrack entry) to dst and returns what the server saw and whether
// the echo came back to the workload.
func (n *testNet) probe(t *testing.T, dst netip.Addr) (probeSeen, bool) {
	t.Helper()
	probes++
	payload := fmt.Sprintf("probe-%d", probes)
	var c *net.UDPConn
	if err := n.w.Do(func() (err error) {
		c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, uint16(n.server.port))))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(payload)); err != nil {
		t.Fatalf("probe to %s: %v", dst, err)
	}
	var seen probeSeen
	for seen.payload != payload {
		select {
		case seen = <-n.server.got:
		case <-time.After(5 * time.Second):
			t.Fatalf("probe to %s never reached the server", dst)
		}
	}
	if seen.replied != nil {
		return seen, false // the server's kernel could not route the echo: nothing to wait for
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	k, err := c.Read(buf)
	return seen, err == nil && string(buf[:k]) == payload
}

// expect checks a probe: the source the server saw and whether the
// workload got the echo.
func (n *testNet) expect(t *testing.T, dst, wantFrom netip.Addr, wantEcho bool) {
	t.Helper()
	seen, echo := n.probe(t, dst)
	if seen.from != wantFrom || echo != wantEcho {
		t.Fatalf("probe to %s: seen from %s, echo %v (server reply error: %v); want from %s, echo %v", dst, seen.from, echo, seen.replied, wantFrom, wantEcho)
	}
	if !wantEcho && !errors.Is(seen.replied, syscall.ENETUNREACH) && !errors.Is(seen.replied, syscall.EHOSTUNREACH) {
		t.Fatalf("probe to %s: the server's echo failed with %v, want no route", dst, seen.replied)
	}
}

func runManager(t *testing.T, m *Manager) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func programmed(m *Manager) error {
	if st := m.Status(); !st.Programmed {
		return fmt.Errorf("status %+v", st)
	}
	return nil
}

// TestMasquerade: pool A's traffic to X is masqueraded only while A has
// natOutgoing (flipped at run time), never toward another pool, for
// IPv4 and IPv6.
func TestMasquerade(t *testing.T) {
	n := newTestNet(t)
	m := New(Config{NetNS: int(n.h.Handle), ResyncInterval: time.Hour}, quiet(), nil)
	for _, f := range families {
		m.SetPool("b-"+f.name, Pool{CIDR: f.poolB})
	}
	runManager(t, m)
	setA := func(nat bool) {
		for _, f := range families {
			m.SetPool("a-"+f.name, Pool{CIDR: f.poolA, NATOutgoing: nat})
		}
	}
	setA(false)
	eventually(t, 5*time.Second, "programmed", func() error { return programmed(m) })
	for _, f := range families {
		t.Run(f.name+"/off", func(t *testing.T) { n.expect(t, f.x, f.wl, false) })
	}
	if n.tableExists(t) {
		t.Fatal("table exists while no pool has natOutgoing")
	}

	setA(true)
	eventually(t, 5*time.Second, "NAT on", func() error {
		if !n.tableExists(t) {
			return errors.New("no table")
		}
		return programmed(m)
	})
	for _, f := range families {
		t.Run(f.name+"/on", func(t *testing.T) {
			n.expect(t, f.x, f.hostX, true)
			// Pool to pool: never translated.
			n.expect(t, f.xPoolB, f.wl, false)
		})
	}
	if err := n.w.Ping(netip.MustParseAddr("172.16.0.2"), 5*time.Second); err != nil {
		t.Fatalf("ping with NAT: %v", err)
	}

	setA(false)
	eventually(t, 5*time.Second, "NAT off again", func() error {
		if n.tableExists(t) {
			return errors.New("table still there")
		}
		return programmed(m)
	})
	for _, f := range families {
		t.Run(f.name+"/off-again", func(t *testing.T) { n.expect(t, f.x, f.wl, false) })
	}
}

func (n *testNet) conn(t *testing.T) *nftables.Conn {
	c, err := nftables.New(nftables.WithNetNSFd(int(n.h.Handle)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (n *testNet) tableExists(t *testing.T) bool {
	t.Helper()
	_, err := n.conn(t).ListTableOfFamily(DefaultTable, nftables.TableFamilyINet)
	if err != nil && !errors.Is(err, syscall.ENOENT) {
		t.Fatal(err)
	}
	return err == nil
}

// TestDriftRepaired: another program edits or deletes Roost's table; the
// nftables events make the manager put it back (the periodic resync is
// an hour away), and it never touches another table.
func TestDriftRepaired(t *testing.T) {
	n := newTestNet(t)
	// Someone else's table, which must survive everything.
	c := n.conn(t)
	other := c.AddTable(&nftables.Table{Name: "other", Family: nftables.TableFamilyINet})
	oc := c.AddChain(&nftables.Chain{Name: "c", Table: other})
	c.AddRule(&nftables.Rule{Table: other, Chain: oc, Exprs: []expr.Any{&expr.Counter{}}})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	obs := &counter{}
	m := New(Config{NetNS: int(n.h.Handle), ResyncInterval: time.Hour}, quiet(), obs)
	for _, f := range families {
		m.SetPool("a-"+f.name, Pool{CIDR: f.poolA, NATOutgoing: true})
		m.SetPool("b-"+f.name, Pool{CIDR: f.poolB})
	}
	runManager(t, m)
	eventually(t, 5*time.Second, "programmed", func() error { return programmed(m) })
	v4 := families[0]
	n.expect(t, v4.x, v4.hostX, true)

	tbl := &nftables.Table{Name: DefaultTable, Family: nftables.TableFamilyINet}
	chain := &nftables.Chain{Name: chainName, Table: tbl}
	for i, tc := range []struct {
		name  string
		drift func(c *nftables.Conn) error
	}{
		{"rule deleted", func(c *nftables.Conn) error {
			rs, err := c.GetRules(tbl, chain)
			if err != nil || len(rs) == 0 {
				return fmt.Errorf("rules: %v %v", rs, err)
			}
			return c.DelRule(rs[0])
		}},
		{"masq set flushed", func(c *nftables.Conn) error {
			c.FlushSet(&nftables.Set{Table: tbl, Name: setMasq4})
			return nil
		}},
		{"X's subnet added to the pool set", func(c *nftables.Conn) error {
			return c.SetAddElements(&nftables.Set{Table: tbl, Name: setPools4, KeyType: nftables.TypeIPAddr, Interval: true}, []nftables.SetElement{
				{Key: net.IP{172, 16, 0, 0}}, {Key: net.IP{172, 16, 1, 0}, IntervalEnd: true}})
		}},
		{"rule inserted", func(c *nftables.Conn) error {
			c.InsertRule(&nftables.Rule{Table: tbl, Chain: chain, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
			return nil
		}},
		{"table deleted", func(c *nftables.Conn) error {
			c.DelTable(tbl)
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := n.conn(t)
			if err := tc.drift(c); err != nil {
				t.Fatal(err)
			}
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			eventually(t, 5*time.Second, "repaired", func() error {
				if d := obs.drifts(); d != i+1 {
					return fmt.Errorf("%d drift repairs", d)
				}
				return n.checkTable(t, m)
			})
			n.expect(t, v4.x, v4.hostX, true)
		})
	}
	if _, err := n.conn(t).ListTableOfFamily("other", nftables.TableFamilyINet); err != nil {
		t.Fatalf("the other table: %v", err)
	}

	// Cleanup removes Roost's table only; a second cleanup is a no-op.
	if err := m.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if n.tableExists(t) {
		t.Fatal("table left after cleanup")
	}
	if err := m.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := n.conn(t).ListTableOfFamily("other", nftables.TableFamilyINet); err != nil {
		t.Fatalf("cleanup removed the other table: %v", err)
	}
}

// checkTable reads the kernel's table and compares it with the pools.
func (n *testNet) checkTable(t *testing.T, m *Manager) error {
	c, err := m.conn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	have, err := m.read(c)
	if err != nil {
		return err
	}
	m.mu.Lock()
	want := m.desiredLocked()
	m.mu.Unlock()
	switch {
	case !have.exists:
		return errors.New("no table")
	case have.shape != "":
		return errors.New(have.shape)
	}
	for _, s := range setNames {
		if !sameElements(have.elems[s], want.elems[s]) {
			return fmt.Errorf("set %s: %v, want %v", s, have.elems[s], want.elems[s])
		}
	}
	return nil
}

// TestReadsBackAsWritten: a table just written compares equal to the
// pools (so a check after Roost's own change writes nothing), with
// nested, adjacent and disjoint pools of both families.
func TestReadsBackAsWritten(t *testing.T) {
	n := newTestNet(t)
	m := New(Config{NetNS: int(n.h.Handle)}, quiet(), nil)
	for name, p := range map[string]Pool{
		"a": {CIDR: netip.MustParsePrefix("10.244.0.0/16"), NATOutgoing: true},
		"b": {CIDR: netip.MustParsePrefix("10.244.8.0/24"), NATOutgoing: true}, // inside a
		"c": {CIDR: netip.MustParsePrefix("10.245.0.0/16")},                    // next to a
		"d": {CIDR: netip.MustParsePrefix("192.168.0.0/24")},
		"e": {CIDR: netip.MustParsePrefix("fd00:244::/48"), NATOutgoing: true},
		"f": {CIDR: netip.MustParsePrefix("fd00:245::/122")},
		"g": {CIDR: netip.MustParsePrefix("203.0.113.0/24"), LoadBalancerOnly: true},
	} {
		m.SetPool(name, p)
	}
	if err := m.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if err := n.checkTable(t, m); err != nil {
		t.Fatal(err)
	}
	writes := m.writes.Load()
	if err := m.Reconcile(); err != nil || m.writes.Load() != writes {
		t.Fatalf("a second pass wrote again (%d writes, then %d): %v", writes, m.writes.Load(), err)
	}
	m.mu.Lock()
	want := m.desiredLocked()
	m.mu.Unlock()
	if got := len(want.elems[setPools4]); got != 4 { // 10.244.0.0-10.245.255.255 and 192.168.0.0/24: start and end each
		t.Fatalf("pools4 has %d elements: %v", got, want.elems[setPools4])
	}
}

// TestMissingKernelSupport: when the kernel refuses what NAT outgoing
// needs (here a chain type it does not support in an inet table, the
// way a kernel without nft_chain_nat refuses the nat type), the error
// says which kernel parts are needed, shows in Status, is counted, and
// nothing is left half-written.
func TestMissingKernelSupport(t *testing.T) {
	n := newTestNet(t)
	obs := &counter{}
	m := New(Config{NetNS: int(n.h.Handle)}, quiet(), obs)
	m.chainType = nftables.ChainTypeRoute
	m.SetPool("a", Pool{CIDR: netip.MustParsePrefix("10.244.0.0/16"), NATOutgoing: true})
	err := m.Reconcile()
	if !errors.Is(err, ErrNoNATSupport) {
		t.Fatalf("error %v, want ErrNoNATSupport", err)
	}
	t.Logf("reported: %v", err)
	st := m.Status()
	for _, s := range []string{"nft_masq", "nft_chain_nat", "CONFIG_NFT_NAT", "docs/install.md", "natOutgoing: false"} {
		if !strings.Contains(st.Error, s) {
			t.Errorf("status error does not mention %s: %s", s, st.Error)
		}
	}
	if st.Programmed || obs.errs == 0 {
		t.Fatalf("status %+v, errors counted %d", st, obs.errs)
	}
	if n.tableExists(t) {
		t.Fatal("a half-written table is left")
	}
}

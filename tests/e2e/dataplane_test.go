package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"

	"github.com/roostnet/roost/node/names"
	"github.com/roostnet/roost/tests/lab"
)

// ---- MTU ----

// linkMTU is the MTU of dev in namespace ns.
func (c *cluster) linkMTU(ns, dev string) (int, error) {
	out, err := c.Exec(c.ctx, ns, nil, "ip", "-j", "link", "show", "dev", dev)
	if err != nil {
		return 0, err
	}
	var links []struct {
		MTU int `json:"mtu"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		return 0, fmt.Errorf("ip -j link show dev %s: %v: %s", dev, err, out)
	}
	return links[0].MTU, nil
}

// mtuFile is what h's roost-node wrote for workloads.
func mtuFile(h *lab.Host) (int, error) {
	b, err := os.ReadFile(h.MTUFile())
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// waitMTUFiles waits until every host's MTU file holds want.
func (c *cluster) waitMTUFiles(hosts []*lab.Host, want int) {
	c.t.Helper()
	c.eventually(convergeTimeout, fmt.Sprintf("MTU files at %d", want), func() error {
		for _, h := range hosts {
			v, err := mtuFile(h)
			if err != nil {
				return err
			}
			if v != want {
				return fmt.Errorf("%s: %d", h.Name, v)
			}
		}
		return nil
	})
}

// checkMTU asserts the MTUs of a mode: every host's MTU file, its
// vxlan.calico (vxlan 0: the device must not exist) and both ends of
// every workload's veth.
func (c *cluster) checkMTU(hosts []*lab.Host, ws []*lab.Workload, workload, vxlan int) {
	c.t.Helper()
	c.waitMTUFiles(hosts, workload)
	for _, h := range hosts {
		m, err := c.linkMTU(h.NS, names.VXLANDevice)
		switch {
		case vxlan == 0 && err == nil:
			c.t.Fatalf("%s: vxlan.calico exists (MTU %d) without a VXLAN pool", h.Name, m)
		case vxlan != 0 && err != nil:
			c.t.Fatalf("%s: %v", h.Name, err)
		case vxlan != 0 && m != vxlan:
			c.t.Fatalf("%s: vxlan.calico MTU %d, want %d", h.Name, m, vxlan)
		}
	}
	for _, w := range ws {
		for _, end := range [][2]string{{w.Host.NS, names.WorkloadInterface("default", w.Name)}, {w.NS, "eth0"}} {
			m, err := c.linkMTU(end[0], end[1])
			if err != nil || m != workload {
				c.t.Fatalf("%s/%s: %s MTU %d (%v), want %d", w.Host.Name, w.Name, end[1], m, err, workload)
			}
		}
	}
	c.t.Logf("MTUs: workloads %d (file, both veth ends), vxlan.calico %d", workload, vxlan)
}

// dfPings sends, for every pair, a full-size echo for the MTU (payload
// mtu-28: IPv4 20 + ICMP 8; mtu-48 over IPv6) with fragmentation
// forbidden, which must be answered, and one byte more, which the
// workload itself must refuse ("message too long") instead of leaving it
// to ICMP from a tunnel.
func (c *cluster) dfPings(mtu int, pairs ...pingPair) {
	c.t.Helper()
	for _, p := range pairs {
		size := mtu - 28
		if p.to.IP.Is6() {
			size = mtu - 48
		}
		if out, err := c.Exec(c.ctx, p.from.NS, nil, "ping", "-M", "do", "-s", strconv.Itoa(size), "-c", "2", "-i", "0.2", "-W", "2", "-q", p.to.IP.String()); err != nil {
			c.t.Fatalf("%d-byte DF ping %s -> %s (%s): %v\n%s", size, p.from.Name, p.to.Name, p.to.IP, err, out)
		}
		out, err := c.Exec(c.ctx, p.from.NS, nil, "ping", "-M", "do", "-s", strconv.Itoa(size+1), "-c", "1", "-W", "2", p.to.IP.String())
		if err == nil || !strings.Contains(out+err.Error(), "message too long") {
			c.t.Fatalf("%d-byte DF ping %s -> %s (%s): want a local \"message too long\", got %v\n%s", size+1, p.from.Name, p.to.Name, p.to.IP, err, out)
		}
		c.t.Logf("%d-byte DF ping %s -> %s answered, %d bytes refused in the workload", size, p.from.Name, p.to.IP, size+1)
	}
}

// ---- NAT outgoing ----

var tagNAT = tag("nat")

// natPoolYAML is poolYAML's pool with natOutgoing set.
func natPoolYAML(vxlanMode string, nat bool) string {
	return lab.ClusterYAML(lab.Pool{Name: "e2e-pool", VXLANMode: vxlanMode, NATOutgoing: nat})
}

// udpEcho listens in a namespace, reports where each datagram came from
// and echoes it.
type udpEcho struct {
	conn *net.UDPConn
	port int
	seen chan udpSeen
}

type udpSeen struct {
	payload string
	from    netip.Addr
}

func (c *cluster) udpEcho(ns string) *udpEcho {
	c.t.Helper()
	var conn *net.UDPConn
	if err := lab.InNS(ns, func() (err error) {
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{})
		return err
	}); err != nil {
		c.t.Fatal(err)
	}
	e := &udpEcho{conn: conn, port: conn.LocalAddr().(*net.UDPAddr).Port, seen: make(chan udpSeen, 64)}
	c.t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			k, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = conn.WriteToUDPAddrPort(buf[:k], from)
			e.seen <- udpSeen{string(buf[:k]), from.Addr().Unmap()}
		}
	}()
	return e
}

var probeSeq int

// probe sends one datagram from w (a new socket, so a new conntrack
// entry) to the echo server at dst; it returns the source address the
// server saw and, when wait is set, whether the echo came back.
func (c *cluster) probe(w *lab.Workload, srv *udpEcho, dst netip.Addr, wait bool) (netip.Addr, bool, error) {
	probeSeq++
	payload := fmt.Sprintf("probe-%d", probeSeq)
	var conn *net.UDPConn
	if err := lab.InNS(w.NS, func() (err error) {
		conn, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, uint16(srv.port))))
		return err
	}); err != nil {
		return netip.Addr{}, false, err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(payload)); err != nil {
		return netip.Addr{}, false, err
	}
	var seen udpSeen
	for seen.payload != payload {
		select {
		case seen = <-srv.seen:
		case <-time.After(3 * time.Second):
			return netip.Addr{}, false, fmt.Errorf("probe %s -> %s never arrived", w.Name, dst)
		}
	}
	if !wait {
		return seen.from, false, nil
	}
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 64)
	k, err := conn.Read(buf)
	return seen.from, err == nil && string(buf[:k]) == payload, nil
}

// natTable reports whether host h has Roost's NAT table.
func natTable(h *lab.Host) (bool, error) {
	ns, err := netns.GetFromName(h.NS)
	if err != nil {
		return false, err
	}
	defer ns.Close()
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return false, err
	}
	_, err = conn.ListTableOfFamily("roost", nftables.TableFamilyINet)
	if errors.Is(err, syscall.ENOENT) {
		return false, nil
	}
	return err == nil, err
}

// TestNATOutgoing: a machine outside the cluster that routes only the
// hosts' subnet (not the pool). With natOutgoing off it sees the
// workload's own address, which it cannot answer; switching the pool
// on (birdctl apply, nothing restarted) makes its traffic leave with the
// host's address and the echo come back; traffic between workloads keeps
// their addresses; off again restores the first state. `roost-node
// cleanup` removes the NAT table and the MTU file.
func TestNATOutgoing(t *testing.T) {
	c := newLab(t, tagNAT, lab.Options{Hosts: 2})
	h1, h2 := c.Hosts[0], c.Hosts[1]
	c.apply(natPoolYAML("Always", false))
	c.start(c.Hosts)
	ws := c.addWorkloads(c.Hosts, 1)
	w1, w2 := ws[0], ws[1]
	c.waitSessions(mesh(c.Hosts))
	c.waitBlockRoutes(c.Hosts, c.vxlanTo)
	c.pingAll(ws)

	ext, err := c.AddMachine(c.ctx, "ext", 0)
	if err != nil {
		t.Fatal(err)
	}
	// Outside the cluster: its only way toward the pool is its default
	// route to the segment's gateway, which has no route to the pool.
	if out, err := c.Exec(c.ctx, c.Switch, nil, "ip", "route", "get", w1.IP.String()); err == nil {
		t.Fatalf("the segment's gateway routes the pool: %s", out)
	}
	srv := c.udpEcho(ext.NS)
	wsrv := c.udpEcho(w2.NS)

	from, _, err := c.probe(w1, srv, ext.IP, false)
	if err != nil || from != w1.IP {
		t.Fatalf("natOutgoing off: ext saw %s (%v), want the workload's own %s", from, err, w1.IP)
	}
	if ok, err := natTable(h1); err != nil || ok {
		t.Fatalf("NAT table with natOutgoing off: %v %v", ok, err)
	}

	start := time.Now()
	c.apply(natPoolYAML("Always", true))
	c.eventually(convergeTimeout, "masquerading", func() error {
		from, echo, err := c.probe(w1, srv, ext.IP, true)
		switch {
		case err != nil:
			return err
		case from != h1.IP || !echo:
			return fmt.Errorf("ext saw %s, echo %v; want %s and the echo", from, echo, h1.IP)
		}
		return nil
	})
	record(t, "natOutgoing on in %s", time.Since(start).Round(time.Millisecond))
	if _, err := c.Exec(c.ctx, w1.NS, nil, "ping", "-c", "2", "-i", "0.2", "-W", "2", "-q", ext.IP.String()); err != nil {
		t.Fatalf("ping to the outside with natOutgoing: %v", err)
	}
	// Between pools (here within the pool, across hosts): never translated.
	from, echo, err := c.probe(w1, wsrv, w2.IP, true)
	if err != nil || from != w1.IP || !echo {
		t.Fatalf("workload to workload: %s saw %s, echo %v (%v); want %s", w2.Name, from, echo, err, w1.IP)
	}
	// Host 2's workload too; its host's address.
	from, echo, err = c.probe(w2, srv, ext.IP, true)
	if err != nil || from != h2.IP || !echo {
		t.Fatalf("%s to ext: seen from %s, echo %v (%v); want %s", w2.Name, from, echo, err, h2.IP)
	}

	c.apply(natPoolYAML("Always", false))
	c.eventually(convergeTimeout, "natOutgoing off again", func() error {
		from, _, err := c.probe(w1, srv, ext.IP, false)
		switch {
		case err != nil:
			return err
		case from != w1.IP:
			return fmt.Errorf("ext saw %s, want %s", from, w1.IP)
		}
		for _, h := range c.Hosts {
			if ok, err := natTable(h); err != nil || ok {
				return fmt.Errorf("%s: NAT table %v %v", h.Name, ok, err)
			}
		}
		return nil
	})

	// Uninstall host 1: cleanup takes the table, the MTU and node name files.
	c.apply(natPoolYAML("Always", true))
	c.eventually(convergeTimeout, "NAT table back", func() error {
		if ok, err := natTable(h1); err != nil || !ok {
			return fmt.Errorf("no table (%v)", err)
		}
		return nil
	})
	h1.StopAgents()
	if out, err := c.Exec(c.ctx, h1.NS, c.NodeEnv(h1), c.Bin("roost-node"), "cleanup"); err != nil {
		t.Fatalf("cleanup: %v\n%s", err, out)
	}
	if ok, err := natTable(h1); err != nil || ok {
		t.Fatalf("NAT table after cleanup: %v %v", ok, err)
	}
	if _, err := os.Stat(h1.MTUFile()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("MTU file after cleanup: %v", err)
	}
	if _, err := os.Stat(h1.NodenameFile()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("node name file after cleanup: %v", err)
	}
	if ok, err := natTable(h2); err != nil || !ok {
		t.Fatalf("host2's NAT table: %v %v", ok, err)
	}
}

package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roostnet/roost/tests/lab"
)

var (
	tagRR       = tag("rr")
	tagExternal = tag("ext")
	tagPassword = tag("pw")
)

// TestRouteReflector: mesh off; host1 is a route reflector (cluster id
// and label on its Node) and one BGPPeer with selectors peers every node
// with it. The clients have one session each, to the reflector; the
// reflector has one to every client; every client learns the other
// clients' blocks from the reflector.
func TestRouteReflector(t *testing.T) {
	c := newLab(t, tagRR, lab.Options{Hosts: 3})
	rr, clients := c.Hosts[0], c.Hosts[1:]
	c.apply(poolYAML(false, "Never") + fmt.Sprintf(`---
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: %s
  labels: {route-reflector: "true"}
spec:
  bgp: {ipv4Address: %s, routeReflectorClusterID: 224.0.0.1}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: peer-with-route-reflectors}
spec:
  nodeSelector: all()
  peerSelector: route-reflector == 'true'
`, rr.Name, rr.Prefix))
	start := time.Now()
	c.start(c.Hosts)
	c.addWorkloads(c.Hosts, 1)
	want := sessions{rr: nil}
	for _, cl := range clients {
		want[rr] = append(want[rr], cl.IP)
		want[cl] = []netip.Addr{rr.IP}
	}
	got := c.waitSessions(want)
	n := c.waitBlockRoutes(c.Hosts, noEncap)
	record(t, "converged in %s (1 reflector, %d clients, %d block routes)", time.Since(start).Round(time.Millisecond), len(clients), n)
	for _, h := range c.Hosts {
		for _, p := range got[h] {
			t.Logf("%s: %s (%s) %s", h.Name, p.Protocol, p.Type, p.Info)
		}
	}

	// A client's route to the other client's block was reflected: BIRD
	// learned it from the reflector, with the owner as next hop.
	blocks, err := c.blocks()
	if err != nil {
		t.Fatal(err)
	}
	a, b := clients[0], clients[1]
	for _, blk := range blocks[b.Name] {
		out := c.birdctl(a, "show", "route", "for", blk.Addr().String(), "-o", "json")
		var rs []struct {
			Prefix   string `json:"prefix"`
			From     string `json:"from"`
			NextHops []struct {
				Gateway string `json:"gateway"`
			} `json:"nextHops"`
		}
		if err := decodeList(out, &rs); err != nil || len(rs) == 0 {
			t.Fatalf("%s: show route for %s: %v: %s", a.Name, blk, err, out)
		}
		r := rs[0]
		if r.From != rr.IP.String() || len(r.NextHops) == 0 || r.NextHops[0].Gateway != b.IP.String() {
			t.Errorf("%s: route to %s: from %q next hop %v, want from %s (the reflector) via %s", a.Name, blk, r.From, r.NextHops, rr.IP, b.IP)
		}
	}
	c.pingAll(c.workloads)
}

// TestExternalRouter: a separate BIRD in its own namespace on the
// segment, AS 65001, configured by the test, is a global BGPPeer of
// every host; it receives every host's blocks, each via its host.
func TestExternalRouter(t *testing.T) {
	c := newLab(t, tagExternal, lab.Options{Hosts: 3})
	ext := c.addExtRouter("ext", 65001)
	c.apply(poolYAML(true, "Never") + fmt.Sprintf(`---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: upstream}
spec: {peerIP: %s, asNumber: %d}
`, ext.Host.IP, ext.AS))
	ext.configure(c.Hosts, 64512, "")
	start := time.Now()
	c.start(c.Hosts)
	c.addWorkloads(c.Hosts, 1)
	want := mesh(c.Hosts)
	for _, h := range c.Hosts {
		want[h] = append(want[h], ext.Host.IP)
	}
	got := c.waitSessions(want)
	for _, h := range c.Hosts {
		if p := got[h][ext.Host.IP]; p.Type != "global" {
			t.Errorf("%s: session %s to the external router has peer type %q, want global", h.Name, p.Protocol, p.Type)
		}
	}
	var n int
	c.eventually(convergeTimeout, "external router has every block", func() (err error) {
		n, err = ext.hasEveryBlock(c.Hosts)
		return err
	})
	record(t, "converged in %s (%d hosts + external AS %d, %d blocks received)", time.Since(start).Round(time.Millisecond), len(c.Hosts), ext.AS, n)
	out, _ := ext.birdctl("show", "route")
	t.Logf("external router's routes:\n%s", out)
}

// TestBGPPassword: the BGPPeer to the external router takes its password
// from a secretKeyRef that confd reads from its secrets directory. With
// the same password on the router the session establishes; with a wrong
// one it does not, and `birdctl node status` says why.
func TestBGPPassword(t *testing.T) {
	c := newLab(t, tagPassword, lab.Options{Hosts: 2})
	ext := c.addExtRouter("ext", 65001)
	secrets := filepath.Join(c.Dir, "secrets")
	if err := os.MkdirAll(filepath.Join(secrets, "bgp-secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(secrets, "bgp-secrets", "upstream"), []byte("s3cret-Pa55\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.apply(poolYAML(true, "Never") + fmt.Sprintf(`---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: upstream}
spec:
  peerIP: %s
  asNumber: %d
  password:
    secretKeyRef: {name: bgp-secrets, key: upstream}
`, ext.Host.IP, ext.AS))
	// A TCP-MD5 mismatch makes the kernel drop the segments silently, so
	// BIRD's connect attempts only ever time out. BIRD restarts a connect
	// after 5s (connect retry time), before the kernel gives up on the
	// SYN (~2 min by default), and so would show no error at all. One
	// SYN retry lets the kernel report the timeout within 3s.
	for _, h := range c.Hosts {
		if _, err := c.Exec(c.ctx, h.NS, nil, "sysctl", "-qw", "net.ipv4.tcp_syn_retries=1"); err != nil {
			t.Fatal(err)
		}
	}
	ext.configure(c.Hosts, 64512, "s3cret-Pa55")
	start := time.Now()
	c.start(c.Hosts, lab.WithSecretsDir(secrets))
	c.addWorkloads(c.Hosts, 1)
	want := mesh(c.Hosts)
	for _, h := range c.Hosts {
		want[h] = append(want[h], ext.Host.IP)
	}
	c.waitSessions(want)
	c.eventually(convergeTimeout, "external router has every block", func() error {
		_, err := ext.hasEveryBlock(c.Hosts)
		return err
	})
	record(t, "converged in %s (same password on both sides)", time.Since(start).Round(time.Millisecond))
	// The session really is signed: the rendered config has the password.
	for _, h := range c.Hosts {
		files, _ := filepath.Glob(filepath.Join(h.BirdDir(), "*.cfg"))
		found := false
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			found = found || strings.Contains(string(b), `password "s3cret-Pa55";`)
		}
		if !found {
			t.Errorf("%s: no BIRD config file in %s has the upstream session's password", h.Name, h.BirdDir())
		}
	}

	// The router now expects another password.
	md5Before := map[*lab.Host]int{}
	for _, h := range c.Hosts {
		md5Before[h] = c.md5Failures(h)
	}
	ext.configure(c.Hosts, 64512, "not-the-password")
	var last map[*lab.Host]lab.PeerState
	failed := c.eventually(convergeTimeout, "upstream sessions fail with an error", func() error {
		last = map[*lab.Host]lab.PeerState{}
		for _, h := range c.Hosts {
			ps, err := c.peers(h)
			if err != nil {
				return err
			}
			p, ok := ps[ext.Host.IP]
			if !ok {
				return fmt.Errorf("%s: no session to the router", h.Name)
			}
			// First comes the router's notification ("Received: Other
			// configuration change"), then the failing reconnects.
			if established(p) || !strings.Contains(p.LastError, "timed out") {
				return fmt.Errorf("%s: %s is %s %q, want a connection timeout (the signature of a TCP-MD5 mismatch)", h.Name, p.Protocol, p.State, p.Info)
			}
			last[h] = p
		}
		return nil
	})
	t.Logf("sessions failed with a connection timeout %s after the router changed its password", failed.Round(time.Millisecond))
	for _, h := range c.Hosts {
		p := last[h]
		if after := c.md5Failures(h); after <= md5Before[h] {
			t.Errorf("%s: the kernel counted no TCP-MD5 failure (TcpExtTCPMD5Failure %d -> %d)", h.Name, md5Before[h], after)
		}
		out := c.birdctl(h, "node", "status")
		if !strings.Contains(out, p.LastError) {
			t.Errorf("%s: birdctl node status does not show the error %q:\n%s", h.Name, p.LastError, out)
		}
		t.Logf("%s with a wrong password:\n%s", h.Name, out)
	}
	// The mesh between the hosts is not affected.
	for _, h := range c.Hosts {
		ps, err := c.peers(h)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range c.Hosts {
			if o != h && !established(ps[o.IP]) {
				t.Errorf("%s: mesh session to %s is %s", h.Name, o.Name, ps[o.IP].Info)
			}
		}
	}
}

// md5Failures is the kernel's count of TCP segments dropped in h's
// namespace for a wrong TCP-MD5 signature.
func (c *cluster) md5Failures(h *lab.Host) int {
	c.t.Helper()
	out, err := c.Exec(c.ctx, h.NS, nil, "cat", "/proc/net/netstat")
	if err != nil {
		c.t.Fatal(err)
	}
	lines := strings.Split(out, "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		for j, n := range names {
			if n == "TCPMD5Failure" && j < len(values) {
				v, _ := strconv.Atoi(values[j])
				return v
			}
		}
	}
	c.t.Fatalf("%s: no TCPMD5Failure in /proc/net/netstat", h.Name)
	return 0
}

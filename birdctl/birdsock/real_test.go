package birdsock_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/roostnet/roost/birdctl/birdsock"
	"github.com/roostnet/roost/birdctl/birdsock/birdtest"
)

// realConfig is a daemon with a BGP peer that never answers (no traffic
// leaves loopback) and a static protocol; extra is appended.
func realConfig(localPort, peerPort int, extra string) string {
	return fmt.Sprintf(`router id 10.0.0.1;
protocol device {}
protocol static static1 {
	ipv4;
	route 10.10.0.0/24 blackhole;
	route 10.20.0.0/24 unreachable;
}
protocol bgp Mesh_10_0_0_2 {
	local 127.0.0.1 port %d as 64512;
	neighbor 127.0.0.2 port %d as 64512;
	ipv4 { import all; export all; };
}
%s`, localPort, peerPort, extra)
}

func protocolNames(t *testing.T, c *birdsock.Client) []string {
	t.Helper()
	ps, err := c.Protocols(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	return names
}

func TestRealBird(t *testing.T) {
	ports := birdtest.FreePorts(t, 2)
	b := birdtest.Start(t, realConfig(ports[0], ports[1], ""))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c, err := birdsock.Dial(ctx, b.Socket, birdsock.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !strings.HasPrefix(c.Version(), "2.") {
		t.Errorf("Version() = %q, want BIRD 2", c.Version())
	}

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != c.Version() || st.RouterID != "10.0.0.1" || !st.Up || st.Message != "Daemon is up and running" {
		t.Errorf("status %+v", st)
	}
	if d := time.Since(st.ServerTime); d < -time.Minute || d > time.Minute {
		t.Errorf("server time %v is %v away from now", st.ServerTime, d)
	}

	ps, err := c.Protocols(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ps, func(p birdsock.Protocol) bool { return p.Name == "Mesh_10_0_0_2" })
	if i < 0 || ps[i].Proto != "BGP" || ps[i].Since == "" {
		t.Fatalf("protocols %+v lack the BGP protocol", ps)
	}

	d, err := c.ProtocolDetail(ctx, "Mesh_10_0_0_2")
	if err != nil {
		t.Fatal(err)
	}
	// No peer ever answers, so the session cycles through these.
	if !slices.Contains([]string{"Idle", "Connect", "Active"}, d.BGPState) ||
		d.NeighborAddress != "127.0.0.2" || d.NeighborAS != 64512 || d.LocalAS != 64512 ||
		len(d.Channels) != 1 || d.Channels[0].Name != "ipv4" || d.Channels[0].Table != "master4" {
		t.Errorf("BGP detail %+v", d)
	}
	var be *birdsock.BirdError
	if _, err := c.ProtocolDetail(ctx, "NoSuchProtocol"); !errors.As(err, &be) || be.Code != 8003 {
		t.Errorf("unknown protocol: %v", err)
	}

	routes, err := c.Routes(ctx, "all for 10.10.0.0/24")
	if err != nil || len(routes) != 1 {
		t.Fatalf("routes %+v, %v", routes, err)
	}
	if r := routes[0]; r.Prefix != "10.10.0.0/24" || r.Type != "blackhole" || r.Protocol != "static1" ||
		!r.Primary || r.Table != "master4" || r.Attributes["Type"] != "static univ" {
		t.Errorf("route %+v", r)
	}
	if routes, err := c.Routes(ctx, "for 192.0.2.99"); err != nil || len(routes) != 0 {
		t.Errorf("unknown network: %+v, %v", routes, err)
	}

	// A good new file: check, apply, and see the new protocol.
	good := filepath.Join(b.Dir, "good.conf")
	writeFile(t, good, realConfig(ports[0], ports[1], "protocol static static2 { ipv4; route 10.30.0.0/24 blackhole; }\n"))
	if err := c.ConfigureCheck(ctx, good); err != nil {
		t.Fatalf("configure check: %v", err)
	}
	if slices.Contains(protocolNames(t, c), "static2") {
		t.Fatal("configure check applied the configuration")
	}
	if err := c.Configure(ctx, good); err != nil {
		t.Fatalf("configure: %v", err)
	}
	if names := protocolNames(t, c); !slices.Contains(names, "static2") {
		t.Errorf("after configure, protocols are %v", names)
	}

	// A bad file: BIRD's error names file, line and column; nothing changes.
	bad := filepath.Join(b.Dir, "bad.conf")
	writeFile(t, bad, "router id 10.0.0.1;\nprotocol device {}\nprotocol static { ipv4; route 10.1.0.0/24 blackhole }\n")
	for name, f := range map[string]func(context.Context, string) error{"configure": c.Configure, "configure check": c.ConfigureCheck} {
		err := f(ctx, bad)
		if !errors.As(err, &be) || be.Code != 8002 || !strings.Contains(err.Error(), bad+":3:") {
			t.Errorf("%s of a bad file: %v", name, err)
		}
	}
	if err := c.Configure(ctx, filepath.Join(b.Dir, "missing.conf")); err == nil || !strings.Contains(err.Error(), "missing.conf") {
		t.Errorf("configure of a missing file: %v", err)
	}
	if names := protocolNames(t, c); !slices.Contains(names, "static2") {
		t.Errorf("a failed configure changed the protocols: %v", names)
	}

	if _, err := c.Exec(ctx, "show nonsense"); !errors.As(err, &be) || be.Code != 9001 {
		t.Errorf("syntax error: %v", err)
	}

	// birdtest.Reconfigure reloads the daemon's own file.
	b.Reconfigure(realConfig(ports[0], ports[1], "protocol static static3 { ipv4; }\n"))
	if names := protocolNames(t, c); !slices.Contains(names, "static3") {
		t.Errorf("after Reconfigure, protocols are %v", names)
	}

	// When bird goes away, calls fail and name the socket.
	b.Stop()
	for range 2 {
		if _, err := c.Exec(ctx, "show status"); err == nil || !strings.Contains(err.Error(), b.Socket) {
			t.Errorf("after Stop: %v", err)
		}
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// BIRD restarted between two commands: the client's idle connection is
// dead, and the next command runs on a new one at once (confd's first
// configure after a BIRD restart used to fail on it).
func TestRealBirdRestartBetweenCalls(t *testing.T) {
	ports := birdtest.FreePorts(t, 2)
	b := birdtest.Start(t, realConfig(ports[0], ports[1], ""))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := birdsock.Dial(ctx, b.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b.Restart()
	if err := c.Configure(ctx, ""); err != nil {
		t.Fatalf("configure after BIRD restarted: %v", err)
	}
	st, err := c.Status(ctx)
	if err != nil || !st.LastReboot.After(first.LastReboot) {
		t.Fatalf("status after restart: %+v %v (before: %+v)", st, err, first)
	}
}

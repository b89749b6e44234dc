package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roostnet/roost/birdctl/birdsock/birdtest"
)

// realBirdConfig has BGP protocols named as Roost names them, pointed at
// loopback ports where nothing listens: they stay in Active/Connect/Idle.
// One is disabled, one disabled by Roost (confd's description), one is not
// a Roost peer.
func realBirdConfig(p []int) string {
	return fmt.Sprintf(`router id 10.0.0.1;
protocol device {}
protocol static static1 {
	ipv4;
	route 10.65.1.0/26 blackhole;
}
protocol bgp Mesh_127_0_0_2 {
	local 127.0.0.1 port %d as 64512;
	neighbor 127.0.0.2 port %d as 64512;
	connect retry time 1;
	ipv4 { import all; export all; };
}
protocol bgp Node_127_0_0_3_port_%d {
	local 127.0.0.1 port %d as 64512;
	neighbor 127.0.0.3 port %d as 64513;
	multihop;
	ipv4 { import all; export all; };
}
protocol bgp Global_127_0_0_4 {
	disabled;
	local 127.0.0.1 port %d as 64512;
	neighbor 127.0.0.4 port %d as 64514;
	multihop;
	ipv4 { import all; export all; };
}
protocol bgp not_roost {
	local 127.0.0.1 port %d as 64512;
	neighbor 127.0.0.5 port %d as 64515;
	multihop;
	ipv4 { import all; export all; };
}
protocol bgp Global_127_0_0_6 {
	description "Disabled by Roost: BGPPeer tor: spec.password.secretKeyRef: secret tor/pw not found in /etc/roost/secrets";
	disabled;
	local 127.0.0.1 port %d as 64512;
	neighbor 127.0.0.6 port %d as 64516;
	multihop;
	ipv4 { import all; export all; };
}
`, p[0], p[1], p[2], p[3], p[2], p[4], p[5], p[6], p[7], p[8], p[9])
}

func TestRealBird(t *testing.T) {
	ports := birdtest.FreePorts(t, 10)
	b := birdtest.Start(t, realBirdConfig(ports))
	rn := &runner{}
	sock := []string{"--socket", b.Socket}

	// BGP needs a moment to leave Idle after start; the table must be
	// there either way.
	time.Sleep(300 * time.Millisecond)
	out := rn.mustRun(t, append(sock, "node", "status")...)
	for _, want := range []string{
		"BIRD is running.", "IPv4 BGP status", "PEER ADDRESS",
		"127.0.0.2 ", "node-to-node mesh",
		fmt.Sprintf("127.0.0.3:%d", ports[2]), "node specific",
		"127.0.0.4 ", "global", "| down ",
		"| Disabled by Roost: BGPPeer tor: spec.password.secretKeyRef: secret tor/pw not found in /etc/roost/secrets |",
		"IPv6 BGP status\nNo IPv6 peers found.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("node status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "127.0.0.5") {
		t.Errorf("node status shows a protocol Roost did not name:\n%s", out)
	}

	var st nodeStatus
	if err := json.Unmarshal([]byte(rn.mustRun(t, append(sock, "node", "status", "-o", "json")...)), &st); err != nil {
		t.Fatal(err)
	}
	if !st.Running || st.Socket != b.Socket || !strings.HasPrefix(st.Version, "2.") || len(st.IPv4) != 4 || len(st.IPv6) != 0 {
		t.Fatalf("node status -o json: %+v", st)
	}
	for _, p := range st.IPv4 {
		switch p.Protocol {
		case "Mesh_127_0_0_2", "Node_127_0_0_3_port_" + fmt.Sprint(ports[2]):
			if p.State != "start" || !strings.Contains("Idle Connect Active", p.BGPState) || p.BGPState == "" {
				t.Errorf("%s: state %q, BGP state %q", p.Protocol, p.State, p.BGPState)
			}
		case "Global_127_0_0_4":
			if p.State != "down" || p.BGPState != "Down" || p.Info != "Down" || p.Disabled != "" {
				t.Errorf("disabled peer: %+v", p)
			}
		case "Global_127_0_0_6":
			const why = "BGPPeer tor: spec.password.secretKeyRef: secret tor/pw not found in /etc/roost/secrets"
			if p.State != "down" || p.Disabled != why || p.Info != "Disabled by Roost: "+why {
				t.Errorf("peer disabled by Roost: %+v", p)
			}
		default:
			t.Errorf("unexpected peer %+v", p)
		}
	}

	out = rn.mustRun(t, append(sock, "show", "protocols")...)
	if !strings.Contains(out, "NAME") || !strings.Contains(out, "Mesh_127_0_0_2") || !strings.Contains(out, "not_roost") {
		t.Errorf("show protocols:\n%s", out)
	}
	out = rn.mustRun(t, append(sock, "show", "route")...)
	if !strings.Contains(out, "10.65.1.0/26") || !strings.Contains(out, "blackhole") {
		t.Errorf("show route:\n%s", out)
	}
	out = rn.mustRun(t, append(sock, "show", "status")...)
	if !strings.Contains(out, "Router ID:") || !strings.Contains(out, "10.0.0.1") || !strings.Contains(out, "Daemon is up and running") {
		t.Errorf("show status:\n%s", out)
	}

	// configure --check with a good and a bad file; configure with a good one.
	dir := t.TempDir()
	good := filepath.Join(dir, "good.conf")
	bad := filepath.Join(dir, "bad.conf")
	if err := os.WriteFile(good, []byte(realBirdConfig(ports)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("router id 10.0.0.1;\nprotocol device {\n}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := rn.mustRun(t, append(sock, "configure", "--check", good)...); out != "Configuration OK\n" {
		t.Errorf("configure --check good: %q", out)
	}
	stderr := rn.mustFail(t, append(sock, "configure", "--check", bad)...)
	if !strings.Contains(stderr, bad+":3:") || !strings.Contains(stderr, "syntax error") {
		t.Errorf("configure --check bad: want BIRD's error with %s:3:, got %q", bad, stderr)
	}
	stderr = rn.mustFail(t, append(sock, "configure", bad)...)
	if !strings.Contains(stderr, bad+":3:") {
		t.Errorf("configure bad: %q", stderr)
	}
	if out := rn.mustRun(t, append(sock, "configure", good)...); !strings.Contains(out, "Reconfigur") {
		t.Errorf("configure good: %q", out)
	}
	// A relative path is made absolute for BIRD.
	t.Chdir(dir)
	if out := rn.mustRun(t, append(sock, "configure", "--check", "good.conf")...); out != "Configuration OK\n" {
		t.Errorf("configure --check relative: %q", out)
	}

	out = rn.mustRun(t, append(sock, "raw", "show", "route", "count")...)
	if !strings.Contains(out, "routes for") {
		t.Errorf("raw show route count: %q", out)
	}

	// Once BIRD is gone node status fails, naming the socket.
	b.Stop()
	stderr = rn.mustFail(t, append(sock, "node", "status")...)
	if !strings.Contains(stderr, b.Socket) || !strings.Contains(stderr, "BIRD is not running") {
		t.Errorf("node status after stop: %q", stderr)
	}
}

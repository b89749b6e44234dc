package cli

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/roostnet/roost/birdctl/birdsock/birdtest"
)

// TestBirdGolden runs the BIRD commands against recorded BIRD 2 and 1.6
// sessions and compares their output with testdata/*.golden.
func TestBirdGolden(t *testing.T) {
	cases := []struct {
		name, transcript string
		args             []string
	}{
		{"node-status", "bird2-peers.txt", []string{"node", "status"}},
		{"node-status-json", "bird2-peers.txt", []string{"node", "status", "-o", "json"}},
		{"node-status-yaml", "bird2-peers.txt", []string{"node", "status", "-o", "yaml"}},
		{"node-status-nopeers", "bird2-nopeers.txt", []string{"node", "status"}},
		{"node-status-bird16", "bird16-peers.txt", []string{"node", "status"}},
		{"node-status-bfd", "bird2-bfd-peers.txt", []string{"node", "status"}},
		{"node-status-bfd-json", "bird2-bfd-peers.txt", []string{"node", "status", "-o", "json"}},
		{"node-status-bfd-down", "bird2-bfd-down.txt", []string{"node", "status"}},
		{"bfd-status", "bird2-bfd-peers.txt", []string{"bfd", "status"}},
		{"bfd-status-json", "bird2-bfd-peers.txt", []string{"bfd", "status", "-o", "json"}},
		{"bfd-status-yaml", "bird2-bfd-down.txt", []string{"bfd", "status", "-o", "yaml"}},
		{"bfd-status-none", "bird2-nopeers.txt", []string{"bfd", "status"}},
		{"show-protocols", "bird2-peers.txt", []string{"show", "protocols"}},
		{"show-protocols-json", "bird2-peers.txt", []string{"show", "protocols", "-o", "json"}},
		{"show-protocols-bird16", "bird16-peers.txt", []string{"show", "protocols"}},
		{"show-protocols-all-name", "bird2-peers.txt", []string{"show", "protocols", "all", "Mesh_127_0_0_2"}},
		{"show-protocols-all-name-yaml", "bird2-peers.txt", []string{"show", "protocols", "all", "Mesh_127_0_0_2", "-o", "yaml"}},
		{"show-route", "bird2-peers.txt", []string{"show", "route"}},
		{"show-route-static", "bird2-static.txt", []string{"show", "route"}},
		{"show-route-static-json", "bird2-static.txt", []string{"show", "route", "-o", "json"}},
		{"show-route-all-yaml", "bird2-peers.txt", []string{"show", "route", "all", "-o", "yaml"}},
		{"show-route-for", "bird2-peers.txt", []string{"show", "route", "for", "10.65.2.1"}},
		{"show-route-notfound", "bird2-peers.txt", []string{"show", "route", "for", "99.0.0.1"}},
		{"show-status", "bird2-peers.txt", []string{"show", "status"}},
		{"show-status-json", "bird2-peers.txt", []string{"show", "status", "-o", "json"}},
		{"show-status-bird16", "bird16-peers.txt", []string{"show", "status"}},
		{"configure-check-ok", "bird2-nopeers.txt", []string{"configure", "--check", "/tmp/bcap/c.conf"}},
		{"configure-ok", "bird2-nopeers.txt", []string{"configure", "/tmp/bcap/c.conf"}},
		{"raw", "bird2-peers.txt", []string{"raw", "show route protocol Mesh_127_0_0_2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fb := startFakeBird(t, tc.transcript)
			rn := &runner{}
			out := rn.mustRun(t, append([]string{"--socket", fb.path}, tc.args...)...)
			golden(t, tc.name, strings.ReplaceAll(out, fb.path, "/run/bird.ctl"))
		})
	}
}

func TestNodeStatusFetchesDetailsOnlyWhenNeeded(t *testing.T) {
	fb := startFakeBird(t, "bird2-peers.txt")
	rn := &runner{}
	rn.mustRun(t, "--socket", fb.path, "node", "status")
	// Only the disabled peer shows no BGP state in the summary.
	want := []string{"show protocols", "show bfd sessions", `show protocols all "Global_fd00__a_port_1791"`}
	if got := fb.commands(); !slices.Equal(got, want) {
		t.Errorf("commands sent = %q, want %q", got, want)
	}
}

func TestBirdErrors(t *testing.T) {
	fb := startFakeBird(t, "bird2-nopeers.txt")
	rn := &runner{}

	// BIRD's message with file:line:column, exit status 1.
	stderr := rn.mustFail(t, "--socket", fb.path, "configure", "--check", "/tmp/bcap/bad.conf")
	if !strings.Contains(stderr, "configuration check failed: /tmp/bcap/bad.conf:3:2 syntax error, unexpected '}'") {
		t.Errorf("configure --check bad: stderr %q", stderr)
	}
	stderr = rn.mustFail(t, "--socket", fb.path, "configure", "/tmp/bcap/bad.conf")
	if !strings.Contains(stderr, "configuration failed: /tmp/bcap/bad.conf:3:2 syntax error") {
		t.Errorf("configure bad: stderr %q", stderr)
	}
	stderr = rn.mustFail(t, "--socket", fb.path, "raw", "show", "foo")
	if !strings.Contains(stderr, "syntax error") {
		t.Errorf("raw show foo: stderr %q", stderr)
	}
	stderr = rn.mustFail(t, "--socket", fb.path, "show", "protocols", "-o", "xml")
	if !strings.Contains(stderr, `unknown output format "xml"`) {
		t.Errorf("-o xml: stderr %q", stderr)
	}
}

func TestUnreachableSocket(t *testing.T) {
	path := birdtest.SocketPath(t, "bird.ctl") // nothing listens there
	for _, args := range [][]string{
		{"node", "status"},
		{"node", "status", "-o", "json"},
		{"show", "protocols"},
		{"show", "status"},
		{"configure", "--check", "x.conf"},
		{"raw", "show status"},
	} {
		rn := &runner{}
		r := rn.run(t, append([]string{"--socket", path}, args...)...)
		if r.code == 0 || !strings.Contains(r.stderr, path) {
			t.Errorf("birdctl %s with no BIRD: want non-zero exit naming %s, got %v", args, path, r)
		}
		if args[0] == "node" && !strings.Contains(r.stderr, "BIRD is not running") {
			t.Errorf("node status: %q lacks 'BIRD is not running'", r.stderr)
		}
	}
	// The socket comes from BIRD_SOCKET when --socket is not given.
	rn := &runner{env: map[string]string{"BIRD_SOCKET": path}}
	if stderr := rn.mustFail(t, "node", "status"); !strings.Contains(stderr, path) {
		t.Errorf("BIRD_SOCKET not used: %q", stderr)
	}
	// And defaults to /var/run/roost/bird.ctl.
	rn = &runner{}
	if r := rn.run(t, "node", "status"); r.code == 0 && !strings.Contains(r.stdout, "BIRD is running") ||
		r.code != 0 && !strings.Contains(r.stderr, DefaultSocket) {
		t.Errorf("default socket: %v", r)
	}
}

func TestParsePeerName(t *testing.T) {
	cases := []struct {
		name, typ, addr string
		port            int
		ok              bool
	}{
		{"Mesh_10_0_0_2", "node-to-node mesh", "10.0.0.2", 0, true},
		{"Node_192_168_1_1_port_1790", "node specific", "192.168.1.1", 1790, true},
		{"Global_fd00__1", "global", "fd00::1", 0, true},
		{"Global_2001_db8__a_b_port_179", "global", "2001:db8::a:b", 179, true},
		{"Mesh_fd00__1_2_3_4", "node-to-node mesh", "fd00::1:2:3:4", 0, true},
		{"Node___ffff_10_1_2_3", "node specific", "::ffff:10.1.2.3", 0, true},
		{"Mesh_not_an_ip", "node-to-node mesh", "invalid IP", 0, true},
		{"static1", "", "invalid IP", 0, false},
		{"Mesh", "", "invalid IP", 0, false},
	}
	for _, c := range cases {
		p, ok := parsePeerName(c.name)
		if ok != c.ok || p.Type != c.typ || p.Addr.String() != c.addr || p.Port != c.port {
			t.Errorf("parsePeerName(%q) = %+v (%s), %v; want %s %s port %d, %v", c.name, p, p.Addr, ok, c.typ, c.addr, c.port, c.ok)
		}
		if ok && p.Addr.IsValid() && p.Addr != netip.MustParseAddr(c.addr) {
			t.Errorf("%q: address %s", c.name, p.Addr)
		}
	}
}

func TestHelpEverywhere(t *testing.T) {
	rn := &runner{}
	root := NewRoot(Env{})
	seen := 0
	for _, c := range root.Commands() {
		for _, sub := range append(c.Commands(), c) {
			args := []string{c.Name()}
			if sub != c {
				args = append(args, sub.Name())
			}
			out := rn.mustRun(t, append(args, "--help")...)
			if !strings.Contains(out, "Usage:") {
				t.Errorf("%s --help: no usage:\n%s", args, out)
			}
			seen++
		}
	}
	if seen < 15 {
		t.Errorf("only %d commands have help", seen)
	}
	// Completion scripts come from cobra.
	for _, sh := range []string{"bash", "zsh", "fish"} {
		if out := rn.mustRun(t, "completion", sh); len(out) < 100 {
			t.Errorf("completion %s: %q", sh, out)
		}
	}
	if out := rn.mustRun(t, "version"); !strings.HasPrefix(out, "birdctl ") {
		t.Errorf("version: %q", out)
	}
	// Dynamic completion of kinds.
	out := rn.mustRun(t, "__complete", "get", "")
	if !strings.Contains(out, "ippools") || !strings.Contains(out, "workloadendpoints") {
		t.Errorf("kind completion: %q", out)
	}
}

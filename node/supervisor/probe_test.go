package supervisor

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roostnet/roost/birdctl/birdsock/birdtest"
)

func freePort(t *testing.T, ip string) int {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// bgpConf is a BIRD config with one BGP session on loopback addresses
// (no kernel protocol: the host's routes stay untouched).
func bgpConf(name, local string, lport int, peer string, pport int) string {
	return fmt.Sprintf(`router id %[2]s;
protocol device {}
protocol static { ipv4; route 10.250.%[6]s.0/24 blackhole; }
protocol bgp %[1]s {
  local %[2]s port %[3]d as 65000; neighbor %[4]s port %[5]d as 65000; strict bind on;
  connect delay time 1; connect retry time 1; error wait time 1,2;
  ipv4 { import all; export all; };
}
`, name, local, lport, peer, pport, local[strings.LastIndexByte(local, '.')+1:])
}

func TestProbesAgainstBIRD(t *testing.T) {
	requireBird(t)
	pa, pb := freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1")
	a := birdtest.Start(t, bgpConf("Mesh_127_0_0_2", "127.0.0.1", pa, "127.0.0.2", pb))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	if err := BirdLive(ctx, a.Socket); err != nil {
		t.Fatalf("live: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "none.ctl")
	err := BirdLive(ctx, missing)
	if err == nil || err.Error() != "BIRD is not answering on "+missing+": no such file or directory" {
		t.Errorf("live on a missing socket: %v", err)
	}
	if err := BirdReady(ctx, missing, false); err == nil || !strings.HasPrefix(err.Error(), "BIRD is not answering") {
		t.Errorf("ready on a missing socket: %v", err)
	}
	err = BirdReady(ctx, a.Socket, true)
	if err == nil || !strings.HasPrefix(err.Error(), "1 of 1 BGP sessions not Established: Mesh_127_0_0_2 (") {
		t.Errorf("ready without the peer: %v", err)
	}
	if err := BirdReady(ctx, a.Socket, false); err != nil {
		t.Errorf("ready, Established not required: %v", err)
	}

	tr := NewBGPTracker(a.Socket, true, nil)
	tr.Poll(ctx)
	if st := tr.State(); st.Ready || !st.Answering || !strings.Contains(st.Reason, "Mesh_127_0_0_2") {
		t.Errorf("tracker without the peer: %+v", st)
	}

	b := birdtest.Start(t, bgpConf("Peer", "127.0.0.2", pb, "127.0.0.1", pa))
	waitFor(t, "the session", 20*time.Second, func() bool { return BirdReady(ctx, a.Socket, true) == nil })
	tr.Poll(ctx)
	if st := tr.State(); !st.Ready || !st.AllEstablishedOnce || st.Sessions["Mesh_127_0_0_2"] != "Established" {
		t.Errorf("tracker with the peer: %+v", st)
	}

	// The peer goes away: the probe fails, /readyz's latch holds.
	b.Stop()
	waitFor(t, "the session to drop", 20*time.Second, func() bool { return BirdReady(ctx, a.Socket, true) != nil })
	tr.Poll(ctx)
	if st := tr.State(); !st.Ready || strings.HasPrefix(st.Sessions["Mesh_127_0_0_2"], "Established") {
		t.Errorf("tracker after the peer left: %+v", st)
	}
	// BIRD restarted: the latch starts over.
	tr.Reset()
	tr.Poll(ctx)
	if st := tr.State(); st.Ready {
		t.Errorf("tracker after a reset: %+v", st)
	}
	// BIRD gone.
	a.Stop()
	tr.Poll(ctx)
	if st := tr.State(); st.Ready || st.Answering || !strings.HasPrefix(st.Reason, "BIRD is not answering") {
		t.Errorf("tracker without BIRD: %+v", st)
	}
}

func TestHTTPCheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			fmt.Fprintln(w, "ok")
		case "/json":
			w.WriteHeader(503)
			fmt.Fprintln(w, `{"ready": false, "reason": "1 of 2 BGP sessions not yet Established: Mesh_10_0_0_2 (Active)"}`)
		case "/agent":
			w.WriteHeader(503)
			fmt.Fprintln(w, `{"alive": true, "ready": false, "inSync": {"nodes": true, "blocks": false}}`)
		default:
			http.Error(w, "not in sync with the datastore\nmore", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	if err := HTTPCheck(ctx, srv.URL+"/ok"); err != nil {
		t.Error(err)
	}
	for path, want := range map[string]string{
		"/json":  "503 Service Unavailable: 1 of 2 BGP sessions not yet Established: Mesh_10_0_0_2 (Active)",
		"/agent": "503 Service Unavailable: not in sync: blocks",
		"/other": "503 Service Unavailable: not in sync with the datastore",
	} {
		err := HTTPCheck(ctx, srv.URL+path)
		if err == nil || err.Error() != srv.URL+path+": "+want {
			t.Errorf("%s: %v", path, err)
		}
	}
	port := freePort(t, "127.0.0.1")
	if err := HTTPCheck(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", port)); err == nil || !strings.HasSuffix(err.Error(), "connection refused") {
		t.Errorf("closed port: %v", err)
	}
}

func TestLocalURL(t *testing.T) {
	for in, want := range map[string]string{
		":9099":          "http://127.0.0.1:9099/readyz",
		"0.0.0.0:9099":   "http://127.0.0.1:9099/readyz",
		"10.0.0.1:9099":  "http://10.0.0.1:9099/readyz",
		"[::]:9099":      "http://[::1]:9099/readyz",
		"127.0.0.1:9097": "http://127.0.0.1:9097/readyz",
	} {
		got, err := LocalURL(in, "/readyz")
		if err != nil || got != want {
			t.Errorf("%s: %q %v", in, got, err)
		}
	}
	if _, err := LocalURL("9099", "/"); err == nil {
		t.Error("a port without colon accepted")
	}
}

// A session confd rendered disabled (its password cannot be used) keeps
// /readyz unready and says why, from the protocol's description.
func TestTrackerNamesDisabledSession(t *testing.T) {
	requireBird(t)
	pa, pb := freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1")
	conf := bgpConf("Mesh_127_0_0_2", "127.0.0.1", pa, "127.0.0.2", pb) + fmt.Sprintf(`protocol bgp Global_127_0_0_3 {
  description "Disabled by Roost: BGPPeer tor: spec.password.secretKeyRef: secret tor/pw not found in /etc/roost/secrets";
  disabled;
  local 127.0.0.1 port %d as 65000; neighbor 127.0.0.3 port %d as 65001; multihop;
  ipv4 { import all; export all; };
}
`, pa, pb)
	a := birdtest.Start(t, conf)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr := NewBGPTracker(a.Socket, true, nil)
	tr.Poll(ctx)
	const why = "Global_127_0_0_3 (Disabled by Roost: BGPPeer tor: spec.password.secretKeyRef: secret tor/pw not found in /etc/roost/secrets)"
	if st := tr.State(); st.Ready || !strings.Contains(st.Reason, why) {
		t.Errorf("tracker with a disabled session: %+v", st)
	}
}

// confd's /readyz says whether its first render is done: ready, or not
// ready but rendered (the reload waits for BIRD, or a session is disabled
// for a secret), or not rendered yet.
func TestConfdRenderState(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "bird.cfg")
	if err := os.WriteFile(cfg, []byte("# rendered\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		code     int
		body     string
		rendered bool
	}{
		{200, "ok", true},
		{503, "last render failed: reload failed: BIRD is not reachable", true},
		{503, "rendered with 1 BGP session disabled: Global_10_0_0_9 (BGPPeer tor: ...)", true},
		{503, "not in sync with the datastore", false},
		{503, "no configuration rendered yet", false},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(tc.code)
			fmt.Fprintln(w, tc.body)
		}))
		got := ConfdOptions{BirdConfig: cfg}.renderState(context.Background(), srv.URL)
		srv.Close()
		if (got == "") != tc.rendered {
			t.Errorf("%d %q: state %q, want rendered=%v", tc.code, tc.body, got, tc.rendered)
		}
	}
}

package app

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/confd/config"
	"github.com/roostnet/roost/confd/metrics"
)

// A bfd.roost.io/profile annotation naming a missing BFDProfile renders the
// sessions without BFD and says so (metric, /readyz); the profile showing
// up in etcd (confd watches its prefix) turns BFD on, and deleting it turns
// it off again.
func TestBFDProfileFollowsEtcd(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.SyncOnly = true })
	g := globalConfig()
	g.Metadata.Annotations = map[string]string{api.BFDProfileAnnotation: "fast"}
	e.put(g, node("node1", "10.200.0.1"), node("node2", "10.200.0.2"))
	e.start()
	waitFor(t, "first render", func() bool { return strings.Contains(e.file("peers.cfg"), "protocol bgp Mesh_10_200_0_2") })

	const warning = `warning: BGPConfiguration "default": metadata.annotations[bfd.roost.io/profile]: BFDProfile "fast" does not exist; the node-to-node mesh sessions render without BFD`
	if strings.Contains(e.file("peers.cfg"), "bfd") || strings.Contains(e.file("bird.cfg"), "bfd") {
		t.Errorf("BFD rendered for a missing profile:\n%s", e.file("peers.cfg"))
	}
	if body := readyz(t, e); !strings.HasPrefix(body, "ok\n") || !strings.Contains(body, warning) {
		t.Errorf("/readyz = %q, want ok with %q", body, warning)
	}
	if v := gauge(t, e.app.metrics, "roost_confd_bfd_profile_missing", "fast"); v != 1 {
		t.Errorf("roost_confd_bfd_profile_missing{profile=fast} = %v, want 1", v)
	}

	p := &api.BFDProfile{}
	p.Metadata.Name = "fast"
	rx := uint32(100)
	p.Spec.ReceiveInterval, p.Spec.TransmitInterval = &rx, &rx
	e.put(p)
	waitFor(t, "BFD in peers.cfg", func() bool { return strings.Contains(e.file("peers.cfg"), "min rx interval 100 ms;") })
	if !strings.Contains(e.file("bird.cfg"), "protocol bfd roost_bfd {") {
		t.Errorf("bird.cfg lacks protocol bfd:\n%s", e.file("bird.cfg"))
	}
	waitFor(t, "the warning to go", func() bool { return readyz(t, e) == "ok\n" })
	if v := gauge(t, e.app.metrics, "roost_confd_bfd_sessions", ""); v != 1 {
		t.Errorf("roost_confd_bfd_sessions = %v, want 1", v)
	}
	if v := gauge(t, e.app.metrics, "roost_confd_bfd_profile_missing", "fast"); v != -1 {
		t.Errorf("roost_confd_bfd_profile_missing{profile=fast} = %v after the profile appeared, want no series", v)
	}

	e.del(p)
	waitFor(t, "BFD gone from peers.cfg", func() bool { return !strings.Contains(e.file("peers.cfg"), "bfd") })
	if strings.Contains(e.file("bird.cfg"), "protocol bfd") {
		t.Errorf("bird.cfg keeps protocol bfd without BFD sessions")
	}
	if body := readyz(t, e); !strings.Contains(body, warning) {
		t.Errorf("/readyz = %q, want %q", body, warning)
	}
}

func readyz(t *testing.T, e *env) string {
	t.Helper()
	rec := httptest.NewRecorder()
	metrics.HealthHandler(e.app.status, e.app.readyProblem, nil, e.app.modelWarnings).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	b, _ := io.ReadAll(rec.Body)
	if rec.Code != 200 {
		t.Fatalf("/readyz: %d %s", rec.Code, b)
	}
	return string(b)
}

// gauge returns a gauge's value (for the series whose only label has the
// given value, or the unlabelled one), or -1 when there is none.
func gauge(t *testing.T, m *metrics.Metrics, name, label string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			got := ""
			for _, l := range s.GetLabel() {
				got = l.GetValue()
			}
			if got == label {
				return s.GetGauge().GetValue()
			}
		}
	}
	return -1
}

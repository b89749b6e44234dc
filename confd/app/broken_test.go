package app

import (
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/confd/config"
	"github.com/roostnet/roost/confd/metrics"
	"github.com/roostnet/roost/datastore"
)

// brokenDefault is the default BGPConfiguration of a good one (AS 65123,
// mesh off) with one bad community: as another tool would write it.
const brokenDefault = `{"kind":"BGPConfiguration","apiVersion":"projectcalico.org/v3","metadata":{"name":"default"},` +
	`"spec":{"asNumber":65123,"nodeToNodeMeshEnabled":false,"communities":[{"name":"good","value":"65123:100"},{"name":"bad","value":"65123:notanumber"}]}}`

// An invalid default BGPConfiguration is present and broken, in a running
// confd and after a restart: the rendered files keep the last good
// configuration (AS 65123, no mesh), never the defaults a missing
// configuration gives (AS 64512, full mesh); /readyz and the metric name
// key, field and value; fixing it renders again.
func TestBrokenDefaultConfigAcrossRestart(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.SyncOnly = true })
	good := globalConfig()
	as := api.ASNumber(65123)
	good.Spec.ASNumber, good.Spec.NodeToNodeMeshEnabled = &as, new(bool)
	e.put(good, node("node1", "10.200.0.1"), node("node2", "10.200.0.2"))
	e.start()
	waitFor(t, "first render", func() bool { return e.app.status().Renders >= 1 && e.app.status().LastError == nil })
	want := snapshot(t, e.out)
	if !strings.Contains(want["bird.cfg"]+want["peers.cfg"], "65123") || strings.Contains(want["peers.cfg"], "Mesh_") {
		t.Fatalf("the good configuration is not what this test expects:\n%s", want["peers.cfg"])
	}

	key := datastore.ResourceKey(api.KindBGPConfiguration, "", "default")
	if _, err := e.etcd.Client(t).Put(context.Background(), key, brokenDefault); err != nil {
		t.Fatal(err)
	}
	checkHeld := func(what string) {
		t.Helper()
		waitFor(t, what+": held on the broken configuration", func() bool {
			s := e.app.status()
			return s.InSync && len(s.Broken) == 1
		})
		// A render is due (SIGHUP's trigger, and a change on the runner's
		// goroutine); once the runner ran it, nothing may have rendered.
		renders := e.app.status().Renders
		e.app.Runner().Trigger()
		ran := make(chan struct{})
		e.app.Runner().Do(context.Background(), func() { close(ran) })
		<-ran
		if got := snapshot(t, e.out); !maps.Equal(got, want) || e.app.status().Renders != renders {
			t.Fatalf("%s: files changed while the default BGPConfiguration is broken:\n%s", what, got["peers.cfg"])
		}
		de := e.app.status().Broken[0]
		if de.Key != key || de.Field != "spec.communities[1].value" || de.Value != `"65123:notanumber"` {
			t.Fatalf("%s: broken object reported as %+v", what, de)
		}
		rec := httptest.NewRecorder()
		metrics.HealthHandler(e.app.status, nil, nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		body := rec.Body.String()
		if rec.Code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "rendering held") ||
			!strings.Contains(body, key) || !strings.Contains(body, "spec.communities[1].value") || !strings.Contains(body, "65123:notanumber") {
			t.Fatalf("%s: /readyz = %d %q", what, rec.Code, body)
		}
		if v := metricValue(t, e, "roost_confd_broken_objects", map[string]string{"key": key, "field": "spec.communities[1].value"}); v != 1 {
			t.Fatalf("%s: roost_confd_broken_objects = %v", what, v)
		}
	}
	checkHeld("running")

	// A fresh confd over the same output: still held, files unchanged.
	e.restart()
	checkHeld("after a restart")

	// Fixed: renders resume with the new value.
	good.Spec.Communities = []api.Community{{Name: "good", Value: "65123:100"}}
	as2 := api.ASNumber(65124)
	good.Spec.ASNumber = &as2
	if _, err := e.ds.Update(context.Background(), &datastore.KV{Key: key, Value: good}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a render with the fixed configuration", func() bool {
		return strings.Contains(e.file("bird.cfg")+e.file("peers.cfg"), "65124") && len(e.app.status().Broken) == 0
	})
	if v := metricValue(t, e, "roost_confd_broken_objects", map[string]string{"key": key}); v != 0 {
		t.Errorf("roost_confd_broken_objects after the fix = %v", v)
	}
}

// snapshot reads every file of dir.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range ents {
		if en.IsDir() || !strings.HasSuffix(en.Name(), ".cfg") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, en.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[en.Name()] = string(b)
	}
	return out
}

// metricValue sums a metric's samples whose labels include labels.
func metricValue(t *testing.T, e *env, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := e.app.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	samples:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue samples
				}
			}
			sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return sum
}

package app

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roostnet/roost/confd/config"
	"github.com/roostnet/roost/etc"
	"github.com/roostnet/roost/templates"
)

// scrape returns confd's /metrics page as a Prometheus scraper sees it.
func (e *env) scrape() string {
	e.t.Helper()
	rec := httptest.NewRecorder()
	e.app.metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// A broken template is counted on /metrics with its file and how it
// failed: a conf.d file that does not load, a template that does not
// parse, one that fails to execute.
func TestTemplateFailuresOnMetrics(t *testing.T) {
	tmplDir, confDir := t.TempDir(), t.TempDir()
	copyFS(t, templates.FS, tmplDir)
	copyFS(t, etc.ConfD(), confDir)
	e := newEnv(t, func(c *config.Config) { c.TemplateDir, c.ConfDir, c.SyncOnly = tmplDir, confDir, true })
	e.put(globalConfig(), node("node1", "10.200.0.1"), node("node2", "10.200.0.2"))
	e.start()
	waitFor(t, "first render", func() bool { return e.app.status().Renders >= 1 && e.app.status().LastError == nil })
	if m := e.scrape(); strings.Contains(m, "roost_confd_template_errors_total{") {
		t.Fatalf("template errors counted before any failure:\n%s", grepLines(m, "roost_confd_template_errors_total"))
	}

	peersTmpl := filepath.Join(tmplDir, "peers.cfg.template")
	orig, err := os.ReadFile(peersTmpl)
	if err != nil {
		t.Fatal(err)
	}
	peersToml := filepath.Join(confDir, "peers.toml")
	origToml, err := os.ReadFile(peersToml)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		file   string
		data   []byte
		series string
	}{
		{"parse", peersTmpl, append([]byte("{{ if }}\n"), orig...), `roost_confd_template_errors_total{file="peers.cfg.template",stage="parse"}`},
		{"execute", peersTmpl, append([]byte("{{ getv \"/no/such/key\" }}\n"), orig...), `roost_confd_template_errors_total{file="peers.cfg.template",stage="execute"}`},
		{"load", peersToml, []byte("[template]\nsrc = \"no-such.template\"\ndest = \"/x/peers.cfg\"\n"), `roost_confd_template_errors_total{file="no-such.template",stage="load"}`},
		{"toml", peersToml, []byte("[template\n"), `roost_confd_template_errors_total{file="peers.toml",stage="load"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(tc.file, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.name == "execute" {
				e.put(node("node3", "10.200.0.3")) // a change to render
			}
			waitFor(t, tc.series, func() bool { return strings.Contains(e.scrape(), tc.series+" ") })
			os.WriteFile(peersTmpl, orig, 0o644)
			os.WriteFile(peersToml, origToml, 0o644)
			waitFor(t, "recovery", func() bool {
				s := e.app.status()
				return s.LastError == nil && strings.Contains(e.file("peers.cfg"), "10.200.0.2")
			})
		})
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

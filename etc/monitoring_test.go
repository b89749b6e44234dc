package etc

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/roostnet/roost/confd/metrics"
	"github.com/roostnet/roost/node/agent"
	"github.com/roostnet/roost/node/birdmetrics"
	"github.com/roostnet/roost/node/config"
	"github.com/roostnet/roost/node/nodestatus"
	"github.com/roostnet/roost/node/supervisor"
)

// knownMetrics are the metric names Roost's programs register: roost-node
// (agent, supervisor, BIRD's bird_exporter families, CalicoNodeStatus
// answers) and confd.
func knownMetrics(t *testing.T) map[string]bool {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	node := agent.NewMetrics()
	node.Registry.MustRegister(birdmetrics.New(birdmetrics.Options{Socket: "/nonexistent"}))
	nodestatus.New(nodestatus.Options{Node: "n", Registerer: node.Registry})
	if _, err := supervisor.New(supervisor.Options{
		Config: config.Supervise{WithBird: true, WithConfd: true, BirdPath: self, ConfdPath: self,
			BirdConfig: "/nonexistent/bird.cfg", BirdSocket: "/nonexistent/bird.ctl"},
		Registerer: node.Registry,
	}); err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	for _, c := range []prometheus.Collector{node.Registry, metrics.New().Registry} {
		ch := make(chan *prometheus.Desc, 1000)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			if m := fq.FindStringSubmatch(d.String()); m != nil {
				known[m[1]] = true
			}
		}
	}
	for _, want := range []string{"roost_node_in_sync", "bird_protocol_up", "roost_node_bird_ready", "roost_confd_renders_total", "roost_node_status_writes_total"} {
		if !known[want] {
			t.Fatalf("registries lack %s: %v", want, known)
		}
	}
	return known
}

// promqlMetrics returns the metric names a PromQL expression reads: the
// identifiers that are not functions, keywords, label names or values,
// durations or Grafana variables.
func promqlMetrics(expr string) []string {
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`"(?:[^"\\]|\\.)*"`), // strings
		regexp.MustCompile(`\{[^}]*\}`),         // label matchers
		regexp.MustCompile(`\[[^\]]*\]`),        // ranges
		regexp.MustCompile(`\$\{?\w+\}?`),       // Grafana variables
		regexp.MustCompile(`(?i)\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`), // label lists
	} {
		expr = re.ReplaceAllString(expr, " ")
	}
	keywords := map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true,
		"on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true}
	var out []string
	// Identifiers not glued to a number (5m, 1e3) and not followed by
	// "(" (functions and aggregations).
	isIdent := func(c byte, first bool) bool {
		return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
	}
	for i := 0; i < len(expr); {
		if !isIdent(expr[i], true) || i > 0 && (isIdent(expr[i-1], false) || expr[i-1] == '.') {
			i++
			continue
		}
		j := i
		for j < len(expr) && isIdent(expr[j], false) {
			j++
		}
		name := expr[i:j]
		k := j
		for k < len(expr) && (expr[k] == ' ' || expr[k] == '\t' || expr[k] == '\n') {
			k++
		}
		if (k == len(expr) || expr[k] != '(') && !keywords[strings.ToLower(name)] {
			out = append(out, name)
		}
		i = j
	}
	return out
}

// metricExists accepts histogram and summary series of a known family.
func metricExists(known map[string]bool, name string) bool {
	if known[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && known[base] {
			return true
		}
	}
	return false
}

func TestPromQLMetrics(t *testing.T) {
	got := promqlMetrics(`histogram_quantile(0.99, sum by (le, kind) (rate(roost_x_bucket{instance=~"$instance",a="b(c)"}[$__rate_interval]))) ` +
		`and on (instance) count by (instance) (up == 1) > 0 unless ignoring(x) time() - y_total offset 5m`)
	if want := []string{"roost_x_bucket", "up", "y_total"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// The shipped Prometheus rules are well formed and read only metrics that
// exist, and every alert the docs promise is there.
func TestAlertRules(t *testing.T) {
	known := knownMetrics(t)
	data, err := os.ReadFile("prometheus/roost-alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatal(err)
	}
	alerts := map[string]string{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("%s: rule %+v lacks alert, expr, severity or summary", g.Name, r)
			}
			if _, err := time.ParseDuration(r.For); err != nil {
				t.Errorf("%s: for %q: %v", r.Alert, r.For, err)
			}
			alerts[r.Alert] = r.For
			names := promqlMetrics(r.Expr)
			if len(names) == 0 {
				t.Errorf("%s reads no metric: %s", r.Alert, r.Expr)
			}
			for _, n := range names {
				if !metricExists(known, n) {
					t.Errorf("%s reads %s, which no Roost program exports", r.Alert, n)
				}
			}
		}
	}
	for alert, forWant := range map[string]string{
		"RoostBGPSessionDown": "2m", "RoostBGPNoRoutesImported": "10m", "RoostConfdRenderFailing": "5m", "RoostBIRDNotReady": "5m",
	} {
		if alerts[alert] != forWant {
			t.Errorf("alert %s: for %q, want %q", alert, alerts[alert], forWant)
		}
	}
}

// The shipped Grafana dashboard is valid JSON, every panel queries the
// dashboard's data source, and every query reads only metrics that exist.
func TestGrafanaDashboard(t *testing.T) {
	known := knownMetrics(t)
	data, err := os.ReadFile("grafana/roost-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title      string `json:"title"`
			Type       string `json:"type"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name string `json:"name"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) < 10 {
		t.Fatalf("dashboard %q (uid %q) with %d panels", dash.Title, dash.UID, len(dash.Panels))
	}
	read := map[string]bool{}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: datasource %q, %d queries", p.Title, p.Datasource.UID, len(p.Targets))
		}
		for _, q := range p.Targets {
			for _, n := range promqlMetrics(q.Expr) {
				read[n] = true
				if !metricExists(known, n) {
					t.Errorf("panel %q reads %s, which no Roost program exports", p.Title, n)
				}
			}
		}
	}
	// The bird_exporter families and the agent's core metrics are shown.
	for _, n := range []string{"bird_protocol_up", "bird_protocol_prefix_import_count", "bird_protocol_prefix_export_count",
		"bird_protocol_prefix_filter_count", "bird_protocol_prefix_preferred_count", "bird_protocol_uptime",
		"bird_socket_query_success", "roost_node_in_sync", "roost_confd_renders_total"} {
		if !read[n] {
			t.Errorf("no panel shows %s", n)
		}
	}
}

// Package metrics exposes confd's Prometheus metrics and its /healthz and
// /readyz endpoints.
package metrics

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/roostnet/roost/confd/bgp"
	"github.com/roostnet/roost/confd/render"
	"github.com/roostnet/roost/confd/resource"
	"github.com/roostnet/roost/confd/runner"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/internal/clip"
	"github.com/roostnet/roost/internal/health"
)

// Metrics implements runner.Observer on a private registry.
type Metrics struct {
	Registry       *prometheus.Registry
	renders        *prometheus.CounterVec
	renderDuration prometheus.Histogram
	stageDuration  *prometheus.HistogramVec
	filesWritten   prometheus.Counter
	checksFailed   prometheus.Counter
	reloads        *prometheus.CounterVec
	inSync         prometheus.Gauge
	events         *prometheus.CounterVec
	lastReload     prometheus.Gauge
	broken         *prometheus.GaugeVec
	model          *modelMetrics
	templateErrors *prometheus.CounterVec
	disabled       *prometheus.GaugeVec
}

// New registers confd's metrics (roost_confd_*).
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		renders: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roost_confd_renders_total",
			Help: "Renders by result (ok, or the failing stage: template, check, write, reload)."}, []string{"result"}),
		renderDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "roost_confd_render_duration_seconds",
			Help: "Time for one render including check and reload.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		stageDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "roost_confd_render_stage_seconds",
			Help:    "Time per render stage: model (BGP model and key store), execute (templates), write (stage and rename), check, reload.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}, []string{"stage"}),
		filesWritten: prometheus.NewCounter(prometheus.CounterOpts{Name: "roost_confd_files_written_total", Help: "Files written."}),
		checksFailed: prometheus.NewCounter(prometheus.CounterOpts{Name: "roost_confd_checks_failed_total", Help: "Config checks that failed."}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roost_confd_reloads_total",
			Help: "BIRD reloads by result."}, []string{"result"}),
		inSync: prometheus.NewGauge(prometheus.GaugeOpts{Name: "roost_confd_in_sync", Help: "1 when every datastore watch is in sync."}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roost_confd_datastore_events_total",
			Help: "Datastore events by type."}, []string{"type"}),
		lastReload: prometheus.NewGauge(prometheus.GaugeOpts{Name: "roost_confd_last_successful_reload_timestamp_seconds",
			Help: "Unix time of the last successful reload."}),
		templateErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roost_confd_template_errors_total",
			Help: "Template failures by file (the template, or the conf.d TOML file) and stage: load (unreadable, bad TOML, missing template), parse, execute."}, []string{"file", "stage"}),
		broken: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "roost_confd_broken_objects",
			Help: "1 per datastore object that is present but broken (its value cannot be decoded or validated), by key, field and value: renders are held at the last good configuration while there is any."},
			[]string{"key", "field", "value"}),
	}
	m.disabled = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "roost_confd_bgp_sessions_disabled",
		Help: "BGP sessions rendered disabled because their password cannot be used, by the resource holding the secretKeyRef (kind, name), the secret (<name>/<key>) and the reason (missing, unreadable, empty, too-long, unquotable)."},
		[]string{"kind", "name", "secret", "reason"})
	m.Registry.MustRegister(m.renders, m.renderDuration, m.stageDuration, m.filesWritten, m.checksFailed, m.reloads, m.inSync, m.events, m.lastReload, m.templateErrors, m.disabled, m.broken, datastore.UnknownFields,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.model = newModelMetrics(m.Registry)
	return m
}

// SyncState implements runner.Observer.
func (m *Metrics) SyncState(inSync bool) {
	if inSync {
		m.inSync.Set(1)
	} else {
		m.inSync.Set(0)
	}
}

// Broken implements runner.Observer.
func (m *Metrics) Broken(objs []*datastore.DecodeError) {
	m.broken.Reset()
	for _, de := range objs {
		m.broken.WithLabelValues(de.Key, de.Field, clip.Value(de.Value)).Set(1)
	}
}

// Event implements runner.Observer.
func (m *Metrics) Event(t datastore.EventType) { m.events.WithLabelValues(t.String()).Inc() }

// Rendered implements runner.Observer.
func (m *Metrics) Rendered(res render.Result, err error, took time.Duration) {
	m.renderDuration.Observe(took.Seconds())
	if err == nil {
		t := res.Timings
		m.stageDuration.WithLabelValues("model").Observe(max(0, took-t.Execute-t.Write-t.Check-t.Reload).Seconds())
		m.stageDuration.WithLabelValues("execute").Observe(t.Execute.Seconds())
		m.stageDuration.WithLabelValues("write").Observe(t.Write.Seconds())
		m.stageDuration.WithLabelValues("check").Observe(t.Check.Seconds())
		m.stageDuration.WithLabelValues("reload").Observe(t.Reload.Seconds())
		m.renders.WithLabelValues("ok").Inc()
		m.filesWritten.Add(float64(len(res.Changed)))
		if res.Reloaded {
			m.reloads.WithLabelValues("ok").Inc()
			m.lastReload.SetToCurrentTime()
		}
		return
	}
	stage := "unknown"
	var re *render.Error
	if errors.As(err, &re) {
		stage = re.Stage
	}
	m.renders.WithLabelValues(stage).Inc()
	if re != nil && re.Stage == render.StageTemplate && re.Template != "" {
		m.templateErrors.WithLabelValues(re.Template, "execute").Inc()
	}
	switch stage {
	case render.StageCheck:
		m.checksFailed.Inc()
	case render.StageReload:
		m.reloads.WithLabelValues("failed").Inc()
	}
}

// TemplateLoadFailed counts a conf.d or template directory that could not
// be loaded (at start, or after an admin's edit).
func (m *Metrics) TemplateLoadFailed(err error) {
	file, stage := "", resource.StageLoad
	var le *resource.LoadError
	if errors.As(err, &le) {
		file, stage = le.File, le.Stage
	}
	m.templateErrors.WithLabelValues(file, stage).Inc()
}

// DisabledSessions sets the disabled sessions of the current model.
func (m *Metrics) DisabledSessions(ds []bgp.DisabledSession) {
	m.disabled.Reset()
	for _, d := range ds {
		p := d.Problem
		m.disabled.WithLabelValues(p.Kind, p.Name, p.Secret, p.Reason).Inc()
	}
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// ReadyDisabledPrefix starts /readyz's reason when everything rendered but
// some BGP sessions are disabled (the supervisor counts that as rendered).
const ReadyDisabledPrefix = "rendered with"

// HealthHandler serves /healthz (the process and its watches run, and
// it is not stuck out of sync: sync, which may be nil) and /readyz (in
// sync, no broken object holding renders, the last render succeeded and
// problem, if given, returns nil), each as text: "ok" or the reason (the
// supervisor reads "last render failed", "rendering held" and
// ReadyDisabledPrefix).
// A ready /readyz adds, after "ok", one "warning: ..." line per string of
// warnings (the model's degraded settings, such as a missing BFDProfile):
// they do not make confd unready.
func HealthHandler(status func() runner.Status, problem func() error, sync *health.SyncLiveness, warnings ...func() []string) http.Handler {
	live := func() (bool, any) {
		s := status()
		if s.WatchesRunning == 0 {
			return false, "datastore watches are not running"
		}
		if ok, why := sync.Check(s.OutOfSyncSince); !ok {
			return false, why
		} else if why != "" {
			return true, "ok\n" + why
		}
		return true, "ok"
	}
	ready := func() (bool, any) {
		s := status()
		switch {
		case !s.InSync:
			return false, "not in sync with the datastore"
		case len(s.Broken) > 0:
			return false, brokenReason(s.Broken)
		case s.Renders == 0:
			return false, "no configuration rendered yet"
		case s.LastError != nil:
			return false, "last render failed: " + s.LastError.Error()
		}
		if problem != nil {
			if err := problem(); err != nil {
				return false, err.Error()
			}
		}
		lines := []string{"ok"}
		for _, f := range warnings {
			for _, msg := range f() {
				lines = append(lines, "warning: "+msg)
			}
		}
		return true, strings.Join(lines, "\n")
	}
	return health.Handler(live, ready)
}

// brokenReason is /readyz's text while broken objects hold renders: one
// line per object (the first ten), naming key, field and value.
func brokenReason(objs []*datastore.DecodeError) string {
	lines := []string{fmt.Sprintf("rendering held at the last good configuration: %d broken object(s) in the datastore", len(objs))}
	for i, de := range objs {
		if i == 10 {
			lines = append(lines, fmt.Sprintf("... and %d more", len(objs)-i))
			break
		}
		lines = append(lines, "broken: "+de.Error())
	}
	return strings.Join(lines, "\n")
}

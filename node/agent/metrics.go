package agent

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/internal/health"
)

// Metrics are roost-node's Prometheus metrics (roost_node_*) on a private
// registry. They implement dataplane.Observer.
type Metrics struct {
	Registry         *prometheus.Registry
	routesProgrammed prometheus.Gauge
	routeOps         *prometheus.CounterVec
	reconcile        *prometheus.HistogramVec
	drift            *prometheus.CounterVec
	errors           *prometheus.CounterVec
	events           *prometheus.CounterVec
	inSync           prometheus.Gauge
	tunnelReady      *prometheus.GaugeVec
	natReady         prometheus.Gauge
	broken           *prometheus.GaugeVec
}

// NewMetrics registers the metrics.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		routesProgrammed: prometheus.NewGauge(prometheus.GaugeOpts{Name: "roost_node_routes_programmed",
			Help: "Routes with the agent's protocol currently in the kernel's main table."}),
		routeOps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roost_node_route_operations_total",
			Help: "Route writes by operation (add, replace, delete)."}, []string{"op"}),
		reconcile: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "roost_node_reconcile_duration_seconds",
			Help:    "Time to program one batch of changes (incremental) or to compare everything with the kernel (full).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}, []string{"kind"}),
		drift: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roost_node_drift_repairs_total",
			Help: "Kernel state changed behind the agent's back and put right, by kind (route, link, neigh, fdb, mtu_file, nat)."}, []string{"kind"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roost_node_errors_total",
			Help: "Errors by kind (route, route_conflict, neigh, fdb, ipip, mtu_file, nat, subscribe, datastore, ipam, startup)."}, []string{"kind"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roost_node_datastore_events_total",
			Help: "Datastore watch events by resource and type."}, []string{"resource", "type"}),
		inSync: prometheus.NewGauge(prometheus.GaugeOpts{Name: "roost_node_in_sync",
			Help: "1 when every datastore watch is in sync and the dataplane completed a full sync."}),
		tunnelReady: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "roost_node_tunnel_ready",
			Help: "1 when the tunnel device is configured (device: tunl0, vxlan.calico, vxlan-v6.calico)."}, []string{"device"}),
		natReady: prometheus.NewGauge(prometheus.GaugeOpts{Name: "roost_node_nat_outgoing_programmed",
			Help: "1 when the kernel holds the NAT outgoing table the pools ask for (or none, when no pool has natOutgoing)."}),
		broken: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "roost_node_broken_objects",
			Help: "1 per datastore object that is present but broken, by resource, key, field and value: while there is any, nothing is removed from the kernel and IPAM is not cleaned up."},
			[]string{"resource", "key", "field", "value"}),
	}
	m.Registry.MustRegister(m.routesProgrammed, m.routeOps, m.reconcile, m.drift, m.errors, m.events, m.inSync, m.tunnelReady, m.natReady, m.broken, datastore.UnknownFields,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// RouteOp implements dataplane.Observer.
func (m *Metrics) RouteOp(op string) { m.routeOps.WithLabelValues(op).Inc() }

// RoutesProgrammed implements dataplane.Observer.
func (m *Metrics) RoutesProgrammed(n int) { m.routesProgrammed.Set(float64(n)) }

// DriftRepaired implements dataplane.Observer.
func (m *Metrics) DriftRepaired(kind string) { m.drift.WithLabelValues(kind).Inc() }

// Error implements dataplane.Observer.
func (m *Metrics) Error(kind string) { m.errors.WithLabelValues(kind).Inc() }

// Reconciled implements dataplane.Observer.
func (m *Metrics) Reconciled(full bool, d time.Duration) {
	kind := "incremental"
	if full {
		kind = "full"
	}
	m.reconcile.WithLabelValues(kind).Observe(d.Seconds())
}

// handler serves /metrics, /healthz and /readyz.
func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	prom := promhttp.HandlerFor(a.metrics.Registry, promhttp.HandlerOpts{})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		a.updateGauges()
		prom.ServeHTTP(w, r)
	})
	health.Register(mux,
		func() (bool, any) { st := a.Status(); return st.Alive, st },
		func() (bool, any) { st := a.Status(); return st.Ready, st })
	return mux
}

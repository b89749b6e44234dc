package metrics

import "github.com/prometheus/client_golang/prometheus"

// modelMetrics describe the last computed BGP model: how degraded it is
// (warnings, missing BFD profiles) and how many sessions have BFD.
type modelMetrics struct {
	warnings   prometheus.Gauge
	bfd        prometheus.Gauge
	bfdMissing *prometheus.GaugeVec
}

func newModelMetrics(r prometheus.Registerer) *modelMetrics {
	m := &modelMetrics{
		warnings: prometheus.NewGauge(prometheus.GaugeOpts{Name: "roost_confd_model_warnings",
			Help: "Problems of the last BGP model that left something out or degraded it (a missing BGPFilter, secret or BFDProfile...); they are logged and listed by /readyz."}),
		bfd: prometheus.NewGauge(prometheus.GaugeOpts{Name: "roost_confd_bfd_sessions",
			Help: "BGP sessions rendered with BFD (a bfd.roost.io/profile annotation naming an existing BFDProfile)."}),
		bfdMissing: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "roost_confd_bfd_profile_missing",
			Help: "1 for each BFDProfile that a bfd.roost.io/profile annotation names but that does not exist; those sessions render without BFD."}, []string{"profile"}),
	}
	r.MustRegister(m.warnings, m.bfd, m.bfdMissing)
	return m
}

// Model records the last computed model: the number of warnings, the
// sessions with BFD and the BFD profiles named but missing.
func (m *Metrics) Model(warnings, bfdSessions int, missingBFDProfiles []string) {
	m.model.warnings.Set(float64(warnings))
	m.model.bfd.Set(float64(bfdSessions))
	m.model.bfdMissing.Reset()
	for _, p := range missingBFDProfiles {
		m.model.bfdMissing.WithLabelValues(p).Set(1)
	}
}

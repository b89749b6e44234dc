package birdmetrics

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roostnet/roost/birdctl/birdsock"
)

// bfdFamily is bird_exporter's BFD metrics: per session, labels name (the
// BFD protocol), ip and interface ("---" for multihop sessions, as BIRD
// prints it and bird_exporter passes it on).
type bfdFamily struct {
	up, uptime, interval, timeout *prometheus.Desc
}

func newBFDFamily() *bfdFamily {
	l := []string{"name", "ip", "interface"}
	return &bfdFamily{
		up:       prometheus.NewDesc("bird_bfd_session_up", "1 when the BFD session is Up.", l, nil),
		uptime:   prometheus.NewDesc("bird_bfd_session_uptime_seconds", "Seconds since an Up BFD session came up (0 when not up).", l, nil),
		interval: prometheus.NewDesc("bird_bfd_session_interval_seconds", "Transmit interval the BFD session uses, in seconds.", l, nil),
		timeout:  prometheus.NewDesc("bird_bfd_session_timeout_seconds", "Detection time of the BFD session (remote interval x multiplier), in seconds.", l, nil),
	}
}

func (f *bfdFamily) describe(ch chan<- *prometheus.Desc) {
	ch <- f.up
	ch <- f.uptime
	ch <- f.interval
	ch <- f.timeout
}

func (f *bfdFamily) collect(r *round, ch chan<- prometheus.Metric) {
	// As bird_exporter, ask for sessions only when BIRD runs a BFD
	// protocol (BIRD 1.6 has no show bfd sessions without one).
	ps, err := r.ProtocolDetails()
	if err != nil || !slices.ContainsFunc(ps, func(p birdsock.ProtocolDetail) bool { return p.Proto == "BFD" }) {
		return
	}
	ss, err := r.BFDSessions()
	if err != nil {
		return
	}
	now := r.opts.Now()
	for _, s := range ss {
		iface := s.Interface
		if iface == "" {
			iface = "---"
		}
		l := []string{s.Protocol, s.Address, iface}
		up, uptime := 0.0, 0.0
		if s.Up() {
			up = 1
			if at, ok := birdsock.ParseSince(s.Since, now, r.opts.Location); ok {
				uptime = max(0, now.Sub(at).Seconds())
			}
		}
		ch <- prometheus.MustNewConstMetric(f.up, prometheus.GaugeValue, up, l...)
		ch <- prometheus.MustNewConstMetric(f.uptime, prometheus.GaugeValue, uptime, l...)
		ch <- prometheus.MustNewConstMetric(f.interval, prometheus.GaugeValue, s.Interval.Seconds(), l...)
		ch <- prometheus.MustNewConstMetric(f.timeout, prometheus.GaugeValue, s.Timeout.Seconds(), l...)
	}
}

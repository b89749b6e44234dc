// Package birdmetrics exports BIRD's state on roost-node's /metrics under
// bird_exporter's metric names and labels, so dashboards and alerts made
// for bird_exporter work unchanged: bird_socket_query_success; per protocol
// and channel bird_protocol_{up,prefix_import_count,prefix_export_count,
// prefix_filter_count,prefix_preferred_count,uptime}{name,proto,ip_version,
// import_filter,export_filter} (plus Roost's peer_type); per BFD session
// bird_bfd_session_{up,uptime_seconds,interval_seconds,timeout_seconds}
// {name,ip,interface}.
//
// A scrape is one query round: every family of metrics reads what it needs
// from a birdsock.Round, which runs each BIRD command at most once (lazily,
// on one control-socket connection) and is reused by scrapes that come
// within MaxAge. A new family adds a type implementing family that reads
// the Round's accessors.
package birdmetrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/birdctl/birdsock"
)

// Defaults of Options.
const (
	DefaultTimeout = 2 * time.Second
	DefaultMaxAge  = time.Second
)

// Options configure a Collector.
type Options struct {
	Socket  string        // BIRD's control socket
	Timeout time.Duration // bound of one round's BIRD commands (DefaultTimeout)
	// MaxAge: a round younger than this serves further scrapes
	// (DefaultMaxAge), so that two scrapers cost BIRD one round.
	MaxAge time.Duration
	Log    logrus.FieldLogger
	// Now and Location are the clock and BIRD's time zone (tests); BIRD
	// prints local times.
	Now      func() time.Time
	Location *time.Location
}

// Collector is a prometheus.Collector over BIRD's control socket.
type Collector struct {
	opts     Options
	families []family
	query    *prometheus.Desc

	mu   sync.Mutex
	last *round
}

// family is one group of metrics read from a Round.
type family interface {
	describe(ch chan<- *prometheus.Desc)
	collect(r *round, ch chan<- prometheus.Metric)
}

// New returns a Collector for the BIRD at o.Socket.
func New(o Options) *Collector {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Log == nil {
		o.Log = logrus.StandardLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Location == nil {
		o.Location = time.Local
	}
	return &Collector{
		opts:     o,
		families: []family{newProtocolFamily(), newBFDFamily()},
		query: prometheus.NewDesc("bird_socket_query_success",
			"1 when every query of BIRD's control socket in this scrape succeeded, else 0.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.query
	for _, f := range c.families {
		f.describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	r := c.round()
	for _, f := range c.families {
		f.collect(r, ch)
	}
	r.release()
	ok := 1.0
	if r.failed() {
		ok = 0
	}
	ch <- prometheus.MustNewConstMetric(c.query, prometheus.GaugeValue, ok)
}

// round returns the current round, starting a new one when the last is
// older than MaxAge.
func (c *Collector) round() *round {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Now()
	if c.last != nil && now.Sub(c.last.at) < c.opts.MaxAge {
		return c.last
	}
	c.last = &round{Round: birdsock.NewRound(c.opts.Socket, c.opts.Timeout), at: now, opts: c.opts}
	return c.last
}

// round is one scrape's view of BIRD: each command at most once (see
// birdsock.Round), shared by the scrapes within MaxAge.
type round struct {
	*birdsock.Round
	at   time.Time
	opts Options

	once sync.Once
}

// release closes the connection after a scrape's queries and logs the
// round's failure once; a later scrape served by the same round finds its
// answers cached.
func (r *round) release() {
	r.Close()
	if err := r.Err(); err != nil {
		r.once.Do(func() {
			r.opts.Log.WithError(err).WithField("socket", r.opts.Socket).Debug("BIRD metrics: query failed")
		})
	}
}

func (r *round) failed() bool { return r.Err() != nil }

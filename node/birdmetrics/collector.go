// Package birdmetrics exports BIRD's state on roost-node's /metrics under
// bird_exporter's metric names and labels, so dashboards and alerts made
// for bird_exporter work unchanged: bird_socket_query_success and, per BFD
// session, bird_bfd_session_{up,uptime_seconds,interval_seconds,
// timeout_seconds}{name,ip,interface}.
//
// A scrape is one query round: every family of metrics reads what it needs
// from a Round, which runs each BIRD command at most once (lazily, on one
// control-socket connection) and is reused by scrapes that come within
// MaxAge. A new family (say, per-protocol metrics) adds a Round accessor
// for its command and a type implementing family.
package birdmetrics

import (
	"context"
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
	last *Round
}

// family is one group of metrics read from a Round.
type family interface {
	describe(ch chan<- *prometheus.Desc)
	collect(r *Round, ch chan<- prometheus.Metric)
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
		families: []family{newBFDFamily()},
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
func (c *Collector) round() *Round {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Now()
	if c.last != nil && now.Sub(c.last.At) < c.opts.MaxAge {
		return c.last
	}
	c.last = &Round{At: now, opts: c.opts}
	return c.last
}

// Round is one scrape's view of BIRD. Each command runs at most once per
// Round, on the first request; later requests get the same answer.
type Round struct {
	At   time.Time
	opts Options

	mu     sync.Mutex
	client *birdsock.Client // open while a scrape runs queries
	err    error            // the first failure of the round
	bfd    *cached[[]birdsock.BFDSession]
}

type cached[T any] struct {
	v   T
	err error
}

// exec runs one query on the round's connection, dialling it first when
// needed. r.mu is held.
func (r *Round) exec(f func(ctx context.Context, c *birdsock.Client) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.Timeout)
	defer cancel()
	if r.client == nil {
		c, err := birdsock.Dial(ctx, r.opts.Socket, birdsock.WithTimeout(r.opts.Timeout))
		if err != nil {
			r.fail(err)
			return err
		}
		r.client = c
	}
	err := f(ctx, r.client)
	if err != nil {
		r.fail(err)
	}
	return err
}

func (r *Round) fail(err error) {
	if r.err == nil {
		r.err = err
		r.opts.Log.WithError(err).WithField("socket", r.opts.Socket).Debug("BIRD metrics: query failed")
	}
}

// BFDSessions is `show bfd sessions` (no sessions without a BFD protocol).
func (r *Round) BFDSessions() ([]birdsock.BFDSession, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bfd == nil {
		r.bfd = &cached[[]birdsock.BFDSession]{}
		r.bfd.err = r.exec(func(ctx context.Context, c *birdsock.Client) (err error) {
			r.bfd.v, err = c.BFDSessions(ctx)
			return err
		})
	}
	return r.bfd.v, r.bfd.err
}

// release closes the connection after a scrape's queries; a later scrape
// served by the same round finds its answers cached.
func (r *Round) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.client != nil {
		r.client.Close()
		r.client = nil
	}
}

func (r *Round) failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err != nil
}

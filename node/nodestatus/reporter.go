// Package nodestatus answers CalicoNodeStatus requests for this node, as
// calico-node does: every request whose spec.node is this node gets, every
// spec.updatePeriodSeconds, the classes it asks for (Agent: the BGP
// daemon; BGP: sessions; Routes: BIRD's routes) written into its status.
//
// Cost by design: one round of BIRD queries serves every request due at
// the same time (a request's due times are aligned to multiples of its
// period plus a per-node offset, so requests of equal or multiple periods
// share rounds), each command at most once per round; a request whose
// status did not change is written only once per period (lastUpdated), and
// writes are compare-and-swap updates of the revision read, so the spec
// and the fields Roost does not know are never overwritten.
package nodestatus

import (
	"context"
	"errors"
	"hash/fnv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/birdctl/birdsock"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/internal/backoff"
)

// Defaults and limits.
const (
	DefaultTimeout = 5 * time.Second // one BIRD query
	writeTimeout   = 10 * time.Second
	// batchWindow: requests due this close together share a round.
	batchWindow = 250 * time.Millisecond
	// maxAlignOffset bounds the per-node offset of due times, so that
	// periods of 10 s and its multiples share rounds.
	maxAlignOffset = 10 * time.Second
)

// Options wire a Reporter.
type Options struct {
	DS      datastore.Datastore
	Node    string        // this node's name
	Socket  string        // BIRD's control socket
	Timeout time.Duration // bound of one BIRD query (DefaultTimeout)
	// IPv6 tells whether the node has an IPv6 address: BIRD then serves
	// IPv6 too and birdV6 reports it. nil: never.
	IPv6       func() bool
	Log        logrus.FieldLogger
	Registerer prometheus.Registerer // nil: metrics not registered
	Now        func() time.Time      // tests
}

// Reporter answers this node's CalicoNodeStatus requests.
type Reporter struct {
	opts   Options
	m      *metrics
	offset time.Duration // per-node alignment of due times
	reqs   map[string]*request
}

// request is one CalicoNodeStatus this node answers.
type request struct {
	key       string
	obj       *api.CalicoNodeStatus // the stored value, as last read or written
	rev       int64                 // its revision (compare-and-swap)
	due       time.Time             // next report; zero: none (period 0, reported)
	lastWrite time.Time             // when this process last wrote it
	broken    bool                  // the stored value no longer decodes
	kicked    bool                  // new or changed: answer at once
}

// New prepares a Reporter; Run runs it.
func New(o Options) *Reporter {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Log == nil {
		o.Log = logrus.StandardLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.IPv6 == nil {
		o.IPv6 = func() bool { return false }
	}
	h := fnv.New64a()
	h.Write([]byte(o.Node))
	return &Reporter{
		opts:   o,
		m:      newMetrics(o.Registerer),
		offset: time.Duration(h.Sum64() % uint64(maxAlignOffset/time.Millisecond) * uint64(time.Millisecond)),
		reqs:   map[string]*request{},
	}
}

// Run follows the CalicoNodeStatus objects and answers this node's until
// ctx ends. A watch that ends is started again after a backoff.
func (r *Reporter) Run(ctx context.Context) {
	bo := backoff.New(backoff.Policy{Min: time.Second, Max: 30 * time.Second})
	for ctx.Err() == nil {
		if r.follow(ctx) {
			bo.Reset()
		}
		if ctx.Err() != nil {
			return
		}
		delay := bo.Next()
		r.opts.Log.WithField("retry_in", delay.String()).Warn("CalicoNodeStatus watch ended; restarting")
		_ = backoff.Sleep(ctx, delay)
	}
}

// follow runs one watch until it ends; it reports whether it got in sync.
func (r *Reporter) follow(ctx context.Context) (wasSynced bool) {
	prefix := datastore.KindPrefix(api.KindCalicoNodeStatus)
	ch := r.opts.DS.Watch(ctx, prefix, 0)
	synced := false
	relist := map[string]bool{} // keys seen since a listing started
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return wasSynced
			}
			switch ev.Type {
			case datastore.Added, datastore.Modified:
				if relist != nil {
					relist[ev.Key] = true
				}
				r.set(ev)
			case datastore.Deleted:
				r.drop(ev.Key)
			case datastore.Resync:
				synced = false
				if ev.Relist {
					relist = map[string]bool{}
				}
			case datastore.InSync:
				for key := range r.reqs {
					if relist != nil && !relist[key] {
						r.drop(key)
					}
				}
				relist, synced, wasSynced = nil, true, true
			case datastore.Broken:
				// Present but invalid: kept (not dropped in a relist), not
				// answered until it is fixed.
				if relist != nil {
					relist[ev.Key] = true
				}
				if req := r.reqs[ev.Key]; req != nil && !req.broken {
					req.broken = true
					r.opts.Log.WithError(ev.Err).WithField("key", ev.Key).Warn("CalicoNodeStatus request became invalid; not answering it until it is fixed")
				}
			case datastore.Error:
				r.opts.Log.WithError(ev.Err).Warn("datastore unavailable; the CalicoNodeStatus watch keeps retrying")
			}
		case <-timer.C:
		case <-ctx.Done():
			return wasSynced
		}
		// Nothing is answered from a partial view of the requests.
		if !synced {
			continue
		}
		r.reportDue(ctx)
		timer.Stop()
		if next, ok := r.nextDue(); ok {
			timer.Reset(max(0, next.Sub(r.opts.Now())))
		}
	}
}

// set takes a new or changed request in. A request that is new, asks
// for something else, or was fixed, is answered at once; a change of the
// status alone (our own write, coming back) only updates the revision.
func (r *Reporter) set(ev datastore.Event) {
	s, ok := ev.Value.(*api.CalicoNodeStatus)
	if !ok {
		return
	}
	if s.Spec.Node != r.opts.Node {
		r.drop(ev.Key) // never ours, or moved to another node
		return
	}
	req := r.reqs[ev.Key]
	if req != nil && ev.Revision > 0 && ev.Revision < req.rev {
		return // older than what we wrote
	}
	if req == nil {
		req = &request{key: ev.Key}
		r.reqs[ev.Key] = req
		r.m.requests.Set(float64(len(r.reqs)))
		r.opts.Log.WithFields(logrus.Fields{"request": s.Metadata.Name, "classes": s.Spec.Classes,
			"period": s.Spec.UpdatePeriod().String()}).Info("answering CalicoNodeStatus")
		req.due, req.kicked = r.opts.Now(), true
	} else if !req.obj.Spec.Equal(&s.Spec) || req.broken {
		req.due, req.kicked = r.opts.Now(), true
	}
	req.obj, req.rev, req.broken = s, ev.Revision, false
}

func (r *Reporter) drop(key string) {
	if req, ok := r.reqs[key]; ok {
		r.opts.Log.WithField("request", req.obj.Metadata.Name).Info("stopped answering CalicoNodeStatus")
		delete(r.reqs, key)
		r.m.requests.Set(float64(len(r.reqs)))
	}
}

func (r *Reporter) nextDue() (time.Time, bool) {
	var next time.Time
	for _, req := range r.reqs {
		if !req.due.IsZero() && !req.broken && (next.IsZero() || req.due.Before(next)) {
			next = req.due
		}
	}
	return next, !next.IsZero()
}

// reportDue answers every request due now (or within batchWindow) from
// one round of BIRD queries.
func (r *Reporter) reportDue(ctx context.Context) {
	now := r.opts.Now()
	var due []*request
	classes := map[string]bool{}
	for _, req := range r.reqs {
		if req.due.IsZero() || req.broken || req.due.After(now.Add(batchWindow)) {
			continue
		}
		due = append(due, req)
		for _, c := range req.obj.Spec.Classes {
			classes[c] = true
		}
	}
	if len(due) == 0 {
		return
	}
	round := birdsock.NewRound(r.opts.Socket, r.opts.Timeout)
	rep, err := collect(round, classes, r.opts.IPv6())
	round.Close()
	switch {
	case err != nil:
		r.m.rounds.WithLabelValues("error").Inc()
		r.opts.Log.WithError(err).WithField("socket", r.opts.Socket).Warn("CalicoNodeStatus: querying BIRD failed; trying again next period")
	case round.Unreachable():
		r.m.rounds.WithLabelValues("unreachable").Inc()
	default:
		r.m.rounds.WithLabelValues("ok").Inc()
	}
	for _, req := range due {
		was := req.due
		req.kicked = false
		if err == nil {
			r.answer(ctx, req, rep, now)
		}
		if r.reqs[req.key] != req || req.kicked {
			continue // dropped, or changed meanwhile and due again at once
		}
		switch period := req.obj.Spec.UpdatePeriod(); {
		case period > 0:
			req.due = r.aligned(maxTime(now, was), period)
		case err != nil:
			req.due = now.Add(oneShotRetry) // period 0: the one answer is still owed
		default:
			req.due = time.Time{} // period 0: answered once, no more updates
		}
	}
}

// oneShotRetry is when a request with period 0 whose answer failed is
// tried again.
const oneShotRetry = 10 * time.Second

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// aligned is the first due time after now for a period: a multiple of the
// period plus the node's offset, so that requests of one period (and of
// its multiples) fall due together.
func (r *Reporter) aligned(now time.Time, period time.Duration) time.Time {
	off := r.offset % min(period, maxAlignOffset)
	t := now.Truncate(period).Add(off)
	for !t.After(now.Add(batchWindow)) {
		t = t.Add(period)
	}
	return t
}

// answer writes the status of one request if it changed, or if the last
// write is a period old (the status then only gets a new lastUpdated).
func (r *Reporter) answer(ctx context.Context, req *request, rep *report, now time.Time) {
	st := rep.status(&req.obj.Spec)
	stored := &req.obj.Status
	if st.SameContent(stored) && !stored.LastUpdated.IsZero() {
		period := req.obj.Spec.UpdatePeriod()
		last := stored.LastUpdated.Time
		if req.lastWrite.After(last) {
			last = req.lastWrite
		}
		if period == 0 || now.Sub(last) < period-min(period/10, 500*time.Millisecond) {
			r.m.unchanged.Inc()
			return
		}
	}
	st.LastUpdated = api.NewTime(now)
	asked := req.obj.Spec // what st answers
	for attempt := 0; attempt < 2; attempt++ {
		obj := *req.obj // metadata, spec and unknown fields as stored; nothing shared is modified
		obj.Status = st
		wctx, cancel := context.WithTimeout(ctx, writeTimeout)
		kv, err := r.opts.DS.Update(wctx, &datastore.KV{Key: req.key, Value: &obj, Revision: req.rev})
		cancel()
		log := r.opts.Log.WithFields(logrus.Fields{"request": req.obj.Metadata.Name, "revision": req.rev})
		switch {
		case err == nil:
			r.m.writes.WithLabelValues("ok").Inc()
			req.obj, req.rev, req.lastWrite = &obj, kv.Revision, now
			log.Debug("CalicoNodeStatus written")
			return
		case errors.Is(err, datastore.ErrNotFound):
			r.m.writes.WithLabelValues("error").Inc()
			r.drop(req.key)
			return
		case errors.Is(err, datastore.ErrConflict) && attempt == 0:
			// Someone else wrote it: take the current value in; write
			// again only if it still asks the same of this node.
			r.m.writes.WithLabelValues("conflict").Inc()
			gctx, cancel := context.WithTimeout(ctx, writeTimeout)
			cur, gerr := r.opts.DS.Get(gctx, req.key)
			cancel()
			if gerr != nil {
				log.WithError(gerr).Warn("CalicoNodeStatus changed while writing it and cannot be read; trying again next period")
				return
			}
			r.set(datastore.Event{Type: datastore.Modified, Key: req.key, Value: cur.Value, Revision: cur.Revision})
			if r.reqs[req.key] != req || !req.obj.Spec.Equal(&asked) {
				return // not ours any more, or asks for something else: answered anew
			}
		default:
			r.m.writes.WithLabelValues("error").Inc()
			log.WithError(err).Warn("writing CalicoNodeStatus failed; trying again next period")
			return
		}
	}
}

type metrics struct {
	requests  prometheus.Gauge
	rounds    *prometheus.CounterVec
	writes    *prometheus.CounterVec
	unchanged prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewGauge(prometheus.GaugeOpts{Name: "roost_node_status_requests",
			Help: "CalicoNodeStatus requests this node answers."}),
		rounds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roost_node_status_rounds_total",
			Help: "Rounds of BIRD queries for CalicoNodeStatus answers, by result (ok, unreachable, error)."}, []string{"result"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roost_node_status_writes_total",
			Help: "CalicoNodeStatus status writes, by result (ok, conflict, error)."}, []string{"result"}),
		unchanged: prometheus.NewCounter(prometheus.CounterOpts{Name: "roost_node_status_unchanged_total",
			Help: "CalicoNodeStatus answers not written: nothing changed and the last write is younger than the period."}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.rounds, m.writes, m.unchanged)
	}
	return m
}

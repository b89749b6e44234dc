package etcd

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"

	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/internal/backoff"
)

// watchBuffer decouples etcd's delivery from a briefly busy consumer.
const watchBuffer = 128

// errCompacted says the revision to resume from is gone: relist.
type errCompacted struct{ compactRev int64 }

func (e *errCompacted) Error() string {
	return fmt.Sprintf("revision compacted (etcd keeps history from %d)", e.compactRev)
}

// watchSeq makes each watch attempt's gRPC stream its own (clientv3 shares
// a stream between watches with the same metadata), so that abandoning a
// lost watch cannot disturb another one.
var watchSeq atomic.Uint64

// Watch implements datastore.Datastore.
//
// The stream: with revision 0, Added for every key then InSync; with a
// revision, the changes after it and InSync once caught up. A lost
// connection, a lost leader or a closed etcd watch gives Resync (Relist
// false); the watch is resumed from the last delivered revision, with
// backoff, and InSync follows once it is re-established and caught up.
// A compacted revision gives Resync (Relist true), a fresh listing as
// Added events and InSync. Values that do not decode are Broken events,
// in a listing as well; an outage that lasts is reported as Error events
// without key.
func (s *Store) Watch(ctx context.Context, prefix string, revision int64) <-chan datastore.Event {
	out := make(chan datastore.Event, watchBuffer)
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel) // Close ends every watch
	start, end := keyRange(prefix)
	w := &watcher{
		s: s, prefix: prefix, start: start, end: end, out: out,
		log: s.log.WithField("prefix", prefix),
		// Jittered, so that after an etcd outage the nodes' watches do
		// not come back in lockstep.
		bo: backoff.New(backoff.Policy{Min: s.opts.backoffMin, Max: s.opts.backoffMax}),
	}
	go func() {
		defer close(out)
		defer stop()
		defer cancel()
		w.run(ctx, revision)
	}()
	return out
}

type watcher struct {
	s             *Store
	prefix        string
	start, end    string
	out           chan<- datastore.Event
	log           *logrus.Entry
	bo            *backoff.Backoff
	rev           int64 // every change up to rev has been delivered
	synced        bool  // InSync sent and not withdrawn by a Resync
	lastPersisted time.Time
}

func (w *watcher) send(ctx context.Context, ev datastore.Event) bool {
	select {
	case w.out <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

func (w *watcher) run(ctx context.Context, revision int64) {
	if revision == 0 {
		if !w.relist(ctx, false) {
			return
		}
	} else {
		w.rev = revision
	}
	for ctx.Err() == nil {
		err := w.watchOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		var ce *errCompacted
		if errors.As(err, &ce) {
			w.log.WithFields(logrus.Fields{"revision": w.rev, "compact_revision": ce.compactRev}).
				Warn("etcd watch: revision compacted; relisting")
			if !w.relist(ctx, true) {
				return
			}
			continue
		}
		if w.synced {
			w.synced = false
			if !w.send(ctx, datastore.Event{Type: datastore.Resync, Revision: w.rev}) {
				return
			}
		}
		delay := w.bo.Next()
		w.log.WithFields(logrus.Fields{"revision": w.rev, "retry_in": delay.String(), "attempt": w.bo.Attempts()}).
			WithError(err).Warn("etcd watch lost; resuming")
		if !w.persistentProblem(ctx, err) || backoff.Sleep(ctx, delay) != nil {
			return
		}
	}
}

// persistentProblem reports an outage that outlasts the backoff's growth
// as an Error event without key (at most once per maximum delay).
func (w *watcher) persistentProblem(ctx context.Context, err error) bool {
	if !w.bo.AtMax() || time.Since(w.lastPersisted) < w.bo.Max() {
		return true
	}
	w.lastPersisted = time.Now()
	return w.send(ctx, datastore.Event{Type: datastore.Error, Err: w.s.opErr("watch", w.prefix, err), Revision: w.rev})
}

// relist lists the prefix and sends it as Added events then InSync,
// retrying until it succeeds or ctx ends. announce sends Resync{Relist}
// first (not for the initial listing).
func (w *watcher) relist(ctx context.Context, announce bool) bool {
	if announce {
		w.synced = false
		if !w.send(ctx, datastore.Event{Type: datastore.Resync, Relist: true, Revision: w.rev}) {
			return false
		}
	}
	for {
		// Wait for a connection first: a List would block until its
		// timeout, while this notices a returning etcd at once.
		if err := w.waitReady(ctx); err != nil {
			return false
		}
		lr, err := w.s.List(ctx, w.prefix)
		if err == nil {
			for _, kv := range lr.KVs {
				if !w.send(ctx, datastore.Event{Type: datastore.Added, Key: kv.Key, Value: kv.Value, Revision: kv.Revision}) {
					return false
				}
			}
			for _, de := range lr.Invalid {
				if !w.send(ctx, datastore.Event{Type: datastore.Broken, Key: de.Key, Err: de, Revision: de.Revision}) {
					return false
				}
			}
			w.rev = lr.Revision
			w.bo.Reset()
			return w.markInSync(ctx)
		}
		if ctx.Err() != nil {
			return false
		}
		delay := w.bo.Next()
		w.log.WithFields(logrus.Fields{"retry_in": delay.String(), "attempt": w.bo.Attempts()}).WithError(err).Warn("etcd watch: listing failed; retrying")
		if !w.persistentProblem(ctx, err) || backoff.Sleep(ctx, delay) != nil {
			return false
		}
	}
}

func (w *watcher) markInSync(ctx context.Context) bool {
	w.synced = true
	return w.send(ctx, datastore.Event{Type: datastore.InSync, Revision: w.rev})
}

// watchOnce runs one etcd watch from w.rev+1 until it is lost (the error
// says why) or ctx ends.
func (w *watcher) watchOnce(ctx context.Context) error {
	if err := w.waitReady(ctx); err != nil {
		return err
	}
	// The attempt ends when the connection is lost, whatever it is doing.
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w.monitor(actx, cancel)
	lostOr := func(err error) error {
		if ctx.Err() == nil && context.Cause(actx) != nil && context.Cause(actx) != context.Canceled {
			return context.Cause(actx)
		}
		return err
	}
	if err := w.checkCompacted(actx); err != nil {
		return lostOr(err)
	}
	wctx := clientv3.WithRequireLeader(actx)
	wctx = metadata.AppendToOutgoingContext(wctx, "roost-watch", strconv.FormatUint(watchSeq.Add(1), 10))
	wch := w.s.cli.Watch(wctx, w.start,
		clientv3.WithRange(w.end),
		clientv3.WithRev(w.rev+1),
		clientv3.WithProgressNotify(),
		clientv3.WithCreatedNotify())

	// After (re)establishing, InSync waits until the changes etcd still
	// has to replay were delivered: up to the revision at creation, or
	// until etcd has been quiet for a moment (it replays in batches every
	// 100ms, and deletions cannot be counted in advance).
	var (
		createdRev int64
		quiet      = time.NewTimer(time.Hour)
		quietC     <-chan time.Time
	)
	quiet.Stop()
	defer quiet.Stop()
	caughtUp := func() bool {
		quietC = nil
		return w.markInSync(ctx)
	}

	for {
		select {
		case <-actx.Done():
			return lostOr(ctx.Err())
		case <-quietC:
			if !caughtUp() {
				return ctx.Err()
			}
		case resp, ok := <-wch:
			if !ok {
				return lostOr(errors.New("etcd closed the watch"))
			}
			if resp.CompactRevision != 0 {
				return &errCompacted{compactRev: resp.CompactRevision}
			}
			if err := resp.Err(); err != nil {
				if errors.Is(err, rpctypes.ErrCompacted) {
					return &errCompacted{}
				}
				// etcd cancels a watch whose token it no longer knows
				// ("permission denied" from etcd 3.4): get a new one.
				if w.s.auth != nil && (tokenRejected(err) || errors.Is(rpctypes.Error(err), rpctypes.ErrPermissionDenied)) {
					if aerr := w.s.auth.stale(ctx); aerr != nil {
						return fmt.Errorf("%w (re-authenticating: %v)", err, aerr)
					}
				}
				return err
			}
			if resp.Canceled {
				return fmt.Errorf("etcd cancelled the watch: %s", resp.CancelReason)
			}
			switch {
			case resp.Created:
				w.bo.Reset()
				createdRev = resp.Header.Revision
				w.log.WithFields(logrus.Fields{"from_revision": w.rev + 1, "store_revision": createdRev}).Debug("etcd watch established")
				if w.synced {
					break
				}
				if createdRev <= w.rev {
					if !caughtUp() {
						return ctx.Err()
					}
					break
				}
				quiet.Reset(w.s.opts.catchUpQuiet)
				quietC = quiet.C
			case resp.IsProgressNotify():
				// Everything up to the header revision has been sent.
				w.rev = max(w.rev, resp.Header.Revision)
			default:
				for _, ev := range resp.Events {
					if !w.deliver(ctx, ev) {
						return ctx.Err()
					}
				}
				if quietC != nil {
					quiet.Reset(w.s.opts.catchUpQuiet)
				}
			}
			if !w.synced && createdRev > 0 && w.rev >= createdRev {
				quiet.Stop()
				if !caughtUp() {
					return ctx.Err()
				}
			}
		}
	}
}

// deliver turns one etcd event into a datastore event.
func (w *watcher) deliver(ctx context.Context, ev *clientv3.Event) bool {
	kv := ev.Kv
	key := string(kv.Key)
	rev := kv.ModRevision
	if rev > w.rev {
		w.rev = rev
	}
	if !ours(key) {
		return true
	}
	if ev.Type == mvccpb.DELETE {
		datastore.ForgetUnknown(key)
		return w.send(ctx, datastore.Event{Type: datastore.Deleted, Key: key, Revision: rev})
	}
	val, err := decodeKV(kv)
	if err != nil {
		w.log.WithFields(logrus.Fields{"key": key, "revision": rev}).WithError(err).Warn("invalid value in etcd: the object is present and broken")
		return w.send(ctx, datastore.Event{Type: datastore.Broken, Key: key, Err: datastore.NewDecodeError(key, rev, err), Revision: rev})
	}
	typ := datastore.Modified
	if ev.IsCreate() {
		typ = datastore.Added
	}
	return w.send(ctx, datastore.Event{Type: typ, Key: key, Value: val, Revision: rev})
}

// waitReady waits until the client's connection is up, warning while it
// is not. Watching meanwhile would only queue inside the client.
func (w *watcher) waitReady(ctx context.Context) error {
	conn := w.s.cli.ActiveConnection()
	since := time.Now()
	lastLog := since
	for {
		st := conn.GetState()
		switch st {
		case connectivity.Ready:
			return nil
		case connectivity.Shutdown:
			return errors.New("etcd client closed")
		case connectivity.Idle:
			conn.Connect()
		}
		wctx, cancel := context.WithTimeout(ctx, w.bo.Max())
		conn.WaitForStateChange(wctx, st)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(lastLog) >= w.bo.Max() {
			lastLog = time.Now()
			err := fmt.Errorf("no connection to etcd for %s (state %s)", time.Since(since).Round(time.Second), conn.GetState())
			w.log.WithError(err).Warn("etcd watch: waiting for etcd")
			if !w.send(ctx, datastore.Event{Type: datastore.Error, Err: w.s.opErr("watch", w.prefix, err), Revision: w.rev}) {
				return ctx.Err()
			}
		}
	}
}

// checkCompacted asks whether w.rev is still in etcd's history: a watch
// from a compacted revision would be cancelled anyway, but only after its
// creation was acknowledged.
func (w *watcher) checkCompacted(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, w.s.opts.dialTimeout)
	defer cancel()
	_, err := w.s.cli.Get(cctx, w.start, clientv3.WithRev(w.rev), clientv3.WithCountOnly())
	switch {
	case err == nil, errors.Is(err, rpctypes.ErrFutureRev):
		return nil
	case errors.Is(err, rpctypes.ErrCompacted):
		return &errCompacted{}
	}
	return err
}

// monitor ends the attempt (cancel with the reason) when the client's
// connection leaves the Ready state: clientv3 would silently resume the
// watch inside, but the consumer must learn that its view may be stale
// (Resync) and when it is current again.
func (w *watcher) monitor(ctx context.Context, cancel context.CancelCauseFunc) {
	conn := w.s.cli.ActiveConnection()
	go func() {
		// Any change away from Ready counts, even if the connection is
		// Ready again by the time we look: the stream broke meanwhile.
		if conn.GetState() == connectivity.Ready && !conn.WaitForStateChange(ctx, connectivity.Ready) {
			return // attempt over
		}
		cancel(fmt.Errorf("connection to etcd lost (state %s)", conn.GetState()))
	}()
}

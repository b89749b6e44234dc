package file

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/datastore"
)

// watchBuffer is the capacity of a watch channel; events beyond it wait in
// the watcher's queue (up to maxPending) without holding anybody up.
const watchBuffer = 64

// qitem is an event waiting to be sent. Values are cloned when sent.
type qitem struct {
	typ    datastore.EventType
	key    string
	ent    *entry
	rev    int64
	err    error
	relist bool
}

type watcher struct {
	s      *Store
	prefix string
	out    chan datastore.Event
	signal chan struct{}

	mu    sync.Mutex
	queue []qitem
	over  bool // fell too far behind: relist
	max   int
}

// Watch streams the changes under prefix until ctx ends or the store is
// closed, then closes the channel. With revision 0 the current objects come
// first as Added events, then InSync. With a revision > 0 the changes after
// it are replayed from the history and InSync follows; a revision older
// than the history, or one this store has not reached (a revision from
// before a restart), gets Resync{Relist: true} and a full listing instead.
func (s *Store) Watch(ctx context.Context, prefix string, revision int64) <-chan datastore.Event {
	w := &watcher{
		s:      s,
		prefix: prefix,
		out:    make(chan datastore.Event, watchBuffer),
		signal: make(chan struct{}, 1),
		max:    s.maxPending,
	}
	s.mu.Lock()
	if s.closed || ctx.Err() != nil {
		s.mu.Unlock()
		close(w.out)
		return w.out
	}
	var initial []qitem
	switch {
	case revision <= 0:
		initial = s.listingLocked(prefix, false)
	case revision >= s.compacted && revision <= s.rev:
		i := sort.Search(len(s.hist), func(i int) bool { return s.hist[i].rev > revision })
		for _, ev := range s.hist[i:] {
			if strings.HasPrefix(ev.key, prefix) {
				initial = append(initial, qitem{typ: ev.typ, key: ev.key, ent: ev.ent, rev: ev.rev})
			}
		}
		initial = append(initial, qitem{typ: datastore.InSync, rev: s.rev})
	default:
		initial = s.listingLocked(prefix, true)
	}
	s.watchers[w] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go w.run(ctx, initial)
	return w.out
}

// listingLocked is a full listing of prefix as events. mu is held.
func (s *Store) listingLocked(prefix string, resync bool) []qitem {
	ents := s.rangeLocked(prefix)
	out := make([]qitem, 0, len(ents)+2)
	if resync {
		out = append(out, qitem{typ: datastore.Resync, relist: true, rev: s.rev})
	}
	for _, e := range ents {
		typ := datastore.Added
		if e.err != nil {
			typ = datastore.Broken
		}
		out = append(out, qitem{typ: typ, key: e.key, ent: e, rev: e.rev})
	}
	return append(out, qitem{typ: datastore.InSync, rev: s.rev})
}

// push queues an event. It never blocks: a watcher that has too many
// events waiting is marked to relist instead. s.mu is held.
func (w *watcher) push(it qitem) {
	w.mu.Lock()
	if !w.over {
		w.queue = append(w.queue, it)
		if len(w.queue) > w.max {
			w.over, w.queue = true, nil
		}
	}
	w.mu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

func (w *watcher) overflowed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.over
}

// relist clears the queue and takes a full listing, atomically with
// respect to new events.
func (w *watcher) relist() []qitem {
	s := w.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	w.mu.Lock()
	w.queue, w.over = nil, false
	w.mu.Unlock()
	return s.listingLocked(w.prefix, true)
}

func (w *watcher) run(ctx context.Context, pending []qitem) {
	s := w.s
	defer func() {
		s.mu.Lock()
		delete(s.watchers, w)
		s.mu.Unlock()
		close(w.out)
		s.wg.Done()
	}()
	for {
		for len(pending) > 0 {
			if w.overflowed() {
				pending = nil
				break
			}
			if !w.send(ctx, pending[0]) {
				return
			}
			pending[0] = qitem{}
			pending = pending[1:]
		}
		w.mu.Lock()
		over := w.over
		pending, w.queue = w.queue, nil
		w.mu.Unlock()
		if over {
			pending = w.relist()
		}
		if len(pending) > 0 {
			continue
		}
		select {
		case <-w.signal:
		case <-ctx.Done():
			return
		case <-s.done:
			return
		}
	}
}

func (w *watcher) send(ctx context.Context, it qitem) bool {
	ev := datastore.Event{Type: it.typ, Key: it.key, Revision: it.rev, Relist: it.relist, Err: it.err}
	switch {
	case it.ent == nil:
	case it.typ == datastore.Added || it.typ == datastore.Modified:
		ev.Value = it.ent.value()
	case it.typ == datastore.Broken:
		ev.Err = it.ent.broken()
	}
	select {
	case w.out <- ev:
		return true
	case <-ctx.Done():
		return false
	case <-w.s.done:
		return false
	}
}

// watchFiles turns file system events into debounced reloads.
func (s *Store) watchFiles() {
	defer s.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var first time.Time // when the pending burst began; zero if none
	schedule := func() {
		now := time.Now()
		if first.IsZero() {
			first = now
		}
		// Keep postponing while the burst goes on, but not forever.
		if now.Sub(first) < 10*s.debounce {
			timer.Reset(s.debounce)
		}
	}
	for {
		select {
		case <-s.done:
			return
		case ev, ok := <-s.fsw.Events:
			if !ok {
				return
			}
			if s.relevantEvent(ev) {
				schedule()
			}
		case err, ok := <-s.fsw.Errors:
			if !ok {
				return
			}
			s.log.WithFields(logrus.Fields{"dir": s.dir, "error": err.Error()}).Warn("file watch error; re-reading")
			schedule()
		case <-timer.C:
			first = time.Time{}
			s.reload()
		}
	}
}

func (s *Store) relevantEvent(ev fsnotify.Event) bool {
	base := filepath.Base(ev.Name)
	if strings.HasPrefix(base, "..data") { // Kubernetes ConfigMap/Secret volumes swap this symlink
		return true
	}
	if s.single {
		return base == filepath.Base(s.path)
	}
	return relevantName(base)
}

// reload re-reads the files and publishes what changed.
func (s *Store) reload() {
	s.ioMu.Lock()
	defer s.ioMu.Unlock()
	if s.isClosed() {
		return
	}
	s.reloadLocked()
}

// reloadLocked re-reads every file, parsing those whose bytes changed, and
// publishes the difference, one revision per changed object. ioMu is held.
func (s *Store) reloadLocked() {
	paths, err := s.listFiles()
	if err != nil {
		s.log.WithFields(logrus.Fields{"dir": s.dir, "error": err.Error()}).Warn("cannot list the datastore directory; keeping the current state")
		s.broadcastError(fmt.Errorf("file datastore: listing %s: %w", s.dir, err))
		return
	}
	files := make(map[string]*fileState, len(paths))
	changed := map[string]bool{}
	for _, p := range paths {
		fs, ch := s.readFile(p, s.files[p], false)
		files[p] = fs
		if ch {
			changed[p] = true
		}
	}
	for p := range s.files {
		if _, ok := files[p]; !ok {
			changed[p] = true
		}
	}
	if len(changed) == 0 {
		s.files = files // the same content, maybe rewritten: new versions
		return
	}
	s.files, s.order = files, paths
	r := s.rebuild(s.fileList(), changed)
	changes := s.diff(r.items, nil, nil)
	s.defs = r.defs
	s.publish(changes, false, nil)
}

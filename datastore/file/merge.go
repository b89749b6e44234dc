package file

import (
	"bytes"
	"sort"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/datastore"
)

// rebuilt is the store's content as the files define it.
type rebuilt struct {
	items   map[string]*item // the winning definition of each key
	win     map[string]itemRef
	defs    map[string][]itemRef
	invalid map[string][]*datastore.DecodeError
}

// rebuild merges the files in order: the last definition of a key wins.
// Duplicates are reported when one of their files is in warnFor.
func (s *Store) rebuild(files []*fileState, warnFor map[string]bool) rebuilt {
	r := rebuilt{
		items:   make(map[string]*item, len(s.objs)),
		win:     make(map[string]itemRef, len(s.objs)),
		defs:    make(map[string][]itemRef, len(s.objs)),
		invalid: map[string][]*datastore.DecodeError{},
	}
	add := func(ref itemRef, it *item) {
		if prev, ok := r.win[it.key]; ok && (warnFor[prev.fs.path] || warnFor[ref.fs.path]) {
			s.log.WithFields(logrus.Fields{
				"key":    it.key,
				"first":  prev.get().where,
				"second": it.where,
			}).Warn("object defined twice: the later definition wins")
		}
		r.items[it.key], r.win[it.key] = it, ref
		r.defs[it.key] = append(r.defs[it.key], ref)
	}
	for _, fs := range files {
		for di, d := range fs.docs {
			for ii, it := range d.items {
				if it.key == "" {
					continue
				}
				if it.err != nil {
					r.invalid[it.key] = append(r.invalid[it.key], &datastore.DecodeError{Key: it.key, Err: it.err})
				}
				if it.obj != nil {
					add(itemRef{fs, di, ii}, it)
				}
			}
		}
		for i, it := range fs.tail {
			add(itemRef{fs, -1, i}, it)
		}
	}
	return r
}

// change is one object changing in the published state.
type change struct {
	typ datastore.EventType
	key string
	it  *item // nil for Deleted
}

// diff compares r with the published state; keys in forced change even
// when their value did not (an API write always makes a new revision).
// ioMu is held.
func (s *Store) diff(r rebuilt, forced map[string]bool) []change {
	var out []change
	for k, it := range r.items {
		e := s.objs[k]
		switch {
		case e == nil:
			out = append(out, change{datastore.Added, k, it})
		case forced[k] || !bytes.Equal(e.enc, it.enc):
			out = append(out, change{datastore.Modified, k, it})
		}
	}
	for k := range s.objs {
		if _, ok := r.items[k]; !ok {
			out = append(out, change{datastore.Deleted, k, nil})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

// histEvent is a change as watchers see it.
type histEvent struct {
	typ datastore.EventType
	key string
	ent *entry // Added, Modified
	rev int64
}

// publish applies changes to the published state and tells watchers. With
// shared, all changes get one new revision (a transaction); otherwise each
// its own. ioMu is held.
func (s *Store) publish(r rebuilt, changes []change, shared bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.win, s.defs, s.invalid = r.win, r.defs, r.invalid
	if len(changes) == 0 {
		return
	}
	if shared {
		s.rev++
	}
	var added, removed []string
	for _, c := range changes {
		if !shared {
			s.rev++
		}
		ev := histEvent{typ: c.typ, key: c.key, rev: s.rev}
		switch c.typ {
		case datastore.Deleted:
			delete(s.objs, c.key)
			removed = append(removed, c.key)
		default:
			if c.typ == datastore.Added {
				added = append(added, c.key)
			}
			ev.ent = &entry{key: c.key, obj: c.it.obj, enc: c.it.enc, rev: s.rev}
			s.objs[c.key] = ev.ent
		}
		s.record(ev)
	}
	s.updateKeys(added, removed)
}

// record appends to the history and hands the event to the watchers of
// its key. mu is held.
func (s *Store) record(ev histEvent) {
	s.hist = append(s.hist, ev)
	if len(s.hist) >= 2*s.histMax {
		n := len(s.hist) - s.histMax
		s.compacted = s.hist[n-1].rev
		s.hist = append([]histEvent(nil), s.hist[n:]...)
	}
	for w := range s.watchers {
		if strings.HasPrefix(ev.key, w.prefix) {
			w.push(qitem{typ: ev.typ, key: ev.key, ent: ev.ent, rev: ev.rev})
		}
	}
}

// updateKeys keeps the sorted key slice in step with objs. mu is held.
func (s *Store) updateKeys(added, removed []string) {
	if len(added)+len(removed) > 64 {
		s.keys = s.keys[:0]
		for k := range s.objs {
			s.keys = append(s.keys, k)
		}
		sort.Strings(s.keys)
		return
	}
	for _, k := range removed {
		if i := sort.SearchStrings(s.keys, k); i < len(s.keys) && s.keys[i] == k {
			s.keys = append(s.keys[:i], s.keys[i+1:]...)
		}
	}
	for _, k := range added {
		i := sort.SearchStrings(s.keys, k)
		s.keys = append(s.keys, "")
		copy(s.keys[i+1:], s.keys[i:])
		s.keys[i] = k
	}
}

// broadcastErrors sends Error events for invalid documents (and, with an
// empty key, for problems of the store itself). They are not revisions
// and are not replayed. ioMu is held.
func (s *Store) broadcastErrors(errs []keyErr) {
	if len(errs) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ke := range errs {
		for w := range s.watchers {
			if ke.key == "" || strings.HasPrefix(ke.key, w.prefix) {
				w.push(qitem{typ: datastore.Error, key: ke.key, err: ke.err, rev: s.rev})
			}
		}
	}
}

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
	items map[string]*item     // the winning definition of each key
	defs  map[string][]itemRef // every item with a key, in file order
}

// rebuild merges the files in order: the last definition of a key wins,
// valid or not. Duplicates are reported when one of their files is in
// warnFor.
func (s *Store) rebuild(files []*fileState, warnFor map[string]bool) rebuilt {
	r := rebuilt{
		items: make(map[string]*item, len(s.objs)),
		defs:  make(map[string][]itemRef, len(s.objs)),
	}
	winPath := make(map[string]string, len(s.objs))
	add := func(path string, d *doc, it *item) {
		r.defs[it.key] = append(r.defs[it.key], itemRef{path, d, it})
		if prev, ok := r.items[it.key]; ok && (warnFor[winPath[it.key]] || warnFor[path]) {
			s.log.WithFields(logrus.Fields{
				"key":    it.key,
				"first":  prev.where,
				"second": it.where,
			}).Warn("object defined twice: the later definition wins")
		}
		r.items[it.key], winPath[it.key] = it, path
	}
	for _, fs := range files {
		for _, d := range fs.docs {
			for _, it := range d.items {
				if it.key != "" {
					add(fs.path, d, it)
				}
			}
		}
		for _, it := range fs.tail {
			add(fs.path, nil, it)
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

// diff compares the winning items with the published state: every key
// when keys is nil, else only those. Keys in forced change even when their
// value did not (an API write always makes a new revision). ioMu is held.
func (s *Store) diff(items map[string]*item, keys, forced map[string]bool) []change {
	var out []change
	one := func(k string) {
		it, e := items[k], s.objs[k]
		switch {
		case it == nil && e != nil:
			out = append(out, change{datastore.Deleted, k, nil})
		case it == nil:
		case e != nil && !forced[k] && bytes.Equal(e.enc, it.enc):
		case it.err != nil:
			out = append(out, change{datastore.Broken, k, it})
		case e == nil:
			out = append(out, change{datastore.Added, k, it})
		default:
			out = append(out, change{datastore.Modified, k, it})
		}
	}
	if keys != nil {
		for k := range keys {
			one(k)
		}
	} else {
		for k := range items {
			one(k)
		}
		for k := range s.objs {
			if _, ok := items[k]; !ok {
				one(k)
			}
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
// its own. update, if set, runs first under the same lock. ioMu is held.
func (s *Store) publish(changes []change, shared bool, update func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if update != nil {
		update()
	}
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
			datastore.ForgetUnknown(c.key)
			delete(s.objs, c.key)
			removed = append(removed, c.key)
		default:
			if _, had := s.objs[c.key]; !had {
				added = append(added, c.key) // Added, or a new key that is Broken
			}
			ev.ent = &entry{key: c.key, obj: c.it.obj, enc: c.it.enc, err: c.it.err, rev: s.rev}
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

// broadcastError sends an Error event about a problem of the store itself
// (the directory cannot be listed). It is not a revision and is not
// replayed. ioMu is held.
func (s *Store) broadcastError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watchers {
		w.push(qitem{typ: datastore.Error, err: err, rev: s.rev})
	}
}

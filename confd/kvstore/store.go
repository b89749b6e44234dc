// Package kvstore is the in-memory key store confd's templates read.
//
// Values live in a memkv.Store (github.com/kelseyhightower/memkv, the store
// of kelseyhightower/confd and Calico's confd), so values and errors look
// exactly like memkv's. Next to it Store keeps an ordered key index, so
// that directory listings and glob lookups cost O(log n) per result instead
// of memkv's scan of every key: a store mirroring 5,000 nodes holds 100,000+
// keys and templates look things up thousands of times per render.
//
// Keys are absolute, clean, slash-separated paths ("/calico/bgp/v1/...").
// Other keys are stored and returned, but List/ListDir/GetAll are only
// guaranteed to agree with memkv for clean keys.
//
// Consistency: every method is safe for concurrent use, and each call sees
// one state of the store. A render, however, makes many calls; it sees one
// consistent snapshot when changes are applied between renders, from the
// goroutine that renders (this is how Roost's confd uses the store), or in
// Apply batches while no render runs. Generation tells a renderer whether
// anything changed since its last render.
package kvstore

import (
	"errors"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/kelseyhightower/memkv"
)

// Store is an in-memory key/value store with an ordered key index.
type Store struct {
	mu  sync.RWMutex
	kv  memkv.Store // the values; guarded by mu as well as its own lock
	idx index       // every key of kv, in path order
	gen atomic.Uint64
}

// New returns an empty store.
func New() *Store { return &Store{kv: memkv.New()} }

// IsNotExist reports whether err says a key does not exist (the
// *memkv.KeyError that Get returns).
func IsNotExist(err error) bool {
	var ke *memkv.KeyError
	return errors.As(err, &ke) && ke.Err == memkv.ErrNotExist
}

// Set stores value at key. Setting the value a key already has is not a
// change: Generation stays the same.
func (s *Store) Set(key, value string) {
	s.mu.Lock()
	s.set(key, value)
	s.mu.Unlock()
}

// Delete removes key; deleting an absent key is not a change.
func (s *Store) Delete(key string) {
	s.mu.Lock()
	s.del(key)
	s.mu.Unlock()
}

func (s *Store) set(key, value string) {
	old, err := s.kv.Get(key)
	if err == nil && old.Value == value {
		return
	}
	s.kv.Set(key, value)
	if err != nil {
		s.idx.insert(key)
	}
	s.gen.Add(1)
}

func (s *Store) del(key string) {
	if s.idx.remove(key) {
		s.kv.Del(key)
		s.gen.Add(1)
	}
}

// Writer changes the store inside Apply. It must not be used after the
// function given to Apply returns.
type Writer struct{ s *Store }

// Set is Store.Set inside a batch.
func (w *Writer) Set(key, value string) { w.s.set(key, value) }

// Delete is Store.Delete inside a batch.
func (w *Writer) Delete(key string) { w.s.del(key) }

// Get reads inside a batch (it sees the batch's own changes).
func (w *Writer) Get(key string) (memkv.KVPair, error) { return w.s.kv.Get(key) }

// Apply runs fn with the store locked for writing: readers see either none
// or all of the batch's changes. fn must not call the Store's own methods
// (that deadlocks); it uses the Writer.
func (s *Store) Apply(fn func(w *Writer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(&Writer{s})
}

// Generation increases with every change (a Set that changes a value or
// adds a key, a Delete that removes one). Equal generations mean equal
// contents.
func (s *Store) Generation() uint64 { return s.gen.Load() }

// Len is the number of keys.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.idx.n
}

// Get returns the pair at key, or a *memkv.KeyError wrapping
// memkv.ErrNotExist that names the key ("key does not exist: /x").
func (s *Store) Get(key string) (memkv.KVPair, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.kv.Get(key)
}

// GetValue returns the value at key. When key is absent it returns def[0]
// if given, else Get's error. (memkv's getv.)
func (s *Store) GetValue(key string, def ...string) (string, error) {
	kv, err := s.Get(key)
	if err != nil {
		if len(def) > 0 {
			return def[0], nil
		}
		return "", err
	}
	return kv.Value, nil
}

// Exists reports whether key is set.
func (s *Store) Exists(key string) bool {
	_, err := s.Get(key)
	return err == nil
}

// Keys returns every key with the byte prefix prefix, sorted.
func (s *Store) Keys(prefix string) []string {
	s.mu.RLock()
	var out []string
	s.idx.forPrefix(prefix, func(k string) bool { out = append(out, k); return true })
	s.mu.RUnlock()
	sort.Strings(out)
	return out
}

// GetAll returns the pairs whose keys match pattern (path.Match syntax:
// '*' and '?' never match '/'), sorted by key. A malformed pattern is an
// error even when the store is empty (memkv only notices it when it has a
// key to test).
func (s *Store) GetAll(pattern string) (memkv.KVPairs, error) {
	if _, err := path.Match(pattern, ""); err != nil {
		return nil, err
	}
	out := memkv.KVPairs{}
	s.mu.RLock()
	s.match(pattern, func(k string) {
		if kv, err := s.kv.Get(k); err == nil {
			out = append(out, kv)
		}
	})
	s.mu.RUnlock()
	sort.Sort(out)
	return out, nil
}

// GetAllValues returns the values of GetAll(pattern), sorted by value
// (as memkv does).
func (s *Store) GetAllValues(pattern string) ([]string, error) {
	kvs, err := s.GetAll(pattern)
	if err != nil {
		return []string{}, err
	}
	vs := make([]string, len(kvs))
	for i, kv := range kvs {
		vs[i] = kv.Value
	}
	sort.Strings(vs)
	return vs, nil
}

// List returns the sorted names directly under dir: keys and
// subdirectories alike (memkv's ls). If dir itself is a key, its base name
// is included too, as memkv does. dir is cleaned first; memkv's List of "/"
// returns only the keys at the top level and ListDir("/") nothing at all
// (a quirk of its path splitting), here "/" is a directory like any other.
func (s *Store) List(dir string) []string {
	out := []string{}
	s.mu.RLock()
	defer s.mu.RUnlock()
	self := s.idx.has(dir)
	s.idx.children(dirPrefix(dir), "", pos{}, func(e *entry) bool {
		out = append(out, e.name)
		return true
	})
	if self {
		b := path.Base(dir)
		i := sort.SearchStrings(out, b)
		if i == len(out) || out[i] != b {
			out = append(out, "")
			copy(out[i+1:], out[i:])
			out[i] = b
		}
	}
	return out
}

// ListDir returns the sorted names of the subdirectories directly under
// dir (names with at least one key below them; memkv's lsdir).
func (s *Store) ListDir(dir string) []string {
	out := []string{}
	s.mu.RLock()
	defer s.mu.RUnlock()
	s.idx.children(dirPrefix(dir), "", pos{}, func(e *entry) bool {
		if e.hasSub {
			out = append(out, e.name)
		}
		return true
	})
	return out
}

// dirPrefix turns a directory into the key prefix of its children.
func dirPrefix(dir string) string {
	d := path.Clean(dir)
	if d == "/" {
		return d
	}
	return d + "/"
}

// match calls fn for every key matching the (valid) pattern, in no
// particular order.
func (s *Store) match(pattern string, fn func(k string)) {
	if !splittable(pattern) {
		// Narrow to the keys sharing the literal prefix, then test each.
		lit := pattern[:literalLen(pattern)]
		s.idx.forPrefix(lit, func(k string) bool {
			if ok, _ := path.Match(pattern, k); ok {
				fn(k)
			}
			return true
		})
		return
	}
	s.walk("", strings.Split(pattern, "/"), pos{}, fn)
}

// walk matches the segments segs against the keys below dir (a prefix
// ending in "/", or ""); hint is a position at or before dir's first key.
// Literal segments cost one step, glob segments one short seek per
// directory entry that starts with the segment's literal prefix.
func (s *Store) walk(dir string, segs []string, hint pos, fn func(k string)) {
	for len(segs) > 1 && literalLen(segs[0]) == len(segs[0]) {
		dir += segs[0] + "/"
		segs = segs[1:]
	}
	seg, last := segs[0], len(segs) == 1
	if literalLen(seg) == len(seg) { // last and literal
		if _, k, ok := s.idx.find(hint, dir, seg); ok {
			fn(k)
		}
		return
	}
	s.idx.children(dir, seg[:literalLen(seg)], hint, func(e *entry) bool {
		if ok, _ := path.Match(seg, e.name); !ok {
			return true
		}
		if last {
			if e.hasLeaf {
				fn(e.leaf)
			}
		} else if e.hasSub {
			s.walk(e.sub, segs[1:], e.at, fn)
		}
		return true
	})
}

// literalLen is the length of the prefix of pattern before its first
// glob metacharacter.
func literalLen(pattern string) int {
	if i := strings.IndexAny(pattern, `*?[\`); i >= 0 {
		return i
	}
	return len(pattern)
}

// splittable reports whether no part of pattern can match a '/', so that
// matching it is the same as matching each '/'-separated segment against
// the key's segment: no escapes, no negated class, no class containing '/'
// (alone or inside a range). '*' and '?' never match '/'.
func splittable(pattern string) bool {
	if strings.IndexByte(pattern, '\\') >= 0 {
		return false
	}
	for i := 0; i < len(pattern); i++ {
		if pattern[i] != '[' {
			continue
		}
		i++
		if i < len(pattern) && pattern[i] == '^' {
			return false
		}
		// Ranges up to the closing ']' (the pattern is valid, so it exists
		// and a range has at least one character).
		for i < len(pattern) && pattern[i] != ']' {
			lo, n := utf8.DecodeRuneInString(pattern[i:])
			i += n
			hi := lo
			if i+1 < len(pattern) && pattern[i] == '-' {
				r, n := utf8.DecodeRuneInString(pattern[i+1:])
				hi = r
				i += 1 + n
			}
			if lo <= '/' && '/' <= hi {
				return false
			}
		}
	}
	return true
}

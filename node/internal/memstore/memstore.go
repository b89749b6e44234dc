// Package memstore is an in-memory datastore.Datastore for the node
// agent's unit tests: the same keys, validation, revisions and
// compare-and-swap rules as the real backends, without a server. Values
// are stored encoded (datastore.EncodeValue) and decoded on every read, so
// tests see exactly what a Calico-shaped store would hand back.
package memstore

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

type entry struct {
	data []byte
	rev  int64
}

// Store is safe for concurrent use.
type Store struct {
	mu       sync.Mutex
	rev      int64
	objs     map[string]entry
	watchers map[*watcher]struct{}
	// BeforeTxn, when set, runs before every transaction, outside the
	// store's lock: tests use it to let "another node" write first.
	BeforeTxn func(ops []datastore.Op)
}

type watcher struct {
	prefix string
	ch     chan datastore.Event
	ctx    context.Context
	queue  []datastore.Event
	signal chan struct{}
}

var _ datastore.Datastore = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{objs: map[string]entry{}, watchers: map[*watcher]struct{}{}}
}

func (s *Store) decode(key string, e entry) (*datastore.KV, error) {
	v, err := decodeValue(key, e.data, e.rev)
	if err != nil {
		return nil, err
	}
	return &datastore.KV{Key: key, Value: v, Revision: e.rev}, nil
}

// Raw returns the stored bytes of key (nil when absent).
func (s *Store) Raw(key string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.objs[key]; ok {
		return append([]byte(nil), e.data...)
	}
	return nil
}

// PutRaw stores bytes without validation (to model foreign writers).
func (s *Store) PutRaw(key string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	_, existed := s.objs[key]
	s.objs[key] = entry{data: append([]byte(nil), data...), rev: s.rev}
	t := datastore.Added
	if existed {
		t = datastore.Modified
	}
	s.notifyLocked(key, t)
}

// Get implements datastore.Datastore.
func (s *Store) Get(ctx context.Context, key string) (*datastore.KV, error) {
	s.mu.Lock()
	e, ok := s.objs[key]
	s.mu.Unlock()
	if !ok {
		return nil, &datastore.KeyError{Key: key, Err: datastore.ErrNotFound}
	}
	return s.decode(key, e)
}

// List implements datastore.Datastore.
func (s *Store) List(ctx context.Context, prefix string) (*datastore.ListResult, error) {
	s.mu.Lock()
	res := &datastore.ListResult{Revision: s.rev}
	keys := make([]string, 0)
	snap := map[string]entry{}
	for k, e := range s.objs {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
			snap[k] = e
		}
	}
	s.mu.Unlock()
	sort.Strings(keys)
	for _, k := range keys {
		kv, err := s.decode(k, snap[k])
		if err != nil {
			res.Invalid = append(res.Invalid, &datastore.DecodeError{Key: k, Err: err})
			continue
		}
		res.KVs = append(res.KVs, *kv)
	}
	return res, nil
}

// Create implements datastore.Datastore.
func (s *Store) Create(ctx context.Context, obj api.Resource) (*datastore.KV, error) {
	rev, err := s.Txn(ctx, datastore.Op{Type: datastore.OpCreate, Value: obj})
	if err != nil {
		return nil, err
	}
	key, _ := datastore.KeyFor(obj)
	return s.getAt(key, rev)
}

// Update implements datastore.Datastore.
func (s *Store) Update(ctx context.Context, kv *datastore.KV) (*datastore.KV, error) {
	rev, err := s.Txn(ctx, datastore.Op{Type: datastore.OpUpdate, Key: kv.Key, Value: kv.Value, Revision: kv.Revision})
	if err != nil {
		return nil, err
	}
	key := kv.Key
	if key == "" {
		key, _ = datastore.KeyFor(kv.Value)
	}
	return s.getAt(key, rev)
}

func (s *Store) getAt(key string, rev int64) (*datastore.KV, error) {
	s.mu.Lock()
	e, ok := s.objs[key]
	s.mu.Unlock()
	if !ok {
		return nil, &datastore.KeyError{Key: key, Err: datastore.ErrNotFound}
	}
	return s.decode(key, e)
}

// Delete implements datastore.Datastore.
func (s *Store) Delete(ctx context.Context, key string, revision int64) error {
	_, err := s.Txn(ctx, datastore.Op{Type: datastore.OpDelete, Key: key, Revision: revision})
	return err
}

// Txn implements datastore.Datastore.
func (s *Store) Txn(ctx context.Context, ops ...datastore.Op) (int64, error) {
	type write struct {
		key  string
		data []byte
		del  bool
	}
	writes := make([]write, 0, len(ops))
	for _, op := range ops {
		key := op.Key
		var data []byte
		if op.Type != datastore.OpDelete {
			if op.Value == nil {
				return 0, fmt.Errorf("memstore: op without value")
			}
			if key == "" {
				k, err := datastore.KeyFor(op.Value)
				if err != nil {
					return 0, err
				}
				key = k
			}
			// Like the etcd backend: encode a copy and check that a reader
			// accepts the bytes (DecodeValue validates).
			b, err := datastore.EncodeValue(api.Clone(op.Value))
			if err != nil {
				return 0, err
			}
			if _, err := decodeValue(key, b, 0); err != nil {
				return 0, err
			}
			data = b
		}
		writes = append(writes, write{key: key, data: data, del: op.Type == datastore.OpDelete})
	}
	if hook := s.BeforeTxn; hook != nil {
		s.BeforeTxn = nil // no recursion from writes the hook makes
		hook(ops)
		s.BeforeTxn = hook
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, op := range ops {
		key := writes[i].key
		e, exists := s.objs[key]
		switch op.Type {
		case datastore.OpCreate:
			if exists {
				return 0, &datastore.KeyError{Key: key, Err: datastore.ErrExists}
			}
		case datastore.OpUpdate, datastore.OpDelete:
			if !exists {
				return 0, &datastore.KeyError{Key: key, Err: datastore.ErrNotFound}
			}
			if op.Revision > 0 && e.rev != op.Revision {
				return 0, &datastore.KeyError{Key: key, Err: datastore.ErrConflict}
			}
		case datastore.OpPut:
			if op.Revision > 0 {
				if !exists {
					return 0, &datastore.KeyError{Key: key, Err: datastore.ErrNotFound}
				}
				if e.rev != op.Revision {
					return 0, &datastore.KeyError{Key: key, Err: datastore.ErrConflict}
				}
			}
		default:
			return 0, fmt.Errorf("memstore: unknown op type %d", op.Type)
		}
	}
	s.rev++
	for _, w := range writes {
		if w.del {
			delete(s.objs, w.key)
			s.notifyLocked(w.key, datastore.Deleted)
			continue
		}
		_, existed := s.objs[w.key]
		s.objs[w.key] = entry{data: w.data, rev: s.rev}
		t := datastore.Added
		if existed {
			t = datastore.Modified
		}
		s.notifyLocked(w.key, t)
	}
	return s.rev, nil
}

func (s *Store) notifyLocked(key string, t datastore.EventType) {
	for w := range s.watchers {
		if !strings.HasPrefix(key, w.prefix) {
			continue
		}
		ev := datastore.Event{Type: t, Key: key, Revision: s.rev}
		if t != datastore.Deleted {
			kv, err := s.decode(key, s.objs[key])
			if err != nil {
				ev = datastore.Event{Type: datastore.Error, Key: key, Err: err, Revision: s.rev}
			} else {
				ev.Value = kv.Value
			}
		}
		w.queue = append(w.queue, ev)
		select {
		case w.signal <- struct{}{}:
		default:
		}
	}
}

// Watch implements datastore.Datastore. Only revision 0 (list first) and
// the current revision are supported.
func (s *Store) Watch(ctx context.Context, prefix string, revision int64) <-chan datastore.Event {
	w := &watcher{prefix: prefix, ch: make(chan datastore.Event), ctx: ctx, signal: make(chan struct{}, 1)}
	s.mu.Lock()
	if revision == 0 {
		keys := []string{}
		for k := range s.objs {
			if strings.HasPrefix(k, prefix) {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			kv, err := s.decode(k, s.objs[k])
			if err != nil {
				w.queue = append(w.queue, datastore.Event{Type: datastore.Error, Key: k, Err: err})
				continue
			}
			w.queue = append(w.queue, datastore.Event{Type: datastore.Added, Key: k, Value: kv.Value, Revision: kv.Revision})
		}
	}
	w.queue = append(w.queue, datastore.Event{Type: datastore.InSync, Revision: s.rev})
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	go func() {
		defer close(w.ch)
		defer func() {
			s.mu.Lock()
			delete(s.watchers, w)
			s.mu.Unlock()
		}()
		for {
			s.mu.Lock()
			q := w.queue
			w.queue = nil
			s.mu.Unlock()
			for _, ev := range q {
				select {
				case w.ch <- ev:
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-w.signal:
			case <-ctx.Done():
				return
			}
		}
	}()
	return w.ch
}

// Close implements datastore.Datastore.
func (s *Store) Close() error { return nil }

func decodeValue(key string, data []byte, rev int64) (api.Resource, error) {
	return datastore.DecodeValue(key, data, rev)
}

package file

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

// StateFile is the file of a directory store that new objects are written to.
const StateFile = "roost-state.yaml"

// ErrClosed is returned by every method once Close was called.
var ErrClosed = errors.New("file datastore: closed")

// Defaults of the tunables.
const (
	DefaultDebounce   = 50 * time.Millisecond
	DefaultHistory    = 10000
	DefaultMaxPending = 10000
)

// Option tunes a Store.
type Option func(*Store)

// WithLogger sends the store's warnings to l instead of logrus' standard
// logger.
func WithLogger(l logrus.FieldLogger) Option { return func(s *Store) { s.log = l } }

// WithDebounce sets how long the store waits for a burst of file system
// events to end before re-reading.
func WithDebounce(d time.Duration) Option { return func(s *Store) { s.debounce = d } }

// WithHistory sets how many recent events are kept for Watch from a
// revision.
func WithHistory(n int) Option { return func(s *Store) { s.histMax = max(n, 1) } }

// WithMaxPending sets how many events a watcher may fall behind before it
// is made to relist.
func WithMaxPending(n int) Option { return func(s *Store) { s.maxPending = max(n, 1) } }

// Store is the file datastore. It implements datastore.Datastore.
type Store struct {
	path      string // as given, cleaned
	dir       string // the directory watched
	single    bool   // path is one file rather than a directory
	statePath string // where new objects go

	log        logrus.FieldLogger
	debounce   time.Duration
	histMax    int
	maxPending int

	// ioMu serializes everything that changes the store: reloads and
	// writes. The fields below it are only used with ioMu held.
	ioMu  sync.Mutex
	files map[string]*fileState // by path
	order []string              // paths of files, in read order
	defs  map[string][]itemRef  // every item with a key, in file order; the last with an object wins

	// mu guards the published state, read by Get, List and Watch. It is
	// only taken for writing with ioMu held.
	mu        sync.RWMutex
	objs      map[string]*entry
	keys      []string // sorted keys of objs
	rev       int64
	hist      []histEvent
	compacted int64 // every event after this revision is in hist
	watchers  map[*watcher]struct{}
	closed    bool

	done chan struct{}
	wg   sync.WaitGroup
	fsw  *fsnotify.Watcher

	// The cross-process write lock (lock.go), used with ioMu held.
	lockFile   *os.File
	lockWarned bool
}

var _ datastore.Datastore = (*Store)(nil)

// entry is one published object. Entries are never modified: a change
// replaces the entry.
type entry struct {
	key string
	obj api.Resource // without resourceVersion; never handed out, only clones; nil when broken
	enc []byte       // datastore.EncodeValue(obj), or the error: what "changed" compares
	err error        // non-nil: present and broken (why its document is invalid)
	rev int64        // ModRevision
}

// broken describes a broken entry for callers.
func (e *entry) broken() *datastore.DecodeError {
	return datastore.NewDecodeError(e.key, e.rev, e.err)
}

// kv returns a copy for a caller.
func (e *entry) kv() *datastore.KV {
	return &datastore.KV{Key: e.key, Value: e.value(), Revision: e.rev}
}

func (e *entry) value() api.Resource {
	v := api.Clone(e.obj)
	v.Meta().ResourceVersion = fmt.Sprint(e.rev)
	return v
}

// New opens the store at path: a YAML or JSON file, or a directory of them.
// A path that does not exist is accepted when its name ends in .yaml, .yml
// or .json and its directory exists: the file is created by the first
// write. ctx bounds the initial load only; the store runs until Close.
func New(ctx context.Context, path string, opts ...Option) (*Store, error) {
	if path == "" {
		return nil, errors.New("file datastore: no path given")
	}
	s := &Store{
		path:       filepath.Clean(path),
		log:        logrus.StandardLogger(),
		debounce:   DefaultDebounce,
		histMax:    DefaultHistory,
		maxPending: DefaultMaxPending,
		files:      map[string]*fileState{},
		defs:       map[string][]itemRef{},
		objs:       map[string]*entry{},
		watchers:   map[*watcher]struct{}{},
		done:       make(chan struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	st, err := os.Stat(s.path)
	switch {
	case err == nil && st.IsDir():
		s.dir = s.path
		s.statePath = filepath.Join(s.dir, StateFile)
	case err == nil:
		s.single, s.dir, s.statePath = true, filepath.Dir(s.path), s.path
	case errors.Is(err, os.ErrNotExist) && hasDataExt(s.path):
		s.single, s.dir, s.statePath = true, filepath.Dir(s.path), s.path
		if st, err := os.Stat(s.dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("file datastore: %s does not exist, nor does its directory", s.path)
		}
	default:
		return nil, fmt.Errorf("file datastore: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// Watch before reading, so that no change between the two is missed.
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("file datastore: watching %s: %w", s.dir, err)
	}
	if err := fsw.Add(s.dir); err != nil {
		fsw.Close()
		return nil, fmt.Errorf("file datastore: watching %s: %w", s.dir, err)
	}
	s.fsw = fsw

	s.ioMu.Lock()
	err = s.load()
	s.ioMu.Unlock()
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		fsw.Close()
		return nil, err
	}
	s.wg.Add(1)
	go s.watchFiles()
	return s, nil
}

// load reads every file for the first time. ioMu is held.
func (s *Store) load() error {
	paths, err := s.listFiles()
	if err != nil {
		return fmt.Errorf("file datastore: %w", err)
	}
	for _, p := range paths {
		fs, _ := s.readFile(p, nil, false)
		s.files[p] = fs
	}
	s.order = paths
	all := map[string]bool{}
	for _, p := range paths {
		all[p] = true
	}
	r := s.rebuild(s.fileList(), all)
	s.defs = r.defs
	s.rev, s.compacted = 1, 1
	for k, it := range r.items {
		s.objs[k] = &entry{key: k, obj: it.obj, enc: it.enc, err: it.err, rev: 1}
		s.keys = append(s.keys, k)
	}
	sort.Strings(s.keys)
	return nil
}

// listFiles returns the paths of the files that make up the store, in
// read order.
func (s *Store) listFiles() ([]string, error) {
	if s.single {
		return []string{s.path}, nil
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if !relevantName(e.Name()) {
			continue
		}
		p := filepath.Join(s.dir, e.Name())
		if e.Type()&os.ModeSymlink != 0 || !e.Type().IsRegular() {
			st, err := os.Stat(p) // follow symlinks; skip directories
			if err != nil || !st.Mode().IsRegular() {
				continue
			}
		}
		out = append(out, p)
	}
	// The state file takes part in the order like any other file, but it
	// exists for writes even before it is on disk.
	if !slices.Contains(out, s.statePath) {
		out = append(out, s.statePath)
	}
	sort.Strings(out)
	return out, nil
}

// relevantName tells whether a directory entry is a data file.
func relevantName(name string) bool {
	if strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~") ||
		strings.HasPrefix(name, "#") || strings.HasSuffix(name, "#") {
		return false
	}
	return hasDataExt(name)
}

func hasDataExt(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

func (s *Store) fileList() []*fileState {
	out := make([]*fileState, 0, len(s.order))
	for _, p := range s.order {
		out = append(out, s.files[p])
	}
	return out
}

// Get returns the object at key.
func (s *Store) Get(ctx context.Context, key string) (*datastore.KV, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	e, closed := s.objs[key], s.closed
	s.mu.RUnlock()
	if closed {
		return nil, ErrClosed
	}
	if e == nil {
		return nil, &datastore.KeyError{Key: key, Err: datastore.ErrNotFound}
	}
	if e.err != nil {
		return nil, e.broken()
	}
	return e.kv(), nil
}

// List returns the objects under prefix, sorted by key. Invalid holds the
// keys under prefix whose object is present and broken.
func (s *Store) List(ctx context.Context, prefix string) (*datastore.ListResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, ErrClosed
	}
	ents := s.rangeLocked(prefix)
	res := &datastore.ListResult{Revision: s.rev}
	s.mu.RUnlock()
	res.KVs = make([]datastore.KV, 0, len(ents))
	for _, e := range ents {
		if e.err != nil {
			res.Invalid = append(res.Invalid, e.broken())
			continue
		}
		res.KVs = append(res.KVs, *e.kv())
	}
	return res, nil
}

// rangeLocked returns the entries under prefix in key order. mu is held.
func (s *Store) rangeLocked(prefix string) []*entry {
	i := sort.SearchStrings(s.keys, prefix)
	j := i
	for j < len(s.keys) && strings.HasPrefix(s.keys[j], prefix) {
		j++
	}
	out := make([]*entry, 0, j-i)
	for _, k := range s.keys[i:j] {
		out = append(out, s.objs[k])
	}
	return out
}

// Revision is the store's current revision.
func (s *Store) Revision() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rev
}

// Path is the file or directory the store was opened with.
func (s *Store) Path() string { return s.path }

// Close stops watching the files and closes every watch channel.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	err := s.fsw.Close()
	s.wg.Wait()
	s.ioMu.Lock()
	if s.lockFile != nil {
		s.lockFile.Close()
		s.lockFile = nil
	}
	s.ioMu.Unlock()
	return err
}

func (s *Store) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

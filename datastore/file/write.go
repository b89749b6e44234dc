package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"go.yaml.in/yaml/v3"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

// Create stores a new object at the key derived from it.
func (s *Store) Create(ctx context.Context, obj api.Resource) (*datastore.KV, error) {
	_, kvs, err := s.apply(ctx, []datastore.Op{{Type: datastore.OpCreate, Value: obj}})
	if err != nil {
		return nil, err
	}
	return kvs[0], nil
}

// Update replaces kv.Key (derived from kv.Value when empty); with
// kv.Revision > 0 only if the object is unchanged since that revision.
func (s *Store) Update(ctx context.Context, kv *datastore.KV) (*datastore.KV, error) {
	if kv == nil {
		return nil, errors.New("file datastore: Update needs a KV")
	}
	_, kvs, err := s.apply(ctx, []datastore.Op{{Type: datastore.OpUpdate, Key: kv.Key, Value: kv.Value, Revision: kv.Revision}})
	if err != nil {
		return nil, err
	}
	return kvs[0], nil
}

// Delete removes key (every definition of it, in every file); with
// revision > 0 only if the object is unchanged since then.
func (s *Store) Delete(ctx context.Context, key string, revision int64) error {
	_, _, err := s.apply(ctx, []datastore.Op{{Type: datastore.OpDelete, Key: key, Revision: revision}})
	return err
}

// Txn applies all operations or none and returns the new revision.
func (s *Store) Txn(ctx context.Context, ops ...datastore.Op) (int64, error) {
	rev, _, err := s.apply(ctx, ops)
	return rev, err
}

// prepared is an operation checked and ready to write.
type prepared struct {
	op  datastore.Op
	key string
	obj api.Resource // a private copy with defaults; nil for deletes
}

func prepare(op datastore.Op) (prepared, error) {
	p := prepared{op: op, key: op.Key}
	switch op.Type {
	case datastore.OpDelete:
		if op.Key == "" {
			return p, errors.New("file datastore: delete needs a key")
		}
		return p, nil
	case datastore.OpCreate, datastore.OpUpdate, datastore.OpPut:
	default:
		return p, fmt.Errorf("file datastore: unknown operation type %d", op.Type)
	}
	if op.Value == nil {
		return p, &datastore.KeyError{Key: op.Key, Err: errors.New("no value to write")}
	}
	obj := api.Clone(op.Value)
	obj.Meta().ResourceVersion = ""
	api.Default(obj)
	key, kerr := datastore.KeyFor(obj)
	if err := api.Validate(obj); err != nil {
		if key == "" {
			key = op.Key
		}
		if key == "" {
			return p, err
		}
		return p, &datastore.KeyError{Key: key, Err: err}
	}
	if kerr != nil {
		return p, kerr
	}
	if op.Key != "" && op.Key != key {
		return p, &datastore.KeyError{Key: op.Key, Err: fmt.Errorf("the value belongs at %s", key)}
	}
	p.key, p.obj = key, obj
	return p, nil
}

// edit is what a write changes in one file.
type edit struct {
	fs      *fileState
	replace map[[2]int]api.Resource // (doc, item) -> new value
	remove  map[[2]int]bool
	add     []api.Resource
}

func (e *edit) touches(doc int) bool {
	for k := range e.replace {
		if k[0] == doc {
			return true
		}
	}
	for k := range e.remove {
		if k[0] == doc {
			return true
		}
	}
	return false
}

// apply runs a transaction: check every condition, rewrite the files
// involved, then publish under one new revision.
func (s *Store) apply(ctx context.Context, ops []datastore.Op) (int64, []*datastore.KV, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	preps := make([]prepared, len(ops))
	seen := map[string]bool{}
	for i, op := range ops {
		p, err := prepare(op)
		if err != nil {
			return 0, nil, err
		}
		if seen[p.key] {
			return 0, nil, &datastore.KeyError{Key: p.key, Err: errors.New("more than one operation on the key in one transaction")}
		}
		seen[p.key] = true
		preps[i] = p
	}

	s.ioMu.Lock()
	defer s.ioMu.Unlock()
	if s.isClosed() {
		return 0, nil, ErrClosed
	}
	if len(preps) == 0 {
		return s.Revision(), nil, nil
	}
	// A file changed on disk but not read yet (the event is on its way)
	// must be read first: the conditions are checked against it, and its
	// new content must not be overwritten.
	if s.staleLocked(preps) {
		s.reloadLocked()
	}
	edits, err := s.plan(preps)
	if err != nil {
		return 0, nil, err
	}

	// Build the new files and read them back as a reload would.
	newFiles := make(map[string]*fileState, len(edits))
	var paths []string
	for p, e := range edits {
		raw, err := render(e)
		if err != nil {
			return 0, nil, fmt.Errorf("file datastore: rewriting %s: %w", p, err)
		}
		nfs, _ := s.parse(p, raw, true)
		newFiles[p] = nfs
		paths = append(paths, p)
	}
	sort.Strings(paths)
	all := make([]*fileState, 0, len(s.order))
	for _, p := range s.order {
		if nfs, ok := newFiles[p]; ok {
			all = append(all, nfs)
		} else {
			all = append(all, s.files[p])
		}
	}
	r := s.rebuild(all, nil)
	forced := map[string]bool{}
	for _, p := range preps {
		forced[p.key] = true
		it, ok := r.items[p.key]
		switch {
		case p.obj == nil && ok:
			return 0, nil, &datastore.KeyError{Key: p.key, Err: errors.New("internal error: still defined after deleting it")}
		case p.obj != nil && (!ok || it.err != nil):
			return 0, nil, &datastore.KeyError{Key: p.key, Err: readBackError(newFiles, p.key)}
		}
	}

	for i, p := range paths {
		if err := writeAtomic(p, newFiles[p].raw); err != nil {
			if i > 0 {
				s.reloadLocked() // some files were replaced: catch up with the disk
			}
			return 0, nil, fmt.Errorf("file datastore: %w", err)
		}
		s.files[p] = newFiles[p]
	}
	s.publish(r, s.diff(r, forced), true)

	var kvs []*datastore.KV
	s.mu.RLock()
	rev := s.rev
	for _, p := range preps {
		if e := s.objs[p.key]; e != nil && p.obj != nil {
			kvs = append(kvs, e.kv())
		}
	}
	s.mu.RUnlock()
	return rev, kvs, nil
}

func readBackError(files map[string]*fileState, key string) error {
	for _, fs := range files {
		for _, d := range fs.docs {
			for _, it := range d.items {
				if it.key == key && it.err != nil {
					return fmt.Errorf("internal error: the value written does not read back: %w", it.err)
				}
			}
		}
	}
	return errors.New("internal error: the value written does not read back")
}

// staleLocked tells whether a file a write may touch differs on disk from
// what was last read.
func (s *Store) staleLocked(preps []prepared) bool {
	paths := map[string]bool{s.statePath: true}
	for _, p := range preps {
		for _, ref := range s.defs[p.key] {
			paths[ref.fs.path] = true
		}
	}
	for p := range paths {
		fs := s.files[p]
		raw, err := os.ReadFile(p)
		switch {
		case fs == nil:
			if err == nil {
				return true
			}
		case err != nil:
			if fs.exists || !errors.Is(err, os.ErrNotExist) {
				return true
			}
		case !fs.exists || fs.unreadable || !bytes.Equal(raw, fs.raw):
			return true
		}
	}
	return false
}

// plan checks the conditions of every operation and works out which files
// change how. ioMu is held.
func (s *Store) plan(preps []prepared) (map[string]*edit, error) {
	edits := map[string]*edit{}
	editFor := func(fs *fileState) *edit {
		e := edits[fs.path]
		if e == nil {
			e = &edit{fs: fs, replace: map[[2]int]api.Resource{}, remove: map[[2]int]bool{}}
			edits[fs.path] = e
		}
		return e
	}
	writable := func(key string, fs *fileState) error {
		if fs.broken != nil {
			return &datastore.KeyError{Key: key, Err: fmt.Errorf("%s must be fixed before it can be rewritten: %w", fs.path, fs.broken)}
		}
		return nil
	}
	for _, p := range preps {
		e := s.objs[p.key]
		if e != nil && p.op.Revision > 0 && e.rev != p.op.Revision && p.op.Type != datastore.OpCreate {
			return nil, &datastore.KeyError{Key: p.key, Err: datastore.ErrConflict}
		}
		switch p.op.Type {
		case datastore.OpCreate:
			if e != nil {
				return nil, &datastore.KeyError{Key: p.key, Err: datastore.ErrExists}
			}
		case datastore.OpUpdate, datastore.OpDelete:
			if e == nil {
				return nil, &datastore.KeyError{Key: p.key, Err: datastore.ErrNotFound}
			}
		case datastore.OpPut:
			if e == nil && p.op.Revision > 0 {
				return nil, &datastore.KeyError{Key: p.key, Err: datastore.ErrNotFound}
			}
		}
		switch {
		case p.obj == nil: // delete every definition
			for _, ref := range s.defs[p.key] {
				if err := writable(p.key, ref.fs); err != nil {
					return nil, err
				}
				editFor(ref.fs).remove[[2]int{ref.doc, ref.item}] = true
			}
		case e == nil: // new
			fs := s.files[s.statePath]
			if err := writable(p.key, fs); err != nil {
				return nil, err
			}
			ed := editFor(fs)
			ed.add = append(ed.add, p.obj)
		default: // rewrite the winning definition
			ref := s.win[p.key]
			if err := writable(p.key, ref.fs); err != nil {
				return nil, err
			}
			editFor(ref.fs).replace[[2]int{ref.doc, ref.item}] = p.obj
		}
	}
	return edits, nil
}

// render produces a file's new bytes. Documents the edit does not touch
// are copied byte for byte where the file could be split into documents.
func render(e *edit) ([]byte, error) {
	if e.fs.json {
		return renderJSON(e)
	}
	fs := e.fs
	chunks, whole := fs.chunks, false
	if chunks == nil {
		chunks, whole = []chunk{{text: fs.raw, first: 0, n: len(fs.docs)}}, true
	}
	var out bytes.Buffer
	for ci, c := range chunks {
		touched := false
		for d := c.first; d < c.first+c.n; d++ {
			touched = touched || e.touches(d)
		}
		if !touched {
			out.Write(c.text)
			continue
		}
		nodes, err := parseYAMLDocs(c.text)
		if err != nil {
			return nil, err
		}
		if !whole && len(nodes) != c.n || len(nodes) < c.n {
			return nil, fmt.Errorf("cannot match the documents of the file to what was read (%d vs %d)", len(nodes), c.n)
		}
		first := true
		for j, n := range nodes {
			keep, err := e.applyDoc(c.first+j, n.Content[0], func(nb *yaml.Node) { n.Content[0] = nb }, yamlNode)
			if err != nil {
				return nil, err
			}
			if !keep {
				continue
			}
			b, err := encodeYAML(n)
			if err != nil {
				return nil, err
			}
			ensureNL(&out)
			if !first || ci > 0 || isMarker(c.text, "---") {
				out.WriteString("---\n")
			}
			first = false
			out.Write(b)
		}
	}
	for _, obj := range e.add {
		y, err := api.MarshalYAML(obj)
		if err != nil {
			return nil, err
		}
		ensureNL(&out)
		if hasContent(out.Bytes()) {
			out.WriteString("---\n")
		}
		out.Write(y)
	}
	return out.Bytes(), nil
}

func ensureNL(b *bytes.Buffer) {
	if b.Len() > 0 && b.Bytes()[b.Len()-1] != '\n' {
		b.WriteByte('\n')
	}
}

// applyDoc applies the edit to document di, whose body is n; set replaces
// the body. It reports whether the document stays.
func (e *edit) applyDoc(di int, n *yaml.Node, set func(*yaml.Node), mk func(api.Resource) (*yaml.Node, error)) (bool, error) {
	if di >= len(e.fs.docs) || !e.touches(di) {
		return true, nil
	}
	d := e.fs.docs[di]
	if !d.list {
		if e.remove[[2]int{di, 0}] {
			return false, nil
		}
		if v, ok := e.replace[[2]int{di, 0}]; ok {
			nn, err := mk(v)
			if err != nil {
				return false, err
			}
			set(nn)
		}
		return true, nil
	}
	items := itemsNode(n)
	if items == nil {
		return false, errors.New("list document without items")
	}
	byPos := map[int]int{}
	for ii, it := range d.items {
		byPos[it.pos] = ii
	}
	var content []*yaml.Node
	for pos, in := range items.Content {
		ii, ok := byPos[pos]
		switch {
		case !ok:
			content = append(content, in)
		case e.remove[[2]int{di, ii}]:
		default:
			if v, ok := e.replace[[2]int{di, ii}]; ok {
				nn, err := mk(v)
				if err != nil {
					return false, err
				}
				in = nn
			}
			content = append(content, in)
		}
	}
	items.Content = content
	if items.Content == nil {
		items.Content = []*yaml.Node{}
	}
	return true, nil
}

// yamlNode is a value as the body of a YAML document.
func yamlNode(obj api.Resource) (*yaml.Node, error) {
	y, err := api.MarshalYAML(obj)
	if err != nil {
		return nil, err
	}
	var n yaml.Node
	if err := yaml.Unmarshal(y, &n); err != nil {
		return nil, err
	}
	return body(&n), nil
}

// jsonNode is a value as a JSON node.
func jsonNode(obj api.Resource) (*yaml.Node, error) {
	b, err := api.MarshalJSON(obj)
	if err != nil {
		return nil, err
	}
	ns, err := parseJSONNodes(b)
	if err != nil {
		return nil, err
	}
	return ns[0], nil
}

func encodeYAML(n *yaml.Node) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// renderJSON rewrites a JSON file whole, keeping its shape: a single
// object, an array, or a stream of values.
func renderJSON(e *edit) ([]byte, error) {
	nodes, err := parseJSONNodes(e.fs.raw)
	if err != nil {
		return nil, err
	}
	var vals []*yaml.Node
	for di, n := range nodes {
		cur := n
		keep, err := e.applyDoc(di, n, func(nb *yaml.Node) { cur = nb }, jsonNode)
		if err != nil {
			return nil, err
		}
		if keep {
			vals = append(vals, cur)
		}
	}
	if len(e.add) > 0 {
		var added []*yaml.Node
		for _, obj := range e.add {
			n, err := jsonNode(obj)
			if err != nil {
				return nil, err
			}
			added = append(added, n)
		}
		var last *yaml.Node
		if len(vals) > 0 {
			last = vals[len(vals)-1]
		}
		switch {
		case last != nil && itemsNode(last) != nil:
			items := itemsNode(last)
			items.Content = append(items.Content, added...)
		case len(vals) == 1:
			vals = []*yaml.Node{{Kind: yaml.SequenceNode, Tag: "!!seq", Content: append([]*yaml.Node{last}, added...)}}
		case len(vals) == 0 && len(added) == 1:
			vals = added
		case len(vals) == 0:
			vals = []*yaml.Node{{Kind: yaml.SequenceNode, Tag: "!!seq", Content: added}}
		default:
			vals = append(vals, added...)
		}
	}
	var out bytes.Buffer
	for _, v := range vals {
		b, err := encodeJSON(v)
		if err != nil {
			return nil, err
		}
		out.Write(b)
		out.WriteByte('\n')
	}
	if out.Len() == 0 {
		out.WriteString("[]\n")
	}
	return out.Bytes(), nil
}

// writeAtomic replaces path with data: a temporary file in the same
// directory (hidden, so the store's own watch ignores it), synced, then
// renamed over the original. A symlink is followed and its target
// replaced. The original's permissions are kept (0644 for a new file).
func writeAtomic(path string, data []byte) error {
	target := path
	if t, err := filepath.EvalSymlinks(path); err == nil {
		target = t
	}
	mode := os.FileMode(0o644)
	if st, err := os.Stat(target); err == nil {
		mode = st.Mode().Perm()
	}
	dir := filepath.Dir(target)
	f, err := os.CreateTemp(dir, "."+filepath.Base(target)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Chmod(mode); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, target); err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

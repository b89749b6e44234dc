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
	"github.com/roostnet/roost/internal/yamlnode"
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
	replace map[*item]api.Resource
	remove  map[*item]bool
	touched map[*doc]bool
	add     []api.Resource
}

func (e *edit) touches(docs []*doc) bool {
	for _, d := range docs {
		if e.touched[d] {
			return true
		}
	}
	return false
}

// apply runs a transaction: check every condition, rewrite the files
// involved, then publish under one new revision. Only the keys defined in
// the documents it rewrites are looked at again, so its cost does not grow
// with the number of objects beyond copying the bytes of the files.
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
	// Other processes write too: hold the lock until the files are
	// replaced (lock.go).
	unlock, err := s.lockFiles(ctx)
	if err != nil {
		return 0, nil, err
	}
	defer unlock()
	// A file changed on disk but not read yet (by another process, or
	// the event is on its way) must be read first: the conditions are
	// checked against it, and its new content must not be overwritten.
	if s.changedOnDisk() || s.staleLocked(preps) {
		s.reloadLocked()
	}
	// Metadata Calico's writers set (datastore.StampMetadata), kept from
	// the stored object on an update.
	for _, p := range preps {
		if p.obj == nil || !datastore.NeedsStamp(p.obj) {
			continue
		}
		var old api.Resource
		if e := s.objs[p.key]; e != nil && p.op.Type != datastore.OpCreate {
			old = e.obj
		}
		datastore.StampMetadata(ctx, p.obj, old)
	}
	edits, err := s.plan(preps)
	if err != nil {
		return 0, nil, err
	}

	// Build the new files.
	var paths []string
	newFiles := make(map[string]*fileState, len(edits))
	removed := map[*doc]bool{}
	added := map[string][]*doc{}
	for p, e := range edits {
		nfs, rem, add, err := s.rewrite(e)
		if err != nil {
			return 0, nil, fmt.Errorf("file datastore: rewriting %s: %w", p, err)
		}
		newFiles[p], added[p] = nfs, add
		for _, d := range rem {
			removed[d] = true
		}
		paths = append(paths, p)
	}
	sort.Strings(paths)

	// The definitions of the keys those documents held, before and after.
	affected := map[string]bool{}
	for d := range removed {
		for _, it := range d.items {
			if it.key != "" {
				affected[it.key] = true
			}
		}
	}
	defs := map[string][]itemRef{}
	for k := range affected {
		for _, ref := range s.defs[k] {
			if ref.d == nil || !removed[ref.d] {
				defs[k] = append(defs[k], ref)
			}
		}
	}
	for _, p := range paths {
		for _, d := range added[p] {
			for _, it := range d.items {
				if it.key != "" {
					affected[it.key] = true
					defs[it.key] = append(defs[it.key], itemRef{p, d, it})
				}
			}
		}
	}
	s.orderDefs(defs, newFiles)
	items := make(map[string]*item, len(affected))
	for k := range affected {
		if ref, ok := winnerOf(defs[k]); ok {
			items[k] = ref.it
		}
	}
	forced := map[string]bool{}
	for _, p := range preps {
		forced[p.key] = true
		it := items[p.key]
		switch {
		case p.obj == nil && it != nil:
			return 0, nil, &datastore.KeyError{Key: p.key, Err: errors.New("internal error: still defined after deleting it")}
		case p.obj != nil && (it == nil || it.err != nil):
			return 0, nil, &datastore.KeyError{Key: p.key, Err: readBackError(added, p.key)}
		}
	}

	for i, p := range paths {
		st, err := writeAtomic(p, newFiles[p].raw)
		newFiles[p].stat = st
		if err != nil {
			if i > 0 {
				s.reloadLocked() // some files were replaced: catch up with the disk
			}
			return 0, nil, fmt.Errorf("file datastore: %w", err)
		}
	}
	for _, p := range paths {
		s.files[p] = newFiles[p]
	}
	changes := s.diff(items, affected, forced)
	for k := range affected {
		if len(defs[k]) == 0 {
			delete(s.defs, k)
		} else {
			s.defs[k] = defs[k]
		}
	}
	s.publish(changes, true, nil)

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

// orderDefs sorts the definitions of each key that has several into file
// order. files holds the new states of rewritten files. ioMu is held.
func (s *Store) orderDefs(defs map[string][]itemRef, files map[string]*fileState) {
	var (
		fileIdx map[string]int
		docIdx  = map[string]map[*doc]int{}
	)
	pos := func(ref itemRef) [3]int {
		if fileIdx == nil {
			fileIdx = make(map[string]int, len(s.order))
			for i, p := range s.order {
				fileIdx[p] = i
			}
		}
		fs := files[ref.path]
		if fs == nil {
			fs = s.files[ref.path]
		}
		if ref.d == nil {
			for i, it := range fs.tail {
				if it == ref.it {
					return [3]int{fileIdx[ref.path], len(fs.docs) + i, 0}
				}
			}
		}
		m := docIdx[ref.path]
		if m == nil {
			m = make(map[*doc]int, len(fs.docs))
			for i, d := range fs.docs {
				m[d] = i
			}
			docIdx[ref.path] = m
		}
		ii := 0
		for i, it := range ref.d.items {
			if it == ref.it {
				ii = i
			}
		}
		return [3]int{fileIdx[ref.path], m[ref.d], ii}
	}
	for _, refs := range defs {
		if len(refs) < 2 {
			continue
		}
		ps := make(map[*item][3]int, len(refs))
		for _, r := range refs {
			ps[r.it] = pos(r)
		}
		sort.SliceStable(refs, func(i, j int) bool {
			a, b := ps[refs[i].it], ps[refs[j].it]
			for x := range a {
				if a[x] != b[x] {
					return a[x] < b[x]
				}
			}
			return false
		})
	}
}

func readBackError(added map[string][]*doc, key string) error {
	for _, docs := range added {
		for _, d := range docs {
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
			paths[ref.path] = true
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
	editFor := func(key string, ref itemRef) (*edit, error) {
		path := ref.path
		if ref.it != nil && ref.d == nil {
			// A definition the file no longer holds readably.
			return nil, &datastore.KeyError{Key: key, Err: fmt.Errorf("%s must be fixed before this object can be written: %w", path, ref.it.err)}
		}
		if e := edits[path]; e != nil {
			return e, nil
		}
		fs := s.files[path]
		if fs.broken != nil {
			return nil, &datastore.KeyError{Key: key, Err: fmt.Errorf("%s must be fixed before it can be rewritten: %w", fs.path, fs.broken)}
		}
		e := &edit{fs: fs, replace: map[*item]api.Resource{}, remove: map[*item]bool{}, touched: map[*doc]bool{}}
		edits[path] = e
		return e, nil
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
		case p.obj == nil: // delete every definition, valid or broken
			for _, ref := range s.defs[p.key] {
				ed, err := editFor(p.key, ref)
				if err != nil {
					return nil, err
				}
				ed.remove[ref.it], ed.touched[ref.d] = true, true
			}
		case e == nil: // new
			ed, err := editFor(p.key, itemRef{path: s.statePath})
			if err != nil {
				return nil, err
			}
			ed.add = append(ed.add, p.obj)
		default: // rewrite the winning definition (a broken one is fixed)
			ref, _ := s.winner(p.key)
			ed, err := editFor(p.key, ref)
			if err != nil {
				return nil, err
			}
			ed.replace[ref.it], ed.touched[ref.d] = p.obj, true
		}
	}
	return edits, nil
}

// debugCheckIncremental makes every incremental rewrite compare itself
// with a full read of the bytes it produced (tests turn it on).
var debugCheckIncremental = false

// rewrite builds the new state of an edited file. Where the file is split
// into documents, only the touched documents are re-encoded and decoded
// again: a write costs the size of the file in bytes copied, not a new
// parse of it. JSON files and YAML files that cannot be split are
// re-encoded and parsed whole.
// It returns the new state, the documents of the old state that are gone
// and those of the new state that are new.
func (s *Store) rewrite(e *edit) (nfs *fileState, removed, added []*doc, err error) {
	path := e.fs.path
	if e.fs.json || e.fs.chunks == nil {
		var raw []byte
		if e.fs.json {
			raw, err = renderJSON(e)
		} else {
			raw, err = renderYAMLWhole(e)
		}
		if err != nil {
			return nil, nil, nil, err
		}
		nfs := s.parse(path, raw, true)
		if nfs.broken != nil {
			return nil, nil, nil, nfs.broken
		}
		return nfs, e.fs.docs, nfs.docs, nil
	}

	// Objects the file lost readably stay lost: the documents that could
	// not be identified are untouched.
	nfs = &fileState{path: path, exists: true, tail: e.fs.tail}
	nfs.chunks = make([]chunk, 0, len(e.fs.chunks)+len(e.add))
	nfs.docs = make([]*doc, 0, len(e.fs.docs)+len(e.add))
	spans := make([][2]int, 0, len(e.fs.chunks)+len(e.add))
	var out bytes.Buffer
	out.Grow(len(e.fs.raw) + 512*len(e.add))
	content := false
	add := func(text []byte, docs []*doc) {
		if len(text) == 0 {
			return
		}
		if out.Len() > 0 && out.Bytes()[out.Len()-1] != '\n' {
			out.WriteByte('\n')
			spans[len(spans)-1][1]++
		}
		st := out.Len()
		out.Write(text)
		spans = append(spans, [2]int{st, out.Len()})
		nfs.chunks = append(nfs.chunks, chunk{first: len(nfs.docs), n: len(docs)})
		nfs.docs = append(nfs.docs, docs...)
		content = content || len(docs) > 0 || hasContent(text)
	}
	decode := func(text []byte) ([]*doc, error) {
		docs, broken := s.decodeDocs(path, text, true)
		if broken != nil {
			return nil, broken
		}
		if len(docs) == 0 && hasContent(text) {
			docs = []*doc{{}} // an empty list: a document without items
		}
		return docs, nil
	}
	for ci, c := range e.fs.chunks {
		docs := e.fs.docs[c.first : c.first+c.n]
		if !e.touches(docs) {
			add(c.text, docs)
			continue
		}
		removed = append(removed, docs...)
		text, err := renderChunk(e, c.text, docs, false, ci > 0 || isMarker(c.text, "---"))
		if err != nil {
			return nil, nil, nil, err
		}
		nd, err := decode(text)
		if err != nil {
			return nil, nil, nil, err
		}
		added = append(added, nd...)
		add(text, nd)
	}
	for _, obj := range e.add {
		y, err := api.MarshalYAML(obj)
		if err != nil {
			return nil, nil, nil, err
		}
		if content {
			y = append([]byte("---\n"), y...)
		}
		nd, err := decode(y)
		if err != nil {
			return nil, nil, nil, err
		}
		added = append(added, nd...)
		add(y, nd)
	}
	nfs.raw = out.Bytes()
	if nfs.raw == nil {
		nfs.raw = []byte{}
	}
	for i := range nfs.chunks {
		nfs.chunks[i].text = nfs.raw[spans[i][0]:spans[i][1]]
	}
	if debugCheckIncremental {
		full := s.parse(path, nfs.raw, true)
		if err := sameItems(nfs, full); err != nil {
			return nil, nil, nil, fmt.Errorf("internal error: the incremental rewrite of %s differs from a full read: %w", path, err)
		}
	}
	return nfs, removed, added, nil
}

func sameItems(a, b *fileState) error {
	flat := func(fs *fileState) []*item {
		var out []*item
		for _, d := range fs.docs {
			out = append(out, d.items...)
		}
		return out
	}
	ia, ib := flat(a), flat(b)
	if len(ia) != len(ib) {
		return fmt.Errorf("%d items vs %d", len(ia), len(ib))
	}
	for i := range ia {
		x, y := ia[i], ib[i]
		if x.key != y.key || !bytes.Equal(x.enc, y.enc) || (x.err == nil) != (y.err == nil) || x.pos != y.pos {
			return fmt.Errorf("item %d: %s %s vs %s %s", i, x.key, x.enc, y.key, y.enc)
		}
	}
	return nil
}

// renderYAMLWhole re-encodes a whole YAML file that could not be split.
func renderYAMLWhole(e *edit) ([]byte, error) {
	out, err := renderChunk(e, e.fs.raw, e.fs.docs, true, false)
	if err != nil {
		return nil, err
	}
	b := bytes.NewBuffer(out)
	for _, obj := range e.add {
		y, err := api.MarshalYAML(obj)
		if err != nil {
			return nil, err
		}
		ensureNL(b)
		if hasContent(b.Bytes()) {
			b.WriteString("---\n")
		}
		b.Write(y)
	}
	return b.Bytes(), nil
}

// renderChunk re-encodes the documents of text, read as docs, with the
// edit applied; sep puts "---" before the first. whole allows text to hold
// more documents than were decoded (empty lists at the end of a file).
func renderChunk(e *edit, text []byte, docs []*doc, whole, sep bool) ([]byte, error) {
	nodes, err := parseYAMLDocs(text)
	if err != nil {
		return nil, err
	}
	if !whole && len(nodes) != len(docs) || len(nodes) < len(docs) {
		return nil, fmt.Errorf("cannot match the documents of the file to what was read (%d vs %d)", len(nodes), len(docs))
	}
	var out bytes.Buffer
	for j, nd := range nodes {
		var d *doc
		if j < len(docs) {
			d = docs[j]
		}
		keep, err := e.applyDoc(d, nd.Content[0], func(nb *yaml.Node) { nd.Content[0] = nb }, yamlNode)
		if err != nil {
			return nil, err
		}
		if !keep {
			continue
		}
		b, err := encodeYAML(nd)
		if err != nil {
			return nil, err
		}
		if sep || out.Len() > 0 {
			out.WriteString("---\n")
		}
		out.Write(b)
	}
	return out.Bytes(), nil
}

func ensureNL(b *bytes.Buffer) {
	if b.Len() > 0 && b.Bytes()[b.Len()-1] != '\n' {
		b.WriteByte('\n')
	}
}

// applyDoc applies the edit to document d, whose body is n; set replaces
// the body. It reports whether the document stays.
func (e *edit) applyDoc(d *doc, n *yaml.Node, set func(*yaml.Node), mk func(api.Resource) (*yaml.Node, error)) (bool, error) {
	if d == nil || !e.touched[d] {
		return true, nil
	}
	if !d.list {
		it := d.items[0]
		if e.remove[it] {
			return false, nil
		}
		if v, ok := e.replace[it]; ok {
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
	byPos := map[int]*item{}
	for _, it := range d.items {
		byPos[it.pos] = it
	}
	content := []*yaml.Node{}
	for pos, in := range items.Content {
		it := byPos[pos]
		switch {
		case it == nil:
			content = append(content, in)
		case e.remove[it]:
		default:
			if v, ok := e.replace[it]; ok {
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
	return yamlnode.Body(&n), nil
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
		var d *doc
		if di < len(e.fs.docs) {
			d = e.fs.docs[di]
		}
		keep, err := e.applyDoc(d, n, func(nb *yaml.Node) { cur = nb }, jsonNode)
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
func writeAtomic(path string, data []byte) (fileStat, error) {
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
		return fileStat{}, err
	}
	tmp := f.Name()
	fail := func(err error) (fileStat, error) {
		f.Close()
		os.Remove(tmp)
		return fileStat{}, err
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
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fileStat{}, err
	}
	if err := os.Rename(tmp, target); err != nil {
		os.Remove(tmp)
		return fileStat{}, err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return statOf(fi), nil
}

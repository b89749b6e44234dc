package file

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sirupsen/logrus"
	"go.yaml.in/yaml/v3"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/internal/yamlnode"
)

// fileState is what the store knows about one file. It is never modified
// once built: a change of the file builds a new one.
type fileState struct {
	path       string
	raw        []byte
	exists     bool
	json       bool  // written as JSON
	broken     error // read or syntax error: not fully understood, not rewritable
	unreadable bool
	stat       fileStat // the version read (zero: none)
	docs       []*doc
	chunks     []chunk // YAML split into documents; nil: rewrite the file whole
	tail       []*item // objects the file held that its readable part lost: broken
}

// doc is one top-level document: a resource, or a list of them.
type doc struct {
	list  bool
	items []*item
}

// item is one resource read from a file, valid or not. An invalid item
// whose key is known defines its object as present and broken.
type item struct {
	pos   int // api.Document.Item: -1 unless a list item
	line  int
	where string
	key   string       // "" when it could not be determined
	obj   api.Resource // nil when invalid
	enc   []byte       // datastore.EncodeValue(obj); for an invalid item its error text
	err   error        // why the document is invalid
}

// brokenEnc is what "changed" compares for a broken object: the content
// of its document (not the error, whose line numbers move when documents
// above it change), or the error when there is no document.
func brokenEnc(n *yaml.Node, err error) []byte {
	out := []byte("\x00broken: ")
	var v any
	if n != nil && n.Decode(&v) == nil {
		if b, jerr := json.Marshal(v); jerr == nil {
			return append(out, b...)
		}
		if b, yerr := yaml.Marshal(v); yerr == nil {
			return append(out, b...)
		}
	}
	return append(out, err.Error()...)
}

// itemRef locates an item: its file and document (nil for the items of
// fileState.tail). Documents and items are shared between the states of a
// file before and after a write that does not touch them, so references
// stay valid across such writes.
type itemRef struct {
	path string
	d    *doc
	it   *item
}

// winnerOf returns the definition that counts: the last one, valid or
// not (a later invalid definition makes the object broken).
func winnerOf(refs []itemRef) (itemRef, bool) {
	if len(refs) == 0 {
		return itemRef{}, false
	}
	return refs[len(refs)-1], true
}

// winner is winnerOf for a key of the current state. ioMu is held.
func (s *Store) winner(key string) (itemRef, bool) { return winnerOf(s.defs[key]) }

// readFile reads path. It returns old, unchanged, when the bytes are the
// same. ioMu is held.
func (s *Store) readFile(path string, old *fileState, quiet bool) (*fileState, bool) {
	raw, st, err := readWithStat(path)
	if errors.Is(err, fs.ErrNotExist) {
		if old != nil && !old.exists {
			return old, false
		}
		return &fileState{path: path, json: isJSONName(path)}, true
	}
	if err != nil {
		nfs := &fileState{path: path, exists: true, unreadable: true, broken: err}
		if old != nil {
			nfs.json = old.json
		}
		nfs.tail = s.brokenTail(path, nil, err)
		if !quiet {
			s.log.WithFields(logrus.Fields{"file": path, "error": err.Error()}).
				Warn("cannot read the file; the objects it held are present and broken until it can be read")
		}
		return nfs, true
	}
	if old != nil && old.exists && !old.unreadable && bytes.Equal(old.raw, raw) {
		if old.stat != st {
			// Rewritten with the same bytes: remember the new version.
			c := *old
			c.stat = st
			return &c, false
		}
		return old, false
	}
	nfs := s.parse(path, raw, quiet)
	nfs.stat = st
	return nfs, true
}

func isJSONName(path string) bool { return strings.EqualFold(filepath.Ext(path), ".json") }

// parse decodes a file's bytes. Invalid documents are logged unless quiet.
// The current state (ioMu held) tells which objects a syntax error hides.
func (s *Store) parse(path string, raw []byte, quiet bool) *fileState {
	nfs := &fileState{path: path, raw: raw, exists: true}
	nfs.json = yamlnode.LooksJSON(raw) || (len(bytes.TrimSpace(raw)) == 0 && isJSONName(path))
	nfs.docs, nfs.broken = s.decodeDocs(path, raw, quiet)
	// A document that can no longer be identified (its kind or name is
	// gone) may be any object the file defined: like a syntax error, it
	// leaves the objects the file no longer defines present and broken.
	cause := nfs.broken
	if cause == nil {
		cause = unidentified(nfs.docs)
	}
	if cause != nil {
		defined := map[string]bool{}
		for _, d := range nfs.docs {
			for _, it := range d.items {
				if it.key != "" {
					defined[it.key] = true
				}
			}
		}
		nfs.tail = s.brokenTail(path, defined, cause)
		if !quiet && len(nfs.tail) > 0 {
			s.log.WithFields(logrus.Fields{"file": path, "objects": len(nfs.tail), "error": cause.Error()}).
				Warn("objects the file held can no longer be read there: they are present and broken until it is fixed")
		}
	}
	if nfs.broken == nil && !nfs.json {
		nfs.chunks = splitChunks(raw, len(nfs.docs))
	}
	return nfs
}

// unidentified returns the error of the first invalid document whose
// object cannot be determined, or nil.
func unidentified(docs []*doc) error {
	for _, d := range docs {
		for _, it := range d.items {
			if it.key == "" && it.err != nil {
				return it.err
			}
		}
	}
	return nil
}

// decodeDocs decodes the documents of raw, the whole of path or a part of
// it. broken is set when raw cannot be parsed to its end.
func (s *Store) decodeDocs(path string, raw []byte, quiet bool) (docs []*doc, broken error) {
	var (
		nodes  []*yaml.Node
		parsed bool
	)
	for _, d := range api.Decode(raw, path, api.DecodeOptions{}) {
		for len(docs) <= d.Index {
			docs = append(docs, &doc{})
		}
		dd := docs[d.Index]
		it := &item{pos: d.Item, line: d.Line, where: d.Where()}
		if d.Item >= 0 {
			dd.list = true
		}
		dd.items = append(dd.items, it)
		it.err = d.Err
		if it.err == nil {
			obj := d.Object
			obj.Meta().ResourceVersion = "" // revisions are the store's
			key, err := datastore.KeyFor(obj)
			var enc []byte
			if err == nil {
				enc, err = datastore.EncodeValue(obj)
			}
			if err == nil {
				it.key, it.obj, it.enc = key, obj, enc
				if !quiet {
					datastore.ReportUnknown(s.log.WithFields(logrus.Fields{"file": path, "line": d.Line}), key, obj)
				}
				continue
			}
			it.err = &api.DocumentError{Where: it.where, Err: err}
		}

		// Invalid: find out which object it was meant to be.
		if !parsed {
			var perr error
			nodes, perr = parseNodes(raw)
			parsed = true
			if perr != nil {
				broken = fmt.Errorf("%s: %w", path, perr)
			}
		}
		var n *yaml.Node
		it.key, n = guessKey(nodes, d.Index, d.Item)
		if it.key != "" {
			it.enc = brokenEnc(n, it.err)
		}
		if !quiet {
			f := logrus.Fields{"file": path, "document": d.Index + 1, "line": d.Line, "error": it.err.Error()}
			if d.Item >= 0 {
				f["item"] = d.Item + 1
			}
			msg := "skipping invalid document (its object cannot be determined)"
			if it.key != "" {
				f["key"] = it.key
				msg = "invalid document: its object is present and broken"
			}
			s.log.WithFields(f).Warn(msg)
		}
	}
	return docs, broken
}

// brokenTail lists, sorted by key, the objects whose winning definition is
// in path and that defined does not hold: the file can no longer be read
// where they were, so each is present and broken with the file's error.
func (s *Store) brokenTail(path string, defined map[string]bool, cause error) []*item {
	var out []*item
	for k, refs := range s.defs {
		ref, ok := winnerOf(refs)
		if !ok || ref.path != path || defined[k] {
			continue
		}
		err := &api.DocumentError{Where: path, Err: fmt.Errorf("the file cannot be read where this object was defined: %w", cause)}
		out = append(out, &item{pos: -1, where: path, key: k, err: err, enc: brokenEnc(nil, err)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

// parseNodes parses a file into its top-level values the way api.Decode
// does: JSON with encoding/json, YAML skipping empty documents. YAML
// documents are returned as DocumentNodes (so comments survive a rewrite).
func parseNodes(raw []byte) ([]*yaml.Node, error) {
	if yamlnode.LooksJSON(raw) {
		return parseJSONNodes(raw)
	}
	return parseYAMLDocs(raw)
}

func parseYAMLDocs(raw []byte) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	var out []*yaml.Node
	for {
		n := &yaml.Node{}
		err := dec.Decode(n)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		if len(n.Content) == 0 || yamlnode.IsNull(n.Content[0]) {
			continue
		}
		out = append(out, n)
	}
}

// itemsNode is the sequence of a list document: a bare JSON array, or the
// items of a List.
func itemsNode(n *yaml.Node) *yaml.Node {
	if n == nil {
		return nil
	}
	if n.Kind == yaml.SequenceNode {
		return n
	}
	if it := yamlnode.Field(n, "items"); it != nil && it.Kind == yaml.SequenceNode {
		return it
	}
	return nil
}

// guessKey determines the key an invalid document was meant for, or "",
// and the document's (or list item's) node.
func guessKey(nodes []*yaml.Node, index, itemPos int) (string, *yaml.Node) {
	if index >= len(nodes) {
		return "", nil
	}
	n := yamlnode.Body(nodes[index])
	defKind := ""
	if itemPos >= 0 {
		if n.Kind == yaml.MappingNode {
			defKind = strings.TrimSuffix(yamlnode.Scalar(n, "kind"), "List")
		}
		items := itemsNode(n)
		if items == nil || itemPos >= len(items.Content) {
			return "", nil
		}
		n = items.Content[itemPos]
	}
	if n.Kind != yaml.MappingNode {
		return "", n
	}
	kind := yamlnode.Scalar(n, "kind")
	if kind == "" {
		kind = defKind
	}
	obj := api.New(kind)
	if obj == nil {
		return "", n
	}
	md := yamlnode.Field(n, "metadata")
	obj.Meta().Name, obj.Meta().Namespace = yamlnode.Scalar(md, "name"), yamlnode.Scalar(md, "namespace")
	spec := yamlnode.Field(n, "spec")
	switch o := obj.(type) {
	case *api.BlockAffinity:
		o.Spec.Node, o.Spec.CIDR = yamlnode.Scalar(spec, "node"), yamlnode.Scalar(spec, "cidr")
	case *api.IPAMBlock:
		o.Spec.CIDR = yamlnode.Scalar(spec, "cidr")
	}
	key, err := datastore.KeyFor(obj)
	if err != nil {
		return "", n
	}
	return key, n
}

// chunk is a run of a YAML file's text holding n documents from first on.
type chunk struct {
	text  []byte
	first int
	n     int
}

// splitChunks cuts a YAML file at its "---" lines so that documents a write
// does not touch can be kept byte for byte. It returns nil when that cannot
// be done safely (directives, "..." markers, or a count of documents that
// does not match what the decoder saw): the file is then rewritten whole.
func splitChunks(raw []byte, ndocs int) []chunk {
	var starts []int
	for off := 0; off < len(raw); {
		end := bytes.IndexByte(raw[off:], '\n')
		next := len(raw)
		if end >= 0 {
			next = off + end + 1
		}
		line := raw[off:next]
		switch {
		case len(line) > 0 && line[0] == '%', isMarker(line, "..."):
			return nil
		case isMarker(line, "---"):
			if off > 0 {
				starts = append(starts, off)
			}
		}
		off = next
	}
	starts = append([]int{0}, starts...)
	var out []chunk
	doc := 0
	for i, st := range starts {
		end := len(raw)
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		c := chunk{text: raw[st:end], first: doc}
		if hasContent(c.text) {
			c.n = 1
		}
		doc += c.n
		out = append(out, c)
	}
	if doc != ndocs {
		return nil
	}
	return out
}

func isMarker(line []byte, m string) bool {
	if !bytes.HasPrefix(line, []byte(m)) {
		return false
	}
	rest := line[len(m):]
	return len(rest) == 0 || rest[0] == ' ' || rest[0] == '\t' || rest[0] == '\n' || rest[0] == '\r'
}

// hasContent tells whether a chunk holds more than separators, blank lines
// and comments.
func hasContent(text []byte) bool {
	for len(text) > 0 {
		line := text
		if i := bytes.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			text = nil
		}
		if isMarker(line, "---") {
			line = line[3:]
		}
		t := bytes.TrimSpace(line)
		if len(t) > 0 && t[0] != '#' {
			return true
		}
	}
	return false
}

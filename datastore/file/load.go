package file

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
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
	docs       []*doc
	chunks     []chunk // YAML split into documents; nil: rewrite the file whole
	tail       []*item // objects kept because the file is broken
}

// doc is one top-level document: a resource, or a list of them.
type doc struct {
	list  bool
	items []*item
}

// item is one resource read from a file, valid or not.
type item struct {
	pos   int // api.Document.Item: -1 unless a list item
	line  int
	where string
	key   string       // "" when it could not be determined
	obj   api.Resource // the object; for an invalid item its kept last good value or nil
	enc   []byte
	err   error // why the document is invalid
	kept  bool  // obj is a last good value
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

// winnerOf returns the definition that counts: the last one holding an
// object.
func winnerOf(refs []itemRef) (itemRef, bool) {
	for i := len(refs) - 1; i >= 0; i-- {
		if refs[i].it.obj != nil {
			return refs[i], true
		}
	}
	return itemRef{}, false
}

// winner is winnerOf for a key of the current state. ioMu is held.
func (s *Store) winner(key string) (itemRef, bool) { return winnerOf(s.defs[key]) }

// keyErr is an invalid document with a known key, for Error events.
type keyErr struct {
	key string
	err error
}

// readFile reads path. It returns old, unchanged, when the bytes are the
// same. ioMu is held.
func (s *Store) readFile(path string, old *fileState, quiet bool) (*fileState, bool, []keyErr) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if old != nil && !old.exists {
			return old, false, nil
		}
		return &fileState{path: path, json: isJSONName(path)}, true, nil
	}
	if err != nil {
		nfs := &fileState{path: path, exists: true, unreadable: true, broken: err}
		if old != nil {
			nfs.json = old.json
		}
		nfs.tail = s.keptTail(path, nil)
		if !quiet {
			s.log.WithFields(logrus.Fields{"file": path, "error": err.Error()}).
				Warn("cannot read the file; keeping the objects it held")
		}
		return nfs, true, nil
	}
	if old != nil && old.exists && !old.unreadable && bytes.Equal(old.raw, raw) {
		return old, false, nil
	}
	nfs, kerrs := s.parse(path, raw, quiet)
	return nfs, true, kerrs
}

func isJSONName(path string) bool { return strings.EqualFold(filepath.Ext(path), ".json") }

// parse decodes a file's bytes. Invalid documents are logged unless quiet.
// The current state (ioMu held) decides which last good values are kept.
func (s *Store) parse(path string, raw []byte, quiet bool) (*fileState, []keyErr) {
	nfs := &fileState{path: path, raw: raw, exists: true}
	nfs.json = yamlnode.LooksJSON(raw) || (len(bytes.TrimSpace(raw)) == 0 && isJSONName(path))
	var kerrs []keyErr
	nfs.docs, kerrs, nfs.broken = s.decodeDocs(path, raw, quiet)
	if nfs.broken != nil {
		defined := map[string]bool{}
		for _, d := range nfs.docs {
			for _, it := range d.items {
				if it.obj != nil {
					defined[it.key] = true
				}
			}
		}
		nfs.tail = s.keptTail(path, defined)
		if !quiet && len(nfs.tail) > 0 {
			s.log.WithFields(logrus.Fields{"file": path, "objects": len(nfs.tail)}).
				Warn("the file has a syntax error: objects it held are kept until it is fixed")
		}
	} else if !nfs.json {
		nfs.chunks = splitChunks(raw, len(nfs.docs))
	}
	return nfs, kerrs
}

// decodeDocs decodes the documents of raw, the whole of path or a part of
// it. broken is set when raw cannot be parsed to its end.
func (s *Store) decodeDocs(path string, raw []byte, quiet bool) (docs []*doc, kerrs []keyErr, broken error) {
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
		it.key = guessKey(nodes, d.Index, d.Item)
		if it.key != "" {
			if ref, ok := s.winner(it.key); ok && ref.path == path {
				if e := s.objs[it.key]; e != nil {
					it.obj, it.enc, it.kept = e.obj, e.enc, true
				}
			}
			kerrs = append(kerrs, keyErr{it.key, it.err})
		}
		if !quiet {
			f := logrus.Fields{"file": path, "document": d.Index + 1, "line": d.Line, "error": it.err.Error()}
			if d.Item >= 0 {
				f["item"] = d.Item + 1
			}
			if it.key != "" {
				f["key"] = it.key
			}
			msg := "skipping invalid document"
			if it.kept {
				msg = "invalid document: keeping the last good value of its object"
			}
			s.log.WithFields(f).Warn(msg)
		}
	}
	return docs, kerrs, broken
}

// keptTail lists the objects whose winning definition is in path and that
// defined does not hold, as kept items, sorted by key.
func (s *Store) keptTail(path string, defined map[string]bool) []*item {
	var out []*item
	for k, refs := range s.defs {
		ref, ok := winnerOf(refs)
		if !ok || ref.path != path || defined[k] {
			continue
		}
		if e := s.objs[k]; e != nil {
			out = append(out, &item{pos: -1, where: path, key: k, obj: e.obj, enc: e.enc, kept: true})
		}
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

// guessKey determines the key an invalid document was meant for, or "".
func guessKey(nodes []*yaml.Node, index, itemPos int) string {
	if index >= len(nodes) {
		return ""
	}
	n := yamlnode.Body(nodes[index])
	defKind := ""
	if itemPos >= 0 {
		if n.Kind == yaml.MappingNode {
			defKind = strings.TrimSuffix(yamlnode.Scalar(n, "kind"), "List")
		}
		items := itemsNode(n)
		if items == nil || itemPos >= len(items.Content) {
			return ""
		}
		n = items.Content[itemPos]
	}
	if n.Kind != yaml.MappingNode {
		return ""
	}
	kind := yamlnode.Scalar(n, "kind")
	if kind == "" {
		kind = defKind
	}
	obj := api.New(kind)
	if obj == nil {
		return ""
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
		return ""
	}
	return key
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

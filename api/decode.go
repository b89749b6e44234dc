package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/roostnet/roost/internal/yamlnode"
)

// Document is one resource read from a multi-document YAML or JSON stream.
// Exactly one of Object and Err is set.
type Document struct {
	Source string // file name, "-" for stdin, or "" when unknown
	Index  int    // 0-based position of the YAML document in the stream
	Item   int    // position inside a List document, -1 when not in a list
	Line   int    // 1-based line where the document or item starts (0 if unknown)
	Object Resource
	Err    error
}

// Where names the document for messages: "file.yaml:12 (document 2)".
func (d *Document) Where() string {
	var b strings.Builder
	if d.Source != "" {
		b.WriteString(d.Source)
	} else {
		b.WriteString("input")
	}
	if d.Line > 0 {
		fmt.Fprintf(&b, ":%d", d.Line)
	}
	fmt.Fprintf(&b, " (document %d", d.Index+1)
	if d.Item >= 0 {
		fmt.Fprintf(&b, ", item %d", d.Item+1)
	}
	b.WriteString(")")
	return b.String()
}

// DocumentError places a decoding problem in its source.
type DocumentError struct {
	Where string
	Err   error
}

func (e *DocumentError) Error() string { return e.Where + ": " + e.Err.Error() }
func (e *DocumentError) Unwrap() error { return e.Err }

// DecodeOptions tunes decoding.
type DecodeOptions struct {
	// AllowUnknownFields accepts fields Roost does not know (used for values
	// other tools wrote to etcd). User input is strict: a typo is an error.
	AllowUnknownFields bool
	// NoDefaults skips Calico's defaults.
	NoDefaults bool
	// NoValidate skips semantic validation.
	NoValidate bool
}

// Decode reads every document of a YAML (multi-document) or JSON stream
// (one value, a sequence of values, or an array of resources) as
// `calicoctl apply -f` takes it: kind/apiVersion/metadata/spec, and lists
// (kind: List or <Kind>List with items). Defaults are applied and every
// resource is validated. A document that fails carries Err and the others
// are unaffected; a YAML syntax error ends the stream with one more
// Document holding the error and its line.
func Decode(data []byte, source string, opts DecodeOptions) []Document {
	var docs []Document
	nodes, err := parseStream(data)
	for i, n := range nodes {
		docs = append(docs, decodeTop(n, source, i, opts)...)
	}
	if err != nil {
		d := Document{Source: source, Index: len(nodes), Item: -1, Err: err}
		var se *syntaxError
		if errors.As(err, &se) {
			d.Line, d.Err = se.line, errors.New(se.msg)
		}
		d.Err = &DocumentError{Where: d.Where(), Err: d.Err}
		docs = append(docs, d)
	}
	return docs
}

// DecodeAll is Decode for callers that need every document valid (the CLI
// applies nothing unless all are): it returns the objects, or all errors.
func DecodeAll(data []byte, source string, opts DecodeOptions) ([]Resource, error) {
	var (
		objs []Resource
		errs []error
	)
	for _, d := range Decode(data, source, opts) {
		if d.Err != nil {
			errs = append(errs, d.Err)
			continue
		}
		objs = append(objs, d.Object)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return objs, nil
}

type syntaxError struct {
	line int
	msg  string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseStream splits the input into document nodes. JSON input is parsed
// with encoding/json (YAML parsers trip over some valid JSON, e.g. tabs).
func parseStream(data []byte) ([]*yaml.Node, error) {
	if yamlnode.LooksJSON(data) {
		return parseJSONStream(bytes.TrimSpace(data))
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, locateYAMLError(data, err)
		}
		if len(n.Content) == 0 || yamlnode.IsNull(n.Content[0]) {
			continue // empty document, e.g. a trailing "---"
		}
		out = append(out, n.Content[0])
	}
}

func parseJSONStream(data []byte) ([]*yaml.Node, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var out []*yaml.Node
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			line := 1 + bytes.Count(data[:min(int(dec.InputOffset()), len(data))], []byte("\n"))
			return out, &syntaxError{line: line, msg: "JSON syntax error: " + err.Error()}
		}
		// A top-level array of resources is a list without a wrapper.
		if arr, ok := v.([]any); ok {
			v = map[string]any{"kind": "List", "apiVersion": APIVersion, "items": arr}
		}
		out = append(out, valueToNode(v))
	}
}

// locateYAMLError turns a decoder error into one with an absolute line:
// yaml.v3 counts lines from the start of the failing document, so find that
// document by parsing the separated documents one by one.
func locateYAMLError(data []byte, err error) error {
	offset := 0 // lines before the current document
	for _, chunk := range docSeparatorRE.Split(string(data), -1) {
		var n yaml.Node
		if cerr := yaml.Unmarshal([]byte(chunk), &n); cerr != nil {
			err = cerr
			break
		}
		offset += strings.Count(chunk, "\n") + 1 // +1 for the separator line
	}
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &syntaxError{line: offset + line, msg: "YAML syntax error: " + m[2]}
	}
	return &syntaxError{msg: "YAML syntax error: " + strings.TrimPrefix(msg, "yaml: ")}
}

var docSeparatorRE = regexp.MustCompile(`(?m)^---[ \t]*(?:#.*)?\n`)

// valueToNode builds a YAML node from JSON-decoded values (json.Number kept
// as an int or float scalar) so JSON input goes through the same checks.
func valueToNode(v any) *yaml.Node {
	switch x := v.(type) {
	case map[string]any:
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, valueToNode(x[k]))
		}
		return n
	case []any:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for _, e := range x {
			n.Content = append(n.Content, valueToNode(e))
		}
		return n
	case json.Number:
		if _, err := x.Int64(); err == nil {
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: x.String()}
		}
		if _, err := strconv.ParseUint(x.String(), 10, 64); err == nil {
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: x.String()}
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: x.String()}
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(x)}
	case string:
		// Quoted: a JSON string is a string, whatever it spells (yaml11String).
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: x, Style: yaml.DoubleQuotedStyle}
	case nil:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: fmt.Sprint(v)}
}

func decodeTop(n *yaml.Node, source string, index int, opts DecodeOptions) []Document {
	doc := Document{Source: source, Index: index, Item: -1, Line: n.Line}
	fail := func(err error) []Document {
		doc.Err = &DocumentError{Where: doc.Where(), Err: err}
		return []Document{doc}
	}
	if n.Kind != yaml.MappingNode {
		return fail(errors.New("a resource must be a mapping with kind, apiVersion, metadata and spec"))
	}
	kind := yamlnode.Scalar(n, "kind")
	if kind == "List" || (strings.HasSuffix(kind, "List") && New(strings.TrimSuffix(kind, "List")) != nil) {
		if dup, first := yamlnode.DuplicateKey(n); dup != nil {
			return fail(duplicateKey("", dup, first))
		}
		items := yamlnode.Field(n, "items")
		if items == nil || (items.Kind != yaml.SequenceNode && !yamlnode.IsNull(items)) {
			return fail(fmt.Errorf("%s: items must be a list", kind))
		}
		var docs []Document
		itemKind := strings.TrimSuffix(kind, "List")
		for i, it := range items.Content {
			d := Document{Source: source, Index: index, Item: i, Line: it.Line}
			d.Object, d.Err = decodeResource(it, itemKind, opts)
			if d.Err != nil {
				d.Err = &DocumentError{Where: d.Where(), Err: d.Err}
			}
			docs = append(docs, d)
		}
		return docs
	}
	doc.Object, doc.Err = decodeResource(n, "", opts)
	if doc.Err != nil {
		return fail(doc.Err)
	}
	return []Document{doc}
}

// decodeResource decodes one resource mapping. defaultKind applies to
// items of a typed list that omit their kind.
func decodeResource(n *yaml.Node, defaultKind string, opts DecodeOptions) (Resource, error) {
	if n.Kind != yaml.MappingNode {
		return nil, errors.New("a resource must be a mapping with kind, apiVersion, metadata and spec")
	}
	kind := yamlnode.Scalar(n, "kind")
	if kind == "" {
		kind = defaultKind
	}
	if kind == "" {
		return nil, &FieldError{Field: "kind", Msg: "missing"}
	}
	obj := New(kind)
	if obj == nil {
		return nil, &FieldError{Field: "kind", Value: kind, Msg: "unknown kind (known: " + strings.Join(Kinds, ", ") + ")"}
	}
	name := nameOf(n)
	if av, want := yamlnode.Scalar(n, "apiVersion"), APIVersionOf(kind); av != "" && av != want {
		return nil, ErrorList{{Field: "apiVersion", Value: av, Msg: "must be " + want}}.withResource(kind, name)
	}
	if err := decodeNode(n, obj, opts); err != nil {
		return nil, err
	}
	return obj, nil
}

// DecodeJSON decodes one resource of a known kind from JSON, as read from a
// datastore: kind, apiVersion and metadata may be absent.
func DecodeJSON(kind string, data []byte, opts DecodeOptions) (Resource, error) {
	obj := New(kind)
	if obj == nil {
		return nil, fmt.Errorf("unknown kind %q", kind)
	}
	// The fast path takes an object of this kind; anything else (null, a
	// list, another kind) goes the checked way, which says what it is.
	if opts.AllowUnknownFields && isObject(data) && decodeJSONFast(obj, data) && ownKind(obj, kind) {
		return finish(obj, opts)
	}
	return decodeJSONChecked(kind, data, opts)
}

// decodeJSONChecked is DecodeJSON through checkNode: every problem with
// its field path.
func decodeJSONChecked(kind string, data []byte, opts DecodeOptions) (Resource, error) {
	obj := New(kind)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%s: invalid JSON: %w", kind, err)
	}
	if err := expectObject(kind, v); err != nil {
		return nil, err
	}
	if err := decodeNode(valueToNode(v), obj, opts); err != nil {
		return nil, err
	}
	return obj, nil
}

func isObject(data []byte) bool {
	t := bytes.TrimSpace(data)
	return len(t) > 0 && t[0] == '{'
}

// ownKind tells whether obj, as decoded, names no kind or its own.
func ownKind(obj Resource, kind string) bool {
	tm, ok := obj.(interface{ typeMeta() *TypeMeta })
	return !ok || tm.typeMeta().Kind == "" || tm.typeMeta().Kind == kind
}

// expectObject reports a value that is not an object of kind (null, a
// list, a scalar, or an object naming another kind) as that, rather than
// as the fields that decoding it would find missing.
func expectObject(kind string, v any) error {
	fail := func(field string, value any, msg string) error {
		return ErrorList{{Field: field, Value: value, Msg: msg}}.withResource(kind, "")
	}
	m, ok := v.(map[string]any)
	if !ok {
		what := "a JSON " + jsonType(v)
		if v == nil {
			what = "null"
		}
		return fail("", nil, fmt.Sprintf("the value is %s, not %s object", what, withArticle(kind)))
	}
	switch k := m["kind"].(type) {
	case nil:
	case string:
		if k != kind && k != "" {
			return fail("kind", k, fmt.Sprintf("the value is %s, not %s", withArticle(k), withArticle(kind)))
		}
	default:
		return fail("kind", nil, "must be a string")
	}
	return nil
}

func withArticle(kind string) string {
	if kind != "" && strings.ContainsRune("AEIOU", rune(kind[0])) {
		return "an " + kind
	}
	return "a " + kind
}

func jsonType(v any) string {
	switch v.(type) {
	case []any:
		return "list"
	case string:
		return "string"
	case bool:
		return "boolean"
	case json.Number, float64:
		return "number"
	}
	return fmt.Sprintf("%T", v)
}

// decodeNode checks a node against obj's Go type (unknown fields, types,
// per-field parse errors, each with its path and line), then fills obj,
// applies defaults and validates.
func decodeNode(n *yaml.Node, obj Resource, opts DecodeOptions) error {
	kind := obj.ResourceKind()
	name := nameOf(n)
	errs, unknown := checkNode(n, obj, !opts.AllowUnknownFields)
	if len(errs) > 0 {
		return errs.withResource(kind, name)
	}
	v, err := nodeToValue(n)
	if err != nil {
		return ErrorList{{Msg: err.Error()}}.withResource(kind, name)
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return ErrorList{{Msg: err.Error()}}.withResource(kind, name)
	}
	if err := json.Unmarshal(raw, obj); err != nil {
		// checkNode catches type problems first; this is a safety net.
		return ErrorList{{Msg: err.Error()}}.withResource(kind, name)
	}
	if err := keepUnknown(obj, unknown); err != nil {
		return ErrorList{{Msg: err.Error()}}.withResource(kind, name)
	}
	_, err = finish(obj, opts)
	return err
}

// finish applies defaults and validates.
func finish(obj Resource, opts DecodeOptions) (Resource, error) {
	if !opts.NoDefaults {
		Default(obj)
	}
	if !opts.NoValidate {
		if err := Validate(obj); err != nil {
			return nil, err
		}
	}
	return obj, nil
}

// decodeJSONFast decodes stored JSON straight into obj with encoding/json,
// keeping unknown fields for kinds that keep them, and reports success.
// It accepts exactly what the checked path (checkNode, then
// encoding/json) accepts without strictness; on any error the caller
// takes that path for its precise, located messages. Values in a
// datastore are read far more often than they are wrong, and some are
// large (a CalicoNodeStatus with its routes): the checked path costs
// ten times as much.
func decodeJSONFast(obj Resource, data []byte) bool {
	if err := json.Unmarshal(data, obj); err != nil {
		return false
	}
	k, ok := obj.(unknownKeeper)
	if !ok {
		return true
	}
	var fs unknownFields
	if err := jsonUnknown(data, reflect.TypeOf(obj).Elem(), nil, &fs); err != nil {
		return false
	}
	*k.unknownFields() = fs
	return true
}

// jsonUnknown collects the fields of the JSON object data that type t
// (a struct) lacks, at object paths (lists are not looked into).
func jsonUnknown(data []byte, t reflect.Type, path []string, out *unknownFields) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil || m == nil {
		return nil // null, or not an object: encoding/json accepted it as such
	}
	fields := jsonFields(t)
	for key, raw := range m {
		p := append(slices.Clone(path), key)
		ft, known := fields[key]
		if !known {
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.UseNumber()
			var v any
			if err := dec.Decode(&v); err != nil {
				return err
			}
			*out = append(*out, unknownField{path: p, value: v})
			continue
		}
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && !reflect.PointerTo(ft).Implements(jsonUnmarshaler) {
			if err := jsonUnknown(raw, ft, p, out); err != nil {
				return err
			}
		}
	}
	return nil
}

func nameOf(n *yaml.Node) string {
	if md := yamlnode.Field(n, "metadata"); md != nil {
		return yamlnode.Scalar(md, "name")
	}
	return ""
}

// nodeToValue converts a YAML node to JSON-ready values, keeping numbers
// exact (json.Number) and rejecting non-string keys.
func nodeToValue(n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return nodeToValue(n.Content[0])
	case yaml.AliasNode:
		return nodeToValue(n.Alias)
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			v, err := nodeToValue(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			if k.Tag == "!!merge" { // "<<: *anchor": keys set here win
				if mv, ok := v.(map[string]any); ok {
					for mk, vv := range mv {
						if _, set := m[mk]; !set {
							m[mk] = vv
						}
					}
				}
				continue
			}
			m[k.Value] = v
		}
		return m, nil
	case yaml.SequenceNode:
		s := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := nodeToValue(c)
			if err != nil {
				return nil, err
			}
			s = append(s, v)
		}
		return s, nil
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return nil, nil
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err != nil {
				return nil, err
			}
			return b, nil
		case "!!int", "!!float":
			v := n.Value
			if i, err := strconv.ParseInt(v, 0, 64); err == nil {
				v = strconv.FormatInt(i, 10) // normalise 0x.., 0o..
			}
			return json.Number(v), nil
		default:
			return n.Value, nil
		}
	}
	return nil, fmt.Errorf("unsupported YAML node at line %d", n.Line)
}

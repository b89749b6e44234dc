package api

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/roostnet/roost/internal/yamlnode"
)

// checkNode walks a YAML node alongside the Go type it will decode into and
// reports, with field path and line, what encoding/json would either reject
// without saying where or silently accept: unknown fields (typos), wrong
// types, out-of-range numbers and values our own types refuse to parse.
//
// Strict (user input): an unknown field is an error when it looks like a
// typo of a known one (a close name) or sits inside a list (where it could
// not be kept). In a projectcalico.org/v3 kind (lenient) any other unknown
// field is taken as one of a newer Calico: kept and written back, and
// reported by UnknownFields, never an error.
func checkNode(n *yaml.Node, obj any, strict bool) (ErrorList, []foundUnknown) {
	r, _ := obj.(Resource)
	c := checker{strict: strict, lenient: r != nil && APIVersionOf(r.ResourceKind()) == APIVersion}
	c.walk(n, reflect.TypeOf(obj), "", []string{})
	return c.errs, c.unknown
}

type checker struct {
	strict  bool
	lenient bool
	errs    ErrorList
	unknown []foundUnknown // unknown fields outside lists (when not strict)
}

// foundUnknown is an unknown field: its object path and value.
type foundUnknown struct {
	path []string
	node *yaml.Node
}

var jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()

func (c *checker) add(n *yaml.Node, path string, value any, msg string) {
	if n != nil && n.Line > 0 {
		msg = fmt.Sprintf("%s (line %d)", msg, n.Line)
	}
	c.errs = append(c.errs, &FieldError{Field: path, Value: value, Msg: msg})
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// walk checks n against t. keys is the object path of n, nil inside lists.
func (c *checker) walk(n *yaml.Node, t reflect.Type, path string, keys []string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if yamlnode.IsNull(n) {
		return // null means unset for every field
	}
	c.duplicates(n, path)
	if t.Kind() == reflect.Pointer {
		if t.Implements(jsonUnmarshaler) {
			c.custom(n, t.Elem(), path)
			return
		}
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		c.custom(n, t, path)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			c.add(n, path, nil, "must be a mapping")
			return
		}
		fields := jsonFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Tag == "!!merge" {
				c.walk(v, t, path, keys)
				continue
			}
			ft, ok := fields[k.Value]
			if !ok {
				hint := suggest(k.Value, fields)
				if c.strict && (!c.lenient || hint != "" || keys == nil) {
					c.add(k, join(path, k.Value), nil, "unknown field"+hint)
				} else if keys != nil {
					c.unknown = append(c.unknown, foundUnknown{path: append(slices.Clone(keys), k.Value), node: v})
				}
				continue
			}
			c.walk(v, ft, join(path, k.Value), appendKey(keys, k.Value))
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			c.add(n, path, nil, "must be a mapping")
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				c.add(k, path, nil, "keys must be strings")
				continue
			}
			s, ok := yaml11String(k, true)
			if !ok {
				c.add(k, path, k.Value, "key is not a value calicoctl can read as a string (quote it)")
				continue
			}
			k.Value, k.Tag, k.Style = s, "!!str", yaml.DoubleQuotedStyle
			c.walk(v, t.Elem(), join(path, k.Value), nil)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			c.add(n, path, nil, "must be a list")
			return
		}
		for i, e := range n.Content {
			c.walk(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), nil)
		}
	case reflect.Interface:
		// free-form (e.g. managedFields): anything goes, once
		c.freeForm(n, path)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			c.add(n, path, nil, "must be a string")
			return
		}
		// An unquoted true, yes, 1 or 1.5 is the string calicoctl would
		// store ("true", "true", "1", "1.5"): see yaml11String.
		s, ok := yaml11String(n, false)
		if !ok {
			c.add(n, path, n.Value, "is not a value calicoctl can read as a string (quote it)")
			return
		}
		n.Value, n.Tag, n.Style = s, "!!str", yaml.DoubleQuotedStyle
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			c.add(n, path, n.Value, "must be true or false")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v, err := strconv.ParseInt(n.Value, 0, t.Bits())
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil {
			c.add(n, path, n.Value, fmt.Sprintf("must be an integer that fits in %d bits", t.Bits()))
		}
		_ = v
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		_, err := strconv.ParseUint(n.Value, 0, t.Bits())
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil {
			c.add(n, path, n.Value, fmt.Sprintf("must be an integer in 0-%d", uint64(1)<<t.Bits()-1))
		}
	}
}

// duplicates reports a key given twice in a mapping (the last would win
// silently), with both lines.
func (c *checker) duplicates(n *yaml.Node, path string) {
	if dup, first := yamlnode.DuplicateKey(n); dup != nil {
		c.errs = append(c.errs, duplicateKey(path, dup, first))
	}
}

func duplicateKey(path string, dup, first *yaml.Node) *FieldError {
	return &FieldError{Field: join(path, dup.Value), Msg: fmt.Sprintf("duplicate key, on lines %d and %d", first.Line, dup.Line)}
}

// freeForm checks a value of no fixed type for duplicate keys only.
func (c *checker) freeForm(n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			v := n.Content[i+1]
			c.duplicates(v, join(path, n.Content[i].Value))
			c.freeForm(v, join(path, n.Content[i].Value))
		}
	case yaml.SequenceNode:
		for i, e := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			c.duplicates(e, p)
			c.freeForm(e, p)
		}
	}
}

func appendKey(keys []string, k string) []string {
	if keys == nil {
		return nil
	}
	return append(slices.Clone(keys), k)
}

// custom runs a type's own JSON decoding on the node's value so that its
// error (say, a bad AS number) is reported with the field path.
func (c *checker) custom(n *yaml.Node, t reflect.Type, path string) {
	v, err := nodeToValue(n)
	if err != nil {
		c.add(n, path, nil, err.Error())
		return
	}
	raw, err := json.Marshal(v)
	if err != nil {
		c.add(n, path, nil, err.Error())
		return
	}
	target := reflect.New(t).Interface().(json.Unmarshaler)
	if err := target.UnmarshalJSON(raw); err != nil {
		var shown any
		if n.Kind == yaml.ScalarNode {
			shown = n.Value
		}
		c.add(n, path, shown, err.Error())
	}
}

// jsonFields maps JSON names to field types, flattening embedded structs
// the way encoding/json does.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			for k, v := range jsonFields(f.Type) {
				m[k] = v
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f.Type
	}
	return m
}

// suggest offers the known field closest to a typo.
func suggest(got string, fields map[string]reflect.Type) string {
	best, bestD := "", 3
	for k := range fields {
		if strings.EqualFold(k, got) {
			return fmt.Sprintf(" (did you mean %q?)", k)
		}
		if d := editDistance(strings.ToLower(k), strings.ToLower(got)); d < bestD || (d == bestD && k < best) {
			best, bestD = k, d
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return ""
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

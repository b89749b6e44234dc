// Package yamlnode holds the small lookups on parsed YAML (yaml.Node) that
// both the resource decoder (api) and the file datastore's rewriter
// (datastore/file) need. JSON input is parsed into the same nodes, so the
// helpers serve both formats.
package yamlnode

import (
	"bytes"

	"go.yaml.in/yaml/v3"
)

// Field returns the value of key in mapping n, or nil when n is not a
// mapping or has no such key.
func Field(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// DuplicateKey returns the first key of mapping n that repeats an earlier
// one, and that earlier one, or nils. YAML parsers keep both in the node
// (decoding into Go values would let the last win silently); merge keys
// ("<<") are not counted.
func DuplicateKey(n *yaml.Node) (dup, first *yaml.Node) {
	if n == nil || n.Kind != yaml.MappingNode || len(n.Content) < 4 {
		return nil, nil
	}
	seen := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
			continue
		}
		if f, ok := seen[k.Value]; ok {
			return k, f
		}
		seen[k.Value] = k
	}
	return nil, nil
}

// Scalar returns the scalar value of key in mapping n, or "" when it is
// absent or not a scalar.
func Scalar(n *yaml.Node, key string) string {
	if f := Field(n, key); f != nil && f.Kind == yaml.ScalarNode {
		return f.Value
	}
	return ""
}

// IsNull reports whether n is a null scalar (an empty document, "~", "null").
func IsNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// Body returns the content of a DocumentNode, or n itself.
func Body(n *yaml.Node) *yaml.Node {
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		return n.Content[0]
	}
	return n
}

// LooksJSON reports whether data is JSON rather than YAML: its first
// non-blank byte opens an object or an array. Such input is parsed with
// encoding/json (YAML parsers trip over some valid JSON, e.g. tabs).
func LooksJSON(data []byte) bool {
	t := bytes.TrimSpace(data)
	return len(t) > 0 && (t[0] == '{' || t[0] == '[')
}

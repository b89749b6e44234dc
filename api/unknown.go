package api

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
)

// Some kinds keep the fields of a stored value that Roost's types do not
// know (a newer Calico wrote them) and write them back unchanged, so that a
// read-modify-write by Roost (say, a node writing its CalicoNodeStatus)
// does not drop them. They implement unknownKeeper; decoding with
// AllowUnknownFields fills it, encoding merges it back in.

// unknownField is one such field: its object path from the top of the
// resource (fields inside lists are not kept: lists are rewritten whole)
// and its JSON-ready value.
type unknownField struct {
	path  []string
	value any
}

type unknownFields []unknownField

type unknownKeeper interface{ unknownFields() *unknownFields }

// marshalResource encodes r with encoding/json and merges back the unknown
// fields it carries. Fields of r's own type win over kept ones.
func marshalResource(r Resource) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	k, ok := r.(unknownKeeper)
	if !ok || len(*k.unknownFields()) == 0 {
		return b, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var top map[string]any
	if err := dec.Decode(&top); err != nil {
		return nil, err
	}
	for _, f := range *k.unknownFields() {
		m := top
		for _, key := range f.path[:len(f.path)-1] {
			next, ok := m[key].(map[string]any)
			if !ok {
				if m[key] != nil {
					m = nil // a known field of another type holds the path
					break
				}
				next = map[string]any{}
				m[key] = next
			}
			m = next
		}
		last := f.path[len(f.path)-1]
		if _, set := m[last]; m != nil && !set {
			m[last] = f.value
		}
	}
	return json.Marshal(top)
}

// keepUnknown stores the unknown fields found while decoding obj, if its
// kind keeps them.
func keepUnknown(obj Resource, found []foundUnknown) error {
	k, ok := obj.(unknownKeeper)
	if !ok {
		return nil
	}
	var fs unknownFields
	for _, f := range found {
		v, err := nodeToValue(f.node)
		if err != nil {
			return err
		}
		fs = append(fs, unknownField{path: f.path, value: v})
	}
	*k.unknownFields() = fs
	return nil
}

// copyUnknown gives dst the unknown fields of src (Clone).
func copyUnknown(dst, src Resource) {
	d, ok1 := dst.(unknownKeeper)
	s, ok2 := src.(unknownKeeper)
	if ok1 && ok2 {
		*d.unknownFields() = slices.Clone(*s.unknownFields())
	}
}

// UnknownFields lists, as dotted paths ("spec.newField"), the fields of r
// that Roost's types lack and that it keeps for writing back: what a
// reader reports (a newer Calico wrote them, or a user did; they have no
// effect in Roost).
func UnknownFields(r Resource) []string {
	k, ok := r.(unknownKeeper)
	if !ok {
		return nil
	}
	var out []string
	for _, f := range *k.unknownFields() {
		out = append(out, strings.Join(f.path, "."))
	}
	slices.Sort(out)
	return out
}

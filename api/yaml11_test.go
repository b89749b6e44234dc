package api

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// stringPath is a way down a resource's Go type to a string: field names,
// "[]" for a list element, "{}" for a map value and "{key}" for a map key.
type stringPath []string

// stringPaths lists every string field, string list element and map key or
// value reachable in t (types with their own JSON decoding are theirs).
func stringPaths(t reflect.Type, prefix stringPath, depth int, out *[]stringPath) {
	if depth > 8 {
		return
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		return
	}
	add := func(p stringPath) { *out = append(*out, append(append(stringPath{}, prefix...), p...)) }
	switch t.Kind() {
	case reflect.String:
		add(nil)
	case reflect.Struct:
		for name, ft := range jsonFields(t) {
			if name == "kind" || name == "apiVersion" || (len(prefix) == 1 && prefix[0] == "metadata" && name == "name") {
				continue
			}
			stringPaths(ft, append(append(stringPath{}, prefix...), name), depth+1, out)
		}
	case reflect.Slice:
		stringPaths(t.Elem(), append(append(stringPath{}, prefix...), "[]"), depth+1, out)
	case reflect.Map:
		if t.Elem().Kind() == reflect.String {
			add(stringPath{"{key}"})
		}
		stringPaths(t.Elem(), append(append(stringPath{}, prefix...), "{}"), depth+1, out)
	}
}

// yamlAt writes the flow YAML that puts the plain scalar v at p.
func yamlAt(p stringPath, v string) string {
	if len(p) == 0 {
		return v
	}
	switch p[0] {
	case "[]":
		return "[" + yamlAt(p[1:], v) + "]"
	case "{}":
		return "{k: " + yamlAt(p[1:], v) + "}"
	case "{key}":
		return "{" + v + ": x}"
	}
	return "{" + p[0] + ": " + yamlAt(p[1:], v) + "}"
}

// valueAt follows p in decoded JSON; a map key is returned as the key.
func valueAt(v any, p stringPath) (any, bool) {
	for i, step := range p {
		switch step {
		case "[]":
			l, ok := v.([]any)
			if !ok || len(l) != 1 {
				return nil, false
			}
			v = l[0]
		case "{}", "{key}":
			m, ok := v.(map[string]any)
			if !ok || len(m) != 1 {
				return nil, false
			}
			for k, e := range m {
				if step == "{key}" && i == len(p)-1 {
					return k, true
				}
				v = e
			}
		default:
			m, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			if v, ok = m[step]; !ok {
				return nil, false
			}
		}
	}
	return v, true
}

// TestYAML11ScalarsInEveryStringField decodes, for every kind, an unquoted
// YAML 1.1 scalar into every string-typed place and expects the string
// calicoctl (sigs.k8s.io/yaml) stores there.
func TestYAML11ScalarsInEveryStringField(t *testing.T) {
	cases := []struct{ in, want string }{
		{"yes", "true"}, {"on", "true"}, {"true", "true"}, {"Y", "true"},
		{"no", "false"}, {"off", "false"}, {"False", "false"},
		{"1", "1"}, {"1.5", "1.5"}, {"1.10", "1.1"}, {"0777", "511"}, {"1e3", "1000"},
		{"rack-1", "rack-1"}, {"tRue", "tRue"}, {"'yes'", "yes"}, {`"1.10"`, "1.10"},
	}
	total := 0
	for _, kind := range Kinds {
		var paths []stringPath
		stringPaths(reflect.TypeOf(New(kind)).Elem(), nil, 0, &paths)
		for _, p := range paths {
			total++
			for _, c := range cases {
				doc := "kind: " + kind + "\nmetadata: {name: n}\n"
				top, rest := p[0], p[1:]
				if top == "metadata" {
					doc = "kind: " + kind + "\nmetadata: {name: n, " + strings.TrimSuffix(strings.TrimPrefix(yamlAt(rest, c.in), "{"), "}") + "}\n"
				} else {
					doc += top + ": " + yamlAt(rest, c.in) + "\n"
				}
				objs, err := DecodeAll([]byte(doc), "t.yaml", DecodeOptions{NoValidate: true, NoDefaults: true})
				if err != nil {
					t.Errorf("%s %v = %s: %v\n%s", kind, p, c.in, err, doc)
					continue
				}
				b, err := json.Marshal(objs[0])
				if err != nil {
					t.Fatal(err)
				}
				var v any
				if err := json.Unmarshal(b, &v); err != nil {
					t.Fatal(err)
				}
				got, ok := valueAt(v, p)
				if !ok || got != c.want {
					t.Errorf("%s %v = %s: got %#v (found %v), want %q\n%s\n%s", kind, p, c.in, got, ok, c.want, doc, b)
				}
			}
		}
	}
	if total < 100 {
		t.Fatalf("only %d string places found: the walk is broken", total)
	}
	t.Logf("%d string places in %d kinds", total, len(Kinds))
}

// TestYAML11LabelsMatchSelector is the case: a label written
// `route-reflector: yes` is the string "true", as calicoctl stores it.
func TestYAML11LabelsMatchSelector(t *testing.T) {
	n := decodeOne(t, "kind: Node\nmetadata:\n  name: n\n  labels: {route-reflector: yes, rack: 1, on: off}\n  annotations: {a: 1.5}\n").(*Node)
	want := map[string]string{"route-reflector": "true", "rack": "1", "true": "false"}
	if !reflect.DeepEqual(n.Metadata.Labels, want) {
		t.Errorf("labels = %v, want %v", n.Metadata.Labels, want)
	}
	if n.Metadata.Annotations["a"] != "1.5" {
		t.Errorf("annotation = %q, want 1.5", n.Metadata.Annotations["a"])
	}
	// JSON input: a boolean in a string field is its text too.
	n = decodeOne(t, `{"kind":"Node","metadata":{"name":"n","labels":{"a":true,"b":1.5,"c":"yes"}}}`).(*Node)
	want = map[string]string{"a": "true", "b": "1.5", "c": "yes"}
	if !reflect.DeepEqual(n.Metadata.Labels, want) {
		t.Errorf("JSON labels = %v, want %v", n.Metadata.Labels, want)
	}
	// What calicoctl cannot read either stays an error.
	if _, err := DecodeAll([]byte("kind: Node\nmetadata: {name: n, labels: {a: .inf}}\n"), "t", DecodeOptions{}); err == nil || !strings.Contains(err.Error(), "metadata.labels.a") {
		t.Errorf(".inf: err = %v", err)
	}
}

// TestYAML11StringsWrittenQuoted: strings that YAML 1.1 would read as
// something else are written quoted, so they read back unchanged.
func TestYAML11StringsWrittenQuoted(t *testing.T) {
	for _, s := range []string{"y", "n", "yes", "on", "Off", "0777", "1.10", "1e3", "1_000", "rack-1", "true", "1"} {
		n := &Node{TypeMeta: TypeMeta{Kind: KindNode, APIVersion: APIVersion}, Metadata: ObjectMeta{Name: "n", Labels: map[string]string{s: s}}}
		y, err := MarshalYAML(n)
		if err != nil {
			t.Fatal(err)
		}
		back := decodeOne(t, string(y)).(*Node)
		if back.Metadata.Labels[s] != s {
			t.Errorf("%q: read back %v from\n%s", s, back.Metadata.Labels, y)
		}
	}
}

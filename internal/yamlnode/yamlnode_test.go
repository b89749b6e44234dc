package yamlnode

import (
	"fmt"
	"testing"

	"go.yaml.in/yaml/v3"
)

func parse(t *testing.T, s string) *yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(s), &n); err != nil {
		t.Fatal(err)
	}
	return &n
}

func TestLookups(t *testing.T) {
	doc := parse(t, "kind: Node\nmetadata: {name: n1}\nitems: [a]\nempty: ~\n")
	n := Body(doc)
	if n.Kind != yaml.MappingNode || Body(n) != n {
		t.Fatalf("Body: %v", n.Kind)
	}
	cases := []struct {
		node *yaml.Node
		key  string
		want string
	}{
		{n, "kind", "Node"},
		{Field(n, "metadata"), "name", "n1"},
		{n, "metadata", ""}, // not a scalar
		{n, "items", ""},
		{n, "missing", ""},
		{Field(n, "items"), "a", ""}, // not a mapping
		{nil, "kind", ""},
	}
	for _, c := range cases {
		if got := Scalar(c.node, c.key); got != c.want {
			t.Errorf("Scalar(%q) = %q, want %q", c.key, got, c.want)
		}
	}
	if !IsNull(Field(n, "empty")) || IsNull(Field(n, "kind")) {
		t.Error("IsNull")
	}
}

func TestLooksJSON(t *testing.T) {
	for in, want := range map[string]bool{
		`{"kind":"Node"}`: true, " \n[1]": true, "kind: Node": false, "": false, "# {": false,
	} {
		if LooksJSON([]byte(in)) != want {
			t.Errorf("LooksJSON(%q) != %v", in, want)
		}
	}
}

func TestDuplicateKey(t *testing.T) {
	for in, want := range map[string]string{
		"a: 1\nb: 2\na: 3\n":           "a 1 3",
		"a: 1\nb: 2\n":                 "",
		"<<: {a: 1}\na: 2\n":           "",
		"a: 1\nb: {a: 2}\n":            "", // another mapping
		"x: 1\ny: 2\nz: 3\ny: 4\nx: 5": "y 2 4",
	} {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(in), &doc); err != nil {
			t.Fatal(err)
		}
		got := ""
		if dup, first := DuplicateKey(Body(&doc)); dup != nil {
			got = fmt.Sprintf("%s %d %d", dup.Value, first.Line, dup.Line)
		}
		if got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

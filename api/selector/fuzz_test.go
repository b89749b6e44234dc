package selector

import (
	"errors"
	"testing"
)

// FuzzParse checks that Parse never panics, that errors are well formed, and
// that the canonical form of every accepted selector parses back to the same
// canonical form and evaluates the same way.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"",
		"all()",
		`a == "b"`,
		`has(a) && !has(b) || c in {"d", 'e'}`,
		`x not in {} && y starts with "p" && z ends with 's' || w contains ""`,
		`!(projectcalico.org/zone != "z" || (a/b == 'c"'))`,
	} {
		f.Add(s)
	}
	labelSets := []map[string]string{
		nil,
		{"a": "b", "b": "", "c": "d", "x": "px", "y": "py"},
		{"a": "", "z": "s", "w": "", "projectcalico.org/zone": "z", "a/b": `c"`},
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := Parse(s)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q) error %v is %T, want *ParseError", s, err, err)
			}
			if pe.Selector != s || pe.Offset < 0 || pe.Offset > len(s) || pe.Msg == "" {
				t.Fatalf("Parse(%q) returned malformed error %#v", s, pe)
			}
			return
		}
		again, err := Parse(sel.String())
		if err != nil {
			t.Fatalf("Parse(%q) succeeded with canonical form %q, which fails to parse: %v", s, sel, err)
		}
		if again.String() != sel.String() {
			t.Fatalf("canonical form not stable: %q -> %q -> %q", s, sel, again)
		}
		if again.UniqueID() != sel.UniqueID() {
			t.Fatalf("UniqueID changed across round trip of %q", s)
		}
		for _, l := range labelSets {
			if sel.Evaluate(l) != again.Evaluate(l) {
				t.Fatalf("%q and its canonical form %q disagree on %v", s, sel, l)
			}
		}
	})
}

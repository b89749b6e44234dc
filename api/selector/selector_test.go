package selector

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

var (
	noLabels = map[string]string{}
	rrLabels = map[string]string{
		"route-reflector":        "true",
		"projectcalico.org/zone": "us-east-1a",
		"kubernetes.io/hostname": "node-1",
		"rack":                   "r7",
		"a.b/c_d":                "x",
		"empty":                  "",
		"quote":                  `it's "quoted"`,
	}
)

func TestEvaluate(t *testing.T) {
	tests := []struct {
		sel    string
		labels map[string]string
		want   bool
	}{
		// all(), global() and the empty selector.
		{"", noLabels, true},
		{"", nil, true},
		{"   \t\n", rrLabels, true},
		{"all()", noLabels, true},
		{"all( )", rrLabels, true},
		{"global()", rrLabels, true},
		{"!all()", rrLabels, false},

		// ==
		{`route-reflector == "true"`, rrLabels, true},
		{`route-reflector == 'true'`, rrLabels, true},
		{`route-reflector=="true"`, rrLabels, true},
		{`route-reflector == "false"`, rrLabels, false},
		{`route-reflector == "true"`, noLabels, false},
		{`route-reflector == "true"`, nil, false},
		{`empty == ""`, rrLabels, true},
		{`missing == ""`, rrLabels, false},
		{`projectcalico.org/zone == "us-east-1a"`, rrLabels, true},
		{`a.b/c_d == "x"`, rrLabels, true},
		{`quote starts with "it's"`, rrLabels, true},
		{`quote ends with '"quoted"'`, rrLabels, true},
		{`quote == 'it'`, rrLabels, false},
		{`rack == "R7"`, rrLabels, false},

		// !=, including absent labels.
		{`rack != "r7"`, rrLabels, false},
		{`rack != "r8"`, rrLabels, true},
		{`rack != "r7"`, noLabels, true},
		{`rack != ''`, rrLabels, true},
		{`empty != ""`, rrLabels, false},

		// has / !has
		{"has(rack)", rrLabels, true},
		{"has( rack )", rrLabels, true},
		{"has(projectcalico.org/zone)", rrLabels, true},
		{"has(empty)", rrLabels, true},
		{"has(missing)", rrLabels, false},
		{"!has(missing)", rrLabels, true},
		{"! has(rack)", rrLabels, false},
		{"!has(rack)", noLabels, true},

		// in / not in, including absent labels and empty sets.
		{`rack in {"r6", "r7"}`, rrLabels, true},
		{`rack in {'r6','r8'}`, rrLabels, false},
		{`rack in{"r7"}`, rrLabels, true},
		{`rack in {"r7"}`, noLabels, false},
		{`rack in {}`, rrLabels, false},
		{`rack in { }`, noLabels, false},
		{`empty in {""}`, rrLabels, true},
		{`rack not in {"r6", "r7"}`, rrLabels, false},
		{`rack not in {"r6", "r8"}`, rrLabels, true},
		{`rack not in {"r7"}`, noLabels, true},
		{`rack not in {}`, rrLabels, true},
		{`rack not in {}`, noLabels, true},
		{`rack   not   in   {  "r7"  ,  "r7" }`, rrLabels, false},
		{`rack in {"r9", "r1", "r7", "r3"}`, rrLabels, true},

		// contains / starts with / ends with (require the label).
		{`projectcalico.org/zone contains "east"`, rrLabels, true},
		{`projectcalico.org/zone contains "west"`, rrLabels, false},
		{`projectcalico.org/zone contains ""`, rrLabels, true},
		{`missing contains ""`, rrLabels, false},
		{`projectcalico.org/zone starts with "us-"`, rrLabels, true},
		{`projectcalico.org/zone starts with "eu-"`, rrLabels, false},
		{`projectcalico.org/zone starts  with 'us'`, noLabels, false},
		{`projectcalico.org/zone ends with "1a"`, rrLabels, true},
		{`projectcalico.org/zone ends with "1b"`, rrLabels, false},
		{`missing ends with ""`, rrLabels, false},
		{`quote contains '"'`, rrLabels, true},
		{`quote contains "'"`, rrLabels, true},

		// Keys that look like keywords are still keys.
		{`has == "x"`, map[string]string{"has": "x"}, true},
		{`in in {"in"}`, map[string]string{"in": "in"}, true},
		{`all != "x"`, noLabels, true},

		// &&, ||, ! and precedence.
		{`has(rack) && route-reflector == "true"`, rrLabels, true},
		{`has(rack) && route-reflector == "false"`, rrLabels, false},
		{`has(rack)&&has(empty)&&has(a.b/c_d)`, rrLabels, true},
		{`has(missing) || rack == "r7"`, rrLabels, true},
		{`has(missing) || rack == "r8"`, rrLabels, false},
		{`has(missing)||has(nope)||has(rack)`, rrLabels, true},
		// && binds tighter than ||: true || (false && false) == true.
		{`has(rack) || has(missing) && has(nope)`, rrLabels, true},
		// (true || false) && false == false.
		{`(has(rack) || has(missing)) && has(nope)`, rrLabels, false},
		// false && false || true == true.
		{`has(missing) && has(nope) || has(rack)`, rrLabels, true},
		// false && (false || true) == false.
		{`has(missing) && (has(nope) || has(rack))`, rrLabels, false},
		// ! binds tighter than &&: (!true) && true == false.
		{`!has(rack) && has(empty)`, rrLabels, false},
		// ! binds tighter than ||: (!true) || true == true.
		{`!has(rack) || has(empty)`, rrLabels, true},
		{`!(has(rack) && has(missing))`, rrLabels, true},
		{`!(has(rack) || has(missing))`, rrLabels, false},
		{`!!has(rack)`, rrLabels, true},
		{`!!!has(rack)`, rrLabels, false},
		{`!rack == "r7"`, rrLabels, false},
		{`!rack == "r7"`, noLabels, true},
		{`!(rack in {"r7"})`, noLabels, true},

		// Nesting and whitespace.
		{`((((has(rack)))))`, rrLabels, true},
		{"(\n  route-reflector == \"true\"\n  && (rack in {\"r7\"} || rack in {\"r8\"})\n)\n", rrLabels, true},
		{`((has(a) || has(b)) && (has(c) || !(has(d) && has(e))))`, map[string]string{"b": "", "d": ""}, true},
		{`((has(a) || has(b)) && (has(c) || !(has(d) && has(e))))`, map[string]string{"b": "", "d": "", "e": ""}, false},
		{`all() && !has(missing) && (global() || has(x))`, rrLabels, true},
	}
	for _, tt := range tests {
		sel, err := Parse(tt.sel)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.sel, err)
			continue
		}
		if got := sel.Evaluate(tt.labels); got != tt.want {
			t.Errorf("Parse(%q).Evaluate(%v) = %v, want %v (canonical %s)", tt.sel, tt.labels, got, tt.want, sel)
		}
		// The canonical form must evaluate identically.
		re, err := Parse(sel.String())
		if err != nil {
			t.Errorf("Parse(%q) (canonical of %q): %v", sel.String(), tt.sel, err)
			continue
		}
		if got := re.Evaluate(tt.labels); got != tt.want {
			t.Errorf("canonical %q of %q evaluated to %v, want %v", sel, tt.sel, got, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		sel    string
		offset int
		msg    string
	}{
		{`a == `, 5, "expected a quoted string"},
		{`a == b`, 5, "expected a quoted string"},
		{`a != `, 5, "expected a quoted string"},
		{`a ==`, 4, "expected a quoted string"},
		{`a contains b`, 11, "expected a quoted string"},
		{`a == "b`, 5, "unterminated string"},
		{`a == 'b"`, 5, "unterminated string"},
		{`a in {"b}`, 6, "unterminated string"},
		{`quote == 'it''s "quoted"'`, 13, "expected &&, || or end of selector"},
		{`a == "b" c`, 9, "expected &&, || or end of selector"},
		{`has(a) has(b)`, 7, "expected &&, || or end of selector"},
		{`has(a) & has(b)`, 7, "expected &&, || or end of selector"},
		{`has(a) | has(b)`, 7, "expected &&, || or end of selector"},
		{`has(a))`, 6, "unbalanced ')'"},
		{`)`, 0, "expected a label key"},
		{`(has(a)`, 0, "unbalanced '('"},
		{`((has(a))`, 0, "unbalanced '('"},
		{`(has(a) has(b))`, 8, "expected ')', && or ||"},
		{`()`, 1, "expected a label key"},
		{`has(a) &&`, 9, "expected a label key"},
		{`has(a) || `, 10, "expected a label key"},
		{`&& has(a)`, 0, "expected a label key"},
		{`!`, 1, "expected a label key"},
		{`a`, 1, "expected an operator"},
		{`a = "b"`, 2, "expected an operator"},
		{`a === "b"`, 4, "expected a quoted string"},
		{`a ~= "b"`, 2, "expected an operator"},
		{`a like "b"`, 2, "expected an operator"},
		{`a not "b"`, 6, "expected 'in' after 'not'"},
		{`a notin {}`, 2, "expected an operator"},
		{`a starts "b"`, 9, "expected 'with' after 'starts'"},
		{`a ends wit "b"`, 7, "expected 'with' after 'ends'"},
		{`a in "b"`, 5, "expected '{'"},
		{`a in {`, 6, "expected a quoted string"},
		{`a in {"b"`, 5, "unbalanced '{'"},
		{`a in {"b" "c"}`, 10, "expected ',' or '}'"},
		{`a in {"b",}`, 10, "expected a quoted string"},
		{`a in {,}`, 6, "expected a quoted string"},
		{`a in {b}`, 6, "expected a quoted string"},
		{`has()`, 4, "expected a label key"},
		{`has(a`, 5, "expected ')' after has(a"},
		{`has(a b)`, 6, "expected ')' after has(a"},
		{`has a`, 4, "expected an operator"},
		{`all(`, 4, "expected ')' after all("},
		{`all(a)`, 4, "expected ')' after all("},
		{`global(x)`, 7, "expected ')' after global("},
		{`foo()`, 0, `unknown function "foo"`},
		{`all() extra`, 6, "expected &&, || or end of selector"},
		{`$a == "b"`, 0, "expected a label key"},
		{`a$ == "b"`, 1, "expected an operator"},
		{`-a == "b"`, 0, `invalid label key "-a": name must begin and end with a letter or digit`},
		{`a. == "b"`, 0, "name must begin and end with a letter or digit"},
		{`/a == "b"`, 0, "prefix before '/' must not be empty"},
		{`a/ == "b"`, 0, "name must not be empty"},
		{`a/b/c == "b"`, 0, "at most one '/' is allowed"},
		{`Example.com/a == "b"`, 0, "prefix must be a lowercase DNS subdomain"},
		{`x..y/a == "b"`, 0, "prefix must be a lowercase DNS subdomain"},
		{`-x.y/a == "b"`, 0, "prefix must be a lowercase DNS subdomain"},
		{`x_y/a == "b"`, 0, "prefix must be a lowercase DNS subdomain"},
		{strings.Repeat("a", 64) + ` == "b"`, 0, "name must be at most 63 characters"},
		{strings.Repeat("a", 254) + `/b == "b"`, 0, "prefix must be at most 253 characters"},
		{`has(a/b/c)`, 4, "at most one '/' is allowed"},
		{`has(_a)`, 4, "invalid label key"},
		{`has(a) && (b == "c" || d in {"e"}`, 10, "unbalanced '('"},
		{strings.Repeat("(", maxDepth+1) + "has(a)" + strings.Repeat(")", maxDepth+1), maxDepth, "nested more than"},
		{strings.Repeat("!", maxDepth+1) + "has(a)", maxDepth, "nested more than"},
	}
	for _, tt := range tests {
		sel, err := Parse(tt.sel)
		if err == nil {
			t.Errorf("Parse(%q) = %q, want error", tt.sel, sel)
			continue
		}
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("Parse(%q) error %v is %T, want *ParseError", tt.sel, err, err)
			continue
		}
		if pe.Selector != tt.sel || pe.Offset != tt.offset || !strings.Contains(pe.Msg, tt.msg) {
			t.Errorf("Parse(%q) = %v (offset %d, msg %q), want offset %d and message containing %q",
				tt.sel, err, pe.Offset, pe.Msg, tt.offset, tt.msg)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	_, err := Parse("a == ")
	want := `selector "a == ": expected a quoted string at offset 5`
	if err == nil || err.Error() != want {
		t.Fatalf("Parse(%q) error = %v, want %s", "a == ", err, want)
	}
}

func TestMaxDepthAccepted(t *testing.T) {
	s := strings.Repeat("(", maxDepth) + "has(a)" + strings.Repeat(")", maxDepth)
	if _, err := Parse(s); err != nil {
		t.Fatalf("Parse(%d nested parens): %v", maxDepth, err)
	}
	// Depth is per nesting level, not per total number of groups.
	s = strings.Repeat("(has(a)) && ", 10*maxDepth) + "!has(b)"
	if _, err := Parse(s); err != nil {
		t.Fatalf("Parse(many sequential groups): %v", err)
	}
}

func TestString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "all()"},
		{"  all( ) ", "all()"},
		{"global()", "global()"},
		{`a=='b'`, `a == "b"`},
		{`a != 'say "hi"'`, `a != 'say "hi"'`},
		{`has( a )`, `has(a)`},
		{`! has(a)`, `!has(a)`},
		{`!a == "b"`, `!(a == "b")`},
		{`!!has(a)`, `!!has(a)`},
		{`a in {"z", 'a', "m", "a"}`, `a in {"a", "m", "z"}`},
		{`a not in {}`, `a not in {}`},
		{`a  contains 'x'`, `a contains "x"`},
		{`a starts  with 'x'`, `a starts with "x"`},
		{`a ends with 'x'`, `a ends with "x"`},
		{`a == "b" && has(c)`, `(a == "b" && has(c))`},
		{`(((a == "b")))`, `a == "b"`},
		{`has(a) && has(b) && has(c)`, `(has(a) && has(b) && has(c))`},
		{`(has(a) && has(b)) && has(c)`, `(has(a) && has(b) && has(c))`},
		{`has(a) && (has(b) && has(c))`, `(has(a) && has(b) && has(c))`},
		{`has(a) || has(b) && has(c)`, `(has(a) || (has(b) && has(c)))`},
		{`(has(a) || has(b)) && has(c)`, `((has(a) || has(b)) && has(c))`},
		{`has(a) || (has(b) || has(c))`, `(has(a) || has(b) || has(c))`},
		{`!(has(a) || has(b))`, `!(has(a) || has(b))`},
		{`!has(a) && !(b in {'c'})`, `(!has(a) && !(b in {"c"}))`},
	}
	for _, tt := range tests {
		sel, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if got := sel.String(); got != tt.want {
			t.Errorf("Parse(%q).String() = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	inputs := []string{
		"",
		"all()",
		"global()",
		`route-reflector == "true"`,
		`a != 'x"y'`,
		`has(projectcalico.org/zone) && !has(kubernetes.io/hostname)`,
		`rack in {"r2", "r1", 'r"3'} || rack not in {}`,
		`a contains "" && b starts with 'x' && c ends with "y"`,
		`!(a == "b" || (c == "d" && !(e in {"f"})))`,
		`((has(a) || has(b)) && (has(c) || !(has(d) && has(e))))`,
		`!!!has(a) || !(b != "c")`,
		"x == \"tab\there\nnewline\"",
	}
	for _, in := range inputs {
		sel := MustParse(in)
		again, err := Parse(sel.String())
		if err != nil {
			t.Errorf("Parse(%q) (String of %q): %v", sel.String(), in, err)
			continue
		}
		if !reflect.DeepEqual(sel, again) {
			t.Errorf("Parse(%q) != Parse(%q)", in, sel.String())
		}
		if again.String() != sel.String() || again.UniqueID() != sel.UniqueID() {
			t.Errorf("round trip of %q: %q/%s, then %q/%s", in, sel, sel.UniqueID(), again, again.UniqueID())
		}
	}
}

func TestUniqueID(t *testing.T) {
	a := MustParse(`a == "b" && has(c)`)
	b := MustParse(`(a=='b')&&has( c )`)
	c := MustParse(`a == "b" || has(c)`)
	if a.UniqueID() != b.UniqueID() {
		t.Errorf("equivalent selectors have different IDs: %s, %s", a.UniqueID(), b.UniqueID())
	}
	if a.UniqueID() == c.UniqueID() {
		t.Errorf("different selectors share ID %s", a.UniqueID())
	}
	if MustParse("").UniqueID() != MustParse("all()").UniqueID() {
		t.Errorf(`"" and "all()" have different IDs`)
	}
	if id := a.UniqueID(); !strings.HasPrefix(id, "s:") || len(id) != 45 {
		t.Errorf("unexpected ID format %q", id)
	}
}

func TestMustParsePanics(t *testing.T) {
	defer func() {
		r := recover()
		if _, ok := r.(*ParseError); !ok {
			t.Errorf("MustParse panicked with %v (%T), want *ParseError", r, r)
		}
	}()
	MustParse("a ==")
}

func TestEvaluateDoesNotAllocate(t *testing.T) {
	sel := MustParse(benchSelector)
	labels := benchLabels()
	if !sel.Evaluate(labels) {
		t.Fatal("benchmark selector does not match benchmark labels")
	}
	if n := testing.AllocsPerRun(100, func() { sel.Evaluate(labels) }); n != 0 {
		t.Errorf("Evaluate allocates %v times per run, want 0", n)
	}
}

const benchSelector = `route-reflector == "true" && has(kubernetes.io/hostname) && ` +
	`projectcalico.org/zone in {"us-east-1a", "us-east-1b", "us-east-1c"} && ` +
	`(rack starts with "r" || rack ends with "x") && !(tier != "infra") && ` +
	`team not in {"a", "b"} && projectcalico.org/zone contains "east"`

func benchLabels() map[string]string {
	return map[string]string{
		"route-reflector":         "true",
		"kubernetes.io/hostname":  "node-4711",
		"kubernetes.io/os":        "linux",
		"projectcalico.org/zone":  "us-east-1b",
		"rack":                    "r12",
		"tier":                    "infra",
		"node.kubernetes.io/role": "worker",
	}
}

func BenchmarkEvaluate(b *testing.B) {
	sel := MustParse(benchSelector)
	labels := benchLabels()
	b.ReportAllocs()
	for b.Loop() {
		if !sel.Evaluate(labels) {
			b.Fatal("no match")
		}
	}
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(benchSelector); err != nil {
			b.Fatal(err)
		}
	}
}

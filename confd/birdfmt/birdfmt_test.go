package birdfmt

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
)

func TestString(t *testing.T) {
	ok := []string{"", "s3cret", "with space", "ünïcødé ✓", "日本語", "a'b", "$ {} ; #", "\uFFFD"}
	for _, s := range ok {
		got, err := String(s)
		if err != nil || got != `"`+s+`"` {
			t.Errorf("String(%q) = %q, %v; want quoted", s, got, err)
		}
	}
	bad := map[string]string{
		`a"b`:         "double quote",
		`a\b`:         "backslash",
		"a\nb":        "line break",
		"a\rb":        "line break",
		"a\tb":        "control character",
		"a\x00b":      "control character",
		"a\x7fb":      "control character",
		"a\u2028b":    "non-printable",
		"a\u202eb":    "non-printable",
		"a\xffb":      "invalid UTF-8",
		"\"; }\n#":    "double quote",
		"ok\"\ninj;":  "double quote",
		"trail\\":     "backslash",
		"zero\u200bw": "non-printable",
	}
	for s, reason := range bad {
		got, err := String(s)
		var se *StringError
		if err == nil || !errors.As(err, &se) || !strings.Contains(se.Reason, reason) {
			t.Errorf("String(%q) = %q, %v; want error %q", s, got, err, reason)
			continue
		}
		if got != "" {
			t.Errorf("String(%q) returned text %q with an error", s, got)
		}
		// The message must not leak the value (it may be a password).
		if len(s) > 3 && strings.Contains(err.Error(), s) {
			t.Errorf("error for %q reveals the value: %v", s, err)
		}
	}
}

func TestIdent(t *testing.T) {
	same := []string{"Mesh_10_0_0_1", "Global_fd00__1_port_1790", "Node_1", "BGPFilter_abc", "X", "R_x",
		strings.Repeat("Z", 64), "Filter"}
	for _, s := range same {
		if got := Ident(s); got != s {
			t.Errorf("Ident(%q) = %q, want unchanged", s, got)
		}
	}
	changed := []string{
		"", "filter", "ipv4", "bgp", "mesh", "my-filter", "my.filter", "my_filter", "1abc", "_abc",
		"ABCDEF", strings.Repeat("A", 65), strings.Repeat("deadbeef", 4), "a\"b", "a\nb", "ünï",
		"Mesh_x_0123456789", "名前", "x y", "Mesh_10_0_0_1 ",
	}
	seen := map[string]string{}
	for _, s := range changed {
		got := Ident(s)
		if got == s {
			t.Errorf("Ident(%q) unchanged; want rewritten", s)
		}
		checkIdent(t, s, got)
		if prev, dup := seen[got]; dup {
			t.Errorf("Ident(%q) = Ident(%q) = %q", s, prev, got)
		}
		seen[got] = s
		if Ident(s) != got {
			t.Errorf("Ident(%q) not deterministic", s)
		}
	}
	// Inputs that sanitize alike stay distinct.
	a, b, c := Ident("a-b"), Ident("a.b"), Ident("a_b")
	if a == b || b == c || a == c {
		t.Errorf("collisions: %q %q %q", a, b, c)
	}
	// Long inputs sharing a prefix stay distinct.
	long := strings.Repeat("Long", 30)
	if Ident(long+"1") == Ident(long+"2") {
		t.Errorf("long names collide")
	}
	// A rewritten name is a fixed point? No: it ends with the hash form, so
	// it is rewritten again, and must still differ from its input.
	h := Ident("my-filter")
	if Ident(h) == h {
		t.Errorf("hash-suffixed name %q passed through unchanged", h)
	}
}

func checkIdent(t *testing.T, in, got string) {
	t.Helper()
	if len(got) == 0 || len(got) > MaxSymbolLen {
		t.Errorf("Ident(%q) = %q: bad length %d", in, got, len(got))
	}
	if !isLetter(got[0]) {
		t.Errorf("Ident(%q) = %q: must start with a letter", in, got)
	}
	for i := 0; i < len(got); i++ {
		if !isAlnum(got[i]) && got[i] != '_' {
			t.Errorf("Ident(%q) = %q: bad byte %q", in, got, got[i])
		}
	}
}

// TestIdentWithBIRD feeds hostile names through Ident and has BIRD parse
// them as protocol and function names.
func TestIdentWithBIRD(t *testing.T) {
	bird := birdPath(t)
	inputs := []string{"filter", "ipv4", "is_ibgp", "bgp", "true", "all", "none", "define",
		strings.Repeat("deadbeef", 8), strings.Repeat("x", 300), "a\"b;\n}", "Ünïcode-näme", "0abc", "-", ""}
	var cfg strings.Builder
	cfg.WriteString("router id 10.0.0.1;\n")
	for i, s := range inputs {
		id := Ident(s)
		fmt.Fprintf(&cfg, "protocol static %s { ipv4; }\n", Ident(fmt.Sprintf("P%d-%s", i, s)))
		fmt.Fprintf(&cfg, "function %s() { return true; }\n", id)
	}
	runBird(t, bird, cfg.String())
}

func TestStringWithBIRD(t *testing.T) {
	bird := birdPath(t)
	var cfg strings.Builder
	cfg.WriteString("router id 10.0.0.1;\nprotocol device {}\n")
	for i, s := range []string{"s3cret", "ünïcødé ✓ 日本語", "a'b {};#", strings.Repeat("p", 80)} {
		q, err := String(s)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&cfg, "protocol bgp B%d { local as 65000; neighbor 10.0.0.%d as 65001; password %s; ipv4 { import all; export none; }; }\n", i, i+2, q)
	}
	runBird(t, bird, cfg.String())
}

func birdPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("bird")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("bird not found and CI=true: %v", err)
		}
		t.Skip("bird not installed")
	}
	return p
}

func runBird(t *testing.T, bird, cfg string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "bird.cfg")
	if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bird, "-p", "-c", f).CombinedOutput()
	if err != nil {
		t.Fatalf("bird -p: %v\n%s\n--- config ---\n%s", err, out, cfg)
	}
}

func TestIPHelpers(t *testing.T) {
	if f, _ := IPFamily("10.0.0.1"); f != 4 {
		t.Error("ipFamily v4")
	}
	if f, _ := IPFamily("fd00::/64"); f != 6 {
		t.Error("ipFamily v6")
	}
	if _, err := IPFamily("nope"); err == nil {
		t.Error("ipFamily accepted garbage")
	}
	for _, c := range []struct {
		cidr, x string
		want    bool
	}{
		{"10.0.0.0/8", "10.1.2.3", true},
		{"10.0.0.0/8", "11.1.2.3", false},
		{"10.0.0.0/8", "10.1.0.0/16", true},
		{"10.0.0.0/16", "10.0.0.0/8", false},
		{"10.1.2.3/8", "10.9.9.9", true},
		{"fd00::/64", "fd00::1", true},
		{"fd00::/64", "10.0.0.1", false},
		{"::/0", "10.0.0.0/8", false},
	} {
		got, err := CIDRContains(c.cidr, c.x)
		if err != nil || got != c.want {
			t.Errorf("cidrContains(%s, %s) = %v, %v", c.cidr, c.x, got, err)
		}
	}
	if _, err := CIDRContains("x", "10.0.0.1"); err == nil {
		t.Error("cidrContains accepted garbage")
	}
	if n, _ := CIDRPrefixLen("fd00::/122"); n != 122 {
		t.Error("cidrPrefixLen")
	}
	if s, _ := CIDR("10.1.2.3/8"); s != "10.0.0.0/8" {
		t.Error("birdCIDR", s)
	}
	if s, _ := CIDRAddr("10.1.2.3/8"); s != "10.0.0.0" {
		t.Error("cidrAddr", s)
	}
	if s, _ := NameIP("fd00::1"); s != "fd00__1" {
		t.Error("nameIP", s)
	}
	if _, err := NameIP("10.0.0.1\"; x"); err == nil {
		t.Error("nameIP accepted garbage")
	}
	if _, err := IP("1.2.3.4\n"); err == nil {
		t.Error("birdIP accepted newline")
	}
	if s, err := PrefixSet([]string{"10.0.0.0/8", "10.65.1.1/26"}, true); err != nil || s != "[ 10.0.0.0/8+, 10.65.1.0/26+ ]" {
		t.Error("prefixSet", s, err)
	}
	if _, err := PrefixSet(nil, false); err == nil {
		t.Error("prefixSet accepted an empty list")
	}
}

func TestCommunities(t *testing.T) {
	for in, want := range map[string][2]string{
		"65000:100":          {"(65000,100)", "bgp_community"},
		"0:0":                {"(0,0)", "bgp_community"},
		"4200000000:1:2":     {"(4200000000,1,2)", "bgp_large_community"},
		"1:4294967295:65536": {"(1,4294967295,65536)", "bgp_large_community"},
	} {
		lit, err := CommunityLiteral(in)
		attr, err2 := CommunityAttr(in)
		if err != nil || err2 != nil || lit != want[0] || attr != want[1] {
			t.Errorf("%s -> %s %s (%v %v)", in, lit, attr, err, err2)
		}
	}
	for _, bad := range []string{"65536:1", "1", "a:b", "1:2:3:4", "-1:2", "1:2:4294967296", "(1,2)", ""} {
		if _, err := CommunityLiteral(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	if s, _ := AddCommunity("1:2:3"); s != "bgp_large_community.add((1,2,3));" {
		t.Error(s)
	}
	if s, _ := MatchCommunity("1:2"); s != "(1,2) ~ bgp_community" {
		t.Error(s)
	}
}

func TestComment(t *testing.T) {
	if _, err := Comment("node-1 peer"); err != nil {
		t.Error(err)
	}
	if _, err := Comment("x\nprotocol"); err == nil {
		t.Error("comment accepted a newline")
	}
}

// TestTemplateErrors checks that a hostile value stops template execution
// with the template name and line, and that nothing is written after it.
func TestTemplateErrors(t *testing.T) {
	tmpl := template.Must(template.New("peers.cfg.template").Funcs(Funcs()).Parse(
		"protocol bgp X {\n  password {{birdString .}};\n}\n"))
	var out bytes.Buffer
	err := tmpl.Execute(&out, "bad\"; }\nprotocol evil {")
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	if !strings.Contains(msg, "peers.cfg.template:2") || !strings.Contains(msg, "double quote") {
		t.Errorf("error lacks template/line/reason: %s", msg)
	}
	if strings.Contains(out.String(), "evil") {
		t.Errorf("hostile text reached the output: %q", out.String())
	}
}

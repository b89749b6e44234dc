package funcs

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/Masterminds/sprig/v3"

	"github.com/roostnet/roost/confd/kvstore"
)

func testStore() *kvstore.Store {
	s := kvstore.New()
	for k, v := range map[string]string{
		"/calico/bgp/v1/global/as_num":                  "64512",
		"/calico/bgp/v1/global/node_mesh":               `{"enabled":true}`,
		"/calico/bgp/v1/host/n1/ip_addr_v4":             "10.0.0.1",
		"/calico/bgp/v1/host/n1/peer_v4/10.0.0.9":       `{"ip":"10.0.0.9","as_num":"65000"}`,
		"/calico/bgp/v1/host/n2/ip_addr_v4":             "10.0.0.2",
		"/calico/bgp/v1/host/long-node-name/ip_addr_v4": "10.0.0.30",
		"/calico/v1/ipam/v4/pool/10.65.0.0-16":          `{"cidr":"10.65.0.0/16","ipip_mode":"always"}`,
		"/list":                                         `[1,"two",{"three":3}]`,
	} {
		s.Set(k, v)
	}
	return s
}

func render(t *testing.T, funcs template.FuncMap, text string, data any) (string, error) {
	t.Helper()
	tmpl, err := template.New("t").Option("missingkey=error").Funcs(funcs).Parse(text)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	err = tmpl.Execute(&b, data)
	return b.String(), err
}

func TestFuncs(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "present")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ROOST_FUNCS_SET", "from-env")
	t.Setenv("ROOST_FUNCS_EMPTY", "")
	fm := All(testStore())
	tests := []struct {
		name, tmpl, want string
		err              string // substring of the error; "" = must succeed
	}{
		// memkv
		{"get", `{{(get "/calico/bgp/v1/global/as_num").Value}} {{(get "/calico/bgp/v1/global/as_num").Key}}`, "64512 /calico/bgp/v1/global/as_num", ""},
		{"get missing", `{{get "/nope"}}`, "", "key does not exist: /nope"},
		{"gets", `{{range gets "/calico/bgp/v1/host/*/ip_addr_v4"}}{{base (dir .Key)}}={{.Value}} {{end}}`,
			"long-node-name=10.0.0.30 n1=10.0.0.1 n2=10.0.0.2 ", ""},
		{"gets bad pattern", `{{gets "/calico/[x"}}`, "", "syntax error in pattern"},
		{"getv", `{{getv "/calico/bgp/v1/host/n1/ip_addr_v4"}}`, "10.0.0.1", ""},
		{"getv default", `{{getv "/calico/bgp/v1/host/n9/ip_addr_v4" "none"}}`, "none", ""},
		{"getv default unused", `{{getv "/calico/bgp/v1/global/as_num" "1"}}`, "64512", ""},
		{"getv missing", `{{getv "/calico/bgp/v1/host/n9/as_num"}}`, "", "key does not exist: /calico/bgp/v1/host/n9/as_num"},
		{"getvs", `{{join (getvs "/calico/bgp/v1/host/*/ip_addr_v4") ","}}`, "10.0.0.1,10.0.0.2,10.0.0.30", ""},
		{"getvs none", `{{len (getvs "/x/*")}}`, "0", ""},
		{"ls", `{{join (ls "/calico/bgp/v1/host/n1") ","}}`, "ip_addr_v4,peer_v4", ""},
		{"ls missing", `{{len (ls "/nope")}}`, "0", ""},
		{"lsdir", `{{join (lsdir "/calico/bgp/v1/host/n1") ","}}|{{join (lsdir "/calico/bgp/v1/host") ","}}`, "peer_v4|long-node-name,n1,n2", ""},
		{"exists", `{{exists "/calico/bgp/v1/global/as_num"}} {{exists "/calico/bgp/v1/global"}}`, "true false", ""},

		// confd
		{"base dir", `{{base "/a/b/c"}} {{dir "/a/b/c"}}`, "c /a/b", ""},
		{"split join", `{{join (split "a-b-c" "-") "+"}}`, "a+b+c", ""},
		{"split index", `{{index (split "10.65.0.0-16" "-") 1}}`, "16", ""},
		{"json", `{{(json (getv "/calico/bgp/v1/global/node_mesh")).enabled}}`, "true", ""},
		{"json pool", `{{$p := json (getv "/calico/v1/ipam/v4/pool/10.65.0.0-16")}}{{$p.cidr}} {{$p.ipip_mode}}`, "10.65.0.0/16 always", ""},
		{"json bad", `{{json "[1,2]"}}`, "", "is not a JSON object"},
		{"jsonArray", `{{range jsonArray (getv "/list")}}{{.}};{{end}}`, "1;two;map[three:3];", ""},
		{"jsonArray bad", `{{jsonArray "{"}}`, "", "is not a JSON array"},
		{"map", `{{$m := map "a" 1 "b" "x"}}{{$m.a}}{{$m.b}}`, "1x", ""},
		{"map odd", `{{map "a"}}`, "", "needs key/value pairs"},
		{"map key type", `{{map 1 2}}`, "", "key 0 is a int, not a string"},
		{"toUpper toLower", `{{toUpper "Ab"}}{{toLower "Ab"}}`, "ABab", ""},
		{"contains", `{{contains "10.0.0.1" "0.0"}} {{contains "abc" "x"}}`, "true false", ""},
		{"replace", `{{replace "10.0.0.1" "." "_" -1}} {{replace "a.b.c" "." "-" 1}}`, "10_0_0_1 a-b.c", ""},
		{"hasSuffix", `{{hasSuffix "node.example" ".example"}}`, "true", ""},
		{"trimSuffix", `{{trimSuffix "peer_v4" "_v4"}}`, "peer", ""},
		{"base64", `{{base64Encode "s3cret"}} {{base64Decode "czNjcmV0"}}`, "czNjcmV0 s3cret", ""},
		{"base64Decode bad", `{{base64Decode "not base64!"}}`, "", "base64Decode"},
		{"fileExists", `{{fileExists "` + file + `"}} {{fileExists "` + filepath.Join(dir, "absent") + `"}}`, "true false", ""},
		{"getenv", `{{getenv "ROOST_FUNCS_SET"}} {{getenv "ROOST_FUNCS_SET" "d"}} [{{getenv "ROOST_FUNCS_UNSET"}}]`, "from-env from-env []", ""},
		{"getenv default", `{{getenv "ROOST_FUNCS_UNSET" "d1"}} {{getenv "ROOST_FUNCS_EMPTY" "d2"}}`, "d1 d2", ""},
		{"datetime", `{{(datetime).Year}}`, "", ""}, // checked below
		{"parseBool", `{{parseBool "true"}}`, "true", ""},
		{"parseBool bad", `{{parseBool "maybe"}}`, "", "invalid syntax"},
		{"atoi", `{{add (atoi "41") 1}}`, "42", ""},
		{"atoi bad", `{{atoi "x"}}`, "", "invalid syntax"},
		{"reverse strings", `{{join (reverse (split "a,b,c" ",")) ","}}`, "c,b,a", ""},
		{"reverse kvs", `{{range reverse (gets "/calico/bgp/v1/host/*/ip_addr_v4")}}{{.Value}} {{end}}`, "10.0.0.2 10.0.0.1 10.0.0.30 ", ""},
		{"reverse bad", `{{reverse 3}}`, "", "not a list"},
		{"sortByLength", `{{join (sortByLength (split "ccc,a,bb,d" ",")) ","}}`, "a,d,bb,ccc", ""},
		{"sortKVByLength", `{{range sortKVByLength (gets "/calico/bgp/v1/host/*/ip_addr_v4")}}{{.Value}} {{end}}`, "10.0.0.1 10.0.0.2 10.0.0.30 ", ""},
		{"seq", `{{range seq 1 3}}{{.}}{{end}}|{{len (seq 3 1)}}`, "123|0", ""},
		{"arith", `{{add 2 3}} {{sub 2 3}} {{mul 2 3}} {{div 7 2}} {{mod 7 2}}`, "5 -1 6 3 1", ""},
		{"div zero", `{{div 1 0}}`, "", "div: 1 / 0"},
		{"mod zero", `{{mod 1 0}}`, "", "mod: 1 % 0"},

		// sprig, where it does not collide
		{"sprig", `{{upper "a"}} {{"a,b" | splitList ","| len}} {{hasPrefix "ab" "abc"}} {{add1 1}} {{default "d" ""}} {{trim " x "}}`, "A 2 true 2 d x", ""},
		{"sprig dict", `{{$d := dict "k" "v"}}{{index $d "k"}}`, "v", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := render(t, fm, tc.tmpl, nil)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want one containing %q (output %q)", err, tc.err, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if tc.name == "datetime" {
				if got != time.Now().Format("2006") {
					t.Fatalf("datetime year = %q", got)
				}
				return
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// Every documented function is in Map, and nothing else.
func TestMapNames(t *testing.T) {
	want := []string{
		"get", "gets", "getv", "getvs", "ls", "lsdir", "exists",
		"base", "dir", "split", "join", "json", "jsonArray", "map", "toUpper", "toLower",
		"contains", "replace", "hasSuffix", "trimSuffix", "base64Encode", "base64Decode",
		"fileExists", "getenv", "datetime", "parseBool", "atoi", "reverse", "sortByLength",
		"sortKVByLength", "seq", "add", "sub", "mul", "div", "mod",
	}
	var got []string
	for k := range Map(kvstore.New()) {
		got = append(got, k)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("Map names = %v\nwant %v", got, want)
	}
}

// Overridden must be exactly the names Map shares with sprig, so that a
// sprig upgrade that adds a colliding name is noticed (and documented).
func TestOverriddenMatchesSprig(t *testing.T) {
	sp := sprig.TxtFuncMap()
	var both []string
	for k := range Map(kvstore.New()) {
		if _, ok := sp[k]; ok {
			both = append(both, k)
		}
	}
	slices.Sort(both)
	if !slices.Equal(both, Overridden) {
		t.Fatalf("names shared with sprig = %v, Overridden = %v", both, Overridden)
	}
}

func TestAllPrecedence(t *testing.T) {
	s := testStore()
	// confd's split (Go order, returns a slice) beats sprig's.
	if got, err := render(t, All(s), `{{index (split "a.b" ".") 0}}`, nil); err != nil || got != "a" {
		t.Fatalf("split = %q, %v", got, err)
	}
	// Extras are applied in order, after confd's.
	first := template.FuncMap{"getv": func(string) string { return "first" }, "extra": func() string { return "x1" }}
	second := template.FuncMap{"extra": func() string { return "x2" }}
	got, err := render(t, All(s, first, second), `{{getv "/calico/bgp/v1/global/as_num"}} {{extra}}`, nil)
	if err != nil || got != "first x2" {
		t.Fatalf("extras: %q, %v", got, err)
	}
	// All does not modify the maps it is given, and calls share no state.
	if _, ok := All(s)["extra"]; ok {
		t.Fatal("extra leaked into a later All")
	}
}

func TestStoreChangesAreSeen(t *testing.T) {
	s := kvstore.New()
	fm := Map(s)
	tmpl := template.Must(template.New("t").Funcs(fm).Parse(`{{getv "/k" "unset"}}`))
	var b strings.Builder
	tmpl.Execute(&b, nil)
	s.Set("/k", "set")
	tmpl.Execute(&b, nil)
	if b.String() != "unsetset" {
		t.Fatalf("got %q", b.String())
	}
}

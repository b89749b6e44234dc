package bgp

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite the golden files of the scenario suite")

// A scenario is a directory under testdata/scenarios:
//
//	input.yaml   calicoctl-style resources (BGPConfiguration, Node, BGPPeer,
//	             IPPool, BGPFilter, BlockAffinity)
//	node         the node to render for: a bare name, or YAML
//	             {name: <node>, routerID: <CALICO_ROUTER_ID>}
//	secrets/     optional: the secrets directory (<name>/<key> files)
//	expect.yaml  what must come out (see scenarioExpect)
//	golden/*.cfg the rendered set (go test ./confd/bgp -update rewrites it)
type scenarioNode struct {
	Name     string `yaml:"name"`
	RouterID string `yaml:"routerID"`
}

type scenarioExpect struct {
	// DecodeError: the input must fail to decode with these substrings
	// (each must appear in some error); nothing is rendered.
	DecodeError []string `yaml:"decodeError"`
	// RenderError: template execution must fail with these substrings.
	RenderError []string `yaml:"renderError"`
	// Problems: every problem Compute returns must contain one of these
	// substrings, and each substring must match some problem.
	Problems []string `yaml:"problems"`
	// Fatal: Compute must report a fatal problem.
	Fatal bool `yaml:"fatal"`
	// NoModel: Compute must return no model.
	NoModel bool `yaml:"noModel"`
	// Model fields checked when set.
	RouterID  string `yaml:"routerID"`
	AS        uint32 `yaml:"as"`
	BirdDebug string `yaml:"birdDebug"`
	Families  []int  `yaml:"families"`
	// Sessions is the complete list of sessions, both families.
	Sessions []expectSession `yaml:"sessions"`
	// Per-family checks.
	V4 *expectFamily `yaml:"v4"`
	V6 *expectFamily `yaml:"v6"`
	// Contains: substrings that must appear in a rendered file.
	Contains map[string][]string `yaml:"contains"`
	// NotContains: substrings that must not appear in a rendered file.
	NotContains map[string][]string `yaml:"notContains"`
	// BFD: Model.BFDSessions, BFDProtocol and MissingBFDProfiles, checked
	// when set.
	BFD *expectBFD `yaml:"bfd"`
}

type expectBFD struct {
	Sessions        int      `yaml:"sessions"`
	Protocol        string   `yaml:"protocol"`
	MissingProfiles []string `yaml:"missingProfiles"`
}

type expectFamily struct {
	Blocks        []string `yaml:"blocks"` // "cidr" or "cidr nobh"
	ExportPools   []string `yaml:"exportPools"`
	NoExportPools []string `yaml:"noExportPools"`
	EncapPools    []string `yaml:"encapPools"`
	ServiceCIDRs  []string `yaml:"serviceCIDRs"`
	Communities   []string `yaml:"communities"`  // "cidr (a,b) (a,b,c)"
	StaticRoutes  []string `yaml:"staticRoutes"` // "dest via gw"
}

// expectSession lists a session's essential fields; all of these are
// compared (zero values included). Pointer fields are compared when set.
type expectSession struct {
	Family      int    `yaml:"family"`
	Name        string `yaml:"name"`
	IP          string `yaml:"ip"`
	Port        int    `yaml:"port"`
	AS          uint32 `yaml:"as"`
	LocalAS     uint32 `yaml:"localAS"`
	Passive     bool   `yaml:"passive"`
	RRClient    bool   `yaml:"rrClient"`
	RRClusterID string `yaml:"rrClusterID"`
	Password    string `yaml:"password"`
	TTLSecurity int    `yaml:"ttlSecurity"` // hops; 0: off
	NextHop     string `yaml:"nextHop"`
	Disabled    bool   `yaml:"disabled"`

	Type          *string   `yaml:"type"`
	SourceAddress *string   `yaml:"sourceAddress"`
	StrictBind    *bool     `yaml:"strictBind"`
	EBGP          *bool     `yaml:"ebgp"`
	Restart       *int      `yaml:"restart"`
	Keepalive     *int      `yaml:"keepalive"`
	HoldTime      *int      `yaml:"holdTime"`
	AllowLocalAS  *int      `yaml:"allowLocalAS"`
	ReachableBy   *string   `yaml:"reachableBy"`
	Filters       *[]string `yaml:"filters"`
	Reverse       *bool     `yaml:"reverse"`
	PeerNode      *string   `yaml:"peerNode"`
	ListenPort    *int      `yaml:"listenPort"`
	// BFD: "profile rx/tx/multiplier[ passive]", or "" for no BFD.
	BFD *string `yaml:"bfd"`
}

func (e expectSession) key() string { return fmt.Sprintf("v%d %s", e.Family, e.Name) }

func sessionOf(fam int, p *Peer) expectSession {
	ttl := 0
	if p.TTLSecurity {
		ttl = p.Multihop
	}
	return expectSession{
		Family: fam, Name: p.Name, IP: p.IP, Port: p.Port, AS: p.AS, LocalAS: p.LocalAS,
		Passive: p.Passive, RRClient: p.RRClient, RRClusterID: p.RRClusterID,
		Password: p.Password.Reveal(), TTLSecurity: ttl, NextHop: p.NextHop, Disabled: p.Disabled,
	}
}

func TestScenarios(t *testing.T) {
	dirs, err := filepath.Glob("testdata/scenarios/*")
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 25 {
		t.Errorf("only %d scenarios; the suite needs at least 25", len(dirs))
	}
	r := newRenderer(t)
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) { runScenario(t, r, dir) })
	}
}

func runScenario(t *testing.T, r *renderer, dir string) {
	var exp scenarioExpect
	readYAML(t, filepath.Join(dir, "expect.yaml"), &exp)
	input, err := os.ReadFile(filepath.Join(dir, "input.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c, errs := loadYAML(t, input, "input.yaml")
	if len(exp.DecodeError) > 0 {
		if len(errs) == 0 {
			t.Fatalf("input decoded without error; want %q", exp.DecodeError)
		}
		all := errors.Join(errs...).Error()
		for _, want := range exp.DecodeError {
			if !strings.Contains(all, want) {
				t.Errorf("decode errors lack %q:\n%s", want, all)
			}
		}
		return
	}
	if len(errs) > 0 {
		t.Fatalf("decode: %v", errors.Join(errs...))
	}

	opts := Options{SecretsDir: filepath.Join(dir, "secrets")}
	raw, err := os.ReadFile(filepath.Join(dir, "node"))
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.TrimSpace(string(raw)); !strings.Contains(s, ":") {
		opts.NodeName = s
	} else {
		var sn scenarioNode
		if err := yaml.Unmarshal(raw, &sn); err != nil {
			t.Fatalf("node: %v", err)
		}
		opts.NodeName, opts.RouterID = sn.Name, sn.RouterID
	}

	m, problems := Compute(c, opts)
	checkProblems(t, problems, exp)
	if exp.NoModel {
		if m != nil {
			t.Fatalf("got a model, want none")
		}
		return
	}
	if m == nil {
		t.Fatalf("no model: %v", errors.Join(problems...))
	}
	checkModel(t, m, exp)

	files, err := r.render(m)
	if len(exp.RenderError) > 0 {
		if err == nil {
			t.Fatalf("render succeeded; want an error with %q", exp.RenderError)
		}
		for _, want := range exp.RenderError {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("render error lacks %q: %v", want, err)
			}
		}
		if files != nil {
			t.Errorf("render returned files along with the error")
		}
		if _, err := os.Stat(filepath.Join(dir, "golden")); err == nil {
			t.Errorf("a failing scenario must have no golden files")
		}
		return
	}
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	for file, wants := range exp.Contains {
		for _, w := range wants {
			if !bytes.Contains(files[file], []byte(w)) {
				t.Errorf("%s lacks %q", file, w)
			}
		}
	}
	for file, unwanted := range exp.NotContains {
		for _, w := range unwanted {
			if bytes.Contains(files[file], []byte(w)) {
				t.Errorf("%s holds %q", file, w)
			}
		}
	}
	compareGolden(t, filepath.Join(dir, "golden"), files)
	birdCheck(t, files)
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func checkProblems(t *testing.T, problems []error, exp scenarioExpect) {
	t.Helper()
	for _, p := range problems {
		ok := false
		for _, want := range exp.Problems {
			ok = ok || strings.Contains(p.Error(), want)
		}
		if !ok {
			t.Errorf("unexpected problem: %v", p)
		}
	}
	for _, want := range exp.Problems {
		if !slices.ContainsFunc(problems, func(p error) bool { return strings.Contains(p.Error(), want) }) {
			t.Errorf("missing problem %q; got %v", want, problems)
		}
	}
	if got := Fatal(problems) != nil; got != exp.Fatal {
		t.Errorf("fatal = %v, want %v (%v)", got, exp.Fatal, problems)
	}
}

func checkModel(t *testing.T, m *Model, exp scenarioExpect) {
	t.Helper()
	if exp.RouterID != "" && m.RouterID != exp.RouterID {
		t.Errorf("router id %s, want %s", m.RouterID, exp.RouterID)
	}
	if exp.AS != 0 && m.ASNumber != exp.AS {
		t.Errorf("AS %d, want %d", m.ASNumber, exp.AS)
	}
	if exp.BirdDebug != "" && m.BirdDebug != exp.BirdDebug {
		t.Errorf("debug %q, want %q", m.BirdDebug, exp.BirdDebug)
	}
	if exp.Families != nil {
		var got []int
		for _, f := range m.Families {
			got = append(got, f.Version)
		}
		if !slices.Equal(got, exp.Families) {
			t.Errorf("families %v, want %v", got, exp.Families)
		}
	}
	// Sessions: exact set, essential fields compared.
	got := map[string]*Peer{}
	var gotKeys []string
	for _, f := range []*Family{m.V4, m.V6} {
		for _, p := range f.Peers {
			e := sessionOf(f.Version, p)
			got[e.key()] = p
			gotKeys = append(gotKeys, e.key())
		}
	}
	var wantKeys []string
	for _, w := range exp.Sessions {
		wantKeys = append(wantKeys, w.key())
		p := got[w.key()]
		if p == nil {
			continue
		}
		g := sessionOf(w.Family, p)
		core := w
		core.Type, core.SourceAddress, core.StrictBind, core.EBGP, core.Restart, core.Keepalive = nil, nil, nil, nil, nil, nil
		core.HoldTime, core.AllowLocalAS, core.ReachableBy, core.Filters, core.Reverse, core.PeerNode, core.ListenPort = nil, nil, nil, nil, nil, nil, nil
		core.BFD = nil
		if fmt.Sprintf("%+v", g) != fmt.Sprintf("%+v", core) {
			t.Errorf("session %s:\n got  %+v\n want %+v", w.key(), g, core)
		}
		checkOpt(t, w.key(), "type", w.Type, p.Type)
		checkOpt(t, w.key(), "sourceAddress", w.SourceAddress, p.SourceAddress)
		checkOpt(t, w.key(), "strictBind", w.StrictBind, p.StrictBind)
		checkOpt(t, w.key(), "ebgp", w.EBGP, p.IsEBGP)
		checkOpt(t, w.key(), "restart", w.Restart, p.GracefulRestartTime)
		checkOpt(t, w.key(), "keepalive", w.Keepalive, p.KeepaliveTime)
		checkOpt(t, w.key(), "holdTime", w.HoldTime, p.HoldTime)
		checkOpt(t, w.key(), "allowLocalAS", w.AllowLocalAS, p.NumAllowLocalAS)
		checkOpt(t, w.key(), "reachableBy", w.ReachableBy, p.ReachableBy)
		checkOpt(t, w.key(), "reverse", w.Reverse, p.Reverse)
		checkOpt(t, w.key(), "peerNode", w.PeerNode, p.PeerNode)
		checkOpt(t, w.key(), "listenPort", w.ListenPort, p.ListenPort)
		checkOpt(t, w.key(), "bfd", w.BFD, bfdString(p.BFD))
		if w.Filters != nil {
			var names []string
			for _, f := range p.Filters {
				names = append(names, f.Name)
			}
			if !slices.Equal(names, *w.Filters) {
				t.Errorf("session %s: filters %v, want %v", w.key(), names, *w.Filters)
			}
		}
	}
	slices.Sort(gotKeys)
	slices.Sort(wantKeys)
	if !slices.Equal(gotKeys, wantKeys) {
		t.Errorf("sessions:\n got  %v\n want %v", gotKeys, wantKeys)
	}
	checkFamily(t, m.V4, exp.V4)
	checkFamily(t, m.V6, exp.V6)
	if e := exp.BFD; e != nil {
		if m.BFDSessions != e.Sessions || m.BFDProtocol != e.Protocol || !slices.Equal(m.MissingBFDProfiles, e.MissingProfiles) {
			t.Errorf("BFD: sessions %d, protocol %q, missing %q; want %d, %q, %q",
				m.BFDSessions, m.BFDProtocol, m.MissingBFDProfiles, e.Sessions, e.Protocol, e.MissingProfiles)
		}
	}
}

// bfdString is the compact form of a session's BFD setting in expect.yaml.
func bfdString(b *BFD) string {
	if b == nil {
		return ""
	}
	s := fmt.Sprintf("%s %d/%d/%d", b.Profile, b.ReceiveInterval, b.TransmitInterval, b.Multiplier)
	if b.Passive {
		s += " passive"
	}
	return s
}

func checkOpt[T comparable](t *testing.T, key, field string, want *T, got T) {
	t.Helper()
	if want != nil && *want != got {
		t.Errorf("session %s: %s = %v, want %v", key, field, got, *want)
	}
}

func checkFamily(t *testing.T, f *Family, e *expectFamily) {
	t.Helper()
	if e == nil {
		return
	}
	var blocks, comms, routes []string
	for _, b := range f.Blocks {
		s := b.CIDR
		if !b.Blackhole {
			s += " nobh"
		}
		blocks = append(blocks, s)
	}
	for _, c := range f.Communities {
		comms = append(comms, strings.Join(append(append([]string{c.CIDR}, c.Standard...), c.Large...), " "))
	}
	for _, r := range f.StaticRoutes {
		routes = append(routes, r.Dest+" via "+r.Via)
	}
	for _, c := range []struct {
		name      string
		got, want []string
	}{
		{"blocks", blocks, e.Blocks},
		{"exportPools", f.ExportPools, e.ExportPools},
		{"noExportPools", f.NoExportPools, e.NoExportPools},
		{"encapPools", f.EncapPools, e.EncapPools},
		{"serviceCIDRs", f.ServiceCIDRs, e.ServiceCIDRs},
		{"communities", comms, e.Communities},
		{"staticRoutes", routes, e.StaticRoutes},
	} {
		if c.want != nil && !slices.Equal(c.got, c.want) {
			t.Errorf("v%d %s = %q, want %q", f.Version, c.name, c.got, c.want)
		}
	}
}

func compareGolden(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	if *update {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	existing, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, p := range existing {
		if _, ok := files[filepath.Base(p)]; !ok {
			t.Errorf("golden file %s is not rendered any more (run with -update)", p)
		}
	}
	for name, b := range files {
		want, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("golden %s: %v (run go test ./confd/bgp -update)", name, err)
			continue
		}
		if !bytes.Equal(want, b) {
			t.Errorf("%s differs from golden (run with -update to accept):\n%s", name, diff(string(want), string(b)))
		}
	}
}

// diff is a minimal line diff for test output.
func diff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out strings.Builder
	n := max(len(al), len(bl))
	shown := 0
	for i := 0; i < n && shown < 40; i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			fmt.Fprintf(&out, "line %d:\n- %s\n+ %s\n", i+1, x, y)
			shown++
		}
	}
	return out.String()
}

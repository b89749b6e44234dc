package kvstore

import (
	"fmt"
	"math/rand/v2"
	"path"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/kelseyhightower/memkv"
)

func TestGetSetDeleteGeneration(t *testing.T) {
	s := New()
	if g := s.Generation(); g != 0 {
		t.Fatalf("new store generation = %d", g)
	}
	_, err := s.Get("/a")
	if !IsNotExist(err) || err.Error() != "key does not exist: /a" {
		t.Fatalf("Get missing: err = %v", err)
	}
	s.Set("/a", "1")
	g1 := s.Generation()
	s.Set("/a", "1") // unchanged: not a change
	if s.Generation() != g1 {
		t.Fatalf("unchanged Set bumped generation")
	}
	s.Set("/a", "2")
	if s.Generation() == g1 {
		t.Fatalf("changed Set did not bump generation")
	}
	kv, err := s.Get("/a")
	if err != nil || kv != (memkv.KVPair{Key: "/a", Value: "2"}) {
		t.Fatalf("Get = %v, %v", kv, err)
	}
	s.Set("/b", "")
	if !s.Exists("/b") || s.Len() != 2 {
		t.Fatalf("empty value must exist; len = %d", s.Len())
	}
	g2 := s.Generation()
	s.Delete("/nope")
	if s.Generation() != g2 {
		t.Fatalf("deleting an absent key bumped generation")
	}
	s.Delete("/a")
	if s.Exists("/a") || s.Len() != 1 || s.Generation() == g2 {
		t.Fatalf("Delete: exists=%v len=%d", s.Exists("/a"), s.Len())
	}
	if v, err := s.GetValue("/a", "dflt"); v != "dflt" || err != nil {
		t.Fatalf("GetValue default = %q, %v", v, err)
	}
	if _, err := s.GetValue("/a"); !IsNotExist(err) {
		t.Fatalf("GetValue without default: %v", err)
	}
}

func TestApplyBatch(t *testing.T) {
	s := New()
	s.Set("/x", "old")
	s.Apply(func(w *Writer) {
		w.Set("/a", "1")
		w.Set("/b", "2")
		w.Delete("/x")
		if kv, err := w.Get("/a"); err != nil || kv.Value != "1" {
			t.Errorf("Writer.Get = %v %v", kv, err)
		}
	})
	if got := s.Keys("/"); !reflect.DeepEqual(got, []string{"/a", "/b"}) {
		t.Fatalf("keys = %v", got)
	}
}

func fill(s *Store, kvs map[string]string) {
	for k, v := range kvs {
		s.Set(k, v)
	}
}

func TestListAndGetAll(t *testing.T) {
	s := New()
	fill(s, map[string]string{
		"/calico/bgp/v1/global/as_num":                    "64512",
		"/calico/bgp/v1/host/n1/ip_addr_v4":               "10.0.0.1",
		"/calico/bgp/v1/host/n1/peer_v4/10.0.0.9":         "{}",
		"/calico/bgp/v1/host/n1-x/ip_addr_v4":             "10.0.0.3",
		"/calico/bgp/v1/host/n1.y/ip_addr_v4":             "10.0.0.4",
		"/calico/bgp/v1/host/n2/ip_addr_v4":               "10.0.0.2",
		"/calico/bgp/v1/host/n2":                          "leaf and dir",
		"/calico/v1/ipam/v4/pool/10.65.0.0-16":            "p",
		"/calico/ipam/v2/host/n1/ipv4/block/10.65.1.0-26": "a",
	})
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"ls host", s.List("/calico/bgp/v1/host"), []string{"n1", "n1-x", "n1.y", "n2"}},
		{"ls host/", s.List("/calico/bgp/v1/host/"), []string{"n1", "n1-x", "n1.y", "n2"}},
		{"ls n1", s.List("/calico/bgp/v1/host/n1"), []string{"ip_addr_v4", "peer_v4"}},
		{"ls key itself", s.List("/calico/bgp/v1/host/n1/ip_addr_v4"), []string{"ip_addr_v4"}},
		{"ls leaf+dir", s.List("/calico/bgp/v1/host/n2"), []string{"ip_addr_v4", "n2"}},
		{"ls missing", s.List("/nope"), []string{}},
		{"ls partial name", s.List("/calico/bgp/v1/ho"), []string{}},
		{"ls root", s.List("/"), []string{"calico"}},
		{"lsdir host", s.ListDir("/calico/bgp/v1/host"), []string{"n1", "n1-x", "n1.y", "n2"}},
		{"lsdir n1", s.ListDir("/calico/bgp/v1/host/n1"), []string{"peer_v4"}},
		{"lsdir calico", s.ListDir("/calico"), []string{"bgp", "ipam", "v1"}},
		{"lsdir leaf", s.ListDir("/calico/bgp/v1/global/as_num"), []string{}},
		{"getvs glob", must(s.GetAllValues("/calico/bgp/v1/host/*/ip_addr_v4")),
			[]string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}},
		{"getvs class", must(s.GetAllValues("/calico/bgp/v1/host/n[12]/ip_addr_v?")),
			[]string{"10.0.0.1", "10.0.0.2"}},
		{"getvs negated class (fallback)", must(s.GetAllValues("/calico/bgp/v1/host/n[^2]*/ip_addr_v4")),
			[]string{"10.0.0.1", "10.0.0.3", "10.0.0.4"}},
		{"getvs escape (fallback)", must(s.GetAllValues(`/calico/bgp/v1/host/n1\.y/*`)), []string{"10.0.0.4"}},
		{"getvs star is one level", must(s.GetAllValues("/calico/bgp/v1/host/n1/*")), []string{"10.0.0.1"}},
		{"getvs literal", must(s.GetAllValues("/calico/bgp/v1/global/as_num")), []string{"64512"}},
		{"getvs none", must(s.GetAllValues("/calico/bgp/v1/host/*/nothing")), []string{}},
		{"gets sorted by key", keysOf(must(s.GetAll("/calico/bgp/v1/host/*/ip_addr_v4"))), []string{
			"/calico/bgp/v1/host/n1-x/ip_addr_v4", "/calico/bgp/v1/host/n1.y/ip_addr_v4",
			"/calico/bgp/v1/host/n1/ip_addr_v4", "/calico/bgp/v1/host/n2/ip_addr_v4"}},
		{"gets leaf+dir", keysOf(must(s.GetAll("/calico/bgp/v1/host/n*"))), []string{"/calico/bgp/v1/host/n2"}},
		{"keys prefix", s.Keys("/calico/v1/"), []string{"/calico/v1/ipam/v4/pool/10.65.0.0-16"}},
	}
	for _, tc := range tests {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s: got %#v, want %#v", tc.name, tc.got, tc.want)
		}
	}
	if _, err := s.GetAll("/calico/[a"); err == nil || err != path.ErrBadPattern {
		t.Errorf("bad pattern: err = %v", err)
	}
	if _, err := New().GetAll("/x/[a"); err != path.ErrBadPattern {
		t.Errorf("bad pattern on empty store: err = %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func keysOf(kvs memkv.KVPairs) []string {
	out := []string{}
	for _, kv := range kvs {
		out = append(out, kv.Key)
	}
	return out
}

func TestSplittable(t *testing.T) {
	for p, want := range map[string]bool{
		"/a/*/b":      true,
		"/a/[0-9]/b":  true,
		"/a/[ab]":     true,
		"/a/[^a]":     false, // negated classes match '/'
		"/a[/]b":      false,
		"/a[.-0]b":    false, // the range contains '/'
		`/a/\*`:       false,
		"/a/[é-ü]x":   true,
		"/a/??/*[xy]": true,
	} {
		if got := splittable(p); got != want {
			t.Errorf("splittable(%q) = %v, want %v", p, got, want)
		}
	}
}

// TestAgainstMemkv compares every lookup with memkv itself on random trees
// of clean keys whose names contain the bytes that sort around '/'.
func TestAgainstMemkv(t *testing.T) {
	names := []string{"a", "b", "a-b", "a.b", "ab", "a b", "10.0.0.1", "10.0.0.1-26", "x"}
	patterns := []string{
		"*", "/*", "/*/*", "/a/*", "/a*/*", "/*/a", "/?/*", "/a/b", "/a-b/*/*",
		"/[ab]/*", "/[^a]*/*", "/a[/]b", "/a/[.-0]*", `/a\-b/*`, "/*/*/*/*", "/*b/a*",
		"/10.0.0.1*/*", "/a/?", "/*/[a-b]*",
	}
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		s, m := New(), memkv.New()
		var keys []string
		n := 1 + r.IntN(40)
		for i := 0; i < n; i++ {
			depth := 1 + r.IntN(4)
			parts := make([]string, depth)
			for j := range parts {
				parts[j] = names[r.IntN(len(names))]
			}
			k := "/" + strings.Join(parts, "/")
			v := fmt.Sprint(r.IntN(5))
			s.Set(k, v)
			m.Set(k, v)
			keys = append(keys, k)
		}
		// Delete a few.
		for i := 0; i < n/4; i++ {
			k := keys[r.IntN(len(keys))]
			s.Delete(k)
			m.Del(k)
		}
		dirs := map[string]bool{"/nope": true, "/a/": true, "/a-": true}
		for _, k := range keys {
			for d := k; d != "/"; d = path.Dir(d) {
				dirs[d] = true
				dirs[d+"/"] = true
			}
		}
		for d := range dirs {
			if got, want := s.List(d), m.List(d); !reflect.DeepEqual(got, want) {
				t.Fatalf("round %d List(%q) = %q, memkv %q", round, d, got, want)
			}
			if got, want := s.ListDir(d), m.ListDir(d); !reflect.DeepEqual(got, want) {
				t.Fatalf("round %d ListDir(%q) = %q, memkv %q", round, d, got, want)
			}
		}
		for _, p := range patterns {
			got, err1 := s.GetAll(p)
			want, err2 := m.GetAll(p)
			if err1 != nil || err2 != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("round %d GetAll(%q) = %v %v, memkv %v %v", round, p, got, err1, want, err2)
			}
			gv, _ := s.GetAllValues(p)
			wv, _ := m.GetAllValues(p)
			if !reflect.DeepEqual(gv, wv) {
				t.Fatalf("round %d GetAllValues(%q) = %v, memkv %v", round, p, gv, wv)
			}
		}
		all := s.Keys("")
		if len(all) != s.Len() || !sort.StringsAreSorted(all) {
			t.Fatalf("Keys/Len disagree: %d vs %d", len(all), s.Len())
		}
	}
}

// TestIndexChunks drives the chunked index through splits and merges and
// checks it against a sorted slice.
func TestIndexChunks(t *testing.T) {
	var x index
	ref := map[string]bool{}
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 60000; i++ {
		k := fmt.Sprintf("/k/%d/%d", r.IntN(300), r.IntN(100))
		if r.IntN(3) == 0 {
			if x.remove(k) != ref[k] {
				t.Fatalf("remove(%q) disagrees", k)
			}
			delete(ref, k)
		} else {
			if x.insert(k) == ref[k] {
				t.Fatalf("insert(%q) disagrees", k)
			}
			ref[k] = true
		}
	}
	want := make([]string, 0, len(ref))
	for k := range ref {
		want = append(want, k)
	}
	slices.SortFunc(want, pathCompare)
	var got []string
	for p := x.seek(""); x.valid(p); p = x.next(p) {
		got = append(got, x.at(p))
	}
	if !reflect.DeepEqual(got, want) || x.n != len(want) {
		t.Fatalf("index content differs (%d vs %d keys)", len(got), len(want))
	}
	for _, ch := range x.chunks {
		if len(ch) == 0 || len(ch) > maxChunk {
			t.Fatalf("chunk of %d keys", len(ch))
		}
	}
	// Delete everything.
	for _, k := range want {
		x.remove(k)
	}
	if x.n != 0 || len(x.chunks) != 0 {
		t.Fatalf("after deleting all: n=%d chunks=%d", x.n, len(x.chunks))
	}
}

func TestConcurrentUse(t *testing.T) {
	s := New()
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				k := fmt.Sprintf("/h/n%d/k%d", w, i%50)
				if i%3 == 0 {
					s.Delete(k)
				} else {
					s.Set(k, fmt.Sprint(i))
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				s.List("/h")
				s.ListDir("/h")
				if _, err := s.GetAll("/h/*/k1"); err != nil {
					t.Error(err)
				}
				s.Exists("/h/n0/k1")
			}
		}()
	}
	wg.Wait()
}

func TestSeekFromAndFind(t *testing.T) {
	var x index
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 5000; i++ {
		x.insert(fmt.Sprintf("/d/%d/%d", r.IntN(100), r.IntN(50)))
	}
	for i := 0; i < 2000; i++ {
		k := fmt.Sprintf("/d/%d/%d", r.IntN(110), r.IntN(60))
		want := x.seek(k)
		// Any hint at or before the answer gives the same answer.
		hint := x.seek(fmt.Sprintf("/d/%d", r.IntN(110)))
		if pathCompare(x.atOr(hint), k) > 0 {
			hint = pos{}
		}
		got := x.seekFrom(hint, func(s string) bool { return pathCompare(s, k) >= 0 })
		if got != want {
			t.Fatalf("seekFrom(%v, %q) = %v, seek = %v", hint, k, got, want)
		}
		a, b := k[:3], k[3:]
		_, fk, ok := x.find(hint, a, b)
		if ok != x.has(k) || (ok && fk != k) {
			t.Fatalf("find(%q,%q) = %q %v", a, b, fk, ok)
		}
	}
}

func (x *index) atOr(p pos) string {
	if x.valid(p) {
		return x.at(p)
	}
	return "\xff"
}

func TestPathCompare(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	alpha := "/.-0aZ\x00\xff"
	ref := func(a, b string) int {
		for i := 0; i < min(len(a), len(b)); i++ {
			if a[i] != b[i] {
				return rank(a[i]) - rank(b[i])
			}
		}
		return len(a) - len(b)
	}
	sign := func(x int) int { return min(max(x, -1), 1) }
	for i := 0; i < 100000; i++ {
		mk := func() string {
			b := make([]byte, r.IntN(24))
			for j := range b {
				b[j] = alpha[r.IntN(len(alpha))]
			}
			return string(b)
		}
		common := mk()
		a, b := common+mk(), common+mk()
		if sign(pathCompare(a, b)) != sign(ref(a, b)) {
			t.Fatalf("pathCompare(%q, %q) = %d", a, b, pathCompare(a, b))
		}
	}
	if pathCompare("/a/b", "/a-b") >= 0 || pathCompare("/a", "/a/b") >= 0 || pathCompare("/a/b", "/a/b") != 0 {
		t.Fatal("path order")
	}
}

package file

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

func BenchmarkCreateHandles(b *testing.B) {
	debugCheckIncremental = false
	defer func() { debugCheckIncremental = true }()
	s, err := New(context.Background(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Create(ctx, newHandle(fmt.Sprintf("h%06d", i), 1)); err != nil {
			b.Fatal(err)
		}
	}
}

// bigStore is a store of 20,000 block affinities: 200 nodes x 100 blocks.
func bigStore(b *testing.B) *Store {
	var buf strings.Builder
	for n := range 200 {
		for k := range 100 {
			fmt.Fprintf(&buf, "---\nkind: BlockAffinity\napiVersion: projectcalico.org/v3\nmetadata: {name: a-%d-%d}\nspec: {node: node%d, cidr: 10.%d.%d.0/26}\n", n, k, n, n, k)
		}
	}
	path := filepath.Join(b.TempDir(), "big.yaml")
	if err := os.WriteFile(path, []byte(buf.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	s, err := New(context.Background(), path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func BenchmarkListNarrowPrefixOf20k(b *testing.B) {
	s := bigStore(b)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := s.List(ctx, datastore.HostAffinityPrefix("node17"))
		if err != nil || len(res.KVs) != 100 {
			b.Fatal(len(res.KVs), err)
		}
	}
}

func BenchmarkUpdateIn20k(b *testing.B) {
	debugCheckIncremental = false
	defer func() { debugCheckIncremental = true }()
	s := bigStore(b)
	ctx := context.Background()
	key := datastore.AffinityKey("node17", netip.MustParsePrefix("10.17.5.0/26"))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		kv, err := s.Get(ctx, key)
		if err != nil {
			b.Fatal(err)
		}
		a := kv.Value.(*api.BlockAffinity)
		if a.Spec.State == api.AffinityConfirmed {
			a.Spec.State = api.AffinityPending
		} else {
			a.Spec.State = api.AffinityConfirmed
		}
		if _, err := s.Update(ctx, kv); err != nil {
			b.Fatal(err)
		}
	}
}

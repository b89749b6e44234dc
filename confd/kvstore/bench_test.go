package kvstore

import (
	"fmt"
	"testing"

	"github.com/kelseyhightower/memkv"

	"github.com/roostnet/roost/api"
)

// A store shaped like a big cluster: nodes x 20 keys (5 node keys, 15
// peers), plus pools and this node's blocks. 5,000 nodes = 100,000 keys.
func benchKeys(nodes int) []string {
	keys := make([]string, 0, nodes*20)
	for n := 0; n < nodes; n++ {
		h := fmt.Sprintf("/calico/bgp/v1/host/node%05d/", n)
		for _, k := range []string{"ip_addr_v4", "ip_addr_v6", "network_v4", "as_num", "rr_cluster_id"} {
			keys = append(keys, h+k)
		}
		for p := 0; p < 15; p++ {
			keys = append(keys, fmt.Sprintf("%speer_v4/10.%d.%d.%d", h, p, n/256, n%256))
		}
	}
	return keys
}

func benchStore(b *testing.B, nodes int) *Store {
	b.Helper()
	s := New()
	for _, k := range benchKeys(nodes) {
		s.Set(k, "v")
	}
	return s
}

var sizes = []int{500, 5000, 50000} // 10k, 100k, 1M keys

func forSizes(b *testing.B, fn func(b *testing.B, s *Store, nodes int)) {
	for _, n := range sizes {
		if testing.Short() && n > 5000 {
			continue
		}
		b.Run(fmt.Sprintf("keys=%d", n*20), func(b *testing.B) {
			s := benchStore(b, n)
			b.ResetTimer()
			fn(b, s, n)
		})
	}
}

// BenchmarkSetExisting changes the value of existing keys.
func BenchmarkSetExisting(b *testing.B) {
	forSizes(b, func(b *testing.B, s *Store, nodes int) {
		for i := 0; b.Loop(); i++ {
			s.Set(fmt.Sprintf("/calico/bgp/v1/host/node%05d/ip_addr_v4", i%nodes), fmt.Sprint(i))
		}
	})
}

// BenchmarkSetDelete adds a new key and deletes it again (two index updates).
func BenchmarkSetDelete(b *testing.B) {
	forSizes(b, func(b *testing.B, s *Store, nodes int) {
		for i := 0; b.Loop(); i++ {
			k := fmt.Sprintf("/calico/bgp/v1/host/node%05d/peer_v4/192.168.0.%d", i%nodes, i%200)
			s.Set(k, "v")
			s.Delete(k)
		}
	})
}

// BenchmarkGetAllNarrow: one node's keys (5 matches).
func BenchmarkGetAllNarrow(b *testing.B) {
	forSizes(b, func(b *testing.B, s *Store, nodes int) {
		p := fmt.Sprintf("/calico/bgp/v1/host/node%05d/*", nodes/2)
		for b.Loop() {
			if kvs, _ := s.GetAll(p); len(kvs) != 5 {
				b.Fatal(len(kvs))
			}
		}
	})
}

// BenchmarkGetAllPeers: one node's peers (15 matches, a subdirectory).
func BenchmarkGetAllPeers(b *testing.B) {
	forSizes(b, func(b *testing.B, s *Store, nodes int) {
		p := fmt.Sprintf("/calico/bgp/v1/host/node%05d/peer_v4/*", nodes/2)
		for b.Loop() {
			if kvs, _ := s.GetAll(p); len(kvs) != 15 {
				b.Fatal(len(kvs))
			}
		}
	})
}

// BenchmarkGetAllWide: every node's address (one match per node); the cost
// is per match, not per key under the host directory.
func BenchmarkGetAllWide(b *testing.B) {
	forSizes(b, func(b *testing.B, s *Store, nodes int) {
		for b.Loop() {
			if kvs, _ := s.GetAll("/calico/bgp/v1/host/*/ip_addr_v4"); len(kvs) != nodes {
				b.Fatal(len(kvs))
			}
		}
	})
}

// BenchmarkList: ls of one node directory (6 names).
func BenchmarkList(b *testing.B) {
	forSizes(b, func(b *testing.B, s *Store, nodes int) {
		d := fmt.Sprintf("/calico/bgp/v1/host/node%05d", nodes/2)
		for b.Loop() {
			if l := s.List(d); len(l) != 6 {
				b.Fatal(l)
			}
		}
	})
}

// BenchmarkListDirHosts: lsdir of the host directory (one name per node).
func BenchmarkListDirHosts(b *testing.B) {
	forSizes(b, func(b *testing.B, s *Store, nodes int) {
		for b.Loop() {
			if l := s.ListDir("/calico/bgp/v1/host"); len(l) != nodes {
				b.Fatal(len(l))
			}
		}
	})
}

// BenchmarkGet: a single key.
func BenchmarkGet(b *testing.B) {
	forSizes(b, func(b *testing.B, s *Store, nodes int) {
		k := fmt.Sprintf("/calico/bgp/v1/host/node%05d/as_num", nodes/2)
		for b.Loop() {
			if _, err := s.Get(k); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// The same lookups on a plain memkv.Store of 100,000 keys, for comparison.
func BenchmarkMemkvBaseline(b *testing.B) {
	m := memkv.New()
	for _, k := range benchKeys(5000) {
		m.Set(k, "v")
	}
	b.Run("GetAllNarrow", func(b *testing.B) {
		for b.Loop() {
			m.GetAll("/calico/bgp/v1/host/node02500/*")
		}
	})
	b.Run("List", func(b *testing.B) {
		for b.Loop() {
			m.List("/calico/bgp/v1/host/node02500")
		}
	})
}

// BenchmarkMirrorApplyNode: a Node update (its address changes) in a
// mirror holding 5,000 nodes.
func BenchmarkMirrorApplyNode(b *testing.B) {
	s := New()
	m := NewMirror(s, "node00000")
	mk := func(n, v int) *api.Node {
		node := &api.Node{Spec: api.NodeSpec{BGP: &api.NodeBGPSpec{IPv4Address: fmt.Sprintf("10.%d.%d.%d/16", v%200, n/256, n%256)}}}
		node.Metadata.Name = fmt.Sprintf("node%05d", n)
		return node
	}
	for n := 0; n < 5000; n++ {
		m.Apply("", mk(n, 0))
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		m.Apply("", mk(i%5000, i/5000+1))
	}
}

package bgp

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/roostnet/roost/api"
)

// benchCache builds an n-node full-mesh cluster: every node has an IPv4
// address (and every other one an IPv6 address), labels, a block; plus
// two pools, three global peers, a peerSelector peer for reflector-style
// selection that matches nothing, and a BGPFilter.
func benchCache(tb testing.TB, n int) *Cache {
	tb.Helper()
	c := NewCache()
	must := func(err error) {
		if err != nil {
			tb.Fatal(err)
		}
	}
	as := api.ASNumber(64512)
	yes := true
	must(c.Set(&api.BGPConfiguration{Metadata: api.ObjectMeta{Name: "default"}, Spec: api.BGPConfigurationSpec{
		ASNumber: &as, NodeToNodeMeshEnabled: &yes, ServiceClusterIPs: []api.ServiceIPBlock{{CIDR: "10.96.0.0/12"}},
	}}))
	for i := 0; i < n; i++ {
		must(c.Set(benchNode(i)))
		cidr := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 65, byte(i >> 2), byte(i&3) << 6}), 26)
		must(c.Set(&api.BlockAffinity{Metadata: api.ObjectMeta{Name: fmt.Sprintf("b%d", i)},
			Spec: api.BlockAffinitySpec{Node: fmt.Sprintf("node-%d", i), CIDR: cidr.String(), State: api.AffinityConfirmed}}))
	}
	must(c.Set(&api.IPPool{Metadata: api.ObjectMeta{Name: "p4"}, Spec: api.IPPoolSpec{CIDR: "10.65.0.0/16", IPIPMode: api.EncapAlways, VXLANMode: api.EncapNever}}))
	must(c.Set(&api.IPPool{Metadata: api.ObjectMeta{Name: "p6"}, Spec: api.IPPoolSpec{CIDR: "fd00:65::/48", IPIPMode: api.EncapNever, VXLANMode: api.EncapNever}}))
	must(c.Set(&api.BGPFilter{Metadata: api.ObjectMeta{Name: "f"}, Spec: api.BGPFilterSpec{
		ExportV4: []api.BGPFilterRule{{CIDR: "10.0.0.0/8", MatchOperator: api.MatchIn, Action: api.FilterAccept}}}}))
	for i, ip := range []string{"172.16.0.1", "172.16.0.2", "fd00:ffff::1"} {
		must(c.Set(&api.BGPPeer{Metadata: api.ObjectMeta{Name: fmt.Sprintf("tor%d", i)},
			Spec: api.BGPPeerSpec{PeerIP: ip, ASNumber: 65000, Filters: []string{"f"}}}))
	}
	must(c.Set(&api.BGPPeer{Metadata: api.ObjectMeta{Name: "rr"},
		Spec: api.BGPPeerSpec{NodeSelector: "rr == 'true'", PeerSelector: "has(client)"}}))
	return c
}

func benchNode(i int) *api.Node {
	b := &api.NodeBGPSpec{IPv4Address: fmt.Sprintf("10.%d.%d.%d/16", 128+i>>16, (i>>8)&255, i&255)}
	if i%2 == 0 {
		b.IPv6Address = fmt.Sprintf("fd00::%x/64", i+1)
	}
	return &api.Node{
		Metadata: api.ObjectMeta{Name: fmt.Sprintf("node-%d", i), Labels: map[string]string{"rack": fmt.Sprint(i % 16), "kubernetes.io/os": "linux"}},
		Spec:     api.NodeSpec{BGP: b},
	}
}

func BenchmarkCompute(b *testing.B) {
	for _, n := range []int{100, 1000, 5000} {
		c := benchCache(b, n)
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var peers int
			for b.Loop() {
				m, errs := Compute(c, Options{NodeName: "node-0"})
				if m == nil || len(errs) > 0 {
					b.Fatal(errs)
				}
				peers = m.PeerCount()
			}
			b.ReportMetric(float64(peers), "sessions")
		})
	}
}

// BenchmarkComputeRender is one change end to end for this package:
// apply a node update, compute, execute the default templates.
func BenchmarkComputeRender(b *testing.B) {
	r := newRenderer(b)
	for _, n := range []int{100, 1000, 5000} {
		c := benchCache(b, n)
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			var size int
			for b.Loop() {
				node := benchNode(1 + i%(n-1))
				node.Metadata.Labels = map[string]string{"gen": fmt.Sprint(i)}
				if err := c.Set(node); err != nil {
					b.Fatal(err)
				}
				i++
				m, errs := Compute(c, Options{NodeName: "node-0"})
				if m == nil || len(errs) > 0 {
					b.Fatal(errs)
				}
				files, err := r.render(m)
				if err != nil {
					b.Fatal(err)
				}
				size = 0
				for _, f := range files {
					size += len(f)
				}
			}
			b.ReportMetric(float64(size), "bytes")
		})
	}
}

// BenchmarkApplyNode is the cost of one Node change in the cache.
func BenchmarkApplyNode(b *testing.B) {
	for _, n := range []int{100, 1000, 5000} {
		c := benchCache(b, n)
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				node := benchNode(i % n)
				if err := c.Set(node); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

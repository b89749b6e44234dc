package api

import (
	"net/netip"
	"slices"
	"testing"
)

func TestBlockOrdinals(t *testing.T) {
	for _, tc := range []struct {
		cidr, ip string
		ord      int
		ok       bool
	}{
		{"10.0.0.64/26", "10.0.0.64", 0, true},
		{"10.0.0.64/26", "10.0.0.127", 63, true},
		{"10.0.0.64/26", "10.0.0.128", 0, false},
		{"10.0.0.64/26", "10.0.0.63", 0, false},
		{"10.0.0.0/32", "10.0.0.0", 0, true},
		{"10.0.0.0/20", "10.0.15.255", 4095, true},
		{"fd00:0:0:1::40/122", "fd00:0:0:1::7f", 63, true},
		{"fd00:0:0:1::/122", "fd00:0:0:2::", 0, false},
		{"10.0.0.0/26", "::ffff:10.0.0.1", 0, false}, // callers unmap first
		{"fd00::/64", "fd00::1", 0, false},           // too large for a block
	} {
		cidr, ip := netip.MustParsePrefix(tc.cidr), netip.MustParseAddr(tc.ip)
		ord, ok := Ordinal(cidr, ip)
		if ord != tc.ord || ok != tc.ok {
			t.Errorf("Ordinal(%s, %s) = %d, %v; want %d, %v", cidr, ip, ord, ok, tc.ord, tc.ok)
		}
		if ok {
			if back := AddrAt(cidr, ord); back != ip {
				t.Errorf("AddrAt(%s, %d) = %s, want %s", cidr, ord, back, ip)
			}
		}
	}
	for _, tc := range []struct {
		cidr string
		ord  int
	}{{"10.0.0.0/26", -1}, {"10.0.0.0/26", 64}, {"fd00::/64", 0}} {
		if a := AddrAt(netip.MustParsePrefix(tc.cidr), tc.ord); a.IsValid() {
			t.Errorf("AddrAt(%s, %d) = %s, want none", tc.cidr, tc.ord, a)
		}
	}
}

func TestAllocationBlockAssign(t *testing.T) {
	b := NewAllocationBlock(netip.MustParsePrefix("10.0.0.0/29"), "n1")
	if b.AffinityNode() != "n1" || b.CIDR != "10.0.0.0/29" || len(b.Allocations) != 8 || !slices.Equal(b.Unallocated, []int{0, 1, 2, 3, 4, 5, 6, 7}) {
		t.Fatalf("new block: %+v", b)
	}
	attrs := map[string]string{"node": "n1"}
	if ords := b.AssignFirstFree(2, "a", attrs); !slices.Equal(ords, []int{0, 1}) {
		t.Fatalf("first free: %v", ords)
	}
	if !b.AssignOrdinal(5, "b", nil) || b.AssignOrdinal(5, "c", nil) || b.AssignOrdinal(8, "c", nil) {
		t.Fatal("AssignOrdinal: 5 once, never twice or out of range")
	}
	if ords := b.AssignFirstFree(1, "a", attrs); !slices.Equal(ords, []int{2}) || len(b.Attributes) != 2 {
		t.Fatalf("same handle and attributes share one attribute: %v %+v", ords, b.Attributes)
	}
	if h, used := b.HandleAt(5); h != "b" || !used {
		t.Errorf("HandleAt(5) = %q %v", h, used)
	}
	if h, used := b.HandleAt(3); h != "" || used {
		t.Errorf("HandleAt(3) = %q %v", h, used)
	}
	if a, used := b.Allocation(0); !used || a.Secondary["node"] != "n1" {
		t.Errorf("Allocation(0) = %+v %v", a, used)
	}
	if got := b.OrdinalsOf("a"); !slices.Equal(got, []int{0, 1, 2}) || b.InUse() != 4 || b.SequenceNumber != 4 {
		t.Errorf("OrdinalsOf(a) %v, in use %d, seq %d", got, b.InUse(), b.SequenceNumber)
	}
	b.Release(b.OrdinalsOf("a"))
	if b.InUse() != 1 || len(b.Attributes) != 1 || !slices.Equal(b.Unallocated, []int{3, 4, 6, 7, 0, 1, 2}) {
		t.Errorf("after release: in use %d, attributes %+v, free %v", b.InUse(), b.Attributes, b.Unallocated)
	}
	if h, _ := b.HandleAt(5); h != "b" {
		t.Errorf("release renumbered b's attribute wrongly: %q", h)
	}
	if p, err := b.Prefix(); err != nil || p != netip.MustParsePrefix("10.0.0.0/29") {
		t.Errorf("Prefix: %s %v", p, err)
	}
	if _, err := (&AllocationBlock{CIDR: "bad"}).Prefix(); err == nil {
		t.Error("Prefix of a bad CIDR: no error")
	}
}

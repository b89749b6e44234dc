package ipam

import (
	"fmt"
	"maps"
	"math/big"
	"net/netip"
	"strconv"

	"github.com/roostnet/roost/api"
)

// Pure operations on Calico's block JSON (api.AllocationBlock). Ordinals
// are offsets of addresses inside the block; Allocations[ord] is nil when
// the address is free, else an index into Attributes. Unallocated is the
// free list: new blocks list every ordinal in order, allocation takes from
// the front and release appends at the back, as Calico does, so a freed
// address is reused as late as possible.

// newBlock returns an empty block affine to node.
func newBlock(cidr netip.Prefix, node string) *api.AllocationBlock {
	n := blockSize(cidr)
	aff := "host:" + node
	b := &api.AllocationBlock{
		CIDR:        cidr.String(),
		Affinity:    &aff,
		Allocations: make([]*int, n),
		Unallocated: make([]int, n),
		Attributes:  []api.AllocationAttribute{},
	}
	for i := range n {
		b.Unallocated[i] = i
	}
	return b
}

func blockSize(cidr netip.Prefix) int {
	return 1 << (cidr.Addr().BitLen() - cidr.Bits())
}

// ordinalOf returns the offset of ip inside cidr.
func ordinalOf(cidr netip.Prefix, ip netip.Addr) (int, bool) {
	if !cidr.Contains(ip) {
		return 0, false
	}
	a, b := cidr.Masked().Addr().As16(), ip.As16()
	x := new(big.Int).Sub(new(big.Int).SetBytes(b[:]), new(big.Int).SetBytes(a[:]))
	return int(x.Int64()), true
}

// addrAt returns the address at offset ord inside cidr.
func addrAt(cidr netip.Prefix, ord int) netip.Addr {
	return addOffset(cidr.Masked().Addr(), new(big.Int).SetInt64(int64(ord)))
}

func addOffset(a netip.Addr, off *big.Int) netip.Addr {
	b := a.As16()
	v := new(big.Int).Add(new(big.Int).SetBytes(b[:]), off)
	var out [16]byte
	v.FillBytes(out[:])
	r := netip.AddrFrom16(out)
	if a.Is4() {
		r = r.Unmap()
	}
	return r
}

// attributeIndex finds or appends the attribute for (handle, secondary).
func attributeIndex(b *api.AllocationBlock, handle string, secondary map[string]string) int {
	for i, a := range b.Attributes {
		if a.HandleID != nil && *a.HandleID == handle && maps.Equal(a.Secondary, secondary) {
			return i
		}
	}
	h := handle
	b.Attributes = append(b.Attributes, api.AllocationAttribute{HandleID: &h, Secondary: maps.Clone(secondary)})
	return len(b.Attributes) - 1
}

// assignFirstFree allocates up to n free addresses; it returns their ordinals.
func assignFirstFree(b *api.AllocationBlock, n int, handle string, secondary map[string]string) []int {
	var ords []int
	keep := b.Unallocated[:0:0]
	for _, ord := range b.Unallocated {
		if len(ords) < n && ord >= 0 && ord < len(b.Allocations) && b.Allocations[ord] == nil {
			ords = append(ords, ord)
			continue
		}
		keep = append(keep, ord)
	}
	if len(ords) == 0 {
		return nil
	}
	b.Unallocated = keep
	idx := attributeIndex(b, handle, secondary)
	for _, ord := range ords {
		mark(b, ord, idx)
	}
	return ords
}

// assignOrdinal allocates one specific address; false when it is taken.
func assignOrdinal(b *api.AllocationBlock, ord int, handle string, secondary map[string]string) bool {
	if ord < 0 || ord >= len(b.Allocations) || b.Allocations[ord] != nil {
		return false
	}
	for i, u := range b.Unallocated {
		if u == ord {
			b.Unallocated = append(b.Unallocated[:i:i], b.Unallocated[i+1:]...)
			break
		}
	}
	mark(b, ord, attributeIndex(b, handle, secondary))
	return true
}

func mark(b *api.AllocationBlock, ord, attr int) {
	a := attr
	b.Allocations[ord] = &a
	b.SequenceNumber++
	if b.SequenceNumberForAllocation == nil {
		b.SequenceNumberForAllocation = map[string]uint64{}
	}
	b.SequenceNumberForAllocation[strconv.Itoa(ord)] = b.SequenceNumber
}

// handleOf returns the handle holding ordinal ord ("" when free or unknown).
func handleOf(b *api.AllocationBlock, ord int) (string, bool) {
	if ord < 0 || ord >= len(b.Allocations) || b.Allocations[ord] == nil {
		return "", false
	}
	i := *b.Allocations[ord]
	if i < 0 || i >= len(b.Attributes) || b.Attributes[i].HandleID == nil {
		return "", true
	}
	return *b.Attributes[i].HandleID, true
}

// ordinalsOfHandle lists the ordinals held by handle.
func ordinalsOfHandle(b *api.AllocationBlock, handle string) []int {
	var out []int
	for ord := range b.Allocations {
		if h, ok := handleOf(b, ord); ok && h == handle {
			out = append(out, ord)
		}
	}
	return out
}

// inUse counts allocated addresses.
func inUse(b *api.AllocationBlock) int {
	n := 0
	for _, a := range b.Allocations {
		if a != nil {
			n++
		}
	}
	return n
}

// freeCount counts addresses that can be handed out.
func freeCount(b *api.AllocationBlock) int { return len(b.Allocations) - inUse(b) }

func blockCIDR(b *api.AllocationBlock) (netip.Prefix, error) {
	p, err := api.ParseCIDR(b.CIDR)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("block with invalid cidr %q", b.CIDR)
	}
	return p, nil
}

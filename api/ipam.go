package api

import (
	"encoding/binary"
	"maps"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// IPAM records. In etcd each is stored as bare JSON (the *Spec types below,
// in Calico's field names); in files and in Go they are wrapped as resources
// so that every datastore operation handles them alike.

// Affinity states.
const (
	AffinityConfirmed       = "confirmed"
	AffinityPending         = "pending"
	AffinityPendingDeletion = "pendingDeletion"
)

// BlockAffinity says a block belongs to a node.
// etcd: /calico/ipam/v2/host/<node>/ipv4/block/<cidr-with-dash>.
type BlockAffinity struct {
	TypeMeta
	Metadata ObjectMeta        `json:"metadata"`
	Spec     BlockAffinitySpec `json:"spec"`
}

// BlockAffinitySpec: node and cidr come from the etcd key, state and
// deleted from its value. An empty state means confirmed (legacy values).
type BlockAffinitySpec struct {
	Node    string `json:"node"`
	CIDR    string `json:"cidr"`
	State   string `json:"state,omitempty"`
	Deleted bool   `json:"deleted,omitempty"`
}

// Confirmed reports whether the affinity counts (pending ones count as absent).
func (a *BlockAffinity) Confirmed() bool {
	return !a.Spec.Deleted && (a.Spec.State == "" || a.Spec.State == AffinityConfirmed)
}

// Routed reports whether the node routes the block: a confirmed affinity,
// and a pendingDeletion one until it is gone (while the block is being
// released it may still hold addresses whose traffic must keep arriving;
// Calico keeps its blackhole and export too). Pending ones count as absent.
func (a *BlockAffinity) Routed() bool {
	return a.Confirmed() || (!a.Spec.Deleted && a.Spec.State == AffinityPendingDeletion)
}

// BlockAffinityName is the resource name Roost gives an affinity read from
// etcd, where the key carries node and CIDR instead of a name.
func BlockAffinityName(node, cidr string) string {
	return node + "-" + BlockName(cidr)
}

// BlockName is the resource name of a block read from etcd: the CIDR as a
// DNS-1123 name ("10.0.0.0/26" -> "10-0-0-0-26", "fd00::/122" ->
// "fd00---122"), as Calico's Kubernetes backend names them.
func BlockName(cidr string) string {
	return blockNamer.Replace(cidr)
}

var blockNamer = strings.NewReplacer(".", "-", ":", "-", "/", "-")

// IPAMBlock is an allocation block.
// etcd: /calico/ipam/v2/assignment/ipv4/block/<cidr-with-dash>.
type IPAMBlock struct {
	TypeMeta
	Metadata ObjectMeta      `json:"metadata"`
	Spec     AllocationBlock `json:"spec"`
}

// AllocationBlock is Calico's block JSON. Allocations has one entry per
// address: nil when free, else an index into Attributes.
type AllocationBlock struct {
	CIDR     string  `json:"cidr"`
	Affinity *string `json:"affinity"`
	// AffinityClaimTime is when the affinity was claimed (Calico does not
	// reclaim a block just claimed); set with Affinity, cleared with it.
	AffinityClaimTime           *Time                 `json:"affinity_claim_time,omitempty"`
	StrictAffinity              bool                  `json:"strictAffinity,omitempty"` // not in current Calico
	Allocations                 []*int                `json:"allocations"`
	Unallocated                 []int                 `json:"unallocated"`
	Attributes                  []AllocationAttribute `json:"attributes"`
	Deleted                     bool                  `json:"deleted"`
	SequenceNumber              uint64                `json:"sequenceNumber"`
	SequenceNumberForAllocation map[string]uint64     `json:"sequenceNumberForAllocation,omitempty"`
}

// AllocationAttribute records who holds an address.
type AllocationAttribute struct {
	HandleID  *string           `json:"handle_id,omitempty"`
	Secondary map[string]string `json:"secondary,omitempty"`
	// Calico's, kept through rewrites (attributes are a list, whose
	// unknown fields would not be).
	AlternateOwnerAttrs map[string]string `json:"alternateOwnerAttrs,omitempty"`
	ReleasedAt          *Time             `json:"releasedAt,omitempty"`
}

// AffinityNode returns the node of a "host:<node>" affinity, or "".
func (b *AllocationBlock) AffinityNode() string {
	if b.Affinity == nil {
		return ""
	}
	n, ok := strings.CutPrefix(*b.Affinity, "host:")
	if !ok {
		return ""
	}
	return n
}

// IPAMHandle groups the addresses one owner holds, per block.
// etcd: /calico/ipam/v2/handle/<id>.
type IPAMHandle struct {
	TypeMeta
	Metadata ObjectMeta     `json:"metadata"`
	Spec     IPAMHandleSpec `json:"spec"`
}

// IPAMHandleSpec is Calico's handle JSON: address count per block CIDR.
type IPAMHandleSpec struct {
	Block   map[string]int `json:"block"`
	Deleted bool           `json:"deleted"`
}

// CIDRToKey writes a CIDR the way IPAM keys do ("10.0.0.0/26" -> "10.0.0.0-26").
func CIDRToKey(cidr string) string { return strings.Replace(cidr, "/", "-", 1) }

// CIDRFromKey reverses CIDRToKey; the last '-' separates the prefix length.
func CIDRFromKey(s string) (string, error) {
	i := strings.LastIndexByte(s, '-')
	if i < 0 {
		return "", &FieldError{Field: "cidr", Value: s, Msg: "expected <address>-<prefix length>"}
	}
	c := s[:i] + "/" + s[i+1:]
	if _, err := netip.ParsePrefix(c); err != nil {
		return "", &FieldError{Field: "cidr", Value: s, Msg: "not a CIDR"}
	}
	return c, nil
}

func (r *BlockAffinity) ResourceKind() string { return KindBlockAffinity }
func (r *BlockAffinity) Meta() *ObjectMeta    { return &r.Metadata }
func (r *BlockAffinity) withTypeMeta() Resource {
	c := *r
	c.TypeMeta.set(KindBlockAffinity)
	return &c
}
func (r *IPAMBlock) ResourceKind() string    { return KindIPAMBlock }
func (r *IPAMBlock) Meta() *ObjectMeta       { return &r.Metadata }
func (r *IPAMBlock) withTypeMeta() Resource  { c := *r; c.TypeMeta.set(KindIPAMBlock); return &c }
func (r *IPAMHandle) ResourceKind() string   { return KindIPAMHandle }
func (r *IPAMHandle) Meta() *ObjectMeta      { return &r.Metadata }
func (r *IPAMHandle) withTypeMeta() Resource { c := *r; c.TypeMeta.set(KindIPAMHandle); return &c }

// Block arithmetic on Calico's block JSON, shared by every IPAM writer
// (node/ipam, and through it birdctl). Ordinals are offsets of addresses
// inside the block; Allocations[ord] is nil when the address is free, else
// an index into Attributes. Unallocated is the free list: a new block lists
// every ordinal in order, allocation takes from the front and release
// appends at the back, as Calico does, so a freed address is reused as
// late as possible.

// NewAllocationBlock returns an empty block of cidr affine to node.
func NewAllocationBlock(cidr netip.Prefix, node string) *AllocationBlock {
	n := BlockSize(cidr)
	aff := "host:" + node
	now := NewTime(time.Now())
	b := &AllocationBlock{
		CIDR:              cidr.Masked().String(),
		Affinity:          &aff,
		AffinityClaimTime: &now,
		Allocations:       make([]*int, n),
		Unallocated:       make([]int, n),
		Attributes:        []AllocationAttribute{},
	}
	for i := range n {
		b.Unallocated[i] = i
	}
	return b
}

// maxBlockHostBits bounds the blocks ordinals are computed for: Calico's
// smallest block sizes (/20, /116) have 12 host bits; 30 keeps every
// ordinal an int on any platform.
const maxBlockHostBits = 30

// BlockSize is the number of addresses of a block (0 for a prefix too
// large to be one).
func BlockSize(cidr netip.Prefix) int {
	h := cidr.Addr().BitLen() - cidr.Bits()
	if h < 0 || h > maxBlockHostBits {
		return 0
	}
	return 1 << h
}

// Ordinal returns the offset of ip inside block cidr; false when ip lies
// outside it (or cidr is too large to be a block).
func Ordinal(cidr netip.Prefix, ip netip.Addr) (int, bool) {
	if !cidr.Contains(ip) || cidr.Addr().BitLen()-cidr.Bits() > maxBlockHostBits {
		return 0, false
	}
	// The block's host bits lie in the low 64 bits, the rest is equal.
	a, b := cidr.Masked().Addr().As16(), ip.As16()
	return int(binary.BigEndian.Uint64(b[8:]) - binary.BigEndian.Uint64(a[8:])), true
}

// AddrAt returns the address at ordinal ord of block cidr (the zero Addr
// when ord lies outside it).
func AddrAt(cidr netip.Prefix, ord int) netip.Addr {
	if ord < 0 || ord >= BlockSize(cidr) {
		return netip.Addr{}
	}
	a := cidr.Masked().Addr()
	b := a.As16()
	binary.BigEndian.PutUint64(b[8:], binary.BigEndian.Uint64(b[8:])+uint64(ord))
	r := netip.AddrFrom16(b)
	if a.Is4() {
		r = r.Unmap()
	}
	return r
}

// Prefix parses the block's CIDR.
func (b *AllocationBlock) Prefix() (netip.Prefix, error) {
	p, err := ParseCIDR(b.CIDR)
	if err != nil {
		return netip.Prefix{}, &FieldError{Field: "cidr", Value: b.CIDR, Msg: "not a CIDR"}
	}
	return p, nil
}

// Allocation returns the attribute of ordinal ord and whether the address
// is allocated (an allocation whose attribute is missing yields the zero
// attribute).
func (b *AllocationBlock) Allocation(ord int) (AllocationAttribute, bool) {
	if ord < 0 || ord >= len(b.Allocations) || b.Allocations[ord] == nil {
		return AllocationAttribute{}, false
	}
	if i := *b.Allocations[ord]; i >= 0 && i < len(b.Attributes) {
		return b.Attributes[i], true
	}
	return AllocationAttribute{}, true
}

// HandleAt returns the handle holding ordinal ord ("" when it has none)
// and whether the address is allocated.
func (b *AllocationBlock) HandleAt(ord int) (string, bool) {
	a, used := b.Allocation(ord)
	if a.HandleID == nil {
		return "", used
	}
	return *a.HandleID, used
}

// OrdinalsOf lists the ordinals held by handle, in order.
func (b *AllocationBlock) OrdinalsOf(handle string) []int {
	var out []int
	for ord := range b.Allocations {
		if h, used := b.HandleAt(ord); used && h == handle {
			out = append(out, ord)
		}
	}
	return out
}

// InUse counts the allocated addresses.
func (b *AllocationBlock) InUse() int {
	n := 0
	for _, a := range b.Allocations {
		if a != nil {
			n++
		}
	}
	return n
}

// attributeIndex finds or appends the attribute for (handle, secondary).
func (b *AllocationBlock) attributeIndex(handle string, secondary map[string]string) int {
	for i, a := range b.Attributes {
		if a.HandleID != nil && *a.HandleID == handle && maps.Equal(a.Secondary, secondary) {
			return i
		}
	}
	h := handle
	b.Attributes = append(b.Attributes, AllocationAttribute{HandleID: &h, Secondary: maps.Clone(secondary)})
	return len(b.Attributes) - 1
}

// AssignFirstFree allocates up to n free addresses from the front of the
// free list to handle; it returns their ordinals.
func (b *AllocationBlock) AssignFirstFree(n int, handle string, secondary map[string]string) []int {
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
	idx := b.attributeIndex(handle, secondary)
	for _, ord := range ords {
		b.mark(ord, idx)
	}
	return ords
}

// AssignOrdinal allocates one specific address to handle; false when it
// is taken or out of range.
func (b *AllocationBlock) AssignOrdinal(ord int, handle string, secondary map[string]string) bool {
	if ord < 0 || ord >= len(b.Allocations) || b.Allocations[ord] != nil {
		return false
	}
	for i, u := range b.Unallocated {
		if u == ord {
			b.Unallocated = append(b.Unallocated[:i:i], b.Unallocated[i+1:]...)
			break
		}
	}
	b.mark(ord, b.attributeIndex(handle, secondary))
	return true
}

func (b *AllocationBlock) mark(ord, attr int) {
	a := attr
	b.Allocations[ord] = &a
	b.SequenceNumber++
	if b.SequenceNumberForAllocation == nil {
		b.SequenceNumberForAllocation = map[string]uint64{}
	}
	b.SequenceNumberForAllocation[strconv.Itoa(ord)] = b.SequenceNumber
}

// Release frees the given ordinals (indexes into the block) and drops the
// attributes no address uses any more, renumbering the references, as
// Calico does. Ordinals out of range or already free are ignored.
func (b *AllocationBlock) Release(ords []int) {
	if len(ords) == 0 {
		return
	}
	for _, ord := range ords {
		if ord < 0 || ord >= len(b.Allocations) || b.Allocations[ord] == nil {
			continue
		}
		b.Allocations[ord] = nil
		b.Unallocated = append(b.Unallocated, ord)
		delete(b.SequenceNumberForAllocation, strconv.Itoa(ord))
	}
	if len(b.SequenceNumberForAllocation) == 0 {
		b.SequenceNumberForAllocation = nil
	}
	b.SequenceNumber++
	used := make([]bool, len(b.Attributes))
	for _, a := range b.Allocations {
		if a != nil && *a >= 0 && *a < len(used) {
			used[*a] = true
		}
	}
	remap := make([]int, len(b.Attributes))
	attrs := []AllocationAttribute{}
	for i, a := range b.Attributes {
		if used[i] {
			remap[i] = len(attrs)
			attrs = append(attrs, a)
		}
	}
	b.Attributes = attrs
	for ord, a := range b.Allocations {
		if a != nil && *a >= 0 && *a < len(remap) {
			v := remap[*a]
			b.Allocations[ord] = &v
		}
	}
}

// AttrNodeKey is the secondary attribute naming the node an address is
// allocated for (Calico's "node").
const AttrNodeKey = "node"

// BorrowedAddr is an allocation held for another node than the block's.
type BorrowedAddr struct {
	Ordinal int
	Node    string
}

// Borrowed lists, in ordinal order, the allocations whose "node"
// attribute names another node than the block's affinity (every node's,
// for a block without affinity): addresses borrowed from the block, which
// must be routed to that node rather than to the block's. Allocations
// without a node attribute are not listed: their node is unknown.
func (b *AllocationBlock) Borrowed() []BorrowedAddr {
	owner := b.AffinityNode()
	var out []BorrowedAddr
	for ord, a := range b.Allocations {
		if a == nil || *a < 0 || *a >= len(b.Attributes) {
			continue
		}
		if n := b.Attributes[*a].Secondary[AttrNodeKey]; n != "" && n != owner {
			out = append(out, BorrowedAddr{Ordinal: ord, Node: n})
		}
	}
	return out
}

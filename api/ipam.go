package api

import (
	"net/netip"
	"strconv"
	"strings"
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
	CIDR                        string                `json:"cidr"`
	Affinity                    *string               `json:"affinity"`
	StrictAffinity              bool                  `json:"strictAffinity"`
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

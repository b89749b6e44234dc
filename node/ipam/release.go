package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/internal/backoff"
	"github.com/roostnet/roost/node/names"
)

// Releasing a node frees what it held, as calicoctl delete node does: its
// workload endpoints and their addresses, its tunnel addresses, its blocks
// with their affinities, and the counts of the handles that had addresses
// in those blocks. Every write is a compare-and-swap transaction on
// revisions just read; after a conflict (an agent or CNI plugin writing at
// the same time) the records are read again and the step is retried under
// the package's retry policy. The Node resource itself is left to the
// caller, to delete last: a release that fails midway is finished by
// running it again.

// NodeRelease counts what ReleaseNode freed.
type NodeRelease struct {
	Node              string
	Blocks            []string // CIDRs of the deleted blocks
	Addresses         int      // allocated addresses freed, in its blocks and elsewhere
	WorkloadEndpoints int      // workload endpoints deleted
	Affinities        int      // affinity keys deleted that had no block of the node
}

// ReleaseOptions tunes ReleaseNode.
type ReleaseOptions struct {
	// Batch caps the operations of one transaction (default
	// datastore.MaxTxnOps).
	Batch int
	// Warnf reports records that are skipped or left alone (default: the
	// client's logger).
	Warnf func(format string, args ...any)
	// Written, when set, learns every key a transaction wrote; deleted
	// tells whether it is gone.
	Written func(key string, deleted bool)
}

// ReleaseNode frees everything the client's node holds in IPAM and
// deletes its workload endpoints (see above). node is the Node resource,
// for its tunnel addresses; it may be nil. The counts are returned also
// with an error, for what was done before it.
func (c *Client) ReleaseNode(ctx context.Context, node *api.Node, opts ReleaseOptions) (NodeRelease, error) {
	if opts.Batch <= 0 {
		opts.Batch = datastore.MaxTxnOps
	}
	if opts.Warnf == nil {
		opts.Warnf = c.log.Warnf
	}
	r := &releaser{c: c, ds: c.ds, node: c.node, opts: opts, rel: NodeRelease{Node: c.node}}
	err := r.run(ctx, node)
	return r.rel, err
}

// releaser frees one node's workload endpoints and IPAM.
type releaser struct {
	c    *Client
	ds   datastore.Datastore
	node string
	opts ReleaseOptions
	rel  NodeRelease
	// handles holds the handles as last read or written (nil: absent).
	handles map[string]*datastore.KV
}

// run releases, in an order that leaves nothing behind if it stops
// midway and the release is run again: the addresses the node's workloads
// and tunnels hold in other nodes' blocks, its workload endpoints, its
// blocks, and then its affinities left over.
func (r *releaser) run(ctx context.Context, node *api.Node) error {
	weps, err := r.nodeWEPs(ctx)
	if err != nil {
		return err
	}
	var addrs []netip.Addr
	for _, kv := range weps {
		for _, n := range kv.Value.(*api.WorkloadEndpoint).Spec.IPNetworks {
			if ip, _, err := api.ParseAddrMaybeCIDR(n); err == nil {
				addrs = append(addrs, ip.Unmap())
			}
		}
	}
	addrs = append(addrs, tunnelAddrs(node)...)

	blocks, err := r.ds.List(ctx, datastore.BlockPrefix)
	if err != nil {
		return fmt.Errorf("list IPAM blocks: %w", err)
	}
	for _, bad := range blocks.Invalid {
		r.opts.Warnf("skipped %v", bad)
	}
	handles, err := r.ds.List(ctx, datastore.HandlePrefix)
	if err != nil {
		return fmt.Errorf("list IPAM handles: %w", err)
	}
	r.handles = make(map[string]*datastore.KV, len(handles.KVs))
	for i := range handles.KVs {
		kv := &handles.KVs[i]
		if _, ok := kv.Value.(*api.IPAMHandle); ok {
			r.handles[strings.TrimPrefix(kv.Key, datastore.HandlePrefix)] = kv
		}
	}

	var own []*datastore.KV
	for i := range blocks.KVs {
		kv := &blocks.KVs[i]
		b, ok := kv.Value.(*api.IPAMBlock)
		if !ok {
			continue
		}
		if b.Spec.AffinityNode() == r.node {
			own = append(own, kv)
			continue
		}
		if err := r.releaseForeign(ctx, kv, addrs); err != nil {
			return err
		}
	}
	if err := r.deleteWEPs(ctx, weps); err != nil {
		return err
	}
	slices.SortStableFunc(own, func(a, b *datastore.KV) int {
		return comparePrefixes(a.Value.(*api.IPAMBlock).Spec.CIDR, b.Value.(*api.IPAMBlock).Spec.CIDR)
	})
	for _, kv := range own {
		if err := r.releaseBlock(ctx, kv); err != nil {
			return err
		}
	}
	return r.deleteAffinities(ctx)
}

// comparePrefixes orders CIDRs by family, address and length; strings
// that are not CIDRs sort last, by their text.
func comparePrefixes(a, b string) int {
	pa, ea := netip.ParsePrefix(a)
	pb, eb := netip.ParsePrefix(b)
	switch {
	case ea != nil && eb != nil:
		return strings.Compare(a, b)
	case ea != nil:
		return 1
	case eb != nil:
		return -1
	}
	if pa.Addr().Is4() != pb.Addr().Is4() {
		if pa.Addr().Is4() {
			return -1
		}
		return 1
	}
	if c := pa.Addr().Compare(pb.Addr()); c != 0 {
		return c
	}
	return pa.Bits() - pb.Bits()
}

// tunnelHandles are Calico's handle ids of a node's tunnel and WireGuard
// addresses.
func tunnelHandles(node string) []string {
	return []string{
		names.IPIPTunnelHandle(node), names.VXLANTunnelHandle(node), names.VXLANV6TunnelHandle(node),
		"wireguard-tunnel-addr-" + node, "wireguard-v6-tunnel-addr-" + node,
	}
}

// tunnelAddrs are the tunnel and WireGuard addresses a Node records.
func tunnelAddrs(n *api.Node) []netip.Addr {
	if n == nil {
		return nil
	}
	s := []string{n.Spec.IPv4VXLANTunnelAddr, n.Spec.IPv6VXLANTunnelAddr}
	if n.Spec.BGP != nil {
		s = append(s, n.Spec.BGP.IPv4IPIPTunnelAddr)
	}
	if n.Spec.Wireguard != nil {
		s = append(s, n.Spec.Wireguard.InterfaceIPv4Address, n.Spec.Wireguard.InterfaceIPv6Address)
	}
	var out []netip.Addr
	for _, v := range s {
		if ip, _, err := api.ParseAddrMaybeCIDR(v); v != "" && err == nil {
			out = append(out, ip.Unmap())
		}
	}
	return out
}

// retry decides after a step failed with err: nil to try it again (after
// the policy's pause), else the error to return.
func (r *releaser) retry(ctx context.Context, b *backoff.Backoff, what string, err error) error {
	if !isConflict(err) {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n := b.Attempts() + 1; n >= r.c.attempts {
		return fmt.Errorf("%s: still modified concurrently after %d attempts: %w", what, n, err)
	}
	return b.Wait(ctx)
}

// txn runs one transaction, reporting the keys it wrote.
func (r *releaser) txn(ctx context.Context, ops []datastore.Op) (int64, error) {
	rev, err := r.ds.Txn(ctx, ops...)
	if err == nil && r.opts.Written != nil {
		for _, op := range ops {
			r.opts.Written(op.Key, op.Type == datastore.OpDelete)
		}
	}
	return rev, err
}

// nodeWEPs lists the workload endpoints of the node, in every namespace.
func (r *releaser) nodeWEPs(ctx context.Context) ([]datastore.KV, error) {
	res, err := r.ds.List(ctx, datastore.KindPrefix(api.KindWorkloadEndpoint))
	if err != nil {
		return nil, fmt.Errorf("list workload endpoints: %w", err)
	}
	var out []datastore.KV
	for _, kv := range res.KVs {
		if w, ok := kv.Value.(*api.WorkloadEndpoint); ok && w.Spec.Node == r.node {
			out = append(out, kv)
		}
	}
	return out, nil
}

// deleteWEPs deletes the node's workload endpoints.
func (r *releaser) deleteWEPs(ctx context.Context, weps []datastore.KV) error {
	b := newBackoff()
	for len(weps) > 0 {
		n := min(r.opts.Batch, len(weps))
		ops := make([]datastore.Op, n)
		for i, kv := range weps[:n] {
			ops[i] = datastore.Op{Type: datastore.OpDelete, Key: kv.Key, Revision: kv.Revision}
		}
		_, err := r.txn(ctx, ops)
		if err == nil {
			r.rel.WorkloadEndpoints += n
			weps = weps[n:]
			b.Reset()
			continue
		}
		if err := r.retry(ctx, b, "delete workload endpoints", err); err != nil {
			return err
		}
		if weps, err = r.nodeWEPs(ctx); err != nil {
			return err
		}
	}
	return nil
}

// deleteAffinities deletes the affinity keys left under the node's
// prefix (pending claims, affinities to blocks of no or another node).
func (r *releaser) deleteAffinities(ctx context.Context) error {
	b := newBackoff()
	for {
		res, err := r.ds.List(ctx, datastore.HostAffinityPrefix(r.node))
		if err != nil {
			return fmt.Errorf("list block affinities: %w", err)
		}
		for _, bad := range res.Invalid {
			r.opts.Warnf("skipped %v", bad)
		}
		if len(res.KVs) == 0 {
			return nil
		}
		n := min(r.opts.Batch, len(res.KVs))
		ops := make([]datastore.Op, n)
		for i, kv := range res.KVs[:n] {
			ops[i] = datastore.Op{Type: datastore.OpDelete, Key: kv.Key, Revision: kv.Revision}
		}
		if _, err := r.txn(ctx, ops); err != nil {
			if err := r.retry(ctx, b, "delete block affinities", err); err != nil {
				return err
			}
			continue
		}
		r.rel.Affinities += n
		b.Reset()
	}
}

// handle returns a handle as last seen, reading it when unknown.
func (r *releaser) handle(ctx context.Context, id string) (*datastore.KV, error) {
	if kv, ok := r.handles[id]; ok {
		return kv, nil
	}
	return r.readHandle(ctx, id)
}

func (r *releaser) readHandle(ctx context.Context, id string) (*datastore.KV, error) {
	kv, err := r.ds.Get(ctx, datastore.HandleKey(id))
	if errors.Is(err, datastore.ErrNotFound) {
		r.handles[id] = nil
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	r.handles[id] = kv
	return kv, nil
}

// handleChange is the write of one handle.
type handleChange struct {
	id    string
	op    datastore.Op
	value *api.IPAMHandle // nil: deleted
}

// countsBlock reports whether handle kv counts addresses in block cidr.
func countsBlock(kv *datastore.KV, cidr netip.Prefix) bool {
	h, ok := kv.Value.(*api.IPAMHandle)
	if !ok {
		return false
	}
	for k := range h.Spec.Block {
		if p, err := api.ParseCIDR(k); err == nil && p == cidr {
			return true
		}
	}
	return false
}

// dropFromHandle removes n addresses of block cidr from handle kv, all it
// counts there when n < 0; the handle is deleted when it counts no block
// any more. false: it counts none there.
func dropFromHandle(kv *datastore.KV, cidr netip.Prefix, n int) (handleChange, bool) {
	if !countsBlock(kv, cidr) {
		return handleChange{}, false
	}
	nh := api.Clone(kv.Value.(*api.IPAMHandle))
	nh.Metadata.ResourceVersion = ""
	for k, c := range nh.Spec.Block {
		if p, err := api.ParseCIDR(k); err != nil || p != cidr {
			continue
		}
		if n < 0 || c <= n {
			delete(nh.Spec.Block, k)
		} else {
			nh.Spec.Block[k] = c - n
		}
		if n > 0 {
			n = max(n-c, 0)
		}
	}
	c := handleChange{id: strings.TrimPrefix(kv.Key, datastore.HandlePrefix)}
	if len(nh.Spec.Block) == 0 {
		c.op = datastore.Op{Type: datastore.OpDelete, Key: kv.Key, Revision: kv.Revision}
	} else {
		c.op = datastore.Op{Type: datastore.OpUpdate, Key: kv.Key, Value: nh, Revision: kv.Revision}
		c.value = nh
	}
	return c, true
}

// applied records handle writes that a transaction at rev made.
func (r *releaser) applied(rev int64, changes []handleChange) {
	for _, c := range changes {
		if c.value == nil {
			r.handles[c.id] = nil
		} else {
			r.handles[c.id] = &datastore.KV{Key: c.op.Key, Value: c.value, Revision: rev}
		}
	}
}

// releaseForeign frees, in a block that is not the node's, the addresses
// of the node's workloads and tunnels and those of its tunnel handles. An
// address whose allocation names another node is left alone: the record
// that pointed at it is stale and the address has been reused.
func (r *releaser) releaseForeign(ctx context.Context, kv *datastore.KV, addrs []netip.Addr) error {
	tunnel := map[string]bool{}
	for _, h := range tunnelHandles(r.node) {
		tunnel[h] = true
	}
	warned := map[int]bool{}
	pick := func(b *api.AllocationBlock) []int {
		cidr, err := b.Prefix()
		if err != nil || b.AffinityNode() == r.node {
			return nil
		}
		var ords []int
		for _, ip := range addrs {
			ord, ok := api.Ordinal(cidr, ip)
			attr, used := b.Allocation(ord)
			if !ok || !used {
				continue
			}
			if other := attr.Secondary[AttrNode]; other != "" && other != r.node {
				if !warned[ord] {
					warned[ord] = true
					r.opts.Warnf("%s (block %s) is allocated to node %q now; left allocated", ip, cidr, other)
				}
				continue
			}
			ords = append(ords, ord)
		}
		for ord := range b.Allocations {
			if h, used := b.HandleAt(ord); used && tunnel[h] {
				ords = append(ords, ord)
			}
		}
		slices.Sort(ords)
		return slices.Compact(ords)
	}
	if len(pick(&kv.Value.(*api.IPAMBlock).Spec)) == 0 {
		return nil
	}
	_, err := r.releaseOrdinals(ctx, kv, pick)
	return err
}

// handleIDAt returns the handle holding ordinal ord ("" when free or none).
func handleIDAt(b *api.AllocationBlock, ord int) string {
	h, _ := b.HandleAt(ord)
	return h
}

// releaseOrdinals frees the addresses pick chooses in the block at kv and
// their counts in their handles, in transactions of at most Batch
// operations (the block and the handles). It returns the block as last
// written (nil when it disappeared).
func (r *releaser) releaseOrdinals(ctx context.Context, kv *datastore.KV, pick func(*api.AllocationBlock) []int) (*datastore.KV, error) {
	b := newBackoff()
	for {
		blk, ok := kv.Value.(*api.IPAMBlock)
		if !ok {
			return nil, fmt.Errorf("%s: not a block", kv.Key)
		}
		cidr, err := blk.Spec.Prefix()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", kv.Key, err)
		}
		ords := pick(&blk.Spec)
		if len(ords) == 0 {
			return kv, nil
		}
		nb := api.Clone(blk)
		nb.Metadata.ResourceVersion = ""
		// Take addresses until their handles fill a transaction.
		counts := map[string]int{}
		var chunk []int
		for _, o := range ords {
			id := handleIDAt(&nb.Spec, o)
			if _, seen := counts[id]; id != "" && !seen && len(counts) == r.opts.Batch-1 {
				break
			}
			chunk = append(chunk, o)
			if id != "" {
				counts[id]++
			}
		}
		nb.Spec.Release(chunk)
		ops := []datastore.Op{{Type: datastore.OpUpdate, Key: kv.Key, Value: nb, Revision: kv.Revision}}
		var changes []handleChange
		for _, id := range sortedKeys(counts) {
			hkv, err := r.handle(ctx, id)
			if err != nil {
				return nil, err
			}
			if hkv == nil {
				continue
			}
			if c, ok := dropFromHandle(hkv, cidr, counts[id]); ok {
				changes = append(changes, c)
				ops = append(ops, c.op)
			}
		}
		rev, err := r.txn(ctx, ops)
		if err == nil {
			r.applied(rev, changes)
			r.rel.Addresses += len(chunk)
			kv = &datastore.KV{Key: kv.Key, Value: nb, Revision: rev}
			b.Reset()
			continue
		}
		if err := r.retry(ctx, b, "release addresses in block "+cidr.String(), err); err != nil {
			return nil, err
		}
		if kv, err = r.ds.Get(ctx, kv.Key); errors.Is(err, datastore.ErrNotFound) {
			return nil, nil
		} else if err != nil {
			return nil, err
		}
		for id := range counts {
			if _, err := r.readHandle(ctx, id); err != nil {
				return nil, err
			}
		}
	}
}

// releaseBlock deletes one of the node's blocks with its affinity, and
// drops the block from every handle counting addresses in it, in one
// transaction. When that would exceed Batch operations, the addresses of
// some handles are released first (block and handles stay consistent
// after every transaction).
func (r *releaser) releaseBlock(ctx context.Context, kv *datastore.KV) error {
	b := newBackoff()
	for {
		blk, ok := kv.Value.(*api.IPAMBlock)
		if !ok {
			return fmt.Errorf("%s: not a block", kv.Key)
		}
		if blk.Spec.AffinityNode() != r.node {
			return nil // given to another node meanwhile
		}
		cidr, err := blk.Spec.Prefix()
		if err != nil {
			return fmt.Errorf("%s: %w", kv.Key, err)
		}
		what := "release block " + cidr.String()
		ids := map[string]bool{}
		for _, a := range blk.Spec.Attributes {
			if a.HandleID != nil {
				ids[*a.HandleID] = true
			}
		}
		for id, hkv := range r.handles {
			if hkv != nil && countsBlock(hkv, cidr) {
				ids[id] = true
			}
		}
		var changes []handleChange
		for _, id := range sortedKeys(ids) {
			hkv, err := r.handle(ctx, id)
			if err != nil {
				return err
			}
			if hkv == nil {
				continue
			}
			if c, ok := dropFromHandle(hkv, cidr, -1); ok {
				changes = append(changes, c)
			}
		}
		affKey := datastore.AffinityKey(r.node, cidr)
		aff, err := r.ds.Get(ctx, affKey)
		if errors.Is(err, datastore.ErrNotFound) {
			aff = nil
		} else if err != nil {
			return err
		}

		var (
			ops   []datastore.Op
			freed int
			final = len(changes)+2 <= r.opts.Batch
			nb    *api.IPAMBlock
		)
		if final {
			ops = append(ops, datastore.Op{Type: datastore.OpDelete, Key: kv.Key, Revision: kv.Revision})
			if aff != nil {
				ops = append(ops, datastore.Op{Type: datastore.OpDelete, Key: affKey, Revision: aff.Revision})
			}
			freed = blk.Spec.InUse()
		} else {
			// Too many handles for one transaction: free the addresses of
			// some of them first.
			changes = changes[:r.opts.Batch-1]
			part := map[string]bool{}
			for _, c := range changes {
				part[c.id] = true
			}
			nb = api.Clone(blk)
			nb.Metadata.ResourceVersion = ""
			var ords []int
			for ord := range nb.Spec.Allocations {
				if id := handleIDAt(&nb.Spec, ord); id != "" && part[id] {
					ords = append(ords, ord)
				}
			}
			nb.Spec.Release(ords)
			freed = len(ords)
			ops = append(ops, datastore.Op{Type: datastore.OpUpdate, Key: kv.Key, Value: nb, Revision: kv.Revision})
		}
		for _, c := range changes {
			ops = append(ops, c.op)
		}
		rev, err := r.txn(ctx, ops)
		if err == nil {
			r.applied(rev, changes)
			r.rel.Addresses += freed
			if final {
				r.rel.Blocks = append(r.rel.Blocks, cidr.String())
				return nil
			}
			kv = &datastore.KV{Key: kv.Key, Value: nb, Revision: rev}
			b.Reset()
			continue
		}
		if err := r.retry(ctx, b, what, err); err != nil {
			return err
		}
		if kv, err = r.ds.Get(ctx, kv.Key); errors.Is(err, datastore.ErrNotFound) {
			return nil // deleted meanwhile; a leftover affinity goes with the rest
		} else if err != nil {
			return err
		}
		for _, c := range changes {
			if _, err := r.readHandle(ctx, c.id); err != nil {
				return err
			}
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

// Deleting a Node frees what it held, as calicoctl delete node does: its
// workload endpoints and their addresses, its tunnel addresses, its IPAM
// blocks with their affinities, and the counts of the handles that had
// addresses in those blocks. Every write is a compare-and-swap transaction
// on revisions just read (the shapes and discipline of node/ipam); after a
// conflict (an agent or CNI plugin writing at the same time) the records
// are read again and the step is retried. The Node itself is deleted last,
// by the caller, so that a release that fails midway is finished by
// running the delete again.

// releaseAttempts bounds the retries of one step after conflicts.
const releaseAttempts = 5

// releaseBatch is the most operations one release transaction holds:
// etcd's default limit, on both backends. Tests lower it.
var releaseBatch = maxTxnOps

// tunnelHandlePrefixes are Calico's handle ids of a node's tunnel and
// WireGuard addresses (the node name follows).
var tunnelHandlePrefixes = []string{
	"ipip-tunnel-addr-", "vxlan-tunnel-addr-", "vxlan-v6-tunnel-addr-",
	"wireguard-tunnel-addr-", "wireguard-v6-tunnel-addr-",
}

// nodeRelease counts what releasing one node freed.
type nodeRelease struct {
	node       string
	blocks     []string // CIDRs of the deleted blocks
	addresses  int      // allocated addresses freed, in its blocks and elsewhere
	weps       int      // workload endpoints deleted
	affinities int      // affinity keys deleted that had no block of the node
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func (r *nodeRelease) summary() string {
	s := plural(len(r.blocks), "block", "blocks")
	if len(r.blocks) > 0 {
		s += " (" + strings.Join(r.blocks, ", ") + ")"
	}
	return s + ", " + plural(r.addresses, "address", "addresses") + ", " +
		plural(r.weps, "workload endpoint", "workload endpoints")
}

// message is the line printed for the node.
func (r *nodeRelease) message() string {
	s := "Released " + r.summary() + " of node " + r.node + "."
	if r.affinities > 0 {
		s += " Deleted " + plural(r.affinities, "other block affinity", "other block affinities") + " of it."
	}
	return s
}

func (a *app) warnf(format string, args ...any) {
	fmt.Fprintf(a.env.Stderr, "birdctl: warning: "+format+"\n", args...)
}

// releaseNodes frees the workload endpoints and IPAM of every Node among
// items, printing a line per node, before the caller deletes the items.
// A Node modified meanwhile (its agent recording a tunnel address, say) is
// read again and released again, so that the caller deletes it at a
// revision no older than the release. Items of the batch that the release
// deleted are marked gone; those it changed are read again. inputRV: the
// items come from input documents, whose resourceVersion (when set) makes
// the delete conditional; such a delete that would fail fails before
// anything is released. It returns the names of the released nodes.
func (a *app) releaseNodes(ctx context.Context, ds datastore.Datastore, w io.Writer, items []item, inputRV bool) ([]string, error) {
	pinned := func(it *item) bool { return inputRV && it.obj.Meta().ResourceVersion != "" }
	for i := range items {
		it := &items[i]
		if it.obj.ResourceKind() != api.KindNode || it.current == nil || !pinned(it) {
			continue
		}
		if it.obj.Meta().ResourceVersion != strconv.FormatInt(it.current.Revision, 10) {
			return nil, fmt.Errorf("nothing was deleted: %s: %w", describe(it.obj), datastore.ErrConflict)
		}
	}
	written := map[string]bool{}
	var released []string
	for i := range items {
		it := &items[i]
		if it.obj.ResourceKind() != api.KindNode || it.current == nil {
			continue
		}
		info, err := datastore.ParseKey(it.key)
		if err != nil {
			return released, err
		}
		name := info.Name
		rel := &nodeRelease{node: name}
		for attempt := 1; ; attempt++ {
			node, _ := it.current.Value.(*api.Node)
			r := &releaser{ds: ds, node: name, warnf: a.warnf, rel: rel, written: written}
			if err := r.run(ctx, node); err != nil {
				return released, fmt.Errorf("node %s: releasing its workload endpoints and IPAM failed after %s were released; the Node was not deleted, run the delete again to finish: %w", name, rel.summary(), err)
			}
			kv, err := ds.Get(ctx, it.key)
			if errors.Is(err, datastore.ErrNotFound) {
				it.gone = true // deleted by someone else meanwhile
				break
			}
			if err != nil {
				return released, err
			}
			if kv.Revision == it.current.Revision || pinned(it) || attempt >= releaseAttempts {
				break // a pinned or still changing Node fails its delete
			}
			it.current = kv
			if !inputRV {
				it.obj = kv.Value
			}
		}
		released = append(released, name)
		fmt.Fprintln(w, rel.message())
	}
	for i := range items {
		it := &items[i]
		deleted, ok := written[it.key]
		if !ok || it.gone || pinned(it) {
			continue
		}
		if deleted {
			it.gone = true
			continue
		}
		kv, err := ds.Get(ctx, it.key)
		if errors.Is(err, datastore.ErrNotFound) {
			it.gone = true
			continue
		}
		if err != nil {
			return released, err
		}
		it.current = kv
	}
	return released, nil
}

// releaser frees one node's workload endpoints and IPAM.
type releaser struct {
	ds    datastore.Datastore
	node  string
	warnf func(string, ...any)
	rel   *nodeRelease
	// handles holds the handles as last read or written (nil: absent).
	handles map[string]*datastore.KV
	// written records the keys written: true when deleted.
	written map[string]bool
}

// run releases, in an order that leaves nothing behind if it stops
// midway and the delete is run again: the addresses the node's workloads
// and tunnels hold in other nodes' blocks, its workload endpoints, its
// blocks, and then its affinities left over. node may be nil.
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
		r.warnf("skipped %v", bad)
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
	sort.SliceStable(own, func(i, j int) bool {
		return cidrSortKey(own[i].Value.(*api.IPAMBlock).Spec.CIDR) < cidrSortKey(own[j].Value.(*api.IPAMBlock).Spec.CIDR)
	})
	for _, kv := range own {
		if err := r.releaseBlock(ctx, kv); err != nil {
			return err
		}
	}
	return r.deleteAffinities(ctx)
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

func releaseConflict(err error) bool {
	return errors.Is(err, datastore.ErrConflict) || errors.Is(err, datastore.ErrNotFound) || errors.Is(err, datastore.ErrExists)
}

// retry returns nil when a step that failed with err is to be tried again
// (a conflict, fewer than releaseAttempts times), after a short pause.
func retry(ctx context.Context, attempt *int, what string, err error) error {
	if !releaseConflict(err) {
		return fmt.Errorf("%s: %w", what, err)
	}
	*attempt++
	if *attempt >= releaseAttempts {
		return fmt.Errorf("%s: still modified concurrently after %d attempts: %w", what, releaseAttempts, err)
	}
	t := time.NewTimer(time.Duration(*attempt) * 10 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// txn runs one transaction, recording the keys it wrote.
func (r *releaser) txn(ctx context.Context, ops []datastore.Op) (int64, error) {
	rev, err := r.ds.Txn(ctx, ops...)
	if err == nil {
		for _, op := range ops {
			r.written[op.Key] = op.Type == datastore.OpDelete
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
	attempt := 0
	for len(weps) > 0 {
		n := min(releaseBatch, len(weps))
		ops := make([]datastore.Op, n)
		for i, kv := range weps[:n] {
			ops[i] = datastore.Op{Type: datastore.OpDelete, Key: kv.Key, Revision: kv.Revision}
		}
		_, err := r.txn(ctx, ops)
		if err == nil {
			r.rel.weps += n
			weps, attempt = weps[n:], 0
			continue
		}
		if err := retry(ctx, &attempt, "delete workload endpoints", err); err != nil {
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
	attempt := 0
	for {
		res, err := r.ds.List(ctx, datastore.HostAffinityPrefix(r.node))
		if err != nil {
			return fmt.Errorf("list block affinities: %w", err)
		}
		for _, bad := range res.Invalid {
			r.warnf("skipped %v", bad)
		}
		if len(res.KVs) == 0 {
			return nil
		}
		n := min(releaseBatch, len(res.KVs))
		ops := make([]datastore.Op, n)
		for i, kv := range res.KVs[:n] {
			ops[i] = datastore.Op{Type: datastore.OpDelete, Key: kv.Key, Revision: kv.Revision}
		}
		if _, err := r.txn(ctx, ops); err != nil {
			if err := retry(ctx, &attempt, "delete block affinities", err); err != nil {
				return err
			}
			continue
		}
		r.rel.affinities += n
		attempt = 0
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
	for _, p := range tunnelHandlePrefixes {
		tunnel[p+r.node] = true
	}
	warned := map[int]bool{}
	pick := func(b *api.AllocationBlock) []int {
		cidr, err := api.ParseCIDR(b.CIDR)
		if err != nil || b.AffinityNode() == r.node {
			return nil
		}
		var ords []int
		for _, ip := range addrs {
			ord, ok := ordinalOf(cidr, ip)
			attr, used := allocationAt(b, ord)
			if !ok || !used {
				continue
			}
			if other := attr.Secondary["node"]; other != "" && other != r.node {
				if !warned[ord] {
					warned[ord] = true
					r.warnf("%s (block %s) is allocated to node %q now; left allocated", ip, cidr, other)
				}
				continue
			}
			ords = append(ords, ord)
		}
		for ord := range b.Allocations {
			if attr, used := allocationAt(b, ord); used && attr.HandleID != nil && tunnel[*attr.HandleID] {
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

// releaseOrdinals frees the addresses pick chooses in the block at kv and
// their counts in their handles, in transactions of at most releaseBatch
// operations (the block and the handles). It returns the block as last
// written (nil when it disappeared).
func (r *releaser) releaseOrdinals(ctx context.Context, kv *datastore.KV, pick func(*api.AllocationBlock) []int) (*datastore.KV, error) {
	attempt := 0
	for {
		blk, ok := kv.Value.(*api.IPAMBlock)
		if !ok {
			return nil, fmt.Errorf("%s: not a block", kv.Key)
		}
		cidr, err := api.ParseCIDR(blk.Spec.CIDR)
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
			if _, seen := counts[id]; id != "" && !seen && len(counts) == releaseBatch-1 {
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
			r.rel.addresses += len(chunk)
			kv, attempt = &datastore.KV{Key: kv.Key, Value: nb, Revision: rev}, 0
			continue
		}
		if err := retry(ctx, &attempt, "release addresses in block "+cidr.String(), err); err != nil {
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
// transaction. When that would exceed releaseBatch operations, the
// addresses of some handles are released first (block and handles stay
// consistent after every transaction).
func (r *releaser) releaseBlock(ctx context.Context, kv *datastore.KV) error {
	attempt := 0
	for {
		blk, ok := kv.Value.(*api.IPAMBlock)
		if !ok {
			return fmt.Errorf("%s: not a block", kv.Key)
		}
		if blk.Spec.AffinityNode() != r.node {
			return nil // given to another node meanwhile
		}
		cidr, err := api.ParseCIDR(blk.Spec.CIDR)
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
			final = len(changes)+2 <= releaseBatch
			nb    *api.IPAMBlock
		)
		if final {
			ops = append(ops, datastore.Op{Type: datastore.OpDelete, Key: kv.Key, Revision: kv.Revision})
			if aff != nil {
				ops = append(ops, datastore.Op{Type: datastore.OpDelete, Key: affKey, Revision: aff.Revision})
			}
			freed = blockInUse(&blk.Spec)
		} else {
			// Too many handles for one transaction: free the addresses of
			// some of them first.
			changes = changes[:releaseBatch-1]
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
			r.rel.addresses += freed
			if final {
				r.rel.blocks = append(r.rel.blocks, cidr.String())
				return nil
			}
			kv, attempt = &datastore.KV{Key: kv.Key, Value: nb, Revision: rev}, 0
			continue
		}
		if err := retry(ctx, &attempt, what, err); err != nil {
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

// Block arithmetic on Calico's block JSON, as node/ipam does it.

// ordinalOf returns the offset of ip inside cidr.
func ordinalOf(cidr netip.Prefix, ip netip.Addr) (int, bool) {
	if !cidr.Contains(ip) {
		return 0, false
	}
	a, b := cidr.Masked().Addr().As16(), ip.As16()
	x := new(big.Int).Sub(new(big.Int).SetBytes(b[:]), new(big.Int).SetBytes(a[:]))
	return int(x.Int64()), true
}

// allocationAt returns the attribute of an allocated ordinal.
func allocationAt(b *api.AllocationBlock, ord int) (api.AllocationAttribute, bool) {
	if ord < 0 || ord >= len(b.Allocations) || b.Allocations[ord] == nil {
		return api.AllocationAttribute{}, false
	}
	if i := *b.Allocations[ord]; i >= 0 && i < len(b.Attributes) {
		return b.Attributes[i], true
	}
	return api.AllocationAttribute{}, true
}

// handleIDAt returns the handle holding ordinal ord ("" when free or none).
func handleIDAt(b *api.AllocationBlock, ord int) string {
	if a, used := allocationAt(b, ord); used && a.HandleID != nil {
		return *a.HandleID
	}
	return ""
}

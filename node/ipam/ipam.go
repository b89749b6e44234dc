// Package ipam allocates workload and tunnel addresses in Calico's IPAM
// layout (docs/roost-node.md, "Datastore records"): blocks under /calico/ipam/v2/assignment/, block
// affinities under /calico/ipam/v2/host/<node>/ and handles under
// /calico/ipam/v2/handle/. Every write is a compare-and-swap transaction,
// so agents on any number of hosts (and several processes on one host)
// can allocate at the same time without ever handing out a block or an
// address twice.
//
// Claiming a block: the affinity is written "pending" first, then one
// transaction creates the block (fails if it exists) and confirms the
// affinity (fails if it changed). A node that loses the race drops its
// pending affinity and tries another block. An allocation updates the
// block and the handle in one transaction.
//
// Callers (roost-node's agent and workload commands, birdctl delete node,
// a CNI plugin) use a Client per node: AutoAssign takes an address for a
// handle with its attributes, AssignIP a given one, ReleaseByHandle frees
// what a handle holds, ReleaseNode everything a deleted node held. The
// arithmetic on a block's JSON lives on api.AllocationBlock. After a lost
// race every operation reads again and retries under one policy
// (conflictPolicy, bounded by WithAttempts).
package ipam

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/big"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/api/selector"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/internal/backoff"
)

// Errors callers may test with errors.Is.
var (
	// ErrNoPool: no enabled pool of the family allows the use on this node.
	ErrNoPool = errors.New("no usable IP pool")
	// ErrExhausted: every block of the usable pools is taken and this
	// node's blocks are full.
	ErrExhausted = errors.New("IP pools exhausted")
	// ErrInUse: a requested address is held by another handle.
	ErrInUse = errors.New("address already in use")
	// ErrTooManyConflicts: the datastore kept changing under us.
	ErrTooManyConflicts = errors.New("too many concurrent modifications")
	// ErrBlockLimit: the node's blocks are full and it holds as many as
	// the IPAMConfiguration's maxBlocksPerHost allows.
	ErrBlockLimit = errors.New("block limit reached")
	// ErrStrictAffinity: an address in another node's block was asked
	// for while the IPAMConfiguration sets strictAffinity.
	ErrStrictAffinity = errors.New("strict affinity")
)

// Secondary attribute keys and values, as Calico writes them.
const (
	AttrNode      = api.AttrNodeKey
	AttrType      = "type"
	AttrNamespace = "namespace"
	AttrPod       = "pod"
	AttrTimestamp = "timestamp"

	TypeIPIPTunnel    = "ipipTunnelAddress"
	TypeVXLANTunnel   = "vxlanTunnelAddress"
	TypeVXLANV6Tunnel = "vxlanV6TunnelAddress"
)

// Client allocates on behalf of one node.
type Client struct {
	ds       datastore.Datastore
	node     string
	log      logrus.FieldLogger
	attempts int
}

// Option tunes a Client.
type Option func(*Client)

// WithLogger sets the logger.
func WithLogger(l logrus.FieldLogger) Option { return func(c *Client) { c.log = l } }

// WithAttempts bounds the retries after conflicts (default 100).
func WithAttempts(n int) Option { return func(c *Client) { c.attempts = max(n, 1) } }

// New returns a client for node.
func New(ds datastore.Datastore, node string, opts ...Option) *Client {
	c := &Client{ds: ds, node: node, log: logrus.StandardLogger(), attempts: 100}
	for _, o := range opts {
		o(c)
	}
	c.log = c.log.WithField("node", node)
	return c
}

// Node is the node this client allocates for.
func (c *Client) Node() string { return c.node }

// Request describes an automatic assignment.
type Request struct {
	Handle     string            // required: the owner of the address
	Attrs      map[string]string // secondary attributes stored in the block
	Family     int               // 4 (default) or 6
	Use        string            // api.UseWorkload (default) or api.UseTunnel
	NodeLabels map[string]string // for the pools' nodeSelector
	// NamespaceLabels are the workload namespace's labels (NamespaceLabels),
	// for the pools' namespaceSelector; empty: outside any namespace.
	NamespaceLabels map[string]string
	// Pools restricts the candidates (nil: every pool in the datastore).
	Pools []*api.IPPool
	// Filter, when set, must accept a pool too (tunnel types use it).
	Filter func(*api.IPPool) bool
}

func isConflict(err error) bool {
	return errors.Is(err, datastore.ErrConflict) || errors.Is(err, datastore.ErrExists) || errors.Is(err, datastore.ErrNotFound)
}

// conflictPolicy paces the retries after a lost compare-and-swap: the
// one retry policy of this package (with Client.attempts bounding them).
// The pauses are short, as a conflict means the other writer has just
// finished, and jittered so that writers that collided do not collide
// again in step.
var conflictPolicy = backoff.Policy{Min: time.Millisecond, Max: 20 * time.Millisecond}

func newBackoff() *backoff.Backoff { return backoff.New(conflictPolicy) }

// ListPools returns every valid IPPool in the datastore (those present
// but broken cannot be used).
func ListPools(ctx context.Context, ds datastore.Datastore) ([]*api.IPPool, error) {
	pools, _, err := ListPoolsAll(ctx, ds)
	return pools, err
}

// ListPoolsAll returns every valid IPPool and the pools that are present
// but broken: what a broken pool covers is unknown, so nothing that may
// depend on it is to be given back.
func ListPoolsAll(ctx context.Context, ds datastore.Datastore) ([]*api.IPPool, []*datastore.DecodeError, error) {
	res, err := ds.List(ctx, datastore.KindPrefix(api.KindIPPool))
	if err != nil {
		return nil, nil, err
	}
	var out []*api.IPPool
	for _, kv := range res.KVs {
		if p, ok := kv.Value.(*api.IPPool); ok {
			out = append(out, p)
		}
	}
	return out, res.Invalid, nil
}

// PoolUsable reports whether pool may give addresses of family for use to
// a node with labels, outside any namespace. Manual pools only serve
// explicit requests, so automatic assignment passes manual=false.
func PoolUsable(p *api.IPPool, family int, use string, labels map[string]string, manual bool) bool {
	return PoolSkipReason(p, PoolQuery{Family: family, Use: use, NodeLabels: labels, Manual: manual}) == ""
}

// PoolQuery is what an address request asks of a pool.
type PoolQuery struct {
	Family     int               // 4 or 6
	Use        string            // api.UseWorkload or api.UseTunnel
	NodeLabels map[string]string // the node's labels, for nodeSelector
	// NamespaceLabels are the labels of the workload's namespace
	// (NamespaceLabels): a pool's namespaceSelector is evaluated against
	// them, an empty map outside any namespace, as Calico does.
	NamespaceLabels map[string]string
	Manual          bool // a specific address: Manual pools serve it too
}

// PoolSkipReason is the one place that decides whether a pool may serve
// a request: "" when it may, else why not (disabled, another family, use
// not allowed, assignmentMode Manual, nodeSelector, namespaceSelector, a
// bad CIDR or selector), for the error that names the pools skipped.
func PoolSkipReason(p *api.IPPool, q PoolQuery) string {
	pfx, err := api.ParseCIDR(p.Spec.CIDR)
	switch {
	case err != nil:
		return fmt.Sprintf("cidr %q is not a CIDR", p.Spec.CIDR)
	case p.Spec.Disabled:
		return "disabled"
	case (q.Family == 6) != pfx.Addr().Is6():
		return fmt.Sprintf("not IPv%d", q.Family)
	}
	uses := p.Spec.AllowedUses
	if len(uses) == 0 {
		uses = []string{api.UseWorkload, api.UseTunnel}
	}
	if !slices.Contains(uses, q.Use) {
		return fmt.Sprintf("allowedUses %v excludes %s", uses, q.Use)
	}
	if !q.Manual && p.Spec.AssignmentMode == "Manual" {
		return "assignmentMode Manual (only specific addresses)"
	}
	sel := p.Spec.NodeSelector
	if sel == "" {
		sel = api.DefaultNodeSelector
	}
	s, err := selector.Parse(sel)
	if err != nil {
		return fmt.Sprintf("nodeSelector %q: %v", sel, err)
	}
	if !s.Evaluate(q.NodeLabels) {
		return fmt.Sprintf("nodeSelector %q does not match the node", sel)
	}
	if ns := p.Spec.NamespaceSelector; ns != "" {
		s, err := selector.Parse(ns)
		if err != nil {
			return fmt.Sprintf("namespaceSelector %q: %v", ns, err)
		}
		labels := q.NamespaceLabels
		if labels == nil {
			labels = map[string]string{}
		}
		if !s.Evaluate(labels) {
			if name := labels[api.NamespaceNameLabel]; name != "" {
				return fmt.Sprintf("namespaceSelector %q does not match namespace %s", ns, name)
			}
			return fmt.Sprintf("namespaceSelector %q does not match a request outside any namespace", ns)
		}
	}
	return ""
}

// NamespaceLabels reads the labels of namespace ns for the pools'
// namespaceSelector: projectcalico.org/name plus the labels of the
// kns.<ns> Profile when it exists (api.NamespaceLabels). ns "" gives an
// empty map.
func NamespaceLabels(ctx context.Context, ds datastore.Datastore, ns string) (map[string]string, error) {
	if ns == "" {
		return map[string]string{}, nil
	}
	var prof *api.Profile
	kv, err := ds.Get(ctx, datastore.ResourceKey(api.KindProfile, "", api.NamespaceProfilePrefix+ns))
	switch {
	case errors.Is(err, datastore.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("ipam: reading the labels of namespace %s: %w", ns, err)
	default:
		p, ok := kv.Value.(*api.Profile)
		if !ok {
			return nil, fmt.Errorf("ipam: Profile %s%s is not usable, so the labels of namespace %s are unknown", api.NamespaceProfilePrefix, ns, ns)
		}
		prof = p
	}
	return api.NamespaceLabels(ns, prof), nil
}

func poolBlockSize(p *api.IPPool, pfx netip.Prefix) int {
	if p.Spec.BlockSize != 0 {
		return p.Spec.BlockSize
	}
	if pfx.Addr().Is6() {
		return api.DefaultBlockSizeV6
	}
	return api.DefaultBlockSizeV4
}

func (r *Request) normalize() {
	if r.Family == 0 {
		r.Family = 4
	}
	if r.Use == "" {
		r.Use = api.UseWorkload
	}
}

// usablePools filters the candidates of r. skipped names each pool left
// out and why, for the error of a request no pool serves.
func (c *Client) usablePools(ctx context.Context, r *Request, manual bool) (out []*api.IPPool, skipped string, err error) {
	pools := r.Pools
	if pools == nil {
		if pools, err = ListPools(ctx, c.ds); err != nil {
			return nil, "", err
		}
	}
	q := PoolQuery{Family: r.Family, Use: r.Use, NodeLabels: r.NodeLabels, NamespaceLabels: r.NamespaceLabels, Manual: manual}
	var why []string
	for _, p := range pools {
		reason := PoolSkipReason(p, q)
		if reason == "" && r.Filter != nil && !r.Filter(p) {
			reason = "not of the kind requested"
		}
		if reason != "" {
			why = append(why, fmt.Sprintf("%s (%s): %s", p.Metadata.Name, p.Spec.CIDR, reason))
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Spec.CIDR < out[j].Spec.CIDR })
	sort.Strings(why)
	switch {
	case len(pools) == 0:
		skipped = "there are no IP pools"
	case len(why) > 0:
		skipped = "pools skipped: " + strings.Join(why, "; ")
	}
	return out, skipped, nil
}

func inPools(cidr netip.Prefix, pools []*api.IPPool) *api.IPPool {
	for _, p := range pools {
		if pfx, err := api.ParseCIDR(p.Spec.CIDR); err == nil && pfx.Bits() <= cidr.Bits() && pfx.Contains(cidr.Addr()) {
			return p
		}
	}
	return nil
}

// blockKV is a block read from the datastore.
type blockKV struct {
	cidr netip.Prefix
	b    *api.AllocationBlock
	rev  int64
}

func (c *Client) getBlock(ctx context.Context, cidr netip.Prefix) (*blockKV, error) {
	kv, err := c.ds.Get(ctx, datastore.BlockKey(cidr))
	if err != nil {
		return nil, err
	}
	blk, ok := kv.Value.(*api.IPAMBlock)
	if !ok {
		return nil, fmt.Errorf("%s: not a block", kv.Key)
	}
	return &blockKV{cidr: cidr, b: &blk.Spec, rev: kv.Revision}, nil
}

func blockObj(cidr netip.Prefix, b *api.AllocationBlock) *api.IPAMBlock {
	o := &api.IPAMBlock{Spec: *b}
	o.Metadata.Name = api.BlockName(cidr.String())
	return o
}

func affinityObj(node string, cidr netip.Prefix, state string) *api.BlockAffinity {
	a := &api.BlockAffinity{Spec: api.BlockAffinitySpec{Node: node, CIDR: cidr.String(), State: state}}
	a.Metadata.Name = api.BlockAffinityName(node, cidr.String())
	return a
}

// handleOps returns the operation that adds delta addresses in block cidr
// to handle (creating or deleting the handle as needed).
func (c *Client) handleOp(ctx context.Context, handle string, deltas map[string]int) (*datastore.Op, error) {
	kv, err := c.ds.Get(ctx, datastore.HandleKey(handle))
	if err != nil && !errors.Is(err, datastore.ErrNotFound) {
		return nil, err
	}
	h := &api.IPAMHandle{Spec: api.IPAMHandleSpec{Block: map[string]int{}}}
	h.Metadata.Name = handle
	var rev int64
	if err == nil {
		old, ok := kv.Value.(*api.IPAMHandle)
		if !ok {
			return nil, fmt.Errorf("%s: not a handle", kv.Key)
		}
		for k, v := range old.Spec.Block {
			h.Spec.Block[k] = v
		}
		rev = kv.Revision
	}
	for k, d := range deltas {
		h.Spec.Block[k] += d
		if h.Spec.Block[k] <= 0 {
			delete(h.Spec.Block, k)
		}
	}
	switch {
	case rev == 0 && len(h.Spec.Block) == 0:
		return nil, nil
	case rev == 0:
		return &datastore.Op{Type: datastore.OpCreate, Value: h}, nil
	case len(h.Spec.Block) == 0:
		return &datastore.Op{Type: datastore.OpDelete, Key: datastore.HandleKey(handle), Revision: rev}, nil
	}
	return &datastore.Op{Type: datastore.OpUpdate, Key: datastore.HandleKey(handle), Value: h, Revision: rev}, nil
}

// blockWrite is the operation storing a changed block: an update, or
// its deletion when the last address of a block without affinity went
// (as Calico does: nobody else would ever give such a block back).
func blockWrite(bk *blockKV) datastore.Op {
	if bk.b.Affinity == nil && bk.b.InUse() == 0 {
		return datastore.Op{Type: datastore.OpDelete, Key: datastore.BlockKey(bk.cidr), Revision: bk.rev}
	}
	return datastore.Op{Type: datastore.OpUpdate, Key: datastore.BlockKey(bk.cidr), Value: blockObj(bk.cidr, bk.b), Revision: bk.rev}
}

// commit writes a changed block together with the handle change.
func (c *Client) commit(ctx context.Context, bk *blockKV, handle string, deltas map[string]int) error {
	ops := []datastore.Op{blockWrite(bk)}
	hop, err := c.handleOp(ctx, handle, deltas)
	if err != nil {
		return err
	}
	if hop != nil {
		ops = append(ops, *hop)
	}
	_, err = c.ds.Txn(ctx, ops...)
	return err
}

// AffineBlocks lists the blocks this node holds a confirmed affinity for.
func (c *Client) AffineBlocks(ctx context.Context, family int) ([]netip.Prefix, error) {
	res, err := c.ds.List(ctx, datastore.HostAffinityPrefix(c.node))
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, kv := range res.KVs {
		a, ok := kv.Value.(*api.BlockAffinity)
		if !ok || !a.Confirmed() || a.Spec.Node != c.node {
			continue
		}
		p, err := api.ParseCIDR(a.Spec.CIDR)
		if err != nil || (family == 6) != p.Addr().Is6() {
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr().Less(out[j].Addr()) })
	return out, nil
}

// AddrsByHandle returns the addresses handle holds, in block order.
func (c *Client) AddrsByHandle(ctx context.Context, handle string) ([]netip.Addr, error) {
	kv, err := c.ds.Get(ctx, datastore.HandleKey(handle))
	if errors.Is(err, datastore.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	h, ok := kv.Value.(*api.IPAMHandle)
	if !ok {
		return nil, fmt.Errorf("%s: not a handle", kv.Key)
	}
	var out []netip.Addr
	for cidrS := range h.Spec.Block {
		cidr, err := api.ParseCIDR(cidrS)
		if err != nil {
			continue
		}
		bk, err := c.getBlock(ctx, cidr)
		if errors.Is(err, datastore.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, ord := range bk.b.OrdinalsOf(handle) {
			out = append(out, api.AddrAt(cidr, ord))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out, nil
}

// AutoAssign takes one address for r.Handle, as Calico does: from a
// block affine to this node when one has room; else from a newly claimed
// block (unless the IPAMConfiguration turns autoAllocateBlocks off or the
// node holds maxBlocksPerHost blocks of the pools already); else, when no
// block of the pools is free and strictAffinity is off, borrowed from
// another node's block (the address is then routed to this node by its
// own /32 or /128, see docs/roost-node.md).
func (c *Client) AutoAssign(ctx context.Context, r Request) (netip.Addr, error) {
	r.normalize()
	if r.Handle == "" {
		return netip.Addr{}, errors.New("ipam: a handle is required")
	}
	pools, skipped, err := c.usablePools(ctx, &r, false)
	if err != nil {
		return netip.Addr{}, err
	}
	if len(pools) == 0 {
		return netip.Addr{}, fmt.Errorf("ipam: IPv%d %s address for %s: %w (%s)", r.Family, r.Use, c.node, ErrNoPool, skipped)
	}
	cfg, err := c.Config(ctx)
	if err != nil {
		return netip.Addr{}, err
	}
	b := newBackoff()
	for attempt := 0; attempt < c.attempts; attempt++ {
		if attempt > 0 {
			if err := b.Wait(ctx); err != nil {
				return netip.Addr{}, err
			}
		}
		blocks, err := c.AffineBlocks(ctx, r.Family)
		if err != nil {
			return netip.Addr{}, err
		}
		raced, owned := false, 0
		for _, cidr := range blocks {
			if inPools(cidr, pools) == nil {
				continue
			}
			owned++
			ip, err := c.assignInBlock(ctx, cidr, &r)
			if err == nil && ip.IsValid() {
				return ip, nil
			}
			if err != nil && !isConflict(err) {
				return netip.Addr{}, err
			}
			if err != nil {
				raced = true
			}
		}
		if raced {
			continue
		}
		if n, err := c.recoverPending(ctx, r.Family, pools); err != nil {
			return netip.Addr{}, err
		} else if n > 0 {
			continue
		}
		if !cfg.AutoAllocate() {
			return netip.Addr{}, fmt.Errorf("ipam: the blocks of %s are full and the IPAM configuration sets autoAllocateBlocks to false: %w", c.node, ErrExhausted)
		}
		if limit := maxBlocks(cfg); owned >= limit {
			return netip.Addr{}, fmt.Errorf("ipam: %s holds %d IPv%d blocks, all full (maxBlocksPerHost %d): %w", c.node, owned, r.Family, limit, ErrBlockLimit)
		}
		cidr, err := c.claimBlock(ctx, pools)
		if errors.Is(err, ErrExhausted) {
			if cfg.StrictAffinity {
				return netip.Addr{}, fmt.Errorf("%w (strictAffinity forbids borrowing from other nodes' blocks)", err)
			}
			ip, berr := c.borrow(ctx, pools, &r)
			if berr != nil {
				return netip.Addr{}, berr
			}
			return ip, nil
		}
		if err != nil {
			if isConflict(err) {
				continue
			}
			return netip.Addr{}, err
		}
		ip, err := c.assignInBlock(ctx, cidr, &r)
		if err == nil && ip.IsValid() {
			return ip, nil
		}
		if err != nil && !isConflict(err) {
			return netip.Addr{}, err
		}
	}
	return netip.Addr{}, fmt.Errorf("ipam: assigning for %s: %w", r.Handle, ErrTooManyConflicts)
}

// withNode returns attrs with the node attribute set to this node: a
// borrowed address is routed by it (Calico's Felix and Roost's agent read
// it), so it must never be missing.
func (c *Client) withNode(attrs map[string]string) map[string]string {
	if attrs[AttrNode] == c.node {
		return attrs
	}
	out := make(map[string]string, len(attrs)+1)
	for k, v := range attrs {
		out[k] = v
	}
	out[AttrNode] = c.node
	return out
}

// borrow takes a free address from a block of pools that is not this
// node's. The blocks are tried from an offset derived from the node name,
// so that nodes borrowing at the same time rarely pick the same block.
func (c *Client) borrow(ctx context.Context, pools []*api.IPPool, r *Request) (netip.Addr, error) {
	blocks, err := c.listBlocks(ctx, r.Family)
	if err != nil {
		return netip.Addr{}, err
	}
	var cands []netip.Prefix
	for cidr, b := range blocks {
		if b == nil || b.Deleted || b.AffinityNode() == c.node || b.InUse() == len(b.Allocations) || inPools(cidr, pools) == nil {
			continue
		}
		cands = append(cands, cidr)
	}
	if len(cands) == 0 {
		return netip.Addr{}, fmt.Errorf("ipam: no free address left in the IPv%d pools for %s: %w", r.Family, c.node, ErrExhausted)
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].Addr().Less(cands[j].Addr()) })
	h := fnv.New64a()
	h.Write([]byte(c.node))
	start := int(h.Sum64() % uint64(len(cands)))
	attrs := c.withNode(r.Attrs)
	for i := range cands {
		cidr := cands[(start+i)%len(cands)]
		bo := newBackoff()
		for attempt := 0; attempt < c.attempts; attempt++ {
			bk, err := c.getBlock(ctx, cidr)
			if errors.Is(err, datastore.ErrNotFound) {
				break
			}
			if err != nil {
				return netip.Addr{}, err
			}
			if bk.b.Deleted || bk.b.AffinityNode() == c.node {
				break
			}
			ords := bk.b.AssignFirstFree(1, r.Handle, attrs)
			if len(ords) == 0 {
				break
			}
			err = c.commit(ctx, bk, r.Handle, map[string]int{cidr.String(): 1})
			if err == nil {
				ip := api.AddrAt(cidr, ords[0])
				c.log.WithFields(logrus.Fields{"ip": ip, "handle": r.Handle, "block": cidr, "owner": bk.b.AffinityNode()}).
					Info("ipam: no free block left; borrowed an address from another node's block")
				return ip, nil
			}
			if !isConflict(err) {
				return netip.Addr{}, err
			}
			if err := bo.Wait(ctx); err != nil {
				return netip.Addr{}, err
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("ipam: no free address left in the IPv%d pools for %s: %w", r.Family, c.node, ErrExhausted)
}

// assignInBlock takes one free address of an affine block: the zero Addr
// when the block is full or not ours, a conflict error when it changed.
func (c *Client) assignInBlock(ctx context.Context, cidr netip.Prefix, r *Request) (netip.Addr, error) {
	bk, err := c.getBlock(ctx, cidr)
	if errors.Is(err, datastore.ErrNotFound) {
		c.log.WithField("block", cidr).Warn("ipam: affinity without a block; ignoring it")
		return netip.Addr{}, nil
	}
	if err != nil {
		return netip.Addr{}, err
	}
	if bk.b.AffinityNode() != c.node || bk.b.Deleted {
		return netip.Addr{}, nil
	}
	ords := bk.b.AssignFirstFree(1, r.Handle, r.Attrs)
	if len(ords) == 0 {
		return netip.Addr{}, nil
	}
	if err := c.commit(ctx, bk, r.Handle, map[string]int{cidr.String(): len(ords)}); err != nil {
		return netip.Addr{}, err
	}
	ip := api.AddrAt(cidr, ords[0])
	c.log.WithFields(logrus.Fields{"ip": ip, "handle": r.Handle, "block": cidr}).Debug("ipam: assigned")
	return ip, nil
}

// recoverPending finishes or undoes claims this node left half-done (a
// crash between writing the pending affinity and creating the block). It
// returns how many blocks it confirmed.
func (c *Client) recoverPending(ctx context.Context, family int, pools []*api.IPPool) (int, error) {
	res, err := c.ds.List(ctx, datastore.HostAffinityPrefix(c.node))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, kv := range res.KVs {
		a, ok := kv.Value.(*api.BlockAffinity)
		if !ok || a.Spec.State != api.AffinityPending || a.Spec.Deleted {
			continue
		}
		cidr, err := api.ParseCIDR(a.Spec.CIDR)
		if err != nil || (family == 6) != cidr.Addr().Is6() || inPools(cidr, pools) == nil {
			continue
		}
		bk, err := c.getBlock(ctx, cidr)
		switch {
		case errors.Is(err, datastore.ErrNotFound):
			ok, err := c.tryClaim(ctx, cidr)
			if err != nil && !isConflict(err) {
				return n, err
			}
			if ok {
				n++
			}
		case err != nil:
			return n, err
		case bk.b.AffinityNode() == c.node:
			if err := c.confirmAffinity(ctx, cidr); err != nil {
				return n, err
			}
			c.log.WithField("block", cidr).Info("ipam: confirmed a block claimed before a restart")
			n++
		default:
			if err := c.ds.Delete(ctx, kv.Key, kv.Revision); err != nil && !isConflict(err) {
				return n, err
			}
		}
	}
	return n, nil
}

// listBlocks returns the CIDRs of every block of the family.
func (c *Client) listBlocks(ctx context.Context, family int) (map[netip.Prefix]*api.AllocationBlock, error) {
	dir := "ipv4/"
	if family == 6 {
		dir = "ipv6/"
	}
	res, err := c.ds.List(ctx, datastore.BlockPrefix+dir)
	if err != nil {
		return nil, err
	}
	out := make(map[netip.Prefix]*api.AllocationBlock, len(res.KVs))
	for _, kv := range res.KVs {
		if b, ok := kv.Value.(*api.IPAMBlock); ok {
			if p, err := api.ParseCIDR(b.Spec.CIDR); err == nil {
				out[p] = &b.Spec
			}
		}
	}
	for _, bad := range res.Invalid {
		// An undecodable block still occupies its key: keep it out of
		// the candidates.
		if info, err := datastore.ParseKey(bad.Key); err == nil {
			if p, err := api.ParseCIDR(info.CIDR); err == nil {
				out[p] = nil
			}
		}
	}
	return out, nil
}

// claimBlock claims a free block in one of pools for this node.
func (c *Client) claimBlock(ctx context.Context, pools []*api.IPPool) (netip.Prefix, error) {
	family := 4
	if pfx, _ := api.ParseCIDR(pools[0].Spec.CIDR); pfx.Addr().Is6() {
		family = 6
	}
	existing, err := c.listBlocks(ctx, family)
	if err != nil {
		return netip.Prefix{}, err
	}
	for _, p := range pools {
		pfx, _ := api.ParseCIDR(p.Spec.CIDR)
		size := poolBlockSize(p, pfx)
		for cidr := range candidates(pfx, size, c.node) {
			if overlapsAny(cidr, existing) {
				continue
			}
			ok, err := c.tryClaim(ctx, cidr)
			if err != nil {
				return netip.Prefix{}, err
			}
			if ok {
				return cidr, nil
			}
			existing[cidr] = nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("ipam: no free block for %s: %w", c.node, ErrExhausted)
}

// candidates yields the blocks of pool, starting at an offset derived from
// the node name so that nodes starting together rarely compete.
func candidates(pool netip.Prefix, blockBits int, node string) func(func(netip.Prefix) bool) {
	return func(yield func(netip.Prefix) bool) {
		shift := pool.Addr().BitLen() - blockBits
		nbits := blockBits - pool.Bits()
		if nbits < 0 {
			return
		}
		n := new(big.Int).Lsh(big.NewInt(1), uint(nbits))
		h := fnv.New64a()
		h.Write([]byte(node))
		start := new(big.Int).Mod(new(big.Int).SetUint64(h.Sum64()), n)
		// Scan at most 2^20 candidates (enough for any IPv4 pool).
		limit := n
		if limit.Cmp(big.NewInt(1<<20)) > 0 {
			limit = big.NewInt(1 << 20)
		}
		i := new(big.Int)
		one := big.NewInt(1)
		for ; i.Cmp(limit) < 0; i.Add(i, one) {
			idx := new(big.Int).Add(start, i)
			idx.Mod(idx, n)
			off := idx.Lsh(idx, uint(shift))
			cidr := netip.PrefixFrom(addOffset(pool.Masked().Addr(), off), blockBits)
			if !yield(cidr) {
				return
			}
		}
	}
}

// addOffset adds off to a (block offsets inside IPv6 pools exceed 64 bits).
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

func overlapsAny(cidr netip.Prefix, existing map[netip.Prefix]*api.AllocationBlock) bool {
	if _, ok := existing[cidr]; ok {
		return true
	}
	for p := range existing {
		if p.Bits() != cidr.Bits() && p.Overlaps(cidr) {
			return true
		}
	}
	return false
}

// tryClaim runs the claim protocol for one block. false: another node has
// it (our pending affinity is removed again).
func (c *Client) tryClaim(ctx context.Context, cidr netip.Prefix) (bool, error) {
	log := c.log.WithField("block", cidr)
	affKey := datastore.AffinityKey(c.node, cidr)
	var affRev int64
	rev, err := c.ds.Txn(ctx, datastore.Op{Type: datastore.OpCreate, Value: affinityObj(c.node, cidr, api.AffinityPending)})
	switch {
	case err == nil:
		affRev = rev
	case errors.Is(err, datastore.ErrExists):
		// Left over from an interrupted claim of ours, or another process
		// of this node is claiming it right now: continue with it.
		kv, gerr := c.ds.Get(ctx, affKey)
		if gerr != nil {
			return false, gerr
		}
		affRev = kv.Revision
	default:
		return false, err
	}
	_, err = c.ds.Txn(ctx,
		datastore.Op{Type: datastore.OpCreate, Value: blockObj(cidr, api.NewAllocationBlock(cidr, c.node))},
		datastore.Op{Type: datastore.OpUpdate, Key: affKey, Value: affinityObj(c.node, cidr, api.AffinityConfirmed), Revision: affRev},
	)
	if err == nil {
		log.Info("ipam: claimed block")
		return true, nil
	}
	if !isConflict(err) {
		return false, err
	}
	// Lost a race. Whose block is it now?
	bk, berr := c.getBlock(ctx, cidr)
	if berr == nil && bk.b.AffinityNode() == c.node {
		// Ours after all (another process of this node, or a claim that
		// a Calico node finished in steps): make sure it is confirmed.
		if err := c.confirmAffinity(ctx, cidr); err != nil {
			return false, err
		}
		return true, nil
	}
	if berr != nil && !errors.Is(berr, datastore.ErrNotFound) {
		return false, berr
	}
	if berr == nil {
		// Another node's block: drop our pending affinity (only if nobody
		// touched it since).
		if derr := c.ds.Delete(ctx, affKey, affRev); derr != nil && !isConflict(derr) {
			return false, derr
		}
		log.WithField("owner", bk.b.AffinityNode()).Debug("ipam: block taken by another node")
		return false, nil
	}
	// The block does not exist and our affinity changed: let the caller
	// start over.
	return false, err
}

func (c *Client) confirmAffinity(ctx context.Context, cidr netip.Prefix) error {
	b := newBackoff()
	for attempt := 0; attempt < c.attempts; attempt++ {
		kv, err := c.ds.Get(ctx, datastore.AffinityKey(c.node, cidr))
		if errors.Is(err, datastore.ErrNotFound) {
			_, err = c.ds.Txn(ctx, datastore.Op{Type: datastore.OpCreate, Value: affinityObj(c.node, cidr, api.AffinityConfirmed)})
		} else if err == nil {
			if a, ok := kv.Value.(*api.BlockAffinity); ok && a.Confirmed() {
				return nil
			}
			_, err = c.ds.Txn(ctx, datastore.Op{Type: datastore.OpUpdate, Key: kv.Key, Value: affinityObj(c.node, cidr, api.AffinityConfirmed), Revision: kv.Revision})
		}
		if err == nil {
			return nil
		}
		if !isConflict(err) {
			return err
		}
		if err := b.Wait(ctx); err != nil {
			return err
		}
	}
	return ErrTooManyConflicts
}

// AssignIP takes the specific address ip for handle. Its block is claimed
// for this node when nobody has it. An address in another node's block is
// borrowed (and routed to this node by its own /32 or /128), as Calico
// does, unless the IPAMConfiguration sets strictAffinity.
func (c *Client) AssignIP(ctx context.Context, ip netip.Addr, r Request) error {
	r.normalize()
	if ip.Is4() {
		r.Family = 4
	} else {
		r.Family = 6
	}
	if r.Handle == "" {
		return errors.New("ipam: a handle is required")
	}
	pools, skipped, err := c.usablePools(ctx, &r, true)
	if err != nil {
		return err
	}
	var pool *api.IPPool
	for _, p := range pools {
		if pfx, _ := api.ParseCIDR(p.Spec.CIDR); pfx.Contains(ip) {
			pool = p
			break
		}
	}
	if pool == nil {
		return fmt.Errorf("ipam: %s is in no usable IP pool for %s: %w (%s)", ip, c.node, ErrNoPool, skipped)
	}
	pfx, _ := api.ParseCIDR(pool.Spec.CIDR)
	cidr, _ := ip.Prefix(poolBlockSize(pool, pfx))
	cfg, err := c.Config(ctx)
	if err != nil {
		return err
	}
	b := newBackoff()
	for attempt := 0; attempt < c.attempts; attempt++ {
		if attempt > 0 {
			if err := b.Wait(ctx); err != nil {
				return err
			}
		}
		bk, err := c.getBlock(ctx, cidr)
		if errors.Is(err, datastore.ErrNotFound) {
			existing, lerr := c.listBlocks(ctx, r.Family)
			if lerr != nil {
				return lerr
			}
			if overlapsAny(cidr, existing) {
				return fmt.Errorf("ipam: %s: its block %s overlaps an existing block of another size", ip, cidr)
			}
			if _, err := c.tryClaim(ctx, cidr); err != nil && !isConflict(err) {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		attrs := r.Attrs
		if owner := bk.b.AffinityNode(); owner != c.node {
			if cfg.StrictAffinity && bk.b.Affinity != nil {
				return fmt.Errorf("ipam: %s is in block %s of node %q and the IPAM configuration sets strictAffinity: %w", ip, cidr, owner, ErrStrictAffinity)
			}
			attrs = c.withNode(attrs)
		}
		ord, _ := api.Ordinal(cidr, ip)
		if h, used := bk.b.HandleAt(ord); used {
			if h == r.Handle {
				return nil
			}
			return fmt.Errorf("ipam: %s (handle %q): %w", ip, h, ErrInUse)
		}
		bk.b.AssignOrdinal(ord, r.Handle, attrs)
		err = c.commit(ctx, bk, r.Handle, map[string]int{cidr.String(): 1})
		if err == nil {
			c.log.WithFields(logrus.Fields{"ip": ip, "handle": r.Handle}).Debug("ipam: assigned requested address")
			return nil
		}
		if !isConflict(err) {
			return err
		}
	}
	return ErrTooManyConflicts
}

// ReleaseByHandle frees every address handle holds and deletes the handle.
func (c *Client) ReleaseByHandle(ctx context.Context, handle string) ([]netip.Addr, error) {
	var released []netip.Addr
	b := newBackoff()
	for attempt := 0; attempt < c.attempts; attempt++ {
		if attempt > 0 {
			if err := b.Wait(ctx); err != nil {
				return released, err
			}
		}
		kv, err := c.ds.Get(ctx, datastore.HandleKey(handle))
		if errors.Is(err, datastore.ErrNotFound) {
			return released, nil
		}
		if err != nil {
			return released, err
		}
		h, ok := kv.Value.(*api.IPAMHandle)
		if !ok {
			return released, fmt.Errorf("%s: not a handle", kv.Key)
		}
		if len(h.Spec.Block) == 0 {
			if err := c.ds.Delete(ctx, kv.Key, kv.Revision); err != nil && !isConflict(err) {
				return released, err
			}
			continue
		}
		cidrs := make([]string, 0, len(h.Spec.Block))
		for k := range h.Spec.Block {
			cidrs = append(cidrs, k)
		}
		sort.Strings(cidrs)
		cidrS := cidrs[0]
		cidr, perr := api.ParseCIDR(cidrS)
		var ops []datastore.Op
		var freed []netip.Addr
		nh := api.Clone(h)
		delete(nh.Spec.Block, cidrS)
		if perr == nil {
			bk, err := c.getBlock(ctx, cidr)
			switch {
			case errors.Is(err, datastore.ErrNotFound):
			case err != nil:
				return released, err
			default:
				ords := bk.b.OrdinalsOf(handle)
				if len(ords) > 0 {
					bk.b.Release(ords)
					ops = append(ops, blockWrite(bk))
					for _, o := range ords {
						freed = append(freed, api.AddrAt(cidr, o))
					}
				}
			}
		}
		if len(nh.Spec.Block) == 0 {
			ops = append(ops, datastore.Op{Type: datastore.OpDelete, Key: kv.Key, Revision: kv.Revision})
		} else {
			nh.Metadata.ResourceVersion = ""
			ops = append(ops, datastore.Op{Type: datastore.OpUpdate, Key: kv.Key, Value: nh, Revision: kv.Revision})
		}
		if _, err := c.ds.Txn(ctx, ops...); err != nil {
			if isConflict(err) {
				continue
			}
			return released, err
		}
		released = append(released, freed...)
		attempt = -1 // progress: start counting again for the next block
		b.Reset()
	}
	return released, ErrTooManyConflicts
}

// ReleaseIP frees ip if it is held by handle (any handle when handle is
// ""). It reports whether something was freed.
func (c *Client) ReleaseIP(ctx context.Context, ip netip.Addr, handle string) (bool, error) {
	family := 4
	if ip.Is6() {
		family = 6
	}
	b := newBackoff()
	for attempt := 0; attempt < c.attempts; attempt++ {
		blocks, err := c.listBlocks(ctx, family)
		if err != nil {
			return false, err
		}
		var cidr netip.Prefix
		for p := range blocks {
			if p.Contains(ip) {
				cidr = p
			}
		}
		if !cidr.IsValid() {
			return false, nil
		}
		bk, err := c.getBlock(ctx, cidr)
		if errors.Is(err, datastore.ErrNotFound) {
			continue
		}
		if err != nil {
			return false, err
		}
		ord, _ := api.Ordinal(cidr, ip)
		h, used := bk.b.HandleAt(ord)
		if !used || (handle != "" && h != handle) {
			return false, nil
		}
		bk.b.Release([]int{ord})
		deltas := map[string]int{}
		if h != "" {
			deltas[cidr.String()] = -1
		}
		err = c.commit(ctx, bk, h, deltas)
		if err == nil {
			return true, nil
		}
		if !isConflict(err) {
			return false, err
		}
		if err := b.Wait(ctx); err != nil {
			return false, err
		}
	}
	return false, ErrTooManyConflicts
}

// ReleaseEmptyBlocks gives up this node's blocks that hold no address and
// for which keep returns false (e.g. their pool was deleted). The block
// and its affinity go in one transaction, only if neither changed.
func (c *Client) ReleaseEmptyBlocks(ctx context.Context, keep func(netip.Prefix) bool) ([]netip.Prefix, error) {
	res, err := c.ds.List(ctx, datastore.HostAffinityPrefix(c.node))
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, kv := range res.KVs {
		a, ok := kv.Value.(*api.BlockAffinity)
		if !ok {
			continue
		}
		cidr, err := api.ParseCIDR(a.Spec.CIDR)
		if err != nil || keep(cidr) {
			continue
		}
		ops := []datastore.Op{{Type: datastore.OpDelete, Key: kv.Key, Revision: kv.Revision}}
		bk, err := c.getBlock(ctx, cidr)
		var broken *datastore.DecodeError
		switch {
		case errors.As(err, &broken):
			continue // present but broken: whether it is empty is unknown
		case errors.Is(err, datastore.ErrNotFound):
		case err != nil:
			return out, err
		default:
			if bk.b.AffinityNode() == c.node {
				if bk.b.InUse() > 0 {
					continue
				}
				ops = append(ops, datastore.Op{Type: datastore.OpDelete, Key: datastore.BlockKey(cidr), Revision: bk.rev})
			}
		}
		if _, err := c.ds.Txn(ctx, ops...); err != nil {
			if isConflict(err) {
				continue // changed meanwhile: look again next time
			}
			return out, err
		}
		c.log.WithField("block", cidr).Info("ipam: released empty block")
		out = append(out, cidr)
	}
	return out, nil
}

// Usage summarizes one block for status output.
type Usage struct {
	CIDR     netip.Prefix
	Affinity string
	InUse    int
	Size     int
}

// BlockUsage lists every block of the family with its use.
func (c *Client) BlockUsage(ctx context.Context, family int) ([]Usage, error) {
	blocks, err := c.listBlocks(ctx, family)
	if err != nil {
		return nil, err
	}
	var out []Usage
	for p, b := range blocks {
		if b == nil {
			continue
		}
		out = append(out, Usage{CIDR: p, Affinity: b.AffinityNode(), InUse: b.InUse(), Size: len(b.Allocations)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CIDR.Addr().Less(out[j].CIDR.Addr()) })
	return out, nil
}

// ReleaseEmptyBlock gives back block cidr when it is this node's, holds
// no address, and the node keeps at least one other block of the family:
// what Calico's kube-controllers do once a block has stayed empty for
// their grace period (the caller keeps the time; see the agent). Block
// and affinity go in one transaction, only if neither changed since they
// were read, so an address taken meanwhile keeps the block.
func (c *Client) ReleaseEmptyBlock(ctx context.Context, cidr netip.Prefix) (bool, error) {
	res, err := c.ds.List(ctx, datastore.HostAffinityPrefix(c.node))
	if err != nil {
		return false, err
	}
	var aff *datastore.KV
	same := 0 // confirmed blocks of the family
	for i := range res.KVs {
		a, ok := res.KVs[i].Value.(*api.BlockAffinity)
		if !ok || !a.Confirmed() {
			continue
		}
		p, err := api.ParseCIDR(a.Spec.CIDR)
		if err != nil || p.Addr().Is4() != cidr.Addr().Is4() {
			continue
		}
		same++
		if p == cidr {
			aff = &res.KVs[i]
		}
	}
	if aff == nil || same < 2 {
		return false, nil
	}
	bk, err := c.getBlock(ctx, cidr)
	if errors.Is(err, datastore.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if bk.b.AffinityNode() != c.node || bk.b.InUse() > 0 {
		return false, nil
	}
	_, err = c.ds.Txn(ctx,
		datastore.Op{Type: datastore.OpDelete, Key: datastore.BlockKey(cidr), Revision: bk.rev},
		datastore.Op{Type: datastore.OpDelete, Key: aff.Key, Revision: aff.Revision})
	if isConflict(err) {
		return false, nil // changed meanwhile: the caller looks again
	}
	if err != nil {
		return false, err
	}
	c.log.WithField("block", cidr).Info("ipam: released a block that stayed empty")
	return true, nil
}

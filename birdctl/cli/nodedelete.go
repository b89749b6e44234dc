package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/node/heartbeat"
	"github.com/roostnet/roost/node/ipam"
)

// Deleting a Node frees what it held first, as calicoctl delete node
// does: node/ipam's ReleaseNode (workload endpoints, addresses, blocks,
// affinities, handles; compare-and-swap, retried after conflicts). The Node
// itself is deleted last, by the caller, so that a release that fails
// midway is finished by running the delete again.

// releaseRounds bounds how often a Node that keeps changing while it is
// released (its agent recording a tunnel address, say) is released again
// before its delete is left to fail on the revision.
const releaseRounds = 5

// releaseBatch is the most operations one release transaction holds:
// etcd's default limit, on both backends. Tests lower it.
var releaseBatch = maxTxnOps

// nodeRelease counts what releasing one node freed.
type nodeRelease struct {
	node       string
	blocks     []string // CIDRs of the deleted blocks
	addresses  int      // allocated addresses freed, in its blocks and elsewhere
	weps       int      // workload endpoints deleted
	affinities int      // affinity keys deleted that had no block of the node
}

func (r *nodeRelease) add(o ipam.NodeRelease) {
	r.blocks = append(r.blocks, o.Blocks...)
	r.addresses += o.Addresses
	r.weps += o.WorkloadEndpoints
	r.affinities += o.Affinities
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

// refuseLiveNodes fails, before anything is written, when a Node among
// items looks alive: its agent's status report (node/heartbeat) is younger
// than heartbeat.TTL. Deleting it would release addresses its workloads
// use, and the agent would register it again. force skips the check (and
// warns).
func (a *app) refuseLiveNodes(ctx context.Context, ds datastore.Datastore, items []item, force bool) error {
	var live []string
	now := time.Now()
	for _, it := range items {
		if it.obj.ResourceKind() != api.KindNode || it.current == nil {
			continue
		}
		info, err := datastore.ParseKey(it.key)
		if err != nil {
			return err
		}
		st, err := heartbeat.Check(ctx, ds, info.Name, now)
		if err != nil {
			return fmt.Errorf("nothing was deleted: %w", err)
		}
		if !st.Alive {
			continue
		}
		ago := max(0, now.Sub(st.Reported)).Round(time.Second)
		if force {
			a.warnf("node %s looks alive (its agent reported %s ago); deleting it anyway (--force)", info.Name, ago)
			continue
		}
		live = append(live, fmt.Sprintf("node %s looks alive: its agent reported %s ago (%s; a report older than %s counts as stopped)",
			info.Name, ago, st.Key, heartbeat.TTL))
	}
	if len(live) > 0 {
		return fmt.Errorf("nothing was deleted:\n  %s\nDeleting a running node would release addresses its workloads still use. Stop roost-node on it first (a clean stop withdraws the report at once), or give --force", strings.Join(live, "\n  "))
	}
	return nil
}

// dropStatusReports deletes the status reports of the deleted Nodes among
// items (a stopped agent's last report; a crashed agent leaves one).
func (a *app) dropStatusReports(ctx context.Context, ds datastore.Datastore, items []item) {
	for _, it := range items {
		if it.obj.ResourceKind() != api.KindNode {
			continue
		}
		info, err := datastore.ParseKey(it.key)
		if err != nil {
			continue
		}
		if err := ds.Delete(ctx, datastore.StatusReportKey(info.Name), 0); err != nil && !errors.Is(err, datastore.ErrNotFound) {
			a.warnf("node %s: could not delete its status report: %v", info.Name, err)
		}
	}
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
		client := ipam.New(ds, name)
		opts := ipam.ReleaseOptions{Batch: releaseBatch, Warnf: a.warnf, Written: func(key string, deleted bool) { written[key] = deleted }}
		for round := 1; ; round++ {
			node, _ := it.current.Value.(*api.Node)
			r, err := client.ReleaseNode(ctx, node, opts)
			rel.add(r)
			if err != nil {
				return released, fmt.Errorf("node %s: releasing its workload endpoints and IPAM failed after %s were released; the Node was not deleted, run the delete again to finish: %w", name, rel.summary(), err)
			}
			kv, err := current(ctx, ds, it.key)
			if errors.Is(err, datastore.ErrNotFound) {
				it.gone = true // deleted by someone else meanwhile
				break
			}
			if err != nil {
				return released, err
			}
			if kv.Revision == it.current.Revision || pinned(it) || round >= releaseRounds {
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
		kv, err := current(ctx, ds, it.key)
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

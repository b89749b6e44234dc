package cli

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

// RequestNamePrefix names the CalicoNodeStatus requests that
// `node status --all --request` creates: roost-status.<node>.
const RequestNamePrefix = "roost-status."

// Defaults of node status --all --request.
const (
	DefaultRequestPeriod = 10 * time.Second
	DefaultRequestWait   = 30 * time.Second
)

// clusterOpts are the flags of node status --all.
type clusterOpts struct {
	request bool
	period  time.Duration
	wait    time.Duration
}

// clusterPeer is one BGP session of a node, from its CalicoNodeStatus.
type clusterPeer struct {
	PeerIP    string `json:"peerIP"`
	IPVersion int    `json:"ipVersion"`
	Type      string `json:"type"`  // NodeMesh, NodePeer, GlobalPeer
	State     string `json:"state"` // BGP state: Established, Active...
	Since     string `json:"since"`
}

// clusterNode is one node's report.
type clusterNode struct {
	Node string `json:"node"`
	// Reporting: a CalicoNodeStatus asking for BGP has an answer that is
	// fresh (younger than two periods and a bit), or whose updates were
	// stopped (period 0).
	Reporting bool `json:"reporting"`
	// StatusName is the CalicoNodeStatus the report comes from.
	StatusName          string     `json:"statusName,omitempty"`
	UpdatePeriodSeconds *uint32    `json:"updatePeriodSeconds,omitempty"`
	LastUpdated         *time.Time `json:"lastUpdated,omitempty"`
	Stale               bool       `json:"stale"`
	// BIRD is the daemon's state when the request asks for the Agent
	// class: Ready or NotReady.
	BIRD           string        `json:"bird,omitempty"`
	Established    int           `json:"established"`
	NotEstablished int           `json:"notEstablished"`
	Peers          []clusterPeer `json:"peers"`
	// Info says why a node is not reporting, or what is odd.
	Info string `json:"info,omitempty"`
}

type clusterStatus struct {
	Nodes []clusterNode `json:"nodes"`
}

// staleAfter is how old an answer may be before it counts as stale: the
// node writes at least once per period, so two periods and some slack.
func staleAfter(period time.Duration) time.Duration { return 2*period + 5*time.Second }

// clusterNodeStatus is node status --all: every node's sessions from the
// CalicoNodeStatus objects, creating missing requests first with --request.
func (a *app) clusterNodeStatus(cmd *cobra.Command, output string, o clusterOpts) error {
	limit := a.timeout
	if o.request {
		limit += o.wait
	}
	ctx, ds, done, err := a.openDatastoreFor(cmd, limit)
	if err != nil {
		return err
	}
	defer done()
	nodes, err := a.list(ctx, ds, api.KindNode, "")
	if err != nil {
		return err
	}
	statuses, rev, err := a.listStatuses(ctx, ds)
	if err != nil {
		return err
	}
	names := map[string]bool{} // node name -> has a Node resource
	for _, s := range statuses {
		names[s.Spec.Node] = false
	}
	for _, n := range nodes {
		names[n.Meta().Name] = true
	}

	var missing []string // nodes whose answers --request waits for
	if o.request {
		requested := a.env.Now().Truncate(time.Second) // lastUpdated has whole seconds
		missing, err = a.requestStatuses(ctx, ds, nodes, statuses, o.period)
		if err != nil {
			return err
		}
		statuses, missing = a.waitAnswers(ctx, ds, rev, statuses, missing, requested, o.wait)
	}

	now := a.env.Now()
	st := clusterStatus{Nodes: []clusterNode{}}
	for _, name := range sortedKeys(names) {
		r := nodeReport(name, statuses, now)
		if !names[name] {
			r.Info = strings.TrimPrefix(r.Info+"; no Node resource", "; ")
		}
		st.Nodes = append(st.Nodes, r)
	}
	if output == fmtTable {
		err = writeCluster(cmd.OutOrStdout(), st, now)
	} else {
		err = writeData(cmd.OutOrStdout(), output, st)
	}
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return &exitError{code: 1, err: fmt.Errorf("no answer within %v from %d node(s): %s", o.wait, len(missing), strings.Join(missing, ", "))}
	}
	return nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// listStatuses lists every CalicoNodeStatus and the revision of the list.
func (a *app) listStatuses(ctx context.Context, ds datastore.Datastore) ([]*api.CalicoNodeStatus, int64, error) {
	res, err := ds.List(ctx, datastore.KindPrefix(api.KindCalicoNodeStatus))
	if err != nil {
		return nil, 0, fmt.Errorf("list %s: %w", api.KindCalicoNodeStatus, err)
	}
	for _, bad := range res.Invalid {
		fmt.Fprintf(a.env.Stderr, "birdctl: warning: skipped %v\n", bad)
	}
	var out []*api.CalicoNodeStatus
	for _, kv := range res.KVs {
		if s, ok := kv.Value.(*api.CalicoNodeStatus); ok {
			out = append(out, s)
		}
	}
	return out, res.Revision, nil
}

// live reports whether s asks node for BGP status with periodic updates.
func live(s *api.CalicoNodeStatus, node string) bool {
	return s.Spec.Node == node && s.Spec.HasClass(api.NodeStatusClassBGP) && s.Spec.UpdatePeriod() > 0
}

// requestStatuses creates (or revives) roost-status.<node> for every node
// without a live request and returns those nodes.
func (a *app) requestStatuses(ctx context.Context, ds datastore.Datastore, nodes []api.Resource, statuses []*api.CalicoNodeStatus, period time.Duration) ([]string, error) {
	secs := uint32(period / time.Second)
	if secs < 1 || period > api.MaxNodeStatusUpdatePeriod*time.Second {
		return nil, fmt.Errorf("--request-period %v: must be between 1s and 24h", period)
	}
	byName := map[string]*api.CalicoNodeStatus{}
	for _, s := range statuses {
		byName[s.Metadata.Name] = s
	}
	var created []string
	for _, n := range nodes {
		node := n.Meta().Name
		if slices.ContainsFunc(statuses, func(s *api.CalicoNodeStatus) bool { return live(s, node) }) {
			continue
		}
		req := &api.CalicoNodeStatus{}
		req.Metadata.Name = RequestNamePrefix + node
		req.Spec = api.CalicoNodeStatusSpec{Node: node, Classes: []string{api.NodeStatusClassAgent, api.NodeStatusClassBGP}, UpdatePeriodSeconds: &secs}
		if err := api.Validate(req); err != nil {
			return nil, fmt.Errorf("cannot request the status of node %s: %w", node, err)
		}
		var err error
		if old := byName[req.Metadata.Name]; old != nil {
			// Ours, but stopped or changed: ask again, keeping its answer.
			req.Metadata = old.Metadata
			req.Status = old.Status
			rev, _ := parseRevision(old.Metadata.ResourceVersion)
			_, err = ds.Update(ctx, &datastore.KV{Key: datastore.ResourceKey(api.KindCalicoNodeStatus, "", req.Metadata.Name), Value: req, Revision: rev})
		} else {
			_, err = ds.Create(ctx, req) // stamped by the datastore
		}
		if err != nil {
			return nil, fmt.Errorf("requesting the status of node %s: %w", node, err)
		}
		fmt.Fprintf(a.env.Stderr, "birdctl: requested the BGP status of node %s (CalicoNodeStatus %s, every %v)\n", node, req.Metadata.Name, period)
		created = append(created, node)
	}
	return created, nil
}

func parseRevision(rv string) (int64, error) {
	var n int64
	_, err := fmt.Sscan(rv, &n)
	return n, err
}

// waitAnswers follows the CalicoNodeStatus objects from revision rev until
// every node in waiting has an answer written at or after since, or wait
// has passed. It returns the statuses seen last and the nodes still
// without an answer.
func (a *app) waitAnswers(ctx context.Context, ds datastore.Datastore, rev int64, statuses []*api.CalicoNodeStatus, waiting []string, since time.Time, wait time.Duration) ([]*api.CalicoNodeStatus, []string) {
	byKey := map[string]*api.CalicoNodeStatus{}
	for _, s := range statuses {
		byKey[s.Metadata.Name] = s
	}
	pending := func() []string {
		var out []string
		for _, node := range waiting {
			answered := false
			for _, s := range byKey {
				if s.Spec.Node == node && s.Spec.HasClass(api.NodeStatusClassBGP) && !s.Status.LastUpdated.Before(since) {
					answered = true
				}
			}
			if !answered {
				out = append(out, node)
			}
		}
		return out
	}
	values := func() []*api.CalicoNodeStatus {
		out := make([]*api.CalicoNodeStatus, 0, len(byKey))
		for _, s := range byKey {
			out = append(out, s)
		}
		return out
	}
	if len(pending()) == 0 {
		return values(), nil
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for ev := range ds.Watch(wctx, datastore.KindPrefix(api.KindCalicoNodeStatus), rev) {
		switch ev.Type {
		case datastore.Added, datastore.Modified:
			if s, ok := ev.Value.(*api.CalicoNodeStatus); ok {
				byKey[s.Metadata.Name] = s
			}
		case datastore.Deleted:
			if info, err := datastore.ParseKey(ev.Key); err == nil {
				delete(byKey, info.Name)
			}
		}
		if len(pending()) == 0 {
			return values(), nil
		}
	}
	return values(), pending()
}

// nodeReport builds one node's report from the freshest CalicoNodeStatus
// that asks it for BGP status.
func nodeReport(node string, statuses []*api.CalicoNodeStatus, now time.Time) clusterNode {
	r := clusterNode{Node: node, Peers: []clusterPeer{}}
	var best *api.CalicoNodeStatus
	asked := false
	for _, s := range statuses {
		if s.Spec.Node != node || !s.Spec.HasClass(api.NodeStatusClassBGP) {
			continue
		}
		asked = true
		if s.Status.LastUpdated.IsZero() {
			continue
		}
		if best == nil || s.Status.LastUpdated.After(best.Status.LastUpdated.Time) {
			best = s
		}
	}
	if best == nil {
		if asked {
			r.Info = "not reporting: requested, no answer yet"
		} else {
			r.Info = "not reporting: no CalicoNodeStatus asks this node for BGP status (--request creates one)"
		}
		return r
	}
	r.StatusName = best.Metadata.Name
	r.UpdatePeriodSeconds = best.Spec.UpdatePeriodSeconds
	last := best.Status.LastUpdated.Time
	r.LastUpdated = &last
	age := now.Sub(last).Truncate(time.Second)
	period := best.Spec.UpdatePeriod()
	var notes []string
	switch {
	case period == 0:
		notes = append(notes, fmt.Sprintf("updates stopped (updatePeriodSeconds 0), last report %v ago", age))
	case age > staleAfter(period):
		r.Stale = true
		notes = append(notes, fmt.Sprintf("stale: last report %v ago (every %v)", age, period))
	}
	r.Reporting = !r.Stale
	if best.Spec.HasClass(api.NodeStatusClassAgent) {
		r.BIRD = best.Status.Agent.BIRDV4.State
		if r.BIRD == api.BGPDaemonStateNotReady {
			notes = append(notes, "BIRD not ready")
		}
	}
	b := best.Status.BGP
	r.Established = b.NumberEstablishedV4 + b.NumberEstablishedV6
	r.NotEstablished = b.NumberNotEstablishedV4 + b.NumberNotEstablishedV6
	for fam, peers := range map[int][]api.CalicoNodePeer{4: b.PeersV4, 6: b.PeersV6} {
		for _, p := range peers {
			r.Peers = append(r.Peers, clusterPeer{PeerIP: p.PeerIP, IPVersion: fam, Type: p.Type, State: p.State, Since: p.Since})
		}
	}
	slices.SortFunc(r.Peers, func(x, y clusterPeer) int {
		if c := cmp.Compare(x.IPVersion, y.IPVersion); c != 0 {
			return c
		}
		ax, ex := netip.ParseAddr(x.PeerIP)
		ay, ey := netip.ParseAddr(y.PeerIP)
		if ex == nil && ey == nil {
			return ax.Compare(ay)
		}
		return cmp.Compare(x.PeerIP, y.PeerIP)
	})
	if len(r.Peers) == 0 && r.BIRD != api.BGPDaemonStateNotReady {
		notes = append(notes, "no BGP sessions")
	}
	r.Info = strings.Join(notes, "; ")
	return r
}

func writeCluster(w io.Writer, st clusterStatus, now time.Time) error {
	var rows [][]string
	reporting, sessions, up := 0, 0, 0
	for _, n := range st.Nodes {
		if n.Reporting {
			reporting++
		}
		if len(n.Peers) == 0 {
			rows = append(rows, []string{n.Node, "-", "-", "-", "-", n.Info})
			continue
		}
		for _, p := range n.Peers {
			sessions++
			if p.State == api.BGPSessionStateEstablished {
				up++
			}
			rows = append(rows, []string{n.Node, p.PeerIP, cmp.Or(peerTypeWords[p.Type], p.Type, "-"), cmp.Or(p.State, "-"), cmp.Or(p.Since, "-"), n.Info})
		}
	}
	if err := boxTable(w, []string{"Node", "Peer", "Type", "State", "Since", "Info"}, rows); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d node(s), %d reporting; %d of %d BGP session(s) Established (as of %s)\n",
		len(st.Nodes), reporting, up, sessions, now.UTC().Format(time.RFC3339))
	return err
}

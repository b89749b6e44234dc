package cli

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/connect"
)

// The runner's clock is 2026-01-02T03:04:05Z: node1 answered 3 s before,
// node2 5 minutes before with a 10 s period (stale), node3 never, node4
// has BIRD down, node5 stopped its updates; node6 has a request but no
// Node resource.
const clusterYAML = `apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node1}
spec: {bgp: {ipv4Address: 10.0.0.1/24}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node2}
spec: {bgp: {ipv4Address: 10.0.0.2/24}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node3}
spec: {bgp: {ipv4Address: 10.0.0.3/24}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node4}
spec: {bgp: {ipv4Address: 10.0.0.4/24}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node5}
spec: {bgp: {ipv4Address: 10.0.0.5/24}}
---
apiVersion: projectcalico.org/v3
kind: CalicoNodeStatus
metadata: {name: node1-bgp}
spec: {node: node1, classes: [Agent, BGP], updatePeriodSeconds: 10}
status:
  lastUpdated: "2026-01-02T03:04:02Z"
  agent: {birdV4: {state: Ready, version: 2.0.12}}
  bgp:
    numberEstablishedV4: 1
    numberNotEstablishedV4: 1
    numberEstablishedV6: 1
    peersV4:
    - {peerIP: 10.0.0.254, type: GlobalPeer, state: Active, since: "03:00:00.100"}
    - {peerIP: 10.0.0.2, type: NodeMesh, state: Established, since: "02:59:58.001"}
    peersV6:
    - {peerIP: "fd00::2", type: NodePeer, state: Established, since: "02:59:58.101"}
---
apiVersion: projectcalico.org/v3
kind: CalicoNodeStatus
metadata: {name: node1-routes}
spec: {node: node1, classes: [Routes], updatePeriodSeconds: 60}
---
apiVersion: projectcalico.org/v3
kind: CalicoNodeStatus
metadata: {name: node2-bgp}
spec: {node: node2, classes: [BGP], updatePeriodSeconds: 10}
status:
  lastUpdated: "2026-01-02T02:59:05Z"
  bgp:
    numberEstablishedV4: 1
    peersV4:
    - {peerIP: 10.0.0.1, type: NodeMesh, state: Established, since: "02:59:58.002"}
---
apiVersion: projectcalico.org/v3
kind: CalicoNodeStatus
metadata: {name: node4-bgp}
spec: {node: node4, classes: [Agent, BGP], updatePeriodSeconds: 5}
status:
  lastUpdated: "2026-01-02T03:04:04Z"
  agent: {birdV4: {state: NotReady}, birdV6: {state: NotReady}}
---
apiVersion: projectcalico.org/v3
kind: CalicoNodeStatus
metadata: {name: node5-bgp}
spec: {node: node5, classes: [BGP], updatePeriodSeconds: 0}
status:
  lastUpdated: "2026-01-01T03:04:05Z"
---
apiVersion: projectcalico.org/v3
kind: CalicoNodeStatus
metadata: {name: node6-bgp}
spec: {node: node6, classes: [BGP], updatePeriodSeconds: 10}
`

func TestClusterNodeStatus(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		rn := &runner{}
		rn.mustRun(t, b.args("apply", "-f", writeFile(t, "cluster.yaml", clusterYAML))...)
		golden(t, "node-status-all", rn.mustRun(t, b.args("node", "status", "--all")...))
		golden(t, "node-status-all-json", rn.mustRun(t, b.args("node", "status", "--all", "-o", "json")...))
		golden(t, "get-caliconodestatuses-wide", rn.mustRun(t, b.args("get", "caliconodestatuses", "-o", "wide")...))
		golden(t, "get-caliconodestatuses", rn.mustRun(t, b.args("get", "nodestatus")...))

		// Re-applying a request without status keeps the node's answer.
		rn.mustRun(t, b.args("apply", "-f", writeFile(t, "req.yaml", `apiVersion: projectcalico.org/v3
kind: CalicoNodeStatus
metadata: {name: node1-bgp}
spec: {node: node1, classes: [Agent, BGP], updatePeriodSeconds: 5}
`))...)
		y := rn.mustRun(t, b.args("get", "caliconodestatus", "node1-bgp", "-o", "yaml")...)
		if !strings.Contains(y, "updatePeriodSeconds: 5") || !strings.Contains(y, "lastUpdated: \"2026-01-02T03:04:02Z\"") || !strings.Contains(y, "peerIP: 10.0.0.254") {
			t.Errorf("re-applied request lost its answer:\n%s", y)
		}
		// A local flag without --all is refused.
		if stderr := rn.mustFail(t, b.args("node", "status", "--request")...); !strings.Contains(stderr, "--request needs --all") {
			t.Errorf("--request without --all: %s", stderr)
		}
		if out := rn.mustRun(t, b.args("delete", "caliconodestatus", "node6-bgp")...); !strings.Contains(out, "Successfully deleted 1 'CalicoNodeStatus' resource(s)") {
			t.Errorf("delete: %q", out)
		}
	})
}

// --request creates a request for every node without one and waits for
// the answers; a node that does not answer makes it fail, naming it.
func TestClusterNodeStatusRequest(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		rn := &runner{}
		rn.mustRun(t, b.args("apply", "-f", writeFile(t, "nodes.yaml", `apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node1}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node2}
---
apiVersion: projectcalico.org/v3
kind: CalicoNodeStatus
metadata: {name: roost-status.node2}
spec: {node: node2, classes: [Agent, BGP], updatePeriodSeconds: 0}
`))...)
		cfg, err := b.config()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		ds, err := connect.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer ds.Close()
		// A stand-in for node1's agent: it answers requests for node1.
		var wg sync.WaitGroup
		wg.Add(1)
		actx, stop := context.WithCancel(ctx)
		defer func() { stop(); wg.Wait() }()
		go func() {
			defer wg.Done()
			for ev := range ds.Watch(actx, datastore.KindPrefix(api.KindCalicoNodeStatus), 0) {
				s, ok := ev.Value.(*api.CalicoNodeStatus)
				if ev.Type != datastore.Added || !ok || s.Spec.Node != "node1" {
					continue
				}
				s.Status.LastUpdated = api.NewTime(time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC))
				s.Status.BGP.NumberEstablishedV4 = 1
				s.Status.BGP.PeersV4 = []api.CalicoNodePeer{{PeerIP: "10.0.0.2", Type: api.BGPPeerTypeNodeMesh, State: api.BGPSessionStateEstablished, Since: "03:00:00.000"}}
				if _, err := ds.Update(actx, &datastore.KV{Key: ev.Key, Value: s, Revision: ev.Revision}); err != nil {
					t.Errorf("answering: %v", err)
				}
			}
		}()
		r := rn.run(t, b.args("node", "status", "--all", "--request", "--wait", "3s", "--request-period", "5s")...)
		if r.code != 1 || !strings.Contains(r.stderr, "no answer within 3s from 1 node(s): node2") {
			t.Errorf("want exit 1 naming node2:\n%v", r)
		}
		for _, want := range []string{
			"requested the BGP status of node node1 (CalicoNodeStatus roost-status.node1, every 5s)",
			"requested the BGP status of node node2 (CalicoNodeStatus roost-status.node2, every 5s)",
		} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
			}
		}
		for _, want := range []string{"| node1 | 10.0.0.2 | node-to-node mesh | Established |", "| node2 | -", "not reporting: requested, no answer yet"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("table lacks %q:\n%s", want, r.stdout)
			}
		}
		y := rn.mustRun(t, b.args("get", "caliconodestatus", "roost-status.node2", "-o", "yaml")...)
		if !strings.Contains(y, "updatePeriodSeconds: 5") || !strings.Contains(y, "- BGP") {
			t.Errorf("request for node2 not revived:\n%s", y)
		}
		// Now every node has a request: nothing to create, no waiting.
		r = rn.run(t, b.args("node", "status", "--all", "--request", "--wait", "1s")...)
		if r.code != 0 || strings.Contains(r.stderr, "requested") {
			t.Errorf("second --request:\n%v", r)
		}
	})
}

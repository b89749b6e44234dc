package cli

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/connect"
)

// ipamBlockDoc is a Calico block in a /26: ords maps ordinals to attribute
// indexes.
func ipamBlockDoc(cidr, node string, ords map[int]int, attrs ...map[string]any) map[string]any {
	alloc := make([]any, 64)
	var free []int
	for i := range 64 {
		if a, ok := ords[i]; ok {
			alloc[i] = a
		} else {
			free = append(free, i)
		}
	}
	if attrs == nil {
		attrs = []map[string]any{}
	}
	return map[string]any{
		"cidr": cidr, "affinity": "host:" + node, "strictAffinity": false,
		"allocations": alloc, "unallocated": free, "attributes": attrs,
		"sequenceNumber": 3, "deleted": false,
	}
}

func podAttr(handle, node, ns, pod string) map[string]any {
	return map[string]any{"handle_id": handle, "secondary": map[string]string{"node": node, "namespace": ns, "pod": pod}}
}

func tunnelAttr(node string) map[string]any {
	return map[string]any{"handle_id": "ipip-tunnel-addr-" + node, "secondary": map[string]string{"node": node, "type": "ipipTunnelAddress"}}
}

// nodeIPAMDocs: node1 holds two blocks (one with its tunnel address and an
// address of pod a, one with pod a's second address and pod b's), a pending
// affinity without a block, and pod c's address borrowed from node2's
// block. node2 has its own block, tunnel address and pod d.
func nodeIPAMDocs() string {
	var docs []any
	add := func(kind, ns, name string, spec any) {
		md := map[string]any{"name": name}
		if ns != "" {
			md["namespace"] = ns
		}
		docs = append(docs, map[string]any{"kind": kind, "apiVersion": api.APIVersion, "metadata": md, "spec": spec})
	}
	add("IPPool", "", "pool", map[string]any{"cidr": "10.244.0.0/16", "blockSize": 26, "ipipMode": "Always"})
	add("Node", "", "node1", map[string]any{"bgp": map[string]any{"ipv4Address": "10.0.0.1/24", "ipv4IPIPTunnelAddr": "10.244.1.0"}})
	add("Node", "", "node2", map[string]any{"bgp": map[string]any{"ipv4Address": "10.0.0.2/24", "ipv4IPIPTunnelAddr": "10.244.2.0"}})
	add("IPAMBlock", "", "10-244-1-0-26", ipamBlockDoc("10.244.1.0/26", "node1", map[int]int{0: 0, 1: 1},
		tunnelAttr("node1"), podAttr("k8s-pod-network.aaa", "node1", "default", "a")))
	add("IPAMBlock", "", "10-244-1-64-26", ipamBlockDoc("10.244.1.64/26", "node1", map[int]int{0: 0, 1: 1},
		podAttr("k8s-pod-network.aaa", "node1", "default", "a"), podAttr("k8s-pod-network.bbb", "node1", "prod", "b")))
	add("IPAMBlock", "", "10-244-2-0-26", ipamBlockDoc("10.244.2.0/26", "node2", map[int]int{0: 0, 1: 1, 5: 2},
		tunnelAttr("node2"), podAttr("k8s-pod-network.ddd", "node2", "default", "d"), podAttr("k8s-pod-network.ccc", "node1", "default", "c")))
	add("BlockAffinity", "", "node1-10-244-1-0-26", map[string]any{"node": "node1", "cidr": "10.244.1.0/26", "state": "confirmed"})
	add("BlockAffinity", "", "node1-10-244-1-64-26", map[string]any{"node": "node1", "cidr": "10.244.1.64/26", "state": "confirmed"})
	add("BlockAffinity", "", "node1-10-244-9-0-26", map[string]any{"node": "node1", "cidr": "10.244.9.0/26", "state": "pending"})
	add("BlockAffinity", "", "node2-10-244-2-0-26", map[string]any{"node": "node2", "cidr": "10.244.2.0/26", "state": "confirmed"})
	add("IPAMHandle", "", "ipip-tunnel-addr-node1", map[string]any{"block": map[string]int{"10.244.1.0/26": 1}})
	add("IPAMHandle", "", "k8s-pod-network.aaa", map[string]any{"block": map[string]int{"10.244.1.0/26": 1, "10.244.1.64/26": 1}})
	add("IPAMHandle", "", "k8s-pod-network.bbb", map[string]any{"block": map[string]int{"10.244.1.64/26": 1}})
	add("IPAMHandle", "", "k8s-pod-network.ccc", map[string]any{"block": map[string]int{"10.244.2.0/26": 1}})
	add("IPAMHandle", "", "ipip-tunnel-addr-node2", map[string]any{"block": map[string]int{"10.244.2.0/26": 1}})
	add("IPAMHandle", "", "k8s-pod-network.ddd", map[string]any{"block": map[string]int{"10.244.2.0/26": 1}})
	wep := func(ns, node, pod string, nets ...string) {
		add("WorkloadEndpoint", ns, node+"-k8s-"+pod+"-eth0", map[string]any{
			"orchestrator": "k8s", "node": node, "pod": pod, "endpoint": "eth0", "interfaceName": "cali" + pod, "ipNetworks": nets,
		})
	}
	wep("default", "node1", "a", "10.244.1.1/32", "10.244.1.64/32")
	wep("prod", "node1", "b", "10.244.1.65/32")
	wep("default", "node1", "c", "10.244.2.5/32")
	wep("default", "node2", "d", "10.244.2.1/32")
	return mustJSON(docs)
}

// ipamState summarizes the IPAM records and endpoints, one line each.
func ipamState(t *testing.T, rn *runner, b *backend) string {
	t.Helper()
	var out []string
	for _, args := range [][]string{{"nodes"}, {"ipamblocks"}, {"blockaffinities"}, {"ipamhandles"}, {"weps", "-A"}} {
		out = append(out, "# "+args[0])
		for _, l := range strings.Split(strings.TrimSpace(rn.mustRun(t, b.args(append([]string{"get"}, args...)...)...)), "\n") {
			out = append(out, collapseSpaces(l))
		}
	}
	return strings.Join(out, "\n")
}

const afterNode1Deleted = `# nodes
NAME
node2
# ipamblocks
CIDR AFFINITY ALLOCATED FREE
10.244.2.0/26 host:node2 2 62
# blockaffinities
NAME NODE CIDR STATE
node2-10-244-2-0-26 node2 10.244.2.0/26 confirmed
# ipamhandles
NAME BLOCKS
ipip-tunnel-addr-node2 10.244.2.0/26:1
k8s-pod-network.ddd 10.244.2.0/26:1
# weps
NAMESPACE WORKLOAD NODE NETWORKS INTERFACE
default d node2 10.244.2.1/32 calid`

const node1Released = "Released 2 blocks (10.244.1.0/26, 10.244.1.64/26), 5 addresses, 3 workload endpoints of node node1. Deleted 1 other block affinity of it.\n"

func seedNodeIPAM(t *testing.T, rn *runner, b *backend) {
	t.Helper()
	rn.mustRun(t, b.args("apply", "-f", writeFile(t, "ipam.json", nodeIPAMDocs()))...)
}

// checkNode2Block: node2's block lost only the borrowed address of pod c.
func checkNode2Block(t *testing.T, rn *runner, b *backend) {
	t.Helper()
	y := rn.mustRun(t, b.args("get", "ipamblock", "10.244.2.0/26", "-o", "json")...)
	obj, err := api.DecodeJSON(api.KindIPAMBlock, []byte(y), api.DecodeOptions{AllowUnknownFields: true})
	if err != nil {
		t.Fatalf("%v:\n%s", err, y)
	}
	blk := obj.(*api.IPAMBlock).Spec
	var held []string
	for ord, a := range blk.Allocations {
		if a != nil {
			held = append(held, fmt.Sprintf("%d:%s", ord, *blk.Attributes[*a].HandleID))
		}
	}
	if want := []string{"0:ipip-tunnel-addr-node2", "1:k8s-pod-network.ddd"}; !slices.Equal(held, want) || len(blk.Attributes) != 2 {
		t.Errorf("node2's block holds %v with %d attributes, want %v", held, len(blk.Attributes), want)
	}
	if !slices.Contains(blk.Unallocated, 5) {
		t.Errorf("ordinal 5 not free again: %v", blk.Unallocated)
	}
}

func TestDeleteNodeReleasesIPAM(t *testing.T) {
	for _, batch := range []int{maxTxnOps, 2} {
		t.Run(fmt.Sprintf("batch%d", batch), func(t *testing.T) {
			defer func(old int) { releaseBatch = old }(releaseBatch)
			releaseBatch = batch
			forEachBackend(t, func(t *testing.T, b *backend) {
				rn := &runner{}
				seedNodeIPAM(t, rn, b)
				before := rn.mustRun(t, b.args("ipam", "show", "--show-blocks")...)
				golden(t, "delete-node-ipam-before", before)

				// A missing node: an error, nothing released.
				if stderr := rn.mustFail(t, b.args("delete", "node", "node1", "nope")...); !strings.Contains(stderr, `Node "nope" does not exist`) {
					t.Errorf("delete node1 nope: %q", stderr)
				}
				if got := rn.mustRun(t, b.args("ipam", "show", "--show-blocks")...); got != before {
					t.Errorf("a failed delete changed IPAM:\n%s", got)
				}

				r := rn.run(t, b.args("delete", "node", "node1")...)
				if r.code != 0 || r.stdout != node1Released+"Successfully deleted 1 'Node' resource(s)\n" || r.stderr != "" {
					t.Fatalf("delete node node1: %v", r)
				}
				if got := ipamState(t, rn, b); got != afterNode1Deleted {
					t.Errorf("after delete node node1:\n%s\nwant:\n%s", got, afterNode1Deleted)
				}
				checkNode2Block(t, rn, b)
				golden(t, "delete-node-ipam-after", rn.mustRun(t, b.args("ipam", "show", "--show-blocks")...))
				if b.name == "etcd" {
					for _, key := range []string{
						"/calico/ipam/v2/assignment/ipv4/block/10.244.1.0-26",
						"/calico/ipam/v2/host/node1/ipv4/block/10.244.1.64-26",
						"/calico/ipam/v2/host/node1/ipv4/block/10.244.9.0-26",
						"/calico/ipam/v2/handle/k8s-pod-network.aaa",
						"/calico/ipam/v2/handle/k8s-pod-network.ccc",
						"/calico/resources/v3/projectcalico.org/workloadendpoints/prod/node1-k8s-b-eth0",
					} {
						if raw := b.raw(t, key); raw != "" {
							t.Errorf("%s still stored: %s", key, raw)
						}
					}
					if raw := b.raw(t, "/calico/ipam/v2/handle/k8s-pod-network.ddd"); raw != `{"block":{"10.244.2.0/26":1},"deleted":false}` {
						t.Errorf("node2's handle: %s", raw)
					}
				}
				if stderr := rn.mustFail(t, b.args("delete", "node", "node1")...); !strings.Contains(stderr, `Node "node1" does not exist`) {
					t.Errorf("delete node1 twice: %q", stderr)
				}

				// delete -f with a Node document does the same.
				seedNodeIPAM(t, rn, b)
				node := writeFile(t, "node.yaml", "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: node1}\n")
				if out := rn.mustRun(t, b.args("delete", "-f", node)...); out != node1Released+"Successfully deleted 1 'Node' resource(s)\n" {
					t.Errorf("delete -f node.yaml: %q", out)
				}
				if got := ipamState(t, rn, b); got != afterNode1Deleted {
					t.Errorf("after delete -f node.yaml:\n%s\nwant:\n%s", got, afterNode1Deleted)
				}

				// --skip-ipam deletes only the Node.
				seedNodeIPAM(t, rn, b)
				full := ipamState(t, rn, b)
				if out := rn.mustRun(t, b.args("delete", "node", "node1", "--skip-ipam")...); out != "Successfully deleted 1 'Node' resource(s)\n" {
					t.Errorf("delete --skip-ipam: %q", out)
				}
				if got, want := ipamState(t, rn, b), strings.Replace(full, "node1\n", "", 1); got != want {
					t.Errorf("after delete --skip-ipam:\n%s\nwant:\n%s", got, want)
				}
				if got := rn.mustRun(t, b.args("ipam", "show", "--show-blocks")...); got != before {
					t.Errorf("--skip-ipam changed IPAM:\n%s", got)
				}
			})
		})
	}
}

// TestDeleteNodeBatch: a Node document together with resources the
// release deletes anyway (its workload endpoint) in one
// delete -f: no error, each deleted once.
func TestDeleteNodeBatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		rn := &runner{}
		seedNodeIPAM(t, rn, b)
		batch := writeFile(t, "batch.yaml", `apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node1}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: node1-k8s-b-eth0, namespace: prod}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool}
spec: {cidr: 10.244.0.0/16}
`)
		if out := rn.mustRun(t, b.args("delete", "-f", batch)...); out != node1Released+"Successfully deleted 3 resource(s)\n" {
			t.Errorf("delete -f batch: %q", out)
		}
		if out := rn.mustRun(t, b.args("get", "ippools")...); strings.Contains(out, "pool") {
			t.Errorf("pool not deleted:\n%s", out)
		}
		if got := ipamState(t, rn, b); got != afterNode1Deleted {
			t.Errorf("after delete -f batch:\n%s\nwant:\n%s", got, afterNode1Deleted)
		}
	})
}

// conflictingDS writes behind the releaser's back before its first
// transactions, as a CNI plugin or agent running at the same time would.
type conflictingDS struct {
	datastore.Datastore
	txns    int
	disturb func(n int) // before transaction n (1-based)
}

func (c *conflictingDS) Txn(ctx context.Context, ops ...datastore.Op) (int64, error) {
	c.txns++
	c.disturb(c.txns)
	return c.Datastore.Txn(ctx, ops...)
}

// TestDeleteNodeRetriesConflicts: a handle, a block and the Node change
// during the release; it reads them again and finishes.
func TestDeleteNodeRetriesConflicts(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		rn := &runner{}
		seedNodeIPAM(t, rn, b)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		ds, err := connect.Open(ctx, datastore.FromEnv(func(k string) string { return b.env[k] }))
		if err != nil {
			t.Fatal(err)
		}
		defer ds.Close()
		touch := func(key string) {
			kv, err := ds.Get(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			v := api.Clone(kv.Value)
			v.Meta().ResourceVersion = ""
			if n, ok := v.(*api.Node); ok {
				n.Metadata.Labels = map[string]string{"touched": "yes"}
			}
			if _, err := ds.Update(ctx, &datastore.KV{Key: key, Value: v, Revision: kv.Revision}); err != nil {
				t.Fatal(err)
			}
		}
		cds := &conflictingDS{Datastore: ds, disturb: func(n int) {
			switch n {
			case 1: // the release of pod c's address in node2's block (retried by 2)
				touch(datastore.HandleKey("k8s-pod-network.ccc"))
			case 3: // the deletion of the endpoints; node1's first block follows
				touch(datastore.HandleKey("k8s-pod-network.aaa"))
				touch("/calico/ipam/v2/assignment/ipv4/block/10.244.1.0-26")
				touch(datastore.ResourceKey(api.KindNode, "", "node1"))
			}
		}}
		kv, err := ds.Get(ctx, datastore.ResourceKey(api.KindNode, "", "node1"))
		if err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		a := &app{env: Env{Stderr: &errb}}
		a.env.fill()
		items := []item{{obj: kv.Value, key: kv.Key, current: kv}}
		released, err := a.releaseNodes(ctx, cds, &out, items, false)
		if err != nil || !slices.Equal(released, []string{"node1"}) {
			t.Fatalf("releaseNodes: %v %v", released, err)
		}
		// The Node changed meanwhile: it was released again and the item
		// carries the new revision.
		now, err := ds.Get(ctx, kv.Key)
		if err != nil {
			t.Fatal(err)
		}
		if items[0].current.Revision != now.Revision || items[0].gone {
			t.Errorf("item at revision %d (gone %v), node at %d", items[0].current.Revision, items[0].gone, now.Revision)
		}
		// 5 transactions without conflicts: pod c's address, the endpoints,
		// two blocks, the leftover affinity.
		if cds.txns != 7 {
			t.Errorf("%d transactions, want 7 (two of them conflicting)", cds.txns)
		}
		if out.String() != node1Released || errb.String() != "" {
			t.Errorf("output %q, stderr %q", out.String(), errb.String())
		}
		if err := ds.Delete(ctx, kv.Key, now.Revision); err != nil {
			t.Fatal(err)
		}
		if got := ipamState(t, rn, b); got != afterNode1Deleted {
			t.Errorf("after release with conflicts:\n%s\nwant:\n%s", got, afterNode1Deleted)
		}
		checkNode2Block(t, rn, b)
	})
}

// TestDeleteNodeKeepsReusedAddress: a stale endpoint of the deleted node
// names an address that node2 holds now: it stays allocated.
func TestDeleteNodeKeepsReusedAddress(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		rn := &runner{}
		seedNodeIPAM(t, rn, b)
		stale := writeFile(t, "stale.yaml", `apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: node1-k8s-old-eth0, namespace: default}
spec: {node: node1, orchestrator: k8s, pod: old, endpoint: eth0, ipNetworks: [10.244.2.1/32]}
`)
		rn.mustRun(t, b.args("apply", "-f", stale)...)
		r := rn.run(t, b.args("delete", "node", "node1")...)
		if r.code != 0 || !strings.Contains(r.stderr, `10.244.2.1 (block 10.244.2.0/26) is allocated to node "node2" now; left allocated`) ||
			!strings.Contains(r.stdout, "4 workload endpoints") {
			t.Fatalf("delete node node1: %v", r)
		}
		checkNode2Block(t, rn, b)
	})
}

func TestNodeReleaseMessage(t *testing.T) {
	r := &nodeRelease{node: "n", addresses: 1, weps: 1}
	if got := r.message(); got != "Released 0 blocks, 1 address, 1 workload endpoint of node n." {
		t.Errorf("message: %q", got)
	}
	r = &nodeRelease{node: "n", blocks: []string{"10.0.0.0/26"}, affinities: 2}
	if got := r.message(); got != "Released 1 block (10.0.0.0/26), 0 addresses, 0 workload endpoints of node n. Deleted 2 other block affinities of it." {
		t.Errorf("message: %q", got)
	}
}

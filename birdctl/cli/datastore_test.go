package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/internal/etcdtest"
)

// backend is a datastore the commands run against.
type backend struct {
	name  string
	flags []string          // the datastore flags selecting it
	env   map[string]string // the same selection through the environment
	// seedCalico stores Calico-shaped data the way other tools write it:
	// raw JSON at Calico's etcd keys, or documents in a file of the store.
	seedCalico func(t *testing.T)
	// raw returns the stored bytes of an etcd key ("" for files).
	raw func(t *testing.T, key string) string
	// putInvalid stores an invalid IPPool the way another tool or a hand
	// edit would: raw JSON in etcd, a document in a file of the store.
	putInvalid func(t *testing.T, name, cidr string)
}

// forEachBackend runs f against a fresh file store and a fresh real etcd.
func forEachBackend(t *testing.T, f func(t *testing.T, b *backend)) {
	t.Run("file", func(t *testing.T) {
		dir := t.TempDir()
		b := &backend{
			name:  "file",
			flags: []string{"--datastore-type", "file", "--datastore-file", dir},
			env:   map[string]string{"DATASTORE_TYPE": "file", "DATASTORE_FILE": dir},
			seedCalico: func(t *testing.T) {
				if err := os.WriteFile(filepath.Join(dir, "calico.json"), []byte(calicoFileDocs()), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			raw: func(*testing.T, string) string { return "" },
			putInvalid: func(t *testing.T, name, cidr string) {
				doc := fmt.Sprintf("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: %s}\nspec: {cidr: %q}\n", name, cidr)
				if err := os.WriteFile(filepath.Join(dir, "zz-"+name+".yaml"), []byte(doc), 0o644); err != nil {
					t.Fatal(err)
				}
			},
		}
		f(t, b)
	})
	t.Run("etcd", func(t *testing.T) {
		e := etcdtest.Start(t)
		c := e.Client(t)
		b := &backend{
			name:  "etcd",
			flags: []string{"--datastore-type", "etcdv3", "--etcd-endpoints", e.Endpoint()},
			env:   map[string]string{"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": e.Endpoint()},
			seedCalico: func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				for _, kv := range calicoEtcdKVs() {
					if _, err := c.Put(ctx, kv[0], kv[1]); err != nil {
						t.Fatal(err)
					}
				}
			},
			raw: func(t *testing.T, key string) string {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				resp, err := c.Get(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				if len(resp.Kvs) == 0 {
					return ""
				}
				return string(resp.Kvs[0].Value)
			},
			putInvalid: func(t *testing.T, name, cidr string) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if _, err := c.Put(ctx, datastore.ResourceKey(api.KindIPPool, "", name), fmt.Sprintf(`{"spec":{"cidr":%q}}`, cidr)); err != nil {
					t.Fatal(err)
				}
			},
		}
		f(t, b)
	})
}

// config is the backend's datastore configuration, for a test's own
// connection to it.
func (b *backend) config() (datastore.Config, error) {
	cfg := datastore.FromEnv(func(k string) string { return b.env[k] })
	return cfg, cfg.Normalize()
}

// ds runs a datastore command with the backend's flags.
func (b *backend) args(args ...string) []string { return append(args, b.flags...) }

// allocations builds a block's allocation list: the first n addresses
// point at the given attribute indexes, the rest are free.
func allocations(size int, attrs ...int) (alloc []any, unallocated []int) {
	for i := range size {
		if i < len(attrs) {
			alloc = append(alloc, attrs[i])
		} else {
			alloc = append(alloc, nil)
			unallocated = append(unallocated, i)
		}
	}
	return alloc, unallocated
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// Calico-shaped records (docs/roost-node.md, "Datastore records"): a v3 pool and nodes with uid and
// creationTimestamp (one of them minimal JSON, named by its key), blocks
// with allocations, affinities (confirmed, legacy empty, pending) and a
// handle.
func calicoBlocks() map[string]map[string]any {
	a1, u1 := allocations(64, 0, 1)
	a2, u2 := allocations(64)
	a3, u3 := allocations(64, 0)
	return map[string]map[string]any{
		"192.168.166.128/26": {
			"cidr": "192.168.166.128/26", "affinity": "host:node1", "strictAffinity": false,
			"allocations": a1, "unallocated": u1,
			"attributes": []any{
				map[string]any{"handle_id": "ipip-tunnel-addr-node1", "secondary": map[string]string{"node": "node1", "type": "ipipTunnelAddress"}},
				map[string]any{"handle_id": "k8s-pod-network.4c1a2b", "secondary": map[string]string{"namespace": "default", "node": "node1", "pod": "pod1", "timestamp": "2024-05-01 10:00:00.000000000 +0000 UTC"}},
			},
			"sequenceNumber": 1714557600000000000, "sequenceNumberForAllocation": map[string]uint64{"0": 1714557600000000000, "1": 1714557600000000001},
			"deleted": false,
		},
		"192.168.10.0/26": {
			"cidr": "192.168.10.0/26", "affinity": "host:node2", "strictAffinity": false,
			"allocations": a2, "unallocated": u2, "attributes": []any{}, "sequenceNumber": 0, "deleted": false,
		},
		"fd00:65::/122": {
			"cidr": "fd00:65::/122", "affinity": "host:node1", "strictAffinity": false,
			"allocations": a3, "unallocated": u3,
			"attributes":     []any{map[string]any{"handle_id": "k8s-pod-network.4c1a2b", "secondary": map[string]string{"namespace": "default", "node": "node1", "pod": "pod1"}}},
			"sequenceNumber": 7, "deleted": false,
		},
	}
}

const calicoNode1 = `{"kind":"Node","apiVersion":"projectcalico.org/v3","metadata":{"name":"node1","uid":"7f1c3a52-0d4e-4b8a-9a11-2f3c4d5e6f70","creationTimestamp":"2024-05-01T10:00:00Z","labels":{"kubernetes.io/hostname":"node1","rack":"r1"},"annotations":{"projectcalico.org/kube-labels":"{}"}},"spec":{"bgp":{"ipv4Address":"10.0.0.1/24","ipv4IPIPTunnelAddr":"192.168.166.128"},"orchRefs":[{"nodeName":"node1","orchestrator":"k8s"}],"addresses":[{"address":"10.0.0.1/24","type":"CalicoNodeIP"}]},"status":{"podCIDRs":["10.244.0.0/24"]}}`

const calicoPool = `{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{"name":"default-ipv4-ippool","uid":"0a1b2c3d-0000-4000-8000-000000000001","creationTimestamp":"2024-05-01T09:59:00Z"},"spec":{"cidr":"192.168.0.0/16","vxlanMode":"Never","ipipMode":"Always","natOutgoing":true,"blockSize":26,"nodeSelector":"all()","allowedUses":["Workload","Tunnel"]}}`

const calicoPool6 = `{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{"name":"default-ipv6-ippool","uid":"0a1b2c3d-0000-4000-8000-000000000002","creationTimestamp":"2024-05-01T09:59:00Z"},"spec":{"cidr":"fd00:65::/48","vxlanMode":"Never","ipipMode":"Never","blockSize":122,"nodeSelector":"all()"}}`

func calicoEtcdKVs() [][2]string {
	blocks := calicoBlocks()
	return [][2]string{
		{"/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool", calicoPool},
		{"/calico/resources/v3/projectcalico.org/ippools/default-ipv6-ippool", calicoPool6},
		{"/calico/resources/v3/projectcalico.org/nodes/node1", calicoNode1},
		// Minimal JSON: kind, apiVersion and name come from the key.
		{"/calico/resources/v3/projectcalico.org/nodes/node2", `{"spec":{"bgp":{"ipv4Address":"10.0.0.2/24","asNumber":64513}}}`},
		{"/calico/ipam/v2/assignment/ipv4/block/192.168.166.128-26", mustJSON(blocks["192.168.166.128/26"])},
		{"/calico/ipam/v2/assignment/ipv4/block/192.168.10.0-26", mustJSON(blocks["192.168.10.0/26"])},
		{"/calico/ipam/v2/assignment/ipv6/block/fd00:65::-122", mustJSON(blocks["fd00:65::/122"])},
		{"/calico/ipam/v2/host/node1/ipv4/block/192.168.166.128-26", `{"state":"confirmed","deleted":false}`},
		{"/calico/ipam/v2/host/node1/ipv6/block/fd00:65::-122", ``}, // legacy: empty means confirmed
		{"/calico/ipam/v2/host/node2/ipv4/block/192.168.10.0-26", `{"state":"pending","deleted":false}`},
		{"/calico/ipam/v2/handle/k8s-pod-network.4c1a2b", `{"block":{"192.168.166.128/26":1,"fd00:65::/122":1},"deleted":false}`},
		{"/calico/ipam/v2/handle/ipip-tunnel-addr-node1", `{"block":{"192.168.166.128/26":1},"deleted":false}`},
	}
}

// calicoFileDocs is the same data as file datastore documents (a JSON
// array of v3-style resources), named as the etcd backend names them.
func calicoFileDocs() string {
	blocks := calicoBlocks()
	var docs []any
	add := func(kind, name string, spec any) {
		docs = append(docs, map[string]any{"kind": kind, "apiVersion": "projectcalico.org/v3", "metadata": map[string]any{"name": name}, "spec": spec})
	}
	for _, s := range []string{calicoPool, calicoPool6, calicoNode1} {
		var v any
		json.Unmarshal([]byte(s), &v)
		docs = append(docs, v)
	}
	add("Node", "node2", map[string]any{"bgp": map[string]any{"ipv4Address": "10.0.0.2/24", "asNumber": 64513}})
	add("IPAMBlock", "192-168-166-128-26", blocks["192.168.166.128/26"])
	add("IPAMBlock", "192-168-10-0-26", blocks["192.168.10.0/26"])
	add("IPAMBlock", "fd00-65---122", blocks["fd00:65::/122"])
	add("BlockAffinity", "node1-192-168-166-128-26", map[string]any{"node": "node1", "cidr": "192.168.166.128/26", "state": "confirmed"})
	add("BlockAffinity", "node1-fd00-65---122", map[string]any{"node": "node1", "cidr": "fd00:65::/122"})
	add("BlockAffinity", "node2-192-168-10-0-26", map[string]any{"node": "node2", "cidr": "192.168.10.0/26", "state": "pending"})
	add("IPAMHandle", "k8s-pod-network.4c1a2b", map[string]any{"block": map[string]int{"192.168.166.128/26": 1, "fd00:65::/122": 1}})
	add("IPAMHandle", "ipip-tunnel-addr-node1", map[string]any{"block": map[string]int{"192.168.166.128/26": 1}})
	b, _ := json.MarshalIndent(docs, "", "  ")
	return string(b)
}

var resourceVersionRE = regexp.MustCompile(`(?m)^\s*resourceVersion: .*\n`)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDatastoreCommands(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		rn := &runner{}
		out := rn.mustRun(t, b.args("apply", "-f", "testdata/resources.yaml")...)
		if out != "Successfully applied 12 resource(s)\n" {
			t.Errorf("apply: %q", out)
		}

		// calicoctl-like tables, identical for both backends.
		for _, g := range []struct{ name, args string }{
			{"get-nodes", "get nodes"},
			{"get-nodes-wide", "get node -o wide"},
			{"get-ippools", "get ippools"},
			{"get-ippools-wide", "get IPPool -o wide"},
			{"get-weps", "get workloadendpoints"},
			{"get-weps-all", "get wep -A"},
			{"get-weps-prod-wide", "get weps -n prod -o wide"},
			{"get-bgppeers", "get bgppeers"},
			{"get-bgppeers-wide", "get bgppeer -o wide"},
			{"get-bgpconfigs", "get bgpconfig"},
			{"get-bgpfilters", "get bgpfilters"},
			{"get-bgpfilters-wide", "get BGPFilter -o wide"},
			{"get-pool-by-name", "get pool default-ipv4-ippool"},
		} {
			golden(t, g.name, rn.mustRun(t, b.args(strings.Fields(g.args)...)...))
		}

		// get -o yaml of one resource: metadata stamped at creation.
		y := rn.mustRun(t, b.args("get", "ippool", "default-ipv4-ippool", "-o", "yaml")...)
		golden(t, "get-pool-yaml", resourceVersionRE.ReplaceAllString(y, ""))

		// get -o yaml round-trips into apply; nothing changes but revisions.
		before := rn.mustRun(t, b.args("get", "nodes", "-o", "yaml")...)
		rn.stdin = before
		if out := rn.mustRun(t, b.args("apply", "-f", "-")...); out != "Successfully applied 2 'Node' resource(s)\n" {
			t.Errorf("apply of get -o yaml: %q", out)
		}
		after := rn.mustRun(t, b.args("get", "nodes", "-o", "yaml")...)
		if resourceVersionRE.ReplaceAllString(after, "") != resourceVersionRE.ReplaceAllString(before, "") {
			t.Errorf("get -o yaml | apply changed the nodes:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		// So does -o json (a NodeList).
		rn.stdin = rn.mustRun(t, b.args("get", "nodes", "-o", "json")...)
		rn.mustRun(t, b.args("apply", "-f", "-")...)
		// A stale resourceVersion makes apply fail. (The file store counts
		// revisions from 1 in every process, so there it cannot be stale.)
		if b.name == "etcd" {
			rn.stdin = before
			if stderr := rn.mustFail(t, b.args("apply", "-f", "-")...); !strings.Contains(stderr, "nothing was applied") {
				t.Errorf("apply with stale resourceVersion: %q", stderr)
			}
		}

		// apply without uid/creationTimestamp keeps them.
		pool := writeFile(t, "pool.yaml", `apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: default-ipv4-ippool}
spec: {cidr: 192.168.0.0/16, ipipMode: CrossSubnet}
`)
		rn.mustRun(t, b.args("apply", "-f", pool)...)
		y = rn.mustRun(t, b.args("get", "ippool", "default-ipv4-ippool", "-o", "yaml")...)
		if !strings.Contains(y, "uid: 00000000-0000-4000-8000-000000000005") || !strings.Contains(y, "creationTimestamp: \"2026-01-02T03:04:05Z\"") || !strings.Contains(y, "ipipMode: CrossSubnet") {
			t.Errorf("apply lost metadata or did not update:\n%s", y)
		}

		// create fails on an existing resource and writes nothing.
		batch := writeFile(t, "batch.yaml", `apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: new-pool}
spec: {cidr: 10.70.0.0/16}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: default-ipv4-ippool}
spec: {cidr: 192.168.0.0/16}
`)
		stderr := rn.mustFail(t, b.args("create", "-f", batch)...)
		if !strings.Contains(stderr, `IPPool "default-ipv4-ippool" already exists`) {
			t.Errorf("create existing: %q", stderr)
		}
		if r := rn.run(t, b.args("get", "ippool", "new-pool")...); r.code == 0 {
			t.Errorf("failed create wrote new-pool: %v", r)
		}
		// replace fails on a missing one and writes nothing.
		stderr = rn.mustFail(t, b.args("replace", "-f", batch)...)
		if !strings.Contains(stderr, `IPPool "new-pool" does not exist`) {
			t.Errorf("replace missing: %q", stderr)
		}
		if y := rn.mustRun(t, b.args("get", "ippool", "default-ipv4-ippool", "-o", "yaml")...); !strings.Contains(y, "CrossSubnet") {
			t.Errorf("failed replace changed default-ipv4-ippool:\n%s", y)
		}
		// replace of an existing one works and keeps the uid.
		rn.mustRun(t, b.args("replace", "-f", pool)...)
		// create of new ones works.
		newPool := writeFile(t, "new.json", `[{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{"name":"new-pool"},"spec":{"cidr":"10.70.0.0/16"}}]`)
		if out := rn.mustRun(t, b.args("create", "-f", newPool)...); out != "Successfully created 1 'IPPool' resource(s)\n" {
			t.Errorf("create: %q", out)
		}

		// An invalid document anywhere in a batch: nothing is written and
		// the error names file:line, kind, name, field and value.
		invalid := writeFile(t, "invalid.yaml", `apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: other-pool}
spec: {cidr: 10.80.0.0/16}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: bad-pool
spec:
  cidr: 10.0.0.300/24
`)
		stderr = rn.mustFail(t, b.args("apply", "-f", invalid)...)
		for _, want := range []string{"nothing was written", invalid + ":6 (document 2)", `IPPool "bad-pool"`, `spec.cidr="10.0.0.300/24"`} {
			if !strings.Contains(stderr, want) {
				t.Errorf("invalid batch: stderr lacks %q:\n%s", want, stderr)
			}
		}
		if r := rn.run(t, b.args("get", "ippool", "other-pool")...); r.code == 0 {
			t.Errorf("invalid batch wrote other-pool: %v", r)
		}
		syntax := writeFile(t, "syntax.yaml", "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: x\n   bad: [\n")
		if stderr := rn.mustFail(t, b.args("apply", "-f", syntax)...); !strings.Contains(stderr, syntax+":5") {
			t.Errorf("YAML syntax error without file:line: %q", stderr)
		}
		if stderr := rn.mustFail(t, b.args("get", "ipools")...); !strings.Contains(stderr, "valid kinds") || !strings.Contains(stderr, "IPPool (ippool, ippools") {
			t.Errorf("unknown kind: %q", stderr)
		}
		if stderr := rn.mustFail(t, b.args("get", "ippool", "nope")...); !strings.Contains(stderr, `IPPool "nope" not found`) {
			t.Errorf("get missing: %q", stderr)
		}

		// delete by file, by name, by namespace and name.
		if out := rn.mustRun(t, b.args("delete", "-f", newPool)...); out != "Successfully deleted 1 'IPPool' resource(s)\n" {
			t.Errorf("delete -f: %q", out)
		}
		if stderr := rn.mustFail(t, b.args("delete", "-f", newPool)...); !strings.Contains(stderr, "does not exist") {
			t.Errorf("delete -f twice: %q", stderr)
		}
		rn.mustRun(t, b.args("delete", "-f", newPool, "--skip-not-exists")...)
		rn.mustRun(t, b.args("delete", "bgppeer", "tor", "node1-rr")...)
		if out := rn.mustRun(t, b.args("get", "bgppeers")...); strings.Contains(out, "tor") || !strings.Contains(out, "rack-peering") {
			t.Errorf("after delete bgppeer tor node1-rr:\n%s", out)
		}
		if stderr := rn.mustFail(t, b.args("delete", "wep", "node2-k8s-web-eth0")...); !strings.Contains(stderr, `"default/node2-k8s-web-eth0" does not exist`) {
			t.Errorf("delete wep in the wrong namespace: %q", stderr)
		}
		rn.mustRun(t, b.args("delete", "wep", "-n", "prod", "node2-k8s-web-eth0")...)
		if out := rn.mustRun(t, b.args("get", "wep", "-A")...); strings.Contains(out, "web") {
			t.Errorf("wep not deleted:\n%s", out)
		}
		// delete of several where one is missing deletes nothing.
		if stderr := rn.mustFail(t, b.args("delete", "node", "node1", "nope")...); !strings.Contains(stderr, `Node "nope" does not exist`) {
			t.Errorf("delete node1 nope: %q", stderr)
		}
		rn.mustRun(t, b.args("get", "node", "node1")...)

		// The environment selects the datastore when no flag is given.
		envRunner := &runner{env: b.env}
		if out := envRunner.mustRun(t, "get", "nodes"); !strings.Contains(out, "node1") {
			t.Errorf("datastore from environment: %q", out)
		}
	})
}

func TestCalicoShapedData(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		b.seedCalico(t)
		rn := &runner{}
		for _, g := range []struct{ name, args string }{
			{"calico-get-nodes-wide", "get nodes -o wide"},
			{"calico-get-ippools-wide", "get ippools -o wide"},
			{"calico-get-blocks", "get ipamblocks"},
			{"calico-get-blocks-wide", "get blocks -o wide"},
			{"calico-get-affinities", "get blockaffinities -o wide"},
			{"calico-get-handles", "get ipamhandles"},
			{"calico-ipam-show", "ipam show"},
			{"calico-ipam-show-blocks", "ipam show --show-blocks"},
			{"calico-ipam-show-blocks-yaml", "ipam show --show-blocks -o yaml"},
		} {
			golden(t, g.name, rn.mustRun(t, b.args(strings.Fields(g.args)...)...))
		}
		// The other tool's metadata shows, and survives an apply.
		y := rn.mustRun(t, b.args("get", "node", "node1", "-o", "yaml")...)
		for _, want := range []string{"uid: 7f1c3a52-0d4e-4b8a-9a11-2f3c4d5e6f70", "creationTimestamp: \"2024-05-01T10:00:00Z\"", "ipv4IPIPTunnelAddr: 192.168.166.128", "podCIDRs:"} {
			if !strings.Contains(y, want) {
				t.Errorf("get node node1 -o yaml lacks %q:\n%s", want, y)
			}
		}
		node := writeFile(t, "node.yaml", `apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node1}
spec:
  bgp: {ipv4Address: 10.0.0.1/24, asNumber: 64520}
`)
		rn.mustRun(t, b.args("apply", "-f", node)...)
		y = rn.mustRun(t, b.args("get", "node", "node1", "-o", "yaml")...)
		if !strings.Contains(y, "uid: 7f1c3a52-0d4e-4b8a-9a11-2f3c4d5e6f70") || !strings.Contains(y, "asNumber: 64520") {
			t.Errorf("apply over Calico's node lost uid or did not update:\n%s", y)
		}
		if b.name == "etcd" {
			raw := b.raw(t, "/calico/resources/v3/projectcalico.org/nodes/node1")
			if !strings.Contains(raw, `"creationTimestamp":"2024-05-01T10:00:00Z"`) || !strings.Contains(raw, `"kind":"Node"`) {
				t.Errorf("stored node: %s", raw)
			}
		}
		// IPAM records by name.
		for _, args := range [][]string{
			{"get", "ipamblock", "192.168.166.128/26", "-o", "json"},
			{"get", "block", "192.168.166.128-26"},
			{"get", "affinity", "node1/192.168.166.128/26"},
			{"get", "handle", "k8s-pod-network.4c1a2b", "-o", "yaml"},
		} {
			rn.mustRun(t, b.args(args...)...)
		}
		// Blocks can be deleted by CIDR.
		rn.mustRun(t, b.args("delete", "ipamblock", "192.168.10.0/26")...)
		if out := rn.mustRun(t, b.args("get", "ipamblocks")...); strings.Contains(out, "192.168.10.0/26") {
			t.Errorf("block not deleted:\n%s", out)
		}
		if b.name == "etcd" {
			if raw := b.raw(t, "/calico/ipam/v2/assignment/ipv4/block/192.168.10.0-26"); raw != "" {
				t.Errorf("block still stored: %s", raw)
			}
		}
	})
}

// TestEtcdTLSAndAuth: the TLS and credential flags, and their Calico
// environment variables, reach etcd.
func TestEtcdTLSAndAuth(t *testing.T) {
	certs := etcdtest.GenerateCerts(t)
	e := etcdtest.StartWithOptions(t, certs.Options(true))
	e.Ctl(t, "user", "add", "root:r00t-secret")
	e.Ctl(t, "auth", "enable")
	e.SetAuth("root", "r00t-secret")

	flags := []string{"--datastore-type", "etcdv3", "--etcd-endpoints", e.Endpoint(),
		"--etcd-ca-cert-file", certs.CAFile, "--etcd-cert-file", certs.ClientCert, "--etcd-key-file", certs.ClientKey,
		"--etcd-username", "root", "--etcd-password", "r00t-secret"}
	rn := &runner{}
	rn.mustRun(t, append([]string{"apply", "-f", "testdata/resources.yaml"}, flags...)...)
	if out := rn.mustRun(t, append([]string{"get", "nodes"}, flags...)...); !strings.Contains(out, "node2") {
		t.Errorf("get nodes over TLS: %q", out)
	}
	envRunner := &runner{env: map[string]string{
		"ETCD_ENDPOINTS": e.Endpoint(), "ETCD_CA_CERT_FILE": certs.CAFile,
		"ETCD_CERT_FILE": certs.ClientCert, "ETCD_KEY_FILE": certs.ClientKey,
		"ETCD_USERNAME": "root", "ETCD_PASSWORD": "r00t-secret",
	}}
	if out := envRunner.mustRun(t, "get", "ippools"); !strings.Contains(out, "default-ipv4-ippool") {
		t.Errorf("get ippools with the environment: %q", out)
	}
	// A wrong password fails and is not printed.
	stderr := rn.mustFail(t, append([]string{"get", "nodes"}, append(flags[:len(flags)-1:len(flags)-1], "wrong-secret")...)...)
	if strings.Contains(stderr, "wrong-secret") {
		t.Errorf("error shows the password: %q", stderr)
	}
}

// TestLargeBatch: more resources than etcd takes in one transaction.
func TestLargeBatch(t *testing.T) {
	var b strings.Builder
	for i := range 130 {
		fmt.Fprintf(&b, "---\nkind: IPPool\napiVersion: projectcalico.org/v3\nmetadata: {name: pool-%03d}\nspec: {cidr: 10.%d.%d.0/24}\n", i, 100+i/256, i%256)
	}
	file := writeFile(t, "many.yaml", b.String())
	forEachBackend(t, func(t *testing.T, be *backend) {
		rn := &runner{}
		r := rn.run(t, be.args("apply", "-f", file)...)
		warned := strings.Contains(r.stderr, "transactions of 128")
		if r.code != 0 || r.stdout != "Successfully applied 130 'IPPool' resource(s)\n" || warned != (be.name == "etcd") {
			t.Fatalf("apply 130 pools: %v", r)
		}
		if out := rn.mustRun(t, be.args("get", "ippools")...); strings.Count(out, "\n") != 131 {
			t.Errorf("get ippools: %d lines", strings.Count(out, "\n"))
		}
		rn.mustRun(t, be.args("delete", "-f", file)...)
		if out := rn.mustRun(t, be.args("get", "ippools")...); strings.Count(out, "\n") != 1 {
			t.Errorf("after delete:\n%s", out)
		}
	})
}

// TestIPAMShowBorrowedAndConfig: ipam show --show-borrowed lists the
// addresses held for another node than their block's, like calicoctl;
// the IPAMConfiguration is applied to Calico's /calico/ipam/v2/config.
func TestIPAMShowBorrowedAndConfig(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		rn := &runner{}
		f := writeFile(t, "ipam.yaml", `apiVersion: projectcalico.org/v3
kind: IPAMBlock
metadata: {name: b1}
spec:
  cidr: 10.65.0.0/30
  affinity: host:node1
  allocations: [0, 1, 2, 3]
  unallocated: []
  attributes:
  - {handle_id: h0, secondary: {node: node1}}
  - {handle_id: h1, secondary: {node: node2, namespace: default, pod: web}}
  - {handle_id: vxlan-tunnel-addr-node3, secondary: {node: node3, type: vxlanTunnelAddress}}
  - {handle_id: h3}
  strictAffinity: false
  deleted: false
---
apiVersion: projectcalico.org/v3
kind: IPAMBlock
metadata: {name: b2}
spec:
  cidr: fd00:65::/126
  affinity: host:node2
  allocations: [0, null, null, null]
  unallocated: [1, 2, 3]
  attributes:
  - {handle_id: h4, secondary: {node: node1, namespace: prod, pod: db}}
  strictAffinity: false
  deleted: false
---
apiVersion: projectcalico.org/v3
kind: IPAMConfiguration
metadata: {name: default}
spec: {strictAffinity: true, maxBlocksPerHost: 4}
`)
		rn.mustRun(t, b.args("apply", "-f", f)...)
		golden(t, "ipam-show-borrowed", rn.mustRun(t, b.args("ipam", "show", "--show-borrowed")...))
		// ipam show --ip: one address, as calicoctl shows it, plus its block.
		golden(t, "ipam-show-ip", rn.mustRun(t, b.args("ipam", "show", "--ip", "10.65.0.1")...))
		for _, tc := range []struct{ ip, want string }{
			{"10.65.0.3", "IP 10.65.0.3 is in use\nHandle ID: h3\nNo Active Owner attributes defined\nBlock: 10.65.0.0/30 (affinity host:node1)\n"},
			{"fd00:65::2", "fd00:65::2 is not assigned\n"}, // in a block, free
			{"10.99.0.1", "10.99.0.1 is not assigned\n"},   // in no block
		} {
			if out := rn.mustRun(t, b.args("ipam", "show", "--ip", tc.ip)...); out != tc.want {
				t.Errorf("ipam show --ip %s:\n%s\nwant:\n%s", tc.ip, out, tc.want)
			}
		}
		out := rn.mustRun(t, b.args("ipam", "show", "--ip", "fd00:65::", "-o", "json")...)
		for _, want := range []string{`"inUse": true`, `"block": "fd00:65::/126"`, `"blockAffinity": "host:node2"`, `"handleID": "h4"`, `"pod": "db"`} {
			if !strings.Contains(out, want) {
				t.Errorf("ipam show --ip -o json lacks %s:\n%s", want, out)
			}
		}
		if stderr := rn.mustFail(t, b.args("ipam", "show", "--ip", "10.65.0.300")...); !strings.Contains(stderr, "not an IPv4 or IPv6 address") {
			t.Errorf("bad --ip: %q", stderr)
		}
		if stderr := rn.mustFail(t, b.args("ipam", "show", "--ip", "10.65.0.1", "--show-blocks")...); !strings.Contains(stderr, "--ip excludes") {
			t.Errorf("--ip with --show-blocks: %q", stderr)
		}
		out = rn.mustRun(t, b.args("ipam", "show", "--show-borrowed", "-o", "json")...)
		for _, want := range []string{`"ip": "10.65.0.1"`, `"borrowingNode": "node2"`, `"blockOwner": "node1"`, `"allocatedTo": "prod/db"`, `"unclassified": 1`} {
			if !strings.Contains(out, want) {
				t.Errorf("json lacks %s:\n%s", want, out)
			}
		}
		if out := rn.mustRun(t, b.args("get", "ipamconfig", "default")...); !strings.Contains(out, "true") || !strings.Contains(out, "4") {
			t.Errorf("get ipamconfig:\n%s", out)
		}
		if stderr := rn.mustFail(t, b.args("ipam", "show", "--show-borrowed", "--show-blocks")...); !strings.Contains(stderr, "exclude each other") {
			t.Errorf("both flags: %q", stderr)
		}
		if b.name == "etcd" {
			if raw := b.raw(t, "/calico/ipam/v2/config"); raw != `{"strict_affinity":true,"auto_allocate_blocks":true,"maxBlocksPerHost":4}` {
				t.Errorf("stored IPAM config: %s", raw)
			}
		}
	})
}

// A broken object is shown as such, exists for create, and apply, replace
// and delete fix it.
func TestBrokenObject(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		rn := &runner{}
		b.putInvalid(t, "bad", "10.300.0.0/16")
		r := rn.run(t, b.args("get", "ippools")...)
		if r.code != 0 || !strings.Contains(r.stderr, "present but broken") || !strings.Contains(r.stderr, `spec.cidr="10.300.0.0/16"`) {
			t.Fatalf("get of a broken pool: %v", r)
		}
		pool := writeFile(t, "pool.yaml", "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: bad}\nspec: {cidr: 10.30.0.0/16}\n")
		if msg := rn.mustFail(t, b.args("create", "-f", pool)...); !strings.Contains(msg, "already exists") {
			t.Errorf("create over a broken pool: %s", msg)
		}
		rn.mustRun(t, b.args("apply", "-f", pool)...)
		if out := rn.mustRun(t, b.args("get", "ippool", "bad", "-o", "yaml")...); !strings.Contains(out, "10.30.0.0/16") {
			t.Errorf("after apply: %s", out)
		}
		b.putInvalid(t, "bad", "10.300.0.0/16")
		rn.mustRun(t, b.args("replace", "-f", pool)...)
		b.putInvalid(t, "bad", "10.300.0.0/16")
		rn.mustRun(t, b.args("delete", "ippool", "bad")...)
		if r := rn.run(t, b.args("get", "ippool", "bad")...); r.code == 0 {
			t.Errorf("still there after delete: %v", r)
		}
	})
}

package etcd

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/contract"
	"github.com/roostnet/roost/internal/etcdtest"
)

// calicoBlock is an IPAM block as Calico writes it: 64
// allocations, the first two taken.
func calicoBlock() string {
	allocs := []string{"0", "1"}
	var unalloc []string
	for i := 2; i < 64; i++ {
		allocs = append(allocs, "null")
		unalloc = append(unalloc, fmt.Sprint(i))
	}
	return `{"cidr":"192.168.166.128/26","affinity":"host:node1","strictAffinity":false,` +
		`"allocations":[` + strings.Join(allocs, ",") + `],` +
		`"unallocated":[` + strings.Join(unalloc, ",") + `],` +
		`"attributes":[{"handle_id":"h1","secondary":{"node":"node1"}},{"handle_id":"h2","secondary":{"namespace":"default","node":"node1","pod":"web-1","timestamp":"2024-05-01 10:00:00.1 +0000 UTC"}}],` +
		`"sequenceNumber":3,"sequenceNumberForAllocation":{"0":1,"1":2},"deleted":false}`
}

const (
	rp = datastore.ResourcePrefix

	calicoNode = `{"kind":"Node","apiVersion":"projectcalico.org/v3","metadata":{"name":"node1","uid":"6f1c1a4e-5d2e-4f0a-9a4b-0c6d2b3f1e11","creationTimestamp":"2024-05-01T10:00:00Z","labels":{"kubernetes.io/hostname":"node1","rack":"r1"}},` +
		`"spec":{"bgp":{"ipv4Address":"10.0.0.1/24","ipv4IPIPTunnelAddr":"192.168.166.128"},"orchRefs":[{"nodeName":"node1","orchestrator":"k8s"}],"someFutureField":{"x":1}},"status":{"podCIDRs":["10.244.0.0/24"]}}`
	calicoConfig = `{"kind":"BGPConfiguration","apiVersion":"projectcalico.org/v3","metadata":{"name":"default","uid":"0b0a8c33-8d47-4d65-8b6c-3c1d5e0e2c7a","creationTimestamp":"2024-05-01T10:00:00Z"},` +
		`"spec":{"logSeverityScreen":"Info","nodeToNodeMeshEnabled":false,"asNumber":65001,"serviceClusterIPs":[{"cidr":"10.96.0.0/12"}]}}`
	calicoPool = `{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{"name":"default-ipv4-ippool","uid":"3c9e3f8e-1111-4b8a-9d77-0d0e7a9f7c21","creationTimestamp":"2024-05-01T10:00:00Z"},` +
		`"spec":{"cidr":"192.168.0.0/16","vxlanMode":"Never","ipipMode":"Always","natOutgoing":true,"blockSize":26,"nodeSelector":"all()","allowedUses":["Workload","Tunnel"]}}`
	calicoPeer = `{"kind":"BGPPeer","apiVersion":"projectcalico.org/v3","metadata":{"name":"tor","uid":"9d4f7f3a-2222-4c1e-8e5a-6a7b8c9d0e1f","creationTimestamp":"2024-05-01T10:00:00Z"},` +
		`"spec":{"peerIP":"10.0.0.254","asNumber":65000,"keepOriginalNextHop":true}}`
	calicoWEP = `{"kind":"WorkloadEndpoint","apiVersion":"projectcalico.org/v3","metadata":{"name":"node1-k8s-web--1-eth0","namespace":"default","uid":"1e2d3c4b-3333-4a5b-8c7d-9e0f1a2b3c4d","creationTimestamp":"2024-05-01T10:00:00Z","labels":{"app":"web","projectcalico.org/namespace":"default"}},` +
		`"spec":{"orchestrator":"k8s","node":"node1","containerID":"abc","pod":"web-1","endpoint":"eth0","ipNetworks":["192.168.166.129/32"],"profiles":["kns.default"],"interfaceName":"cali1234567890a","mac":"ee:ee:ee:ee:ee:ee"}}`
)

// TestCalicoJSON reads values written by Calico (directly with the etcd
// client, in Calico's exact JSON), including minimal values.
func TestCalicoJSON(t *testing.T) {
	e := etcdtest.Start(t)
	cli := e.Client(t)
	s := newStore(t, e)
	ctx := ctxFor(t, 30*time.Second)

	keys := map[string]string{
		datastore.BlockPrefix + "ipv4/block/192.168.166.128-26":      calicoBlock(),
		datastore.HostPrefix + "node1/ipv4/block/192.168.166.128-26": `{"state":"confirmed","deleted":false}`,
		datastore.HostPrefix + "node1/ipv4/block/192.168.166.192-26": ``, // legacy: confirmed
		datastore.HostPrefix + "node2/ipv4/block/192.168.167.0-26":   `{"state":"pending","deleted":false}`,
		datastore.HostPrefix + "node2/ipv6/block/fd00:1::-122":       `{"state":"confirmed","deleted":false}`,
		datastore.HandlePrefix + "k8s-pod-network.abc":               `{"block":{"192.168.166.128/26":1},"deleted":false}`,
		rp + "nodes/node1":                                     calicoNode,
		rp + "bgpconfigurations/default":                       calicoConfig,
		rp + "ippools/default-ipv4-ippool":                     calicoPool,
		rp + "bgppeers/tor":                                    calicoPeer,
		rp + "workloadendpoints/default/node1-k8s-web--1-eth0": calicoWEP,
		// Minimal values: just a spec, the name comes from the key.
		rp + "nodes/node2":                                      `{"spec":{"bgp":{"ipv4Address":"10.0.0.2/24","asNumber":65002}}}`,
		rp + "bgppeers/minimal":                                 `{"spec":{"peerIP":"10.0.0.253","asNumber":65003}}`,
		rp + "ippools/minimal":                                  `{"spec":{"cidr":"10.244.0.0/16"}}`,
		rp + "bgpconfigurations/node.node1":                     `{"spec":{"listenPort":1790}}`,
		rp + "bgpfilters/minimal":                               `{"spec":{"exportV4":[{"action":"Accept","cidr":"10.0.0.0/8","matchOperator":"In"}]}}`,
		rp + "workloadendpoints/kube-system/node2-k8s-dns-eth0": `{"spec":{"node":"node2","ipNetworks":["192.168.167.1/32"]}}`,
		// What `calicoctl ipam configure --strictaffinity=true` writes.
		datastore.IPAMConfigKey: `{"strict_affinity":true,"auto_allocate_blocks":true}`,
		// The profile Calico's namespace controller writes (labels for
		// IPPool namespaceSelector; rules kept as they are).
		rp + "profiles/kns.default": `{"kind":"Profile","apiVersion":"projectcalico.org/v3","metadata":{"name":"kns.default"},"spec":{"ingress":[{"action":"Allow","destination":{}}],"egress":[{"action":"Allow","destination":{}}],"labelsToApply":{"pcns.projectcalico.org/name":"default"}}}`,
		// Calico keys Roost does not model: skipped, not invalid.
		rp + "felixconfigurations/default": `{"kind":"FelixConfiguration","spec":{"bpfEnabled":false}}`,
	}
	for k, v := range keys {
		put(t, cli, k, v)
	}

	get := func(key string) api.Resource {
		t.Helper()
		kv, err := s.Get(ctx, key)
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		return kv.Value
	}

	b := get(datastore.BlockPrefix + "ipv4/block/192.168.166.128-26").(*api.IPAMBlock)
	if b.Spec.CIDR != "192.168.166.128/26" || b.Spec.AffinityNode() != "node1" || len(b.Spec.Allocations) != 64 ||
		b.Spec.Allocations[1] == nil || *b.Spec.Allocations[1] != 1 || b.Spec.Allocations[2] != nil ||
		len(b.Spec.Unallocated) != 62 || b.Spec.Unallocated[0] != 2 || b.Spec.SequenceNumber != 3 ||
		len(b.Spec.Attributes) != 2 || *b.Spec.Attributes[0].HandleID != "h1" || b.Spec.Attributes[1].Secondary["pod"] != "web-1" {
		t.Fatalf("block: %+v", b.Spec)
	}
	if b.Spec.SequenceNumberForAllocation["1"] != 2 {
		t.Fatalf("block sequenceNumberForAllocation: %v", b.Spec.SequenceNumberForAllocation)
	}

	for key, want := range map[string]bool{
		datastore.HostPrefix + "node1/ipv4/block/192.168.166.128-26": true,
		datastore.HostPrefix + "node1/ipv4/block/192.168.166.192-26": true,
		datastore.HostPrefix + "node2/ipv4/block/192.168.167.0-26":   false,
		datastore.HostPrefix + "node2/ipv6/block/fd00:1::-122":       true,
	} {
		a := get(key).(*api.BlockAffinity)
		if a.Confirmed() != want || a.Spec.Node == "" || a.Spec.CIDR == "" {
			t.Errorf("%s: %+v confirmed=%v, want %v", key, a.Spec, a.Confirmed(), want)
		}
		if k, err := datastore.KeyFor(a); err != nil || k != key {
			t.Errorf("%s: affinity maps back to %q (%v)", key, k, err)
		}
	}

	h := get(datastore.HandlePrefix + "k8s-pod-network.abc").(*api.IPAMHandle)
	if h.Metadata.Name != "k8s-pod-network.abc" || h.Spec.Block["192.168.166.128/26"] != 1 {
		t.Fatalf("handle: %+v %+v", h.Metadata, h.Spec)
	}

	n := get(rp + "nodes/node1").(*api.Node)
	if n.Metadata.Name != "node1" || n.Metadata.UID == "" || n.Metadata.CreationTimestamp == nil ||
		n.Spec.BGP.IPv4Address != "10.0.0.1/24" || n.Spec.BGP.IPv4IPIPTunnelAddr != "192.168.166.128" ||
		n.Metadata.Labels["rack"] != "r1" || len(n.Status.PodCIDRs) != 1 {
		t.Fatalf("node1: %+v %+v", n.Metadata, n.Spec.BGP)
	}
	c := get(rp + "bgpconfigurations/default").(*api.BGPConfiguration)
	if *c.Spec.ASNumber != 65001 || *c.Spec.NodeToNodeMeshEnabled || c.Spec.LogSeverityScreen != "Info" {
		t.Fatalf("bgp configuration: %+v", c.Spec)
	}
	p := get(rp + "ippools/default-ipv4-ippool").(*api.IPPool)
	if p.Spec.IPIPMode != api.EncapAlways || p.Spec.BlockSize != 26 || !p.Spec.NATOutgoing {
		t.Fatalf("pool: %+v", p.Spec)
	}
	w := get(rp + "workloadendpoints/default/node1-k8s-web--1-eth0").(*api.WorkloadEndpoint)
	if w.Metadata.Namespace != "default" || w.Spec.IPNetworks[0] != "192.168.166.129/32" {
		t.Fatalf("wep: %+v %+v", w.Metadata, w.Spec)
	}

	ic := get(datastore.IPAMConfigKey).(*api.IPAMConfiguration)
	if ic.Metadata.Name != api.DefaultIPAMConfigName || !ic.Spec.StrictAffinity || !ic.Spec.AutoAllocate() || ic.Spec.MaxBlocksPerHost != 0 {
		t.Fatalf("IPAM config: %+v %+v", ic.Metadata, ic.Spec)
	}

	// Minimal values: names (and namespaces) from the key, defaults applied.
	n2 := get(rp + "nodes/node2").(*api.Node)
	if n2.Metadata.Name != "node2" || *n2.Spec.BGP.ASNumber != 65002 {
		t.Fatalf("minimal node: %+v %+v", n2.Metadata, n2.Spec.BGP)
	}
	mp := get(rp + "ippools/minimal").(*api.IPPool)
	if mp.Metadata.Name != "minimal" || mp.Spec.BlockSize != 26 || mp.Spec.IPIPMode != api.EncapNever || mp.Spec.NodeSelector != "all()" {
		t.Fatalf("minimal pool (defaults): %+v", mp.Spec)
	}
	if nc := get(rp + "bgpconfigurations/node.node1").(*api.BGPConfiguration); nc.Metadata.Name != "node.node1" || nc.Spec.ListenPort != 1790 || nc.Spec.ASNumber != nil {
		t.Fatalf("minimal node bgp configuration: %+v %+v", nc.Metadata, nc.Spec)
	}
	if f := get(rp + "bgpfilters/minimal").(*api.BGPFilter); len(f.Spec.ExportV4) != 1 {
		t.Fatalf("minimal filter: %+v", f.Spec)
	}
	if mw := get(rp + "workloadendpoints/kube-system/node2-k8s-dns-eth0").(*api.WorkloadEndpoint); mw.Metadata.Namespace != "kube-system" || mw.Metadata.Name != "node2-k8s-dns-eth0" {
		t.Fatalf("minimal wep: %+v", mw.Metadata)
	}
	if mpeer := get(rp + "bgppeers/minimal").(*api.BGPPeer); mpeer.Spec.ASNumber != 65003 {
		t.Fatalf("minimal peer: %+v", mpeer.Spec)
	}
	if prof := get(rp + "profiles/kns.default").(*api.Profile); len(prof.Spec.Ingress) != 1 || prof.Spec.LabelsToApply["pcns.projectcalico.org/name"] != "default" {
		t.Fatalf("profile: %+v", prof.Spec)
	}

	// Listing: every modelled key, nothing invalid, foreign keys skipped.
	lr, err := s.List(ctx, "/calico/")
	if err != nil {
		t.Fatal(err)
	}
	if len(lr.Invalid) != 0 || len(lr.KVs) != len(keys)-1 {
		t.Fatalf("list /calico/: %d values, invalid %v; want %d", len(lr.KVs), lr.Invalid, len(keys)-1)
	}
	aff, err := s.List(ctx, datastore.HostAffinityPrefix("node1"))
	if err != nil || len(aff.KVs) != 2 {
		t.Fatalf("node1 affinities: %v %v", aff, err)
	}

	// The watch sees the same.
	rec := contract.NewRecorder(t, s, datastore.IPAMPrefix, 0, nil, 10*time.Second)
	rec.WaitSynced()
	if len(rec.View) != 7 || rec.Count(datastore.Error, false) != 0 {
		t.Fatalf("IPAM watch:\n%s", rec.Dump())
	}

	// Read-modify-write keeps Calico's metadata.
	kv, err := s.Get(ctx, rp+"nodes/node1")
	if err != nil {
		t.Fatal(err)
	}
	n = kv.Value.(*api.Node)
	n.Spec.BGP.IPv4Address = "10.0.0.11/24"
	if _, err := s.Update(ctx, kv); err != nil {
		t.Fatal(err)
	}
	raw, err := cli.Get(ctx, rp+"nodes/node1")
	if err != nil {
		t.Fatal(err)
	}
	stored := string(raw.Kvs[0].Value)
	for _, want := range []string{`"kind":"Node"`, `"apiVersion":"projectcalico.org/v3"`, `"uid":"6f1c1a4e-5d2e-4f0a-9a4b-0c6d2b3f1e11"`, `"creationTimestamp":"2024-05-01T10:00:00Z"`, `"10.0.0.11/24"`, `"podCIDRs"`} {
		if !strings.Contains(stored, want) {
			t.Errorf("stored node lacks %s: %s", want, stored)
		}
	}
	if strings.Contains(stored, "resourceVersion") {
		t.Errorf("resourceVersion stored: %s", stored)
	}

	// IPAM values are stored bare, as Calico does.
	hkv, _ := s.Get(ctx, datastore.HandlePrefix+"k8s-pod-network.abc")
	hkv.Value.(*api.IPAMHandle).Spec.Block["192.168.166.128/26"] = 2
	if _, err := s.Update(ctx, hkv); err != nil {
		t.Fatal(err)
	}
	raw, _ = cli.Get(ctx, datastore.HandlePrefix+"k8s-pod-network.abc")
	if got := string(raw.Kvs[0].Value); got != `{"block":{"192.168.166.128/26":2},"deleted":false}` {
		t.Errorf("stored handle: %s", got)
	}
	akv, _ := s.Get(ctx, datastore.HostPrefix+"node2/ipv4/block/192.168.167.0-26")
	akv.Value.(*api.BlockAffinity).Spec.State = api.AffinityConfirmed
	if _, err := s.Update(ctx, akv); err != nil {
		t.Fatal(err)
	}
	raw, _ = cli.Get(ctx, datastore.HostPrefix+"node2/ipv4/block/192.168.167.0-26")
	if got := string(raw.Kvs[0].Value); got != `{"state":"confirmed","deleted":false}` {
		t.Errorf("stored affinity: %s", got)
	}
}

// TestInvalidValues: a value that does not decode is present and broken:
// Get returns a DecodeError, List reports it in Invalid and Watch as a
// Broken event (in the listing too), each naming key, field and value,
// without affecting the others. A key no object can have is ignored.
func TestInvalidValues(t *testing.T) {
	e := etcdtest.Start(t)
	cli := e.Client(t)
	s := newStore(t, e)
	ctx := ctxFor(t, 30*time.Second)
	nodes := datastore.KindPrefix(api.KindNode)

	bad := map[string]string{
		nodes + "bad-json":  `{not json`,
		nodes + "bad-field": `{"spec":{"bgp":{"ipv4Address":"10.0.0.300/24"}}}`,
		nodes + "bad-type":  `{"spec":{"bgp":{"asNumber":"sixty"}}}`,
		nodes + "a/b":       `{"spec":{}}`, // not a node key
	}
	for k, v := range bad {
		put(t, cli, k, v)
	}
	delete(bad, nodes+"a/b")
	put(t, cli, nodes+"good", `{"spec":{"bgp":{"ipv4Address":"10.0.0.1/24"}}}`)

	_, err := s.Get(ctx, nodes+"bad-field")
	var de *datastore.DecodeError
	if !errors.As(err, &de) || de.Key != nodes+"bad-field" || !strings.Contains(err.Error(), "spec.bgp.ipv4Address") ||
		de.Field != "spec.bgp.ipv4Address" || de.Value != `"10.0.0.300/24"` || de.Revision == 0 {
		t.Fatalf("get of an invalid value: %v (%+v)", err, de)
	}

	lr, err := s.List(ctx, nodes)
	if err != nil {
		t.Fatal(err)
	}
	if len(lr.KVs) != 1 || lr.KVs[0].Key != nodes+"good" {
		t.Fatalf("list: %+v", lr.KVs)
	}
	if len(lr.Invalid) != len(bad) {
		t.Fatalf("list: invalid %v, want %d", lr.Invalid, len(bad))
	}
	for _, d := range lr.Invalid {
		if _, ok := bad[d.Key]; !ok || d.Err == nil {
			t.Fatalf("list: invalid entry %v", d)
		}
	}

	rec := contract.NewRecorder(t, s, nodes, 0, nil, 10*time.Second)
	rec.WaitSynced()
	if len(rec.View) != 1+len(bad) || rec.Count(datastore.Broken, false) != len(bad) {
		t.Fatalf("watch listing:\n%s", rec.Dump())
	}
	for _, ev := range rec.Events {
		if ev.Type == datastore.Broken {
			if _, ok := bad[ev.Key]; !ok {
				t.Fatalf("broken event without the bad key: %+v", ev)
			}
		}
	}
	if d := rec.Diff(s, nodes); d != "" {
		t.Fatalf("view and listing differ:\n%s", d)
	}

	// While watching: a bad write is a Broken event naming the key; later
	// good writes still arrive.
	put(t, cli, nodes+"good", `{"spec":{"bgp":{"ipv4Address":"nope"}}}`)
	rev := put(t, cli, nodes+"new", `{"spec":{}}`)
	rec.Until("node new", func() bool { return rec.View[nodes+"new"].Revision == rev })
	i := rec.Index(0, func(ev datastore.Event) bool { return ev.Type == datastore.Broken && ev.Key == nodes+"good" })
	if i < 0 || !errors.As(rec.Events[i].Err, &de) || de.Field != "spec.bgp.ipv4Address" || de.Value != `"nope"` {
		t.Fatalf("no broken event for the bad update:\n%s", rec.Dump())
	}
	if rec.View[nodes+"good"].Type != datastore.Broken {
		t.Fatalf("the broken key is not in the view as broken:\n%s", rec.Dump())
	}
	// Fixing a bad value delivers it.
	rev = put(t, cli, nodes+"bad-json", `{"spec":{}}`)
	rec.Until("bad-json fixed", func() bool { return rec.View[nodes+"bad-json"].Revision == rev })
}

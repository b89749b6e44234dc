package etcd

import (
	"testing"
	"time"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/internal/etcdtest"
)

// A CalicoNodeStatus as calicoctl creates it (status zero, lastUpdated
// null), carrying fields of a newer Calico: Roost reads it, writes a
// status with a compare-and-swap update, and the stored JSON keeps the
// spec and the unknown fields.
func TestCalicoNodeStatusJSON(t *testing.T) {
	e := etcdtest.Start(t)
	cli := e.Client(t)
	s := newStore(t, e)
	ctx := ctxFor(t, 30*time.Second)
	key := rp + "caliconodestatuses/node1-status"
	put(t, cli, key, `{"kind":"CalicoNodeStatus","apiVersion":"projectcalico.org/v3",`+
		`"metadata":{"name":"node1-status","uid":"4c1f2b3a-4444-4d5e-8f9a-0b1c2d3e4f5a","creationTimestamp":"2024-05-01T10:00:00Z"},`+
		`"spec":{"node":"node1","classes":["Agent","BGP"],"updatePeriodSeconds":10,"newerSpecField":true},`+
		`"status":{"lastUpdated":null,"agent":{"birdV4":{},"birdV6":{}},`+
		`"bgp":{"numberEstablishedV4":0,"numberNotEstablishedV4":0,"numberEstablishedV6":0,"numberNotEstablishedV6":0},"routes":{},"conditions":[]}}`)
	kv, err := s.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	st := kv.Value.(*api.CalicoNodeStatus)
	if st.Spec.Node != "node1" || !st.Spec.HasClass(api.NodeStatusClassBGP) || st.Spec.UpdatePeriod() != 10*time.Second || !st.Status.LastUpdated.IsZero() {
		t.Fatalf("decoded %+v", st)
	}
	st.Status.LastUpdated = api.NewTime(time.Date(2026, 12, 3, 8, 0, 5, 0, time.UTC))
	st.Status.Agent.BIRDV4 = api.BGPDaemonStatus{State: api.BGPDaemonStateReady, Version: "2.0.12"}
	st.Status.BGP.NumberEstablishedV4 = 1
	st.Status.BGP.PeersV4 = []api.CalicoNodePeer{{PeerIP: "10.0.0.2", Type: api.BGPPeerTypeNodeMesh, State: api.BGPSessionStateEstablished, Since: "08:00:00.001"}}
	if _, err := s.Update(ctx, kv); err != nil {
		t.Fatal(err)
	}
	raw, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"apiVersion":"projectcalico.org/v3","kind":"CalicoNodeStatus",` +
		`"metadata":{"creationTimestamp":"2024-05-01T10:00:00Z","name":"node1-status","uid":"4c1f2b3a-4444-4d5e-8f9a-0b1c2d3e4f5a"},` +
		`"spec":{"classes":["Agent","BGP"],"newerSpecField":true,"node":"node1","updatePeriodSeconds":10},` +
		`"status":{"agent":{"birdV4":{"state":"Ready","version":"2.0.12"},"birdV6":{}},` +
		`"bgp":{"numberEstablishedV4":1,"numberEstablishedV6":0,"numberNotEstablishedV4":0,"numberNotEstablishedV6":0,` +
		`"peersV4":[{"peerIP":"10.0.0.2","since":"08:00:00.001","state":"Established","type":"NodeMesh"}]},` +
		`"conditions":[],"lastUpdated":"2026-12-03T08:00:05Z","routes":{}}}`
	if got := string(raw.Kvs[0].Value); got != want {
		t.Errorf("stored\n got %s\nwant %s", got, want)
	}
	// The update was conditional on the revision read: a stale one fails.
	if _, err := s.Update(ctx, kv); err == nil {
		t.Error("update with a stale revision succeeded")
	}
}

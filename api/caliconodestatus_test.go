package api

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const statusRequestYAML = `apiVersion: projectcalico.org/v3
kind: CalicoNodeStatus
metadata:
  name: node1-status
spec:
  node: node1
  classes: [Agent, BGP, Routes]
  updatePeriodSeconds: 10
`

// The JSON Calico's Go types give: every status field present, lastUpdated
// null, empty lists left out.
func TestCalicoNodeStatusRequestJSON(t *testing.T) {
	objs, err := DecodeAll([]byte(statusRequestYAML), "req.yaml", DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := MarshalJSON(objs[0])
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"kind":"CalicoNodeStatus","apiVersion":"projectcalico.org/v3","metadata":{"name":"node1-status"},` +
		`"spec":{"node":"node1","classes":["Agent","BGP","Routes"],"updatePeriodSeconds":10},` +
		`"status":{"lastUpdated":null,"agent":{"birdV4":{},"birdV6":{}},` +
		`"bgp":{"numberEstablishedV4":0,"numberNotEstablishedV4":0,"numberEstablishedV6":0,"numberNotEstablishedV6":0},"routes":{}}}`
	if string(got) != want {
		t.Errorf("JSON\n got %s\nwant %s", got, want)
	}
	// Period 0 is valid (updates stopped) and is written.
	objs, err = DecodeAll([]byte(strings.Replace(statusRequestYAML, "updatePeriodSeconds: 10", "updatePeriodSeconds: 0", 1)), "", DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := MarshalJSON(objs[0]); !strings.Contains(string(got), `"updatePeriodSeconds":0`) {
		t.Errorf("period 0 lost: %s", got)
	}
}

func TestCalicoNodeStatusAnswerJSON(t *testing.T) {
	period := uint32(10)
	s := &CalicoNodeStatus{}
	s.Metadata.Name = "node1-status"
	s.Spec = CalicoNodeStatusSpec{Node: "node1", Classes: []string{"BGP", "Routes"}, UpdatePeriodSeconds: &period}
	s.Status = CalicoNodeStatusStatus{
		LastUpdated: NewTime(time.Date(2026, 12, 3, 8, 0, 5, 700e6, time.UTC)),
		Agent: CalicoNodeAgentStatus{
			BIRDV4: BGPDaemonStatus{State: BGPDaemonStateReady, Version: "2.0.12", RouterID: "10.0.0.1",
				LastBootTime: "2026-12-03 07:59:00.123", LastReconfigurationTime: "2026-12-03 08:00:01.456"},
			BIRDV6: BGPDaemonStatus{State: BGPDaemonStateNotReady},
		},
		BGP: CalicoNodeBGPStatus{NumberEstablishedV4: 1, NumberNotEstablishedV4: 1,
			PeersV4: []CalicoNodePeer{
				{PeerIP: "10.0.0.2", Type: BGPPeerTypeNodeMesh, State: BGPSessionStateEstablished, Since: "07:59:03.010"},
				{PeerIP: "10.0.0.254", Type: BGPPeerTypeGlobalPeer, State: BGPSessionStateActive, Since: "07:59:00.200"},
			}},
		Routes: CalicoNodeBGPRouteStatus{RoutesV4: []CalicoNodeRoute{
			{Type: RouteTypeFIB, Destination: "10.244.1.0/26", Gateway: "10.0.0.2", Interface: "eth0",
				LearnedFrom: CalicoNodeRouteLearnedFrom{SourceType: RouteSourceNodeMesh, PeerIP: "10.0.0.2"}},
			{Type: RouteTypeFIB, Destination: "10.244.0.0/26", Gateway: "N/A", Interface: "blackhole",
				LearnedFrom: CalicoNodeRouteLearnedFrom{SourceType: RouteSourceStatic}},
		}},
	}
	got, err := MarshalJSON(s)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"kind":"CalicoNodeStatus","apiVersion":"projectcalico.org/v3","metadata":{"name":"node1-status"},` +
		`"spec":{"node":"node1","classes":["BGP","Routes"],"updatePeriodSeconds":10},` +
		`"status":{"lastUpdated":"2026-12-03T08:00:05Z",` +
		`"agent":{"birdV4":{"state":"Ready","version":"2.0.12","routerID":"10.0.0.1","lastBootTime":"2026-12-03 07:59:00.123","lastReconfigurationTime":"2026-12-03 08:00:01.456"},"birdV6":{"state":"NotReady"}},` +
		`"bgp":{"numberEstablishedV4":1,"numberNotEstablishedV4":1,"numberEstablishedV6":0,"numberNotEstablishedV6":0,` +
		`"peersV4":[{"peerIP":"10.0.0.2","type":"NodeMesh","state":"Established","since":"07:59:03.010"},` +
		`{"peerIP":"10.0.0.254","type":"GlobalPeer","state":"Active","since":"07:59:00.200"}]},` +
		`"routes":{"routesV4":[{"type":"FIB","destination":"10.244.1.0/26","gateway":"10.0.0.2","interface":"eth0","learnedFrom":{"sourceType":"NodeMesh","peerIP":"10.0.0.2"}},` +
		`{"type":"FIB","destination":"10.244.0.0/26","gateway":"N/A","interface":"blackhole","learnedFrom":{"sourceType":"Static"}}]}}}`
	if string(got) != want {
		t.Errorf("JSON\n got %s\nwant %s", got, want)
	}
	// What a datastore reads back is the same object.
	back, err := DecodeJSON(KindCalicoNodeStatus, got, DecodeOptions{AllowUnknownFields: true})
	if err != nil {
		t.Fatal(err)
	}
	b := back.(*CalicoNodeStatus)
	if !b.Status.SameContent(&s.Status) || !b.Status.LastUpdated.Equal(s.Status.LastUpdated.Time) || !b.Spec.Equal(&s.Spec) {
		t.Errorf("read back %+v", b)
	}
	if again, _ := MarshalJSON(b); string(again) != want {
		t.Errorf("round trip\n got %s\nwant %s", again, want)
	}
}

// A value written by a newer Calico keeps the fields Roost does not know
// through a read-modify-write of its status; lists are replaced whole.
func TestCalicoNodeStatusKeepsUnknownFields(t *testing.T) {
	stored := `{"kind":"CalicoNodeStatus","apiVersion":"projectcalico.org/v3","future":{"a":1},` +
		`"metadata":{"name":"s1"},` +
		`"spec":{"node":"node1","classes":["Agent"],"updatePeriodSeconds":5,"futureSpec":"x"},` +
		`"status":{"lastUpdated":"2026-12-03T08:00:05.5Z","conditions":[{"type":"Ok"}],` +
		`"agent":{"birdV4":{"state":"Ready","uptime":12},"birdV6":{}},` +
		`"bgp":{"numberEstablishedV4":0,"numberNotEstablishedV4":0,"numberEstablishedV6":0,"numberNotEstablishedV6":0,` +
		`"peersV4":[{"peerIP":"10.0.0.2","extra":true}]},"routes":{}}}`
	r, err := DecodeJSON(KindCalicoNodeStatus, []byte(stored), DecodeOptions{AllowUnknownFields: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 12, 3, 8, 0, 5, 5e8, time.UTC); !r.(*CalicoNodeStatus).Status.LastUpdated.Equal(want) {
		t.Errorf("lastUpdated %v, want %v", r.(*CalicoNodeStatus).Status.LastUpdated, want)
	}
	s := Clone(r.(*CalicoNodeStatus))
	s.Status.LastUpdated = NewTime(time.Date(2026, 12, 3, 8, 0, 15, 0, time.UTC))
	s.Status.Agent.BIRDV4.State = BGPDaemonStateNotReady
	s.Status.BGP.PeersV4 = []CalicoNodePeer{{PeerIP: "10.0.0.3", State: BGPSessionStateIdle}}
	got, err := MarshalStored(s)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"apiVersion":"projectcalico.org/v3","future":{"a":1},"kind":"CalicoNodeStatus","metadata":{"name":"s1"},` +
		`"spec":{"classes":["Agent"],"futureSpec":"x","node":"node1","updatePeriodSeconds":5},` +
		`"status":{"agent":{"birdV4":{"state":"NotReady","uptime":12},"birdV6":{}},` +
		`"bgp":{"numberEstablishedV4":0,"numberEstablishedV6":0,"numberNotEstablishedV4":0,"numberNotEstablishedV6":0,` +
		`"peersV4":[{"peerIP":"10.0.0.3","state":"Idle"}]},"conditions":[{"type":"Ok"}],"lastUpdated":"2026-12-03T08:00:15Z","routes":{}}}`
	if string(got) != want {
		t.Errorf("stored\n got %s\nwant %s", got, want)
	}
	// User input stays strict: a typo is an error, not a kept field.
	_, err = DecodeAll([]byte(strings.Replace(statusRequestYAML, "classes:", "clases:", 1)), "", DecodeOptions{})
	if err == nil || !strings.Contains(err.Error(), `spec.clases: unknown field (did you mean "classes"?)`) {
		t.Errorf("typo: %v", err)
	}
}

func TestCalicoNodeStatusValidation(t *testing.T) {
	head := "apiVersion: projectcalico.org/v3\nkind: CalicoNodeStatus\nmetadata: {name: s}\n"
	for _, tt := range []struct{ name, spec, want string }{
		{"no node", "spec: {classes: [BGP], updatePeriodSeconds: 10}", `CalicoNodeStatus "s": spec.node: required`},
		{"bad node", "spec: {node: Node_1, classes: [BGP], updatePeriodSeconds: 10}", `spec.node="Node_1": must be a node name`},
		{"no classes", "spec: {node: n1, updatePeriodSeconds: 10}", `spec.classes: required: one or more of Agent, BGP, Routes`},
		{"bad class", "spec: {node: n1, classes: [BGP, bgp], updatePeriodSeconds: 10}", `spec.classes[1]="bgp": must be one of Agent, BGP, Routes`},
		{"twice", "spec: {node: n1, classes: [BGP, BGP], updatePeriodSeconds: 10}", `spec.classes[1]="BGP": listed twice`},
		{"no period", "spec: {node: n1, classes: [BGP]}", `spec.updatePeriodSeconds: required`},
		{"period too long", "spec: {node: n1, classes: [BGP], updatePeriodSeconds: 86401}", `spec.updatePeriodSeconds=86401: must be at most 86400 (one day)`},
		{"negative period", "spec: {node: n1, classes: [BGP], updatePeriodSeconds: -1}", `spec.updatePeriodSeconds="-1": must be an integer in 0-4294967295`},
		{"bad time", "spec: {node: n1, classes: [BGP], updatePeriodSeconds: 1}\nstatus: {lastUpdated: yesterday}", `status.lastUpdated="yesterday": must be an RFC 3339 time`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeAll([]byte(head+tt.spec), "", DecodeOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want %q", err, tt.want)
			}
		})
	}
}

// The fast path for stored JSON decodes exactly what the checked path
// does, unknown fields included, and leaves errors to the checked path.
func TestDecodeJSONFastPath(t *testing.T) {
	for _, tt := range []struct{ kind, json string }{
		{KindNode, `{"metadata":{"name":"n1","labels":{"a":"b"}},"spec":{"bgp":{"ipv4Address":"10.0.0.1/24","asNumber":"1.10"}},"status":{"podCIDRs":["10.0.0.0/24"]},"newer":1}`},
		{KindIPPool, `{"metadata":{"name":"p"},"spec":{"cidr":"10.0.0.0/16"}}`},
		{KindBGPPeer, `{"metadata":{"name":"p"},"spec":{"peerIP":"10.0.0.1","asNumber":65000,"keepaliveTime":"10s"}}`},
		{KindCalicoNodeStatus, `{"metadata":{"name":"s"},"x":[1,2],"spec":{"node":"n","classes":["BGP"],"updatePeriodSeconds":5,"y":{"z":1.5}},` +
			`"status":{"lastUpdated":"2026-01-02T03:04:05Z","agent":{"birdV4":{"state":"Ready","q":true},"birdV6":null},"bgp":{"peersV4":[{"peerIP":"10.0.0.2","w":1}]}}}`},
		{KindCalicoNodeStatus, `{"metadata":{"name":"s"},"spec":{"node":"n","classes":["BGP"],"updatePeriodSeconds":5},"status":null}`},
		// Errors: the checked path's messages.
		{KindNode, `{"metadata":{"name":"n1"},"spec":{"bgp":{"asNumber":"x"}}}`},
		{KindCalicoNodeStatus, `{"metadata":{"name":"s"},"spec":{"node":"n","classes":"BGP","updatePeriodSeconds":5}}`},
		{KindCalicoNodeStatus, `{"metadata":{"name":"s"},"spec":{"node":"n","classes":["BGP"],"updatePeriodSeconds":-5}}`},
		{KindCalicoNodeStatus, `{"metadata":{"name":"s"},"spec":{"node":"n","classes":["BGP"],"updatePeriodSeconds":5}} trailing`},
		{KindCalicoNodeStatus, `{"metadata":{"name":"s"},"spec":{"node":"n","classes":["bgp"],"updatePeriodSeconds":5}}`},
	} {
		opts := DecodeOptions{AllowUnknownFields: true}
		fast, ferr := DecodeJSON(tt.kind, []byte(tt.json), opts)
		slow, serr := decodeJSONChecked(tt.kind, []byte(tt.json), opts)
		if (ferr == nil) != (serr == nil) || ferr != nil && ferr.Error() != serr.Error() {
			t.Errorf("%s: errors differ:\nfast %v\nslow %v", tt.json, ferr, serr)
			continue
		}
		if ferr != nil {
			continue
		}
		fb, _ := MarshalJSON(fast)
		sb, _ := MarshalJSON(slow)
		if string(fb) != string(sb) {
			t.Errorf("%s:\nfast %s\nslow %s", tt.json, fb, sb)
		}
	}
}

// A CalicoNodeStatus with 1,000 routes, as a datastore reads it.
func BenchmarkDecodeStoredNodeStatus(b *testing.B) {
	s := &CalicoNodeStatus{}
	s.Metadata.Name = "node1-status"
	p := uint32(10)
	s.Spec = CalicoNodeStatusSpec{Node: "node1", Classes: NodeStatusClasses, UpdatePeriodSeconds: &p}
	for i := range 1000 {
		s.Status.Routes.RoutesV4 = append(s.Status.Routes.RoutesV4, CalicoNodeRoute{Type: RouteTypeFIB,
			Destination: fmt.Sprintf("10.200.%d.%d/29", i/32, i%32*8), Gateway: "10.99.0.12", Interface: "eth0",
			LearnedFrom: CalicoNodeRouteLearnedFrom{SourceType: RouteSourceNodeMesh, PeerIP: "10.99.0.12"}})
	}
	data, err := MarshalStored(s)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := DecodeJSON(KindCalicoNodeStatus, data, DecodeOptions{AllowUnknownFields: true}); err != nil {
			b.Fatal(err)
		}
	}
}

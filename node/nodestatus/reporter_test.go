package nodestatus

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sirupsen/logrus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/birdctl/birdsock/birdtest"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/etcd"
	"github.com/roostnet/roost/internal/etcdtest"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func quietLog() *logrus.Logger {
	l := logrus.New()
	l.SetLevel(logrus.PanicLevel)
	return l
}

type env struct {
	ds  datastore.Datastore
	cli *clientv3.Client
	ctx context.Context
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	ds, err := etcd.New(ctx, datastore.Config{Type: datastore.TypeEtcd, EtcdEndpoints: e.Endpoint()}, etcd.WithLogger(logrus.NewEntry(quietLog())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ds.Close() })
	return &env{ds: ds, cli: e.Client(t), ctx: ctx}
}

const key1 = datastore.ResourcePrefix + "caliconodestatuses/node1-status"

// put stores raw JSON at key and returns the value as the watch gives it.
func (e *env) put(t *testing.T, key, value string) datastore.Event {
	t.Helper()
	if _, err := e.cli.Put(e.ctx, key, value); err != nil {
		t.Fatal(err)
	}
	return e.event(t, key)
}

func (e *env) event(t *testing.T, key string) datastore.Event {
	t.Helper()
	kv, err := e.ds.Get(e.ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	return datastore.Event{Type: datastore.Modified, Key: key, Value: kv.Value, Revision: kv.Revision}
}

func (e *env) raw(t *testing.T, key string) (map[string]any, int64) {
	t.Helper()
	resp, err := e.cli.Get(e.ctx, key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get %s: %v", key, err)
	}
	var m map[string]any
	if err := json.Unmarshal(resp.Kvs[0].Value, &m); err != nil {
		t.Fatal(err)
	}
	return m, resp.Kvs[0].ModRevision
}

func requestJSON(name, node string, period int, classes ...string) string {
	cs, _ := json.Marshal(classes)
	return fmt.Sprintf(`{"kind":"CalicoNodeStatus","apiVersion":"projectcalico.org/v3","metadata":{"name":%q,"uid":"u-1"},`+
		`"spec":{"node":%q,"classes":%s,"updatePeriodSeconds":%d,"futureSpec":{"x":1}},`+
		`"status":{"lastUpdated":null,"agent":{"birdV4":{},"birdV6":{}},"bgp":{"numberEstablishedV4":0,"numberNotEstablishedV4":0,"numberEstablishedV6":0,"numberNotEstablishedV6":0},"routes":{},"futureStatus":"kept"}}`,
		name, node, cs, period)
}

// wantStatus is the status of a recording for all classes.
func wantStatus(t *testing.T, recording string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", strings.TrimSuffix(recording, ".txt")+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func jsonEq(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// The write rules, step by step on a controlled clock: answer a new
// request at once, skip unchanged answers younger than the period, write
// an unchanged answer once the period passed (lastUpdated only), write a
// change at once, keep the spec and unknown fields, and handle writes by
// others with compare-and-swap.
func TestAnswerRules(t *testing.T) {
	e := newEnv(t)
	bird := birdtest.Replay(t, "bird2-status.txt")
	reg := prometheus.NewPedanticRegistry()
	t0 := time.Date(2026, 12, 3, 8, 40, 0, 300e6, time.UTC)
	clk := &clock{now: t0}
	r := New(Options{DS: e.ds, Node: "node1", Socket: bird.Socket, IPv6: func() bool { return true },
		Log: quietLog(), Registerer: reg, Now: clk.Now})
	all := []string{"Agent", "BGP", "Routes"}

	// Another node's request is not ours.
	other := e.put(t, datastore.ResourcePrefix+"caliconodestatuses/node2-status", requestJSON("node2-status", "node2", 10, all...))
	r.set(other)
	if len(r.reqs) != 0 {
		t.Fatalf("took node2's request: %v", r.reqs)
	}

	// A new request is answered at once, in one round.
	r.set(e.put(t, key1, requestJSON("node1-status", "node1", 10, all...)))
	r.reportDue(e.ctx)
	m, rev1 := e.raw(t, key1)
	st := m["status"].(map[string]any)
	if st["lastUpdated"] != "2026-12-03T08:40:00Z" || st["futureStatus"] != "kept" {
		t.Errorf("status: lastUpdated %v, futureStatus %v", st["lastUpdated"], st["futureStatus"])
	}
	want := wantStatus(t, "bird2-status.txt")
	for _, part := range []string{"agent", "bgp", "routes"} {
		if !jsonEq(st[part], want[part]) {
			t.Errorf("status.%s = %v\nwant %v", part, st[part], want[part])
		}
	}
	spec := m["spec"].(map[string]any)
	if spec["node"] != "node1" || spec["updatePeriodSeconds"] != 10.0 || !jsonEq(spec["futureSpec"], map[string]any{"x": 1}) ||
		m["metadata"].(map[string]any)["uid"] != "u-1" {
		t.Errorf("spec or metadata changed: %v %v", spec, m["metadata"])
	}
	if cmds := bird.Commands(); !slices.Equal(cmds, []string{"show status", "show protocols", "show route"}) {
		t.Errorf("first round: %q", cmds)
	}
	due := r.reqs[key1].due
	if d := due.Sub(t0); d <= 0 || d > 10*time.Second || due.Sub(due.Truncate(10*time.Second)) != r.offset%(10*time.Second) {
		t.Errorf("next due %v (offset %v)", due, r.offset)
	}
	_, otherRev := e.raw(t, datastore.ResourcePrefix+"caliconodestatuses/node2-status")

	// Nothing due: no query, no write.
	clk.set(t0.Add(time.Second))
	r.reportDue(e.ctx)
	if n := len(bird.Commands()); n != 3 {
		t.Errorf("queried BIRD with nothing due: %d commands", n)
	}
	// Evaluated early (as in a shared round): unchanged and young, no write.
	clk.set(t0.Add(2 * time.Second))
	r.reqs[key1].due = clk.Now()
	r.reportDue(e.ctx)
	if _, rev := e.raw(t, key1); rev != rev1 || value(r.m.unchanged) != 1 {
		t.Errorf("unchanged answer written (revision %d -> %d), unchanged %v", rev1, rev, value(r.m.unchanged))
	}
	// A period after the last write: written again, only lastUpdated moves.
	at := t0.Add(10 * time.Second)
	clk.set(at)
	r.reqs[key1].due = at
	r.reportDue(e.ctx)
	m, rev2 := e.raw(t, key1)
	if rev2 == rev1 || m["status"].(map[string]any)["lastUpdated"] != "2026-12-03T08:40:10Z" || !jsonEq(m["status"].(map[string]any)["bgp"], want["bgp"]) {
		t.Errorf("heartbeat: revision %d -> %d, status %v", rev1, rev2, m["status"])
	}

	// The peer goes down: written at once, well inside the period.
	down := birdtest.Replay(t, "bird2-status-peerdown.txt")
	r.opts.Socket = down.Socket
	clk.set(at.Add(time.Second))
	r.reqs[key1].due = clk.Now()
	r.reportDue(e.ctx)
	m, rev3 := e.raw(t, key1)
	if rev3 == rev2 || !jsonEq(m["status"].(map[string]any)["bgp"], wantStatus(t, "bird2-status-peerdown.txt")["bgp"]) {
		t.Errorf("change not written: %v", m["status"].(map[string]any)["bgp"])
	}

	// Someone else rewrote the status (not the spec) just before a change
	// (the peer is back): the CAS write conflicts, the value is read again
	// and written.
	if _, err := e.cli.Put(e.ctx, key1, requestJSON("node1-status", "node1", 10, all...)); err != nil {
		t.Fatal(err)
	}
	r.opts.Socket = bird.Socket
	clk.set(at.Add(2 * time.Second))
	r.reqs[key1].due = clk.Now()
	r.reportDue(e.ctx)
	m, rev4 := e.raw(t, key1)
	if value(r.m.writes.WithLabelValues("conflict")) != 1 || m["status"].(map[string]any)["lastUpdated"] != "2026-12-03T08:40:12Z" {
		t.Errorf("after a foreign status write: conflicts %v, status %v", value(r.m.writes.WithLabelValues("conflict")), m["status"])
	}

	// Someone changed the spec just before a change: nothing is written
	// over it; the new spec is answered in the next round (BGP only:
	// agent and routes empty).
	if _, err := e.cli.Put(e.ctx, key1, requestJSON("node1-status", "node1", 10, "BGP")); err != nil {
		t.Fatal(err)
	}
	r.opts.Socket = down.Socket
	_, rev5 := e.raw(t, key1)
	clk.set(at.Add(3 * time.Second))
	r.reqs[key1].due = clk.Now()
	r.reportDue(e.ctx)
	if _, rev := e.raw(t, key1); rev != rev5 || !r.reqs[key1].due.Equal(clk.Now()) {
		t.Errorf("wrote over a changed spec (revision %d -> %d) or did not reschedule (due %v)", rev5, rev, r.reqs[key1].due)
	}
	r.reportDue(e.ctx)
	m, _ = e.raw(t, key1)
	st = m["status"].(map[string]any)
	if !jsonEq(m["spec"].(map[string]any)["classes"], []string{"BGP"}) || !jsonEq(st["agent"], map[string]any{"birdV4": map[string]any{}, "birdV6": map[string]any{}}) ||
		st["routes"] == nil || len(st["routes"].(map[string]any)) != 0 || st["bgp"].(map[string]any)["numberNotEstablishedV4"] != 3.0 {
		t.Errorf("BGP-only answer: %v", st)
	}
	_ = rev4

	// Period 0: answered once, then never again.
	r.set(e.put(t, key1, requestJSON("node1-status", "node1", 0, "Agent")))
	clk.set(at.Add(4 * time.Second))
	r.reportDue(e.ctx)
	_, rev6 := e.raw(t, key1)
	if !r.reqs[key1].due.IsZero() {
		t.Errorf("period 0 scheduled again at %v", r.reqs[key1].due)
	}
	clk.set(at.Add(time.Hour))
	r.reportDue(e.ctx)
	if _, rev := e.raw(t, key1); rev != rev6 {
		t.Errorf("period 0 written again")
	}
	// node2's request was never touched.
	if _, rev := e.raw(t, datastore.ResourcePrefix+"caliconodestatuses/node2-status"); rev != otherRev {
		t.Errorf("node2's request written")
	}
}

// Requests of one period, made at different times, share rounds after
// their first answer.
func TestSharedRounds(t *testing.T) {
	e := newEnv(t)
	bird := birdtest.Replay(t, "bird2-status.txt")
	t0 := time.Date(2026, 12, 3, 8, 40, 0, 0, time.UTC)
	clk := &clock{now: t0}
	r := New(Options{DS: e.ds, Node: "node1", Socket: bird.Socket, Log: quietLog(), Now: clk.Now})
	r.set(e.put(t, key1, requestJSON("node1-status", "node1", 10, "BGP")))
	r.reportDue(e.ctx)
	clk.set(t0.Add(3 * time.Second))
	k2 := datastore.ResourcePrefix + "caliconodestatuses/node1-b"
	r.set(e.put(t, k2, requestJSON("node1-b", "node1", 10, "BGP", "Routes")))
	r.reportDue(e.ctx)
	if a, b := r.reqs[key1].due, r.reqs[k2].due; !a.Equal(b) {
		t.Fatalf("due %v and %v: not aligned", a, b)
	}
	before := len(bird.Commands())
	clk.set(r.reqs[key1].due)
	r.reportDue(e.ctx)
	// One round for both: protocols once, routes once.
	if cmds := bird.Commands()[before:]; !slices.Equal(cmds, []string{"show protocols", "show route"}) {
		t.Errorf("shared round: %q", cmds)
	}
}

// The whole loop against real BIRDs: a request is answered within two
// periods with the Established mesh peer and the routes learned from it;
// the peer stopping shows within two periods.
func TestReporterRealBird(t *testing.T) {
	e := newEnv(t)
	ports := birdtest.FreePorts(t, 2)
	a := birdtest.Start(t, fmt.Sprintf(`router id 10.0.0.1;
protocol device {}
protocol static roost_blocks_v4 { ipv4; route 10.65.1.0/26 blackhole; }
protocol bgp Mesh_127_0_0_2 {
	local 127.0.0.1 port %d as 64512; neighbor 127.0.0.2 port %d as 64512;
	connect delay time 1; connect retry time 1; error wait time 1,2;
	ipv4 { import all; export all; };
}
`, ports[0], ports[1]))
	b := birdtest.Start(t, fmt.Sprintf(`router id 10.0.0.2;
protocol device {}
protocol static roost_blocks_v4 { ipv4; route 10.65.2.0/26 blackhole; route 10.65.3.0/26 blackhole; }
protocol bgp Mesh_127_0_0_1 {
	local 127.0.0.2 port %d as 64512; neighbor 127.0.0.1 port %d as 64512;
	connect delay time 1; connect retry time 1; error wait time 1,2;
	ipv4 { import all; export all; };
}
`, ports[1], ports[0]))
	reg := prometheus.NewPedanticRegistry()
	r := New(Options{DS: e.ds, Node: "node1", Socket: a.Socket, Log: quietLog(), Registerer: reg})
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	s := &api.CalicoNodeStatus{}
	s.Metadata.Name = "node1-status"
	period := uint32(1)
	s.Spec = api.CalicoNodeStatusSpec{Node: "node1", Classes: []string{"BGP", "Routes"}, UpdatePeriodSeconds: &period}
	if _, err := e.ds.Create(e.ctx, s); err != nil {
		t.Fatal(err)
	}
	// BGP needs a few seconds to come up; then the answer follows within
	// two periods.
	wait := func(what string, timeout time.Duration, ok func(st *api.CalicoNodeStatusStatus) bool) *api.CalicoNodeStatusStatus {
		t.Helper()
		w := e.ds.Watch(ctx, key1, 0)
		deadline := time.After(timeout)
		for {
			select {
			case ev := <-w:
				if s, isStatus := ev.Value.(*api.CalicoNodeStatus); isStatus && ok(&s.Status) {
					return &s.Status
				}
			case <-deadline:
				kv, _ := e.ds.Get(e.ctx, key1)
				t.Fatalf("%s: not within %v; status %+v", what, timeout, kv.Value.(*api.CalicoNodeStatus).Status)
			}
		}
	}
	established := func(st *api.CalicoNodeStatusStatus) bool {
		return st.BGP.NumberEstablishedV4 == 1 && len(st.BGP.PeersV4) == 1 && st.BGP.PeersV4[0].State == api.BGPSessionStateEstablished
	}
	st := wait("Established mesh peer", 30*time.Second, func(st *api.CalicoNodeStatusStatus) bool {
		return established(st) && len(st.Routes.RoutesV4) == 3
	})
	want := []api.CalicoNodeRoute{
		{Type: "FIB", Destination: "10.65.1.0/26", Gateway: "N/A", Interface: "blackhole", LearnedFrom: api.CalicoNodeRouteLearnedFrom{SourceType: "Static"}},
		{Type: "FIB", Destination: "10.65.2.0/26", Gateway: "N/A", Interface: "unreachable", LearnedFrom: api.CalicoNodeRouteLearnedFrom{SourceType: "NodeMesh", PeerIP: "127.0.0.2"}},
		{Type: "FIB", Destination: "10.65.3.0/26", Gateway: "N/A", Interface: "unreachable", LearnedFrom: api.CalicoNodeRouteLearnedFrom{SourceType: "NodeMesh", PeerIP: "127.0.0.2"}},
	}
	if !slices.Equal(st.Routes.RoutesV4, want) || st.BGP.PeersV4[0].PeerIP != "127.0.0.2" || st.BGP.PeersV4[0].Type != api.BGPPeerTypeNodeMesh {
		t.Errorf("answer %+v", st)
	}
	t0 := time.Now()
	b.Stop()
	wait("peer not established", 2*time.Second+time.Second, func(st *api.CalicoNodeStatusStatus) bool {
		return st.BGP.NumberEstablishedV4 == 0 && st.BGP.NumberNotEstablishedV4 == 1
	})
	t.Logf("peer down reported after %v", time.Since(t0).Round(time.Millisecond))
	if n := value(r.m.requests); n != 1 {
		t.Errorf("requests gauge %v", n)
	}
}

// value reads a counter or gauge.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

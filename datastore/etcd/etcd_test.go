package etcd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/contract"
	"github.com/roostnet/roost/internal/etcdtest"
)

// putHandles writes n handles h0000.. in transactions of 100.
func putHandles(t *testing.T, cli *clientv3.Client, n int) int64 {
	t.Helper()
	ctx := ctxFor(t, 60*time.Second)
	var rev int64
	for i := 0; i < n; {
		var ops []clientv3.Op
		for ; i < n && len(ops) < 100; i++ {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("%sh%05d", datastore.HandlePrefix, i), `{"block":{"10.0.0.0/26":1},"deleted":false}`))
		}
		resp, err := cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			t.Fatal(err)
		}
		rev = resp.Header.Revision
	}
	return rev
}

// TestListPages: a listing read in pages is one consistent snapshot.
func TestListPages(t *testing.T) {
	e := etcdtest.Start(t)
	cli := e.Client(t)
	s := newStore(t, e, WithPageSize(7))
	ctx := ctxFor(t, 30*time.Second)
	rev := putHandles(t, cli, 50)

	pages := 0
	listPageHook = func() {
		pages++
		if pages == 1 { // change the prefix between two pages
			put(t, cli, datastore.HandlePrefix+"h99999", `{"block":{},"deleted":false}`)
			if _, err := cli.Delete(ctx, datastore.HandlePrefix+"h00049"); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(func() { listPageHook = nil })
	lr, err := s.List(ctx, datastore.HandlePrefix)
	if err != nil {
		t.Fatal(err)
	}
	if pages != 7 {
		t.Errorf("%d pages of 7 for 50 keys, want 7 page turns", pages)
	}
	if lr.Revision != rev || len(lr.KVs) != 50 {
		t.Fatalf("list at revision %d with %d keys, want %d and 50", lr.Revision, len(lr.KVs), rev)
	}
	for i, kv := range lr.KVs {
		if want := fmt.Sprintf("%sh%05d", datastore.HandlePrefix, i); kv.Key != want {
			t.Fatalf("key %d: %s, want %s", i, kv.Key, want)
		}
	}
	listPageHook = nil
	lr, err = s.List(ctx, datastore.HandlePrefix)
	if err != nil || len(lr.KVs) != 50 || lr.KVs[49].Key != datastore.HandlePrefix+"h99999" {
		t.Fatalf("second list: %v", err)
	}
}

// TestListLarge lists 20,000 keys with the default page size.
func TestListLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	e := etcdtest.Start(t)
	cli := e.Client(t)
	s := newStore(t, e)
	const n = 20000
	rev := putHandles(t, cli, n)
	start := time.Now()
	lr, err := s.List(ctxFor(t, 60*time.Second), datastore.HandlePrefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(lr.KVs) != n || lr.Revision != rev {
		t.Fatalf("%d keys at %d, want %d at %d", len(lr.KVs), lr.Revision, n, rev)
	}
	t.Logf("listed %d keys in %s", n, time.Since(start))
}

// TestWatchOutage: etcd goes away while watched. Resync{Relist:false}
// comes while it is down, and once it is back the watch resumes: InSync,
// then later changes.
func TestWatchOutage(t *testing.T) {
	e := etcdtest.Start(t)
	s := newStore(t, e)
	ctx := ctxFor(t, 60*time.Second)
	nodes := datastore.KindPrefix(api.KindNode)
	if _, err := s.Create(ctx, contract.NodeFixture("node1", "10.0.0.1")); err != nil {
		t.Fatal(err)
	}
	rec := contract.NewRecorder(t, s, nodes, 0, nil, 10*time.Second)
	rec.WaitSynced()
	n := len(rec.Events)

	t0 := time.Now()
	e.Stop()
	t.Logf("stop took %s", time.Since(t0))
	rec.Until("resync while etcd is down", func() bool { return !rec.Synced })
	t.Logf("resync %s after the stop", time.Since(t0))
	if ev := rec.Events[n]; ev.Type != datastore.Resync || ev.Relist {
		t.Fatalf("first event after the stop: %+v", ev)
	}
	// Operations fail with an error naming the endpoint.
	sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := s.Get(sctx, nodes+"node1")
	cancel()
	if err == nil || !strings.Contains(err.Error(), e.Endpoint()) {
		t.Fatalf("get while down: %v (want an error naming %s)", err, e.Endpoint())
	}
	time.Sleep(1500 * time.Millisecond) // several retries
	if rec.Synced || rec.Count(datastore.Resync, false) != 1 {
		t.Fatalf("while down:\n%s", rec.Dump())
	}

	e.StartAgain()
	t0 = time.Now()
	rec.WaitSynced()
	t.Logf("in sync %s after etcd is back", time.Since(t0))
	n2, err := s.Create(ctx, contract.NodeFixture("node2", "10.0.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	rec.Until("node2", func() bool { return rec.View[n2.Key].Revision == n2.Revision })
	if rec.Count(datastore.Resync, false) != 1 || rec.Count(datastore.Resync, true) != 0 {
		t.Fatalf("resyncs:\n%s", rec.Dump())
	}

	// A watch started while etcd is down lists once it is back.
	e.Stop()
	late := contract.NewRecorder(t, s, nodes, 0, nil, 10*time.Second)
	late.ExpectQuiet(300 * time.Millisecond)
	if late.Synced {
		t.Fatalf("watch on a stopped etcd:\n%s", late.Dump())
	}
	e.StartAgain()
	late.UntilMatches(s, nodes)
	rec.UntilMatches(s, nodes)
}

// TestWatchSequences checks the exact streams etcd gives.
func TestWatchSequences(t *testing.T) {
	e := etcdtest.Start(t)
	s := newStore(t, e)
	ctx := ctxFor(t, 60*time.Second)
	nodes := datastore.KindPrefix(api.KindNode)

	n1, err := s.Create(ctx, contract.NodeFixture("node1", "10.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	u1, err := s.Update(ctx, &datastore.KV{Value: contract.NodeFixture("node1", "10.0.0.11")})
	if err != nil {
		t.Fatal(err)
	}
	n3, err := s.Create(ctx, contract.NodeFixture("node3", "10.0.0.3"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, n3.Key, 0); err != nil {
		t.Fatal(err)
	}

	type ev struct {
		typ datastore.EventType
		key string
	}
	expect := func(rec *contract.Recorder, want ...ev) {
		t.Helper()
		for i, w := range want {
			got := rec.Next()
			if got.Type != w.typ || got.Key != w.key {
				t.Fatalf("event %d: %s %s, want %s %s\n%s", i, got.Type, got.Key, w.typ, w.key, rec.Dump())
			}
		}
		rec.ExpectQuiet(200 * time.Millisecond)
	}

	// From a past revision: the history after it, then InSync.
	rec := contract.NewRecorder(t, s, nodes, n1.Revision, []datastore.KV{*n1}, 10*time.Second)
	expect(rec,
		ev{datastore.Modified, n1.Key}, ev{datastore.Added, n3.Key}, ev{datastore.Deleted, n3.Key},
		ev{datastore.InSync, ""})
	if got := rec.View[n1.Key].Revision; got != u1.Revision {
		t.Fatalf("node1 at %d, want %d", got, u1.Revision)
	}

	// After a compaction: relist.
	e.Compact(t)
	rec = contract.NewRecorder(t, s, nodes, n1.Revision, []datastore.KV{*n1}, 10*time.Second)
	expect(rec, ev{datastore.Resync, ""}, ev{datastore.Added, n1.Key}, ev{datastore.InSync, ""})
	if !rec.Events[0].Relist {
		t.Fatalf("want Relist:\n%s", rec.Dump())
	}

	// From a future revision: InSync, then only changes after it.
	lr, _ := s.List(ctx, nodes)
	rec = contract.NewRecorder(t, s, nodes, lr.Revision+1, lr.KVs, 10*time.Second)
	expect(rec, ev{datastore.InSync, ""})
	if _, err := s.Create(ctx, contract.NodeFixture("node4", "10.0.0.4")); err != nil { // at lr.Revision+1: skipped
		t.Fatal(err)
	}
	n5, err := s.Create(ctx, contract.NodeFixture("node5", "10.0.0.5"))
	if err != nil {
		t.Fatal(err)
	}
	expect(rec, ev{datastore.Added, n5.Key})
}

// TestTLS connects with Calico's ETCD_CA_CERT_FILE / ETCD_CERT_FILE /
// ETCD_KEY_FILE to an etcd that demands client certificates.
func TestTLS(t *testing.T) {
	certs := etcdtest.GenerateCerts(t)
	e := etcdtest.StartWithOptions(t, certs.Options(true))
	log, _ := testLogger(t)
	cfg := datastore.Config{
		EtcdEndpoints: e.Endpoint(),
		EtcdCACert:    certs.CAFile, EtcdCert: certs.ClientCert, EtcdKey: certs.ClientKey,
	}
	s, err := New(ctxFor(t, 10*time.Second), cfg, testOpts(log)...)
	if err != nil {
		t.Fatalf("New with TLS: %v", err)
	}
	defer s.Close()
	ctx := ctxFor(t, 30*time.Second)
	kv, err := s.Create(ctx, contract.NodeFixture("node1", "10.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	rec := contract.NewRecorder(t, s, datastore.KindPrefix(api.KindNode), 0, nil, 10*time.Second)
	rec.WaitSynced()
	if _, ok := rec.View[kv.Key]; !ok {
		t.Fatalf("watch over TLS:\n%s", rec.Dump())
	}

	fail := func(name string, cfg datastore.Config, want ...string) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			log, _ := testLogger(t)
			_, err := New(ctxFor(t, 10*time.Second), cfg, append(testOpts(log), WithDialTimeout(1500*time.Millisecond))...)
			if err == nil {
				t.Fatal("connected")
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	fail("NoClientCert", datastore.Config{EtcdEndpoints: e.Endpoint(), EtcdCACert: certs.CAFile}, e.Endpoint(), "TLS rejected")
	fail("WrongCA", datastore.Config{EtcdEndpoints: e.Endpoint(), EtcdCACert: certs.OtherCAFile, EtcdCert: certs.ClientCert, EtcdKey: certs.ClientKey}, e.Endpoint(), "unknown authority")
	fail("MissingCAFile", datastore.Config{EtcdEndpoints: e.Endpoint(), EtcdCACert: certs.Dir + "/nope.pem"}, datastore.EnvEtcdCACert, "nope.pem")
	fail("KeyMissing", datastore.Config{EtcdEndpoints: e.Endpoint(), EtcdCert: certs.ClientCert}, datastore.EnvEtcdKey)
	fail("PlainHTTPClient", datastore.Config{EtcdEndpoints: strings.Replace(e.Endpoint(), "https", "http", 1)}, "http://127.0.0.1", "speaks TLS")
}

// TestAuth: ETCD_USERNAME / ETCD_PASSWORD, for root and for a user whose
// role only covers /calico/; a wrong password is a clear error, and the
// password appears in no log line and no error.
func TestAuth(t *testing.T) {
	e := etcdtest.Start(t)
	e.Ctl(t, "user", "add", "root:r00t-secret")
	e.Ctl(t, "role", "add", "calico")
	e.Ctl(t, "role", "grant-permission", "calico", "--prefix=true", "readwrite", "/calico/")
	e.Ctl(t, "user", "add", "roost:roost-secret")
	e.Ctl(t, "user", "grant-role", "roost", "calico")
	e.Ctl(t, "auth", "enable")
	e.SetAuth("root", "r00t-secret")

	for _, user := range []string{"root", "roost"} {
		t.Run(user, func(t *testing.T) {
			log, logs := testLogger(t)
			pw := map[string]string{"root": "r00t-secret", "roost": "roost-secret"}[user]
			s, err := New(ctxFor(t, 10*time.Second), datastore.Config{EtcdEndpoints: e.Endpoint(), EtcdUsername: user, EtcdPassword: pw}, testOpts(log)...)
			if err != nil {
				t.Fatalf("New as %s: %v", user, err)
			}
			defer s.Close()
			ctx := ctxFor(t, 30*time.Second)
			kv, err := s.Create(ctx, contract.NodeFixture("node-"+user, "10.0.0.1"))
			if err != nil {
				t.Fatal(err)
			}
			rec := contract.NewRecorder(t, s, datastore.KindPrefix(api.KindNode), 0, nil, 10*time.Second)
			rec.WaitSynced()
			if _, ok := rec.View[kv.Key]; !ok {
				t.Fatalf("watch with auth:\n%s", rec.Dump())
			}
			if err := s.Delete(ctx, kv.Key, kv.Revision); err != nil {
				t.Fatal(err)
			}
			s.Close()
			if strings.Contains(logs.String(), pw) {
				t.Fatalf("password logged:\n%s", logs.String())
			}
		})
	}

	t.Run("WrongPassword", func(t *testing.T) {
		log, logs := testLogger(t)
		_, err := New(ctxFor(t, 10*time.Second), datastore.Config{EtcdEndpoints: e.Endpoint(), EtcdUsername: "roost", EtcdPassword: "guess-w0rd"}, testOpts(log)...)
		if err == nil {
			t.Fatal("connected with a wrong password")
		}
		for _, want := range []string{e.Endpoint(), "authentication", `"roost"`, datastore.EnvEtcdPassword} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
		if strings.Contains(err.Error()+logs.String(), "guess-w0rd") {
			t.Fatalf("password leaked: %v\n%s", err, logs.String())
		}
	})
	t.Run("NoCredentials", func(t *testing.T) {
		log, _ := testLogger(t)
		_, err := New(ctxFor(t, 10*time.Second), datastore.Config{EtcdEndpoints: e.Endpoint()}, testOpts(log)...)
		if err == nil || !strings.Contains(err.Error(), datastore.EnvEtcdUsername) {
			t.Fatalf("without credentials: %v", err)
		}
	})
	t.Run("OutsideRole", func(t *testing.T) {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint()}, Username: "roost", Password: "roost-secret", DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		if _, err := cli.Put(ctxFor(t, 5*time.Second), "/other", "x"); err == nil {
			t.Fatal("role setup: roost may write outside /calico/")
		}
	})
}

// TestNewErrors: an unreachable etcd is reported within the dial timeout,
// naming the endpoint.
func TestNewErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ep := "http://" + l.Addr().String()
	l.Close()
	log, _ := testLogger(t)
	start := time.Now()
	_, err = New(context.Background(), datastore.Config{EtcdEndpoints: ep + ", " + ep}, append(testOpts(log), WithDialTimeout(time.Second))...)
	if err == nil || !strings.Contains(err.Error(), ep) || !strings.Contains(err.Error(), "no answer") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("unreachable: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s", d)
	}
	_, err = New(context.Background(), datastore.Config{EtcdEndpoints: ep, EtcdUsername: "u"}, testOpts(log)...)
	if err == nil || !strings.Contains(err.Error(), datastore.EnvEtcdPassword) {
		t.Fatalf("user without password: %v", err)
	}
}

// TestWrites covers etcd-specific write checks.
func TestWrites(t *testing.T) {
	e := etcdtest.Start(t)
	s := newStore(t, e)
	ctx := ctxFor(t, 30*time.Second)
	n := contract.NodeFixture("node1", "10.0.0.1")
	// A key that does not match the value.
	_, err := s.Update(ctx, &datastore.KV{Key: datastore.KindPrefix(api.KindNode) + "other", Value: n})
	if err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched key: %v", err)
	}
	// The same key twice in a transaction.
	_, err = s.Txn(ctx, datastore.Op{Type: datastore.OpCreate, Value: n}, datastore.Op{Type: datastore.OpPut, Value: n})
	if err == nil || !strings.Contains(err.Error(), "both write") {
		t.Fatalf("duplicate key in txn: %v", err)
	}
	// Too many operations for etcd (--max-txn-ops 128): etcd's error.
	var ops []datastore.Op
	for i := 0; i < 130; i++ {
		ops = append(ops, datastore.Op{Type: datastore.OpPut, Value: contract.HandleFixture(fmt.Sprintf("h%d", i), "10.0.0.0/26", 1)})
	}
	if _, err = s.Txn(ctx, ops...); err == nil || !strings.Contains(err.Error(), "too many operations") {
		t.Fatalf("130 ops: %v", err)
	}
	// The caller's object is not modified by a write.
	before := api.Clone(n)
	if _, err := s.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	if n.Kind != before.Kind || n.Metadata.ResourceVersion != "" {
		t.Fatalf("create changed the caller's object: %+v", n.TypeMeta)
	}
	// Writes after Close fail.
	s.Close()
	if _, err := s.Get(ctx, "/calico/x"); err == nil {
		t.Fatal("get after close")
	}
	if !errors.Is(s.Close(), nil) {
		t.Fatal("second close")
	}
}

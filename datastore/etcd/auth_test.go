package etcd

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/contract"
	"github.com/roostnet/roost/internal/etcdtest"
)

// With ETCD_USERNAME/ETCD_PASSWORD, etcd restarted twice and left past its
// tokens' TTL (--auth-token-ttl 5): the store gets a new token, once for
// many concurrent requests, its watch keeps delivering, and the next
// change arrives.
func TestAuthTokenRenewedAfterRestarts(t *testing.T) {
	e := etcdtest.StartWithOptions(t, etcdtest.Options{ExtraArgs: []string{"--auth-token-ttl", "5"}})
	e.Ctl(t, "user", "add", "root:r00t-secret")
	e.Ctl(t, "role", "add", "calico")
	e.Ctl(t, "role", "grant-permission", "calico", "--prefix=true", "readwrite", "/calico/")
	e.Ctl(t, "user", "add", "roost:roost-secret")
	e.Ctl(t, "user", "grant-role", "roost", "calico")
	e.Ctl(t, "auth", "enable")
	e.SetAuth("root", "r00t-secret")

	log, logs := testLogger(t)
	s, err := New(ctxFor(t, 10*time.Second), datastore.Config{EtcdEndpoints: e.Endpoint(), EtcdUsername: "roost", EtcdPassword: "roost-secret"}, testOpts(log)...)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nodes := datastore.KindPrefix(api.KindNode)
	rec := contract.NewRecorder(t, s, nodes, 0, nil, 30*time.Second)
	rec.WaitSynced()

	for round := 1; round <= 2; round++ {
		// etcd restores tokens from its log when it starts, and forgets
		// a token unused for the TTL: 6s after the restart it is stale.
		e.Restart()
		rec.Until("in sync again", func() bool { return rec.Synced })
		time.Sleep(6 * time.Second)
		reauths := strings.Count(logs.String(), "re-authenticated")

		// Many requests at once: one new token serves them all.
		var wg sync.WaitGroup
		errs := make(chan error, 10)
		for range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.List(ctxFor(t, 20*time.Second), nodes); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: list after the restart: %v", round, err)
		}
		if n := strings.Count(logs.String(), "re-authenticated") - reauths; n < 1 || n > 3 {
			t.Errorf("round %d: %d re-authentications for 10 concurrent requests (and a watch)", round, n)
		}

		// The next change, written by another program, arrives. (A
		// long-lived clientv3 client authenticating itself does not
		// recover here: that is the failure this store avoids.)
		name := fmt.Sprintf("node-%d", round)
		b, _ := datastore.EncodeValue(contract.NodeFixture(name, "10.0.0.1"))
		e.Ctl(t, "--user", "root:r00t-secret", "put", nodes+name, string(b))
		rec.Until(name+" arrives", func() bool { _, ok := rec.View[nodes+name]; return ok && rec.Synced })
		// And the store writes.
		if _, err := s.Create(ctxFor(t, 10*time.Second), contract.NodeFixture(name+"-own", "10.0.0.2")); err != nil {
			t.Fatalf("round %d: create: %v", round, err)
		}
	}
	if strings.Contains(logs.String(), "roost-secret") {
		t.Fatal("password logged")
	}
}

// A token etcd rejects (here: one it never issued) is replaced on the
// first request that fails with it, and that request succeeds.
func TestAuthStaleTokenReplaced(t *testing.T) {
	e := etcdtest.Start(t)
	e.Ctl(t, "user", "add", "root:r00t-secret")
	e.Ctl(t, "auth", "enable")
	log, logs := testLogger(t)
	s, err := New(ctxFor(t, 10*time.Second), datastore.Config{EtcdEndpoints: e.Endpoint(), EtcdUsername: "root", EtcdPassword: "r00t-secret"}, testOpts(log)...)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.auth.mu.Lock()
	s.auth.token = "stale.1"
	s.auth.mu.Unlock()
	if _, err := s.List(context.Background(), datastore.ResourcePrefix); err != nil {
		t.Fatalf("list with a stale token: %v", err)
	}
	if !strings.Contains(logs.String(), "re-authenticated") {
		t.Fatalf("no re-authentication logged:\n%s", logs.String())
	}
}

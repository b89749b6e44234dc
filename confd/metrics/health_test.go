package metrics

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/confd/render"
	"github.com/roostnet/roost/confd/runner"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/connect"
	"github.com/roostnet/roost/internal/etcdtest"
	"github.com/roostnet/roost/internal/health"
)

// stuck is a datastore whose watches never get in sync, as a client
// stuck on a credential it cannot renew.
type stuck struct{ datastore.Datastore }

func (s stuck) Watch(ctx context.Context, prefix string, rev int64) <-chan datastore.Event {
	in := s.Datastore.Watch(ctx, prefix, rev)
	out := make(chan datastore.Event)
	go func() {
		defer close(out)
		for ev := range in {
			if ev.Type == datastore.InSync {
				continue
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// /healthz fails once confd has been out of sync for the timeout while
// etcd answers a fresh connection, and stays ok while etcd is down.
func TestLivenessOutOfSync(t *testing.T) {
	e := etcdtest.Start(t)
	cfg := datastore.Config{Type: datastore.TypeEtcd, EtcdEndpoints: e.Endpoint()}
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	ds, err := connect.Open(context.Background(), cfg, connect.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ds.Close() })
	r := runner.New(runner.Config{Store: stuck{ds}, Prefixes: []string{datastore.KindPrefix(api.KindNode)}, Log: quiet,
		Apply:  func(string, api.Resource) {},
		Render: func(context.Context) (render.Result, error) { return render.Result{}, nil }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	live := &health.SyncLiveness{Timeout: 300 * time.Millisecond, ProbeEvery: 50 * time.Millisecond,
		Probe: func(ctx context.Context) error { return connect.Probe(ctx, cfg, connect.WithLogger(quiet)) }}
	h := HealthHandler(r.Status, nil, live)
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		return rec.Code, rec.Body.String()
	}
	waitFor := func(what string, cond func(int, string) bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			code, body := get()
			if cond(code, body) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: /healthz %d %q", what, code, body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("stuck while etcd answers", func(code int, body string) bool {
		return code == http.StatusServiceUnavailable && strings.Contains(body, "stuck")
	})
	e.Stop()
	waitFor("etcd down: a restart would not help", func(code int, body string) bool {
		return code == http.StatusOK && strings.Contains(body, "would not help")
	})
}

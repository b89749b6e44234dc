package etcdtest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestStartRestartCompact(t *testing.T) {
	e := Start(t)
	if !strings.HasPrefix(e.Endpoint(), "http://127.0.0.1:") {
		t.Fatalf("endpoint %q", e.Endpoint())
	}
	c := e.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	put, err := c.Put(ctx, "/a", "1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "/a", "2"); err != nil {
		t.Fatal(err)
	}

	e.Restart()
	got, err := c.Get(ctx, "/a")
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	if len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "2" {
		t.Fatalf("after restart: %v", got.Kvs)
	}

	rev := e.Compact(t)
	if rev < put.Header.Revision+1 {
		t.Fatalf("compacted to %d", rev)
	}
	if _, err := c.Get(ctx, "/a", clientv3.WithRev(put.Header.Revision)); err != rpctypes.ErrCompacted {
		t.Fatalf("get at compacted revision: %v, want ErrCompacted", err)
	}

	e.Stop()
	e.Stop() // idempotent
	sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer scancel()
	if _, err := c.Get(sctx, "/a"); err == nil {
		t.Fatal("get succeeded on a stopped server")
	}
	e.StartAgain()
	if _, err := c.Get(ctx, "/a"); err != nil {
		t.Fatalf("get after StartAgain: %v", err)
	}
}

func TestTLSClientCertAuth(t *testing.T) {
	certs := GenerateCerts(t)
	e := StartWithOptions(t, certs.Options(true))
	if !strings.HasPrefix(e.Endpoint(), "https://") {
		t.Fatalf("endpoint %q", e.Endpoint())
	}
	c := e.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "/tls", "ok"); err != nil {
		t.Fatal(err)
	}
	out := e.Ctl(t, "get", "/tls", "--print-value-only")
	if strings.TrimSpace(out) != "ok" {
		t.Fatalf("etcdctl get: %q", out)
	}
}

// recorder stands in for *testing.T to observe Skip/Fatal.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(format, args...)
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
}

func TestMissingBinary(t *testing.T) {
	old := defaultBinary
	defaultBinary = "/nonexistent/etcd"
	t.Cleanup(func() { defaultBinary = old })
	t.Setenv("PATH", t.TempDir())

	t.Setenv("CI", "")
	r := &recorder{TB: t}
	RequireBinary(r)
	if !r.skipped || r.failed || !strings.Contains(r.msg, "etcd binary not found") {
		t.Errorf("without CI: skipped=%v failed=%v msg=%q", r.skipped, r.failed, r.msg)
	}

	t.Setenv("CI", "true")
	r = &recorder{TB: t}
	RequireBinary(r)
	if r.skipped || !r.failed || !strings.Contains(r.msg, "CI=true") {
		t.Errorf("with CI=true: skipped=%v failed=%v msg=%q", r.skipped, r.failed, r.msg)
	}
}

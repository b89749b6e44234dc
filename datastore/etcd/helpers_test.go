package etcd

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/internal/etcdtest"
)

// logBuffer collects a test's logs and prints them if the test fails
// (t.Log cannot be used: watch goroutines may log after the test ends).
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testLogger(t testing.TB) (*logrus.Entry, *logBuffer) {
	buf := &logBuffer{}
	l := logrus.New()
	l.SetOutput(buf)
	l.SetLevel(logrus.DebugLevel)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("store logs:\n%s", buf.String())
		}
	})
	return logrus.NewEntry(l), buf
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// testOpts are quick to react, for tests.
func testOpts(log *logrus.Entry) []Option {
	return []Option{
		WithLogger(log),
		WithDialTimeout(3 * time.Second),
		WithWatchBackoff(50*time.Millisecond, time.Second),
	}
}

func newStore(t testing.TB, e *etcdtest.Etcd, opts ...Option) *Store {
	t.Helper()
	log, _ := testLogger(t)
	s, err := New(ctxFor(t, 10*time.Second), datastore.Config{Type: datastore.TypeEtcd, EtcdEndpoints: e.Endpoint()},
		append(testOpts(log), opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// wipe deletes every key.
func wipe(t testing.TB, cli *clientv3.Client) {
	t.Helper()
	if _, err := cli.Delete(ctxFor(t, 10*time.Second), "\x00", clientv3.WithFromKey()); err != nil {
		t.Fatalf("wipe: %v", err)
	}
}

func put(t testing.TB, cli *clientv3.Client, key, value string) int64 {
	t.Helper()
	resp, err := cli.Put(ctxFor(t, 10*time.Second), key, value)
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return resp.Header.Revision
}

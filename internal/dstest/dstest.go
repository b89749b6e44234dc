// Package dstest gives tests a real, in-process datastore: the file
// backend on a temporary file. Tests that need etcd's behaviour use
// internal/etcdtest instead.
package dstest

import (
	"context"
	"io"
	"path/filepath"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/file"
)

// NewFile returns a file datastore on an empty file in t.TempDir(),
// closed when the test ends.
func NewFile(t testing.TB) *file.Store {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	s, err := file.New(context.Background(), filepath.Join(t.TempDir(), "resources.yaml"), file.WithLogger(log))
	if err != nil {
		t.Fatalf("dstest: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Raw returns a function reading the bytes a key would hold in etcd (nil
// when absent), for tests that check Calico's value shapes.
func Raw(ds datastore.Datastore) func(key string) []byte {
	return func(key string) []byte {
		kv, err := ds.Get(context.Background(), key)
		if err != nil {
			return nil
		}
		b, err := datastore.EncodeValue(kv.Value)
		if err != nil {
			return nil
		}
		return b
	}
}

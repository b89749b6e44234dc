package file

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/contract"
)

// TestContract runs the backend-agnostic suite, on a directory store and on
// a single-file store. Revisions live in memory, so there is no server to
// restart and no compaction to force: those capabilities are left out.
func TestContract(t *testing.T) {
	for _, mode := range []struct {
		name string
		path func(t *testing.T) string
	}{
		{"dir", func(t *testing.T) string { return t.TempDir() }},
		{"file", func(t *testing.T) string { return t.TempDir() + "/store.yaml" }},
	} {
		t.Run(mode.name, func(t *testing.T) {
			contract.Run(t, contract.Harness{
				New: func(t *testing.T) datastore.Datastore {
					s, err := New(context.Background(), mode.path(t))
					if err != nil {
						t.Fatal(err)
					}
					return s
				},
				PutInvalid: putInvalid,
				Reopen: func(t *testing.T, ds datastore.Datastore) datastore.Datastore {
					s, err := New(context.Background(), ds.(*Store).Path())
					if err != nil {
						t.Fatal(err)
					}
					return s
				},
			})
		})
	}
}

var invalidSeq atomic.Int32

// putInvalid writes obj as a later definition of its key, in a file of
// its own (a directory store) or at the end of the file, as a hand edit
// would, and waits until the store reports the key broken.
func putInvalid(t *testing.T, ds datastore.Datastore, obj api.Resource) {
	t.Helper()
	s := ds.(*Store)
	y, err := api.MarshalYAML(obj)
	if err != nil {
		t.Fatal(err)
	}
	if s.single {
		old, err := os.ReadFile(s.path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		y = append(append(old, "---\n"...), y...)
		writeFile(t, s.path, string(y))
	} else {
		writeFile(t, filepath.Join(s.dir, fmt.Sprintf("zz-invalid-%d.yaml", invalidSeq.Add(1))), string(y))
	}
	key, err := datastore.KeyFor(obj)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the store to read the invalid value", func() bool {
		_, err := s.Get(context.Background(), key)
		var de *datastore.DecodeError
		return errors.As(err, &de)
	})
}

package file

import (
	"context"
	"testing"

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
			contract.Run(t, contract.Harness{New: func(t *testing.T) datastore.Datastore {
				s, err := New(context.Background(), mode.path(t))
				if err != nil {
					t.Fatal(err)
				}
				return s
			}})
		})
	}
}

// Package datastore defines how Roost programs read and write resources:
// one interface over Calico's etcd v3 key layout, implemented by the etcd
// backend (production) and the file backend (single hosts and tests).
//
// Every object is identified by its Calico etcd key (see keys.go), in both
// backends, so that code above this package never cares which one runs.
package datastore

import (
	"context"
	"errors"
	"fmt"

	"github.com/roostnet/roost/api"
)

// KV is one stored object with the revision it was last modified at.
type KV struct {
	Key      string
	Value    api.Resource
	Revision int64
}

// ListResult is a consistent listing of a prefix at Revision.
type ListResult struct {
	KVs      []KV
	Revision int64
	// Invalid holds the keys under the prefix whose value exists but
	// cannot be decoded or validated: present and broken (see Broken).
	// They are not in KVs.
	Invalid []*DecodeError
}

// EventType tells what a watch event means.
type EventType int

const (
	// Added, Modified and Deleted carry one key. Deleted has no Value.
	Added EventType = iota + 1
	Modified
	Deleted
	// Resync: the consumer's view is not current (the watch was lost or
	// the revision compacted). Render nothing until InSync. When Relist is
	// true a full listing follows as Added events: keys not repeated before
	// the next InSync are gone. When false the watch resumed from the last
	// revision and the missed changes follow as ordinary events.
	Resync
	// InSync: every change up to Revision has been delivered.
	InSync
	// Error: a persistent problem of the backend (no connection, a
	// failing listing) while the watch keeps retrying; Key is empty and
	// the consumer's view is unchanged.
	Error
	// Broken: Key exists but its value cannot be decoded or validated;
	// Err is a *DecodeError naming the key, field and value. The object
	// is present and broken, never deleted: a consumer leaves what
	// depends on it as it is (on its last good value, if it had one) and
	// does not act on its absence. In a relist it counts as listed. A
	// later Added or Modified (valid again) or Deleted replaces it.
	Broken
)

func (t EventType) String() string {
	switch t {
	case Added:
		return "added"
	case Modified:
		return "modified"
	case Deleted:
		return "deleted"
	case Resync:
		return "resync"
	case InSync:
		return "in-sync"
	case Error:
		return "error"
	case Broken:
		return "broken"
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// Event is one item of a watch stream.
type Event struct {
	Type     EventType
	Key      string
	Value    api.Resource // Added, Modified
	Revision int64
	Relist   bool  // Resync only
	Err      error // Error; Broken (a *DecodeError)
}

// OpType is the kind of one transaction operation.
type OpType int

const (
	OpCreate OpType = iota + 1 // fails with ErrExists if the key exists
	OpUpdate                   // fails with ErrNotFound if absent; Revision > 0 adds compare-and-swap (ErrConflict)
	OpDelete                   // fails with ErrNotFound if absent; Revision > 0 adds compare-and-delete (ErrConflict)
	OpPut                      // create or overwrite; Revision > 0 makes it a CAS update
)

// Op is one operation of a transaction. Key may be empty for create, update
// and put: it is then derived from Value.
type Op struct {
	Type     OpType
	Key      string
	Value    api.Resource
	Revision int64
}

// MaxTxnOps is etcd's default limit of operations in one transaction
// (--max-txn-ops). Writers that batch stay at or below it on every backend.
const MaxTxnOps = 128

// Datastore is implemented by every backend. All methods are safe for
// concurrent use. Values are validated before they are written.
type Datastore interface {
	// Get returns the object at key, or an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) (*KV, error)
	// List returns every object under prefix at one revision.
	List(ctx context.Context, prefix string) (*ListResult, error)
	// Watch streams changes under prefix until ctx ends, then closes the
	// channel. With revision 0 it lists first (Added events, then InSync);
	// otherwise it starts after revision and sends InSync once it is
	// established. Lost watches are resumed and compaction leads to a
	// relist, both announced by Resync (see EventType).
	Watch(ctx context.Context, prefix string, revision int64) <-chan Event
	// Create stores a new object at the key derived from it.
	Create(ctx context.Context, obj api.Resource) (*KV, error)
	// Update replaces kv.Key (derived from kv.Value when empty); with
	// kv.Revision > 0 only if it is unchanged since that revision.
	Update(ctx context.Context, kv *KV) (*KV, error)
	// Delete removes key; with revision > 0 only if unchanged since then.
	Delete(ctx context.Context, key string, revision int64) error
	// Txn applies all operations atomically or none; the error names the
	// key whose condition failed. It returns the new revision.
	Txn(ctx context.Context, ops ...Op) (int64, error)
	// Close releases connections and watchers.
	Close() error
}

// Sentinel errors, wrapped in *KeyError.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrConflict = errors.New("modified concurrently (revision mismatch)")
)

// KeyError ties an error to a key.
type KeyError struct {
	Key string
	Err error
}

func (e *KeyError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *KeyError) Unwrap() error { return e.Err }

// DecodeError is a key whose value cannot be decoded or validated: the
// object is present and broken. Get returns it for such a key, List
// reports it in Invalid and Watch as a Broken event.
type DecodeError struct {
	Key      string
	Revision int64  // when the broken value was written (0: unknown)
	Field    string // the field at fault ("spec.asNumber"), when known
	Value    string // its value as messages show it (quoted, cut), when known
	Err      error
}

// NewDecodeError describes the broken value at key, taking the field and
// value from the first *api.FieldError inside err.
func NewDecodeError(key string, revision int64, err error) *DecodeError {
	de := &DecodeError{Key: key, Revision: revision, Err: err}
	var fe *api.FieldError
	if errors.As(err, &fe) {
		de.Field, de.Value = fe.Field, fe.ValueString()
	}
	return de
}

func (e *DecodeError) Error() string { return "invalid value at " + e.Key + ": " + e.Err.Error() }
func (e *DecodeError) Unwrap() error { return e.Err }

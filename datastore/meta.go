package datastore

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/roostnet/roost/api"
)

// Every write of a resource stamps, here and only here, the metadata that
// Calico's writers set and calicoctl requires for an update: metadata.uid
// (a random UUID) and metadata.creationTimestamp (RFC 3339, whole
// seconds) when the object is created, and on an update those of the
// stored object when the new value lacks them (a writer that built the
// object afresh). Calico's IPAM records (blocks, handles, affinities, the
// IPAM configuration) and Roost's status reports are stored without
// metadata, as in Calico, and are not stamped.

// Stamp supplies the time and UIDs; WithStamp sets it for the writes made
// with a context (tests, and birdctl's reproducible output).
type Stamp struct {
	Now    func() time.Time
	NewUID func() string
}

type stampKey struct{}

// WithStamp makes the writes done with ctx take their creation time and
// UIDs from s (nil functions: the defaults).
func WithStamp(ctx context.Context, s Stamp) context.Context {
	return context.WithValue(ctx, stampKey{}, s)
}

func stampOf(ctx context.Context) Stamp {
	s, _ := ctx.Value(stampKey{}).(Stamp)
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.NewUID == nil {
		s.NewUID = NewUID
	}
	return s
}

// NewUID returns a random (version 4) UUID, as Kubernetes and Calico
// give objects.
func NewUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// StoresMetadata tells whether objects of kind are stored with their
// metadata (v3 resources and Roost's own), rather than as a bare record.
func StoresMetadata(kind string) bool {
	switch kind {
	case api.KindIPAMBlock, api.KindIPAMHandle, api.KindBlockAffinity, api.KindIPAMConfiguration, api.KindStatusReport:
		return false
	}
	return true
}

// NeedsStamp tells whether StampMetadata would have to look at the stored
// object: obj is stored with metadata and lacks a UID or creation time.
func NeedsStamp(obj api.Resource) bool {
	if obj == nil || !StoresMetadata(obj.ResourceKind()) {
		return false
	}
	md := obj.Meta()
	return md.UID == "" || md.CreationTimestamp == nil
}

// StampMetadata fills in obj's UID and creationTimestamp, which the
// backend is about to write: from old (the stored object, nil when there
// is none or it is broken) when it has them, else new ones. What obj has
// is kept. obj must be the backend's own copy.
func StampMetadata(ctx context.Context, obj, old api.Resource) {
	if !NeedsStamp(obj) {
		return
	}
	md := obj.Meta()
	var om *api.ObjectMeta
	if old != nil {
		om = old.Meta()
	}
	st := stampOf(ctx)
	if md.UID == "" {
		if om != nil && om.UID != "" {
			md.UID = om.UID
		} else {
			md.UID = st.NewUID()
		}
	}
	if md.CreationTimestamp == nil {
		if om != nil && om.CreationTimestamp != nil {
			t := *om.CreationTimestamp
			md.CreationTimestamp = &t
		} else {
			t := st.Now().UTC().Truncate(time.Second)
			md.CreationTimestamp = &t
		}
	}
}

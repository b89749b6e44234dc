package settings

import "time"

// DefaultSyncTimeout is SyncTimeout's default.
const DefaultSyncTimeout = "5m"

// SyncTimeout declares the liveness limit confd and roost-node share:
// how long a program may stay out of sync with a datastore that answers
// before its /healthz fails (internal/health.SyncLiveness).
func SyncTimeout(p *time.Duration) *Setting {
	return &Setting{Flag: "datastore-sync-timeout", Env: "ROOST_DATASTORE_SYNC_TIMEOUT", File: "datastore_sync_timeout",
		Default: DefaultSyncTimeout,
		Help:    "/healthz fails once the datastore has been out of sync this long while it answers a fresh connection (a stuck connection: a restart helps); 0 turns it off",
		Parse:   DurationOrZero(p)}
}

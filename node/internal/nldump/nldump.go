// Package nldump makes netlink dumps complete. The kernel interrupts a
// dump (links, addresses, routes, neighbours) whose table changes while it
// is read: vishvananda/netlink then returns what it got together with
// netlink.ErrDumpInterrupted, and those results may miss or repeat
// entries. Acting on them could delete what exists or skip what is
// missing, so Do runs the dump again until it completes and never hands
// on a partial one.
package nldump

import (
	"errors"
	"fmt"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/roostnet/roost/internal/backoff"
)

// Attempts bounds the tries of one dump. A dump is interrupted only by a
// change during it, so a few tries suffice unless the table changes all
// the time; then the caller gets the error and retries on its own pace
// (the dataplane at its next pass).
const Attempts = 8

// policy: the pauses between tries stay short (the change that
// interrupted the dump is usually over) and the total under 150ms.
var policy = backoff.Policy{Min: time.Millisecond, Max: 50 * time.Millisecond}

// Do runs dump until it returns without netlink.ErrDumpInterrupted, at
// most Attempts times. dump must start from scratch on every call (drop
// what an interrupted try delivered). After the last try the error wraps
// netlink.ErrDumpInterrupted.
func Do(dump func() error) error {
	b := backoff.New(policy)
	for {
		err := dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return err
		}
		if b.Attempts()+1 >= Attempts {
			return fmt.Errorf("netlink dump interrupted %d times in a row (the table keeps changing): %w", Attempts, err)
		}
		time.Sleep(b.Next())
	}
}

// List is Do for a dump returning a slice: the complete result, or nil
// and the error.
func List[T any](dump func() ([]T, error)) ([]T, error) {
	var out []T
	err := Do(func() error {
		var err error
		out, err = dump()
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

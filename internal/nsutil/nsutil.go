// Package nsutil runs code inside another network namespace.
package nsutil

import (
	"errors"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn on a dedicated OS thread switched into ns. Sockets and
// /proc/sys/net files opened by fn belong to ns. If the thread cannot be
// switched back it is left locked, so the runtime discards it.
func Do(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		err = fn()
		if serr := netns.Set(orig); serr != nil {
			errc <- errors.Join(err, serr)
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// Given reports whether h names a namespace. The zero NsHandle (file
// descriptor 0, never a namespace in practice) and closed handles (-1)
// mean "the current namespace".
func Given(h netns.NsHandle) bool { return h > 0 }

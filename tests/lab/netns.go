package lab

import (
	"fmt"

	"github.com/vishvananda/netns"

	"github.com/roostnet/roost/internal/nsutil"
)

// InNS runs fn on an OS thread switched into the named network namespace
// (a lab host, workload or machine). Sockets fn opens belong to it and
// stay usable from any goroutine.
func InNS(ns string, fn func() error) error {
	target, err := netns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("namespace %s: %w", ns, err)
	}
	defer target.Close()
	return nsutil.Do(target, fn)
}

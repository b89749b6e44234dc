package dataplane

import (
	"context"
	"errors"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/roostnet/roost/internal/nsutil"
	"github.com/roostnet/roost/node/internal/nldump"
)

// Netlink is the seam between the dataplane and the kernel: exactly the
// calls it makes. *netlink.Handle implements it (see Kernel); tests also
// use an in-memory fake (package fakenl), which is how the IPIP path is
// exercised on kernels without ipip.
type Netlink interface {
	LinkByName(name string) (netlink.Link, error)
	LinkList() ([]netlink.Link, error)
	LinkAdd(link netlink.Link) error
	LinkDel(link netlink.Link) error
	LinkSetUp(link netlink.Link) error
	LinkSetMTU(link netlink.Link, mtu int) error
	LinkSetHardwareAddr(link netlink.Link, hw []byte) error
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	AddrAdd(link netlink.Link, addr *netlink.Addr) error
	AddrDel(link netlink.Link, addr *netlink.Addr) error
	RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error)
	RouteAdd(route *netlink.Route) error
	RouteReplace(route *netlink.Route) error
	RouteDel(route *netlink.Route) error
	NeighList(linkIndex, family int) ([]netlink.Neigh, error)
	NeighSet(neigh *netlink.Neigh) error
	NeighDel(neigh *netlink.Neigh) error
}

// kernel adapts *netlink.Handle (LinkSetHardwareAddr takes net.HardwareAddr).
type kernel struct{ *netlink.Handle }

func (k kernel) LinkSetHardwareAddr(link netlink.Link, hw []byte) error {
	return k.Handle.LinkSetHardwareAddr(link, hw)
}

// Kernel returns the real implementation for a netlink handle (use
// netlink.NewHandleAt for another namespace, netlink.NewHandle for the
// current one).
func Kernel(h *netlink.Handle) Netlink { return kernel{h} }

// complete wraps the seam so that every dump the dataplane acts on is
// whole: one the kernel interrupted (netlink.ErrDumpInterrupted, a table
// changed meanwhile) is run again (nldump), never used partially. New
// puts it around whatever Netlink it is given, the fake included.
type complete struct{ Netlink }

func (c complete) LinkList() ([]netlink.Link, error) { return nldump.List(c.Netlink.LinkList) }

func (c complete) AddrList(link netlink.Link, family int) ([]netlink.Addr, error) {
	return nldump.List(func() ([]netlink.Addr, error) { return c.Netlink.AddrList(link, family) })
}

func (c complete) RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error) {
	return nldump.List(func() ([]netlink.Route, error) { return c.Netlink.RouteListFiltered(family, filter, filterMask) })
}

func (c complete) NeighList(linkIndex, family int) ([]netlink.Neigh, error) {
	return nldump.List(func() ([]netlink.Neigh, error) { return c.Netlink.NeighList(linkIndex, family) })
}

// routeIterator is implemented by *netlink.Handle: a route dump through a
// callback, without collecting a slice of routes first.
type routeIterator interface {
	RouteListFilteredIter(family int, filter *netlink.Route, filterMask uint64, f func(netlink.Route) (cont bool)) error
}

// eachRoute calls f for every route of a dump, streaming it when the
// implementation can. start is called before every try: routes an
// interrupted try delivered must be dropped there.
func (c complete) eachRoute(family int, filter *netlink.Route, filterMask uint64, start func(), f func(netlink.Route)) error {
	return nldump.Do(func() error {
		start()
		if it, ok := c.Netlink.(routeIterator); ok {
			return it.RouteListFilteredIter(family, filter, filterMask, func(r netlink.Route) bool {
				f(r)
				return true
			})
		}
		routes, err := c.Netlink.RouteListFiltered(family, filter, filterMask)
		for _, r := range routes {
			f(r)
		}
		return err
	})
}

// Event is one kernel notification the dataplane cares about.
type Event struct {
	Route *netlink.RouteUpdate
	Link  *netlink.LinkUpdate
	Neigh *netlink.NeighUpdate
	// Lost: the subscription failed; a full resync is needed.
	Lost error
}

// Subscriber delivers kernel events until ctx ends.
type Subscriber interface {
	Subscribe(ctx context.Context, out chan<- Event) error
}

// NetlinkSubscriber subscribes to route, link and neighbour events in a
// namespace (the zero NsHandle: the current one).
type NetlinkSubscriber struct{ NS netns.NsHandle }

// Subscribe implements Subscriber.
func (s NetlinkSubscriber) Subscribe(ctx context.Context, out chan<- Event) error {
	var nsp *netns.NsHandle
	if nsutil.Given(s.NS) {
		h := s.NS
		nsp = &h
	}
	done := make(chan struct{})
	lost := func(err error) {
		select {
		case out <- Event{Lost: err}:
		case <-ctx.Done():
		}
	}
	routes := make(chan netlink.RouteUpdate, 1024)
	links := make(chan netlink.LinkUpdate, 256)
	neighs := make(chan netlink.NeighUpdate, 1024)
	const buf = 8 << 20
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{
		Namespace: nsp, ErrorCallback: lost, ReceiveBufferSize: buf, ReceiveBufferForceSize: true}); err != nil {
		close(done)
		return err
	}
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{
		Namespace: nsp, ErrorCallback: lost, ReceiveBufferSize: buf, ReceiveBufferForceSize: true}); err != nil {
		close(done)
		return err
	}
	if err := netlink.NeighSubscribeWithOptions(neighs, done, netlink.NeighSubscribeOptions{
		Namespace: nsp, ErrorCallback: lost, ReceiveBufferSize: buf, ReceiveBufferForceSize: true}); err != nil {
		close(done)
		return err
	}
	go func() {
		defer close(done)
		for {
			var ev Event
			select {
			case <-ctx.Done():
				return
			case r, ok := <-routes:
				if !ok {
					lost(errors.New("route subscription closed"))
					return
				}
				ev.Route = &r
			case l, ok := <-links:
				if !ok {
					lost(errors.New("link subscription closed"))
					return
				}
				ev.Link = &l
			case n, ok := <-neighs:
				if !ok {
					lost(errors.New("neighbour subscription closed"))
					return
				}
				ev.Neigh = &n
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return nil
}

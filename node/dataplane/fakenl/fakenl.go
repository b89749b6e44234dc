// Package fakenl is an in-memory kernel for the dataplane's tests: links,
// addresses, routes (main table) and neighbours behave like the kernel's
// as far as the dataplane can tell, and any link type is accepted unless
// told otherwise — which is how the IPIP path is tested on a kernel
// without ipip.
package fakenl

import (
	"fmt"
	"net"
	"sort"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Kernel is the fake. The zero value is not usable; call New.
type Kernel struct {
	mu     sync.Mutex
	next   int
	links  map[int]netlink.Link
	addrs  map[int][]netlink.Addr
	routes map[string]netlink.Route
	neighs map[string]netlink.Neigh
	// Unsupported lists link types LinkAdd refuses with EOPNOTSUPP, as a
	// kernel without the driver does (e.g. "ipip").
	Unsupported map[string]bool
	// Calls counts calls by method name.
	Calls map[string]int
	// interrupt counts, per method, the dumps still to be interrupted.
	interrupt map[string]int
}

// New returns a kernel with only "lo".
func New() *Kernel {
	k := &Kernel{next: 1, links: map[int]netlink.Link{}, addrs: map[int][]netlink.Addr{},
		routes: map[string]netlink.Route{}, neighs: map[string]netlink.Neigh{}, Unsupported: map[string]bool{}, Calls: map[string]int{}, interrupt: map[string]int{}}
	k.addLocked(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "lo", MTU: 65536, Flags: net.FlagUp | net.FlagLoopback}})
	return k
}

func (k *Kernel) call(name string) { k.Calls[name]++ }

// InterruptDumps makes the next n dumps of method (LinkList, AddrList,
// RouteListFiltered or NeighList) fail as the kernel's do when a table
// changes during one: netlink.ErrDumpInterrupted, with part of the result.
func (k *Kernel) InterruptDumps(method string, n int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.interrupt[method] = n
}

// dumped ends a dump of method: the result, or (when the dump is to be
// interrupted) netlink.ErrDumpInterrupted with the first half of it
// missing, the larger half when odd.
func dumped[T any](k *Kernel, method string, out []T) ([]T, error) {
	if k.interrupt[method] > 0 {
		k.interrupt[method]--
		return out[(len(out)+1)/2:], netlink.ErrDumpInterrupted
	}
	return out, nil
}

func clone(l netlink.Link) netlink.Link {
	switch v := l.(type) {
	case *netlink.Vxlan:
		c := *v
		return &c
	case *netlink.Iptun:
		c := *v
		return &c
	case *netlink.Veth:
		c := *v
		return &c
	case *netlink.Dummy:
		c := *v
		return &c
	case *netlink.Device:
		c := *v
		return &c
	}
	c := netlink.Device{LinkAttrs: *l.Attrs()}
	return &c
}

func (k *Kernel) addLocked(l netlink.Link) netlink.Link {
	c := clone(l)
	a := c.Attrs()
	a.Index = k.next
	k.next++
	if a.MTU == 0 {
		a.MTU = 1500
	}
	if a.HardwareAddr == nil && a.Name != "lo" {
		a.HardwareAddr = net.HardwareAddr{0x02, 0, 0, 0, byte(a.Index >> 8), byte(a.Index)}
	}
	a.OperState = netlink.OperDown
	if a.Flags&net.FlagUp != 0 {
		a.OperState = netlink.OperUp
	}
	k.links[a.Index] = c
	return c
}

// AddLink creates a link directly (test setup), returning it.
func (k *Kernel) AddLink(l netlink.Link) netlink.Link {
	k.mu.Lock()
	defer k.mu.Unlock()
	return clone(k.addLocked(l))
}

func (k *Kernel) byName(name string) netlink.Link {
	for _, l := range k.links {
		if l.Attrs().Name == name {
			return l
		}
	}
	return nil
}

func (k *Kernel) resolve(l netlink.Link) (netlink.Link, error) {
	if l == nil {
		return nil, syscall.ENODEV
	}
	a := l.Attrs()
	if a.Index != 0 {
		if x, ok := k.links[a.Index]; ok {
			return x, nil
		}
		return nil, syscall.ENODEV
	}
	if x := k.byName(a.Name); x != nil {
		return x, nil
	}
	return nil, syscall.ENODEV
}

// LinkByName implements dataplane.Netlink.
func (k *Kernel) LinkByName(name string) (netlink.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.call("LinkByName")
	if l := k.byName(name); l != nil {
		return clone(l), nil
	}
	return nil, netlink.LinkNotFoundError{}
}

// LinkList implements dataplane.Netlink.
func (k *Kernel) LinkList() ([]netlink.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.call("LinkList")
	var out []netlink.Link
	for _, l := range k.links {
		out = append(out, clone(l))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Attrs().Index < out[j].Attrs().Index })
	return dumped(k, "LinkList", out)
}

// LinkAdd implements dataplane.Netlink.
func (k *Kernel) LinkAdd(l netlink.Link) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.call("LinkAdd")
	if k.Unsupported[l.Type()] {
		return syscall.EOPNOTSUPP
	}
	if k.byName(l.Attrs().Name) != nil {
		return syscall.EEXIST
	}
	c := k.addLocked(l)
	l.Attrs().Index = c.Attrs().Index
	return nil
}

// LinkDel implements dataplane.Netlink.
func (k *Kernel) LinkDel(l netlink.Link) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.call("LinkDel")
	x, err := k.resolve(l)
	if err != nil {
		return err
	}
	k.dropLinkLocked(x.Attrs().Index)
	delete(k.links, x.Attrs().Index)
	return nil
}

// dropLinkLocked removes what the kernel flushes when a link goes down.
func (k *Kernel) dropLinkLocked(idx int) {
	delete(k.addrs, idx)
	for key, r := range k.routes {
		if r.LinkIndex == idx {
			delete(k.routes, key)
		}
	}
	for key, n := range k.neighs {
		if n.LinkIndex == idx {
			delete(k.neighs, key)
		}
	}
}

// LinkSetUp implements dataplane.Netlink.
func (k *Kernel) LinkSetUp(l netlink.Link) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.call("LinkSetUp")
	x, err := k.resolve(l)
	if err != nil {
		return err
	}
	x.Attrs().Flags |= net.FlagUp
	x.Attrs().OperState = netlink.OperUp
	return nil
}

// SetDown takes a link down (test drift), flushing its routes.
func (k *Kernel) SetDown(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if x := k.byName(name); x != nil {
		x.Attrs().Flags &^= net.FlagUp
		x.Attrs().OperState = netlink.OperDown
		idx := x.Attrs().Index
		for key, r := range k.routes {
			if r.LinkIndex == idx {
				delete(k.routes, key)
			}
		}
	}
}

// LinkSetMTU implements dataplane.Netlink.
func (k *Kernel) LinkSetMTU(l netlink.Link, mtu int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.call("LinkSetMTU")
	x, err := k.resolve(l)
	if err != nil {
		return err
	}
	x.Attrs().MTU = mtu
	return nil
}

// LinkSetHardwareAddr implements dataplane.Netlink.
func (k *Kernel) LinkSetHardwareAddr(l netlink.Link, hw []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.call("LinkSetHardwareAddr")
	x, err := k.resolve(l)
	if err != nil {
		return err
	}
	x.Attrs().HardwareAddr = append(net.HardwareAddr(nil), hw...)
	return nil
}

// AddrList implements dataplane.Netlink (nil link: every link).
func (k *Kernel) AddrList(l netlink.Link, family int) ([]netlink.Addr, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.call("AddrList")
	var idxs []int
	if l == nil {
		for i := range k.links {
			idxs = append(idxs, i)
		}
		sort.Ints(idxs)
	} else {
		x, err := k.resolve(l)
		if err != nil {
			return nil, err
		}
		idxs = []int{x.Attrs().Index}
	}
	var out []netlink.Addr
	for _, i := range idxs {
		for _, a := range k.addrs[i] {
			is4 := a.IP.To4() != nil
			if family == netlink.FAMILY_ALL || (family == netlink.FAMILY_V4) == is4 {
				a.LinkIndex = i
				out = append(out, a)
			}
		}
	}
	return dumped(k, "AddrList", out)
}

// AddrAdd implements dataplane.Netlink.
func (k *Kernel) AddrAdd(l netlink.Link, a *netlink.Addr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.call("AddrAdd")
	x, err := k.resolve(l)
	if err != nil {
		return err
	}
	idx := x.Attrs().Index
	for _, e := range k.addrs[idx] {
		if e.IP.Equal(a.IP) {
			return syscall.EEXIST
		}
	}
	k.addrs[idx] = append(k.addrs[idx], netlink.Addr{IPNet: &net.IPNet{IP: a.IP, Mask: a.Mask}, LinkIndex: idx})
	return nil
}

// AddrDel implements dataplane.Netlink.
func (k *Kernel) AddrDel(l netlink.Link, a *netlink.Addr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.call("AddrDel")
	x, err := k.resolve(l)
	if err != nil {
		return err
	}
	idx := x.Attrs().Index
	for i, e := range k.addrs[idx] {
		if e.IP.Equal(a.IP) {
			k.addrs[idx] = append(k.addrs[idx][:i], k.addrs[idx][i+1:]...)
			return nil
		}
	}
	return syscall.EADDRNOTAVAIL
}

func routeKey(r *netlink.Route) string {
	t := r.Table
	if t == 0 {
		t = unix.RT_TABLE_MAIN
	}
	d := "default"
	if r.Dst != nil {
		d = r.Dst.String()
	}
	return fmt.Sprintf("%d/%s/%d", t, d, routePriority(r))
}

// routeFamily is the family of a route's destination (IPv4 for none).
func routeFamily(r *netlink.Route) int {
	if r.Dst != nil && r.Dst.IP.To4() == nil {
		return netlink.FAMILY_V6
	}
	return netlink.FAMILY_V4
}

// routePriority is the metric the kernel stores: IPv6 routes added
// without one get 1024.
func routePriority(r *netlink.Route) int {
	if r.Priority == 0 && routeFamily(r) == netlink.FAMILY_V6 {
		return 1024
	}
	return r.Priority
}

func normRoute(r netlink.Route) netlink.Route {
	if r.Table == 0 {
		r.Table = unix.RT_TABLE_MAIN
	}
	if r.Type == 0 {
		r.Type = unix.RTN_UNICAST
	}
	r.Family = routeFamily(&r)
	r.Priority = routePriority(&r)
	if r.Family == netlink.FAMILY_V6 {
		r.Scope = netlink.SCOPE_UNIVERSE // IPv6 routes keep no scope
	}
	return r
}

func (k *Kernel) checkRoute(r *netlink.Route) error {
	if r.Type == unix.RTN_BLACKHOLE {
		return nil
	}
	l, ok := k.links[r.LinkIndex]
	if !ok {
		return syscall.ENODEV
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		return syscall.ENETDOWN
	}
	return nil
}

// RouteAdd implements dataplane.Netlink.
func (k *Kernel) RouteAdd(r *netlink.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.call("RouteAdd")
	if _, ok := k.routes[routeKey(r)]; ok {
		return syscall.EEXIST
	}
	if err := k.checkRoute(r); err != nil {
		return err
	}
	k.routes[routeKey(r)] = normRoute(*r)
	return nil
}

// RouteReplace implements dataplane.Netlink.
func (k *Kernel) RouteReplace(r *netlink.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.call("RouteReplace")
	if err := k.checkRoute(r); err != nil {
		return err
	}
	k.routes[routeKey(r)] = normRoute(*r)
	return nil
}

// RouteDel implements dataplane.Netlink.
func (k *Kernel) RouteDel(r *netlink.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.call("RouteDel")
	key := routeKey(r)
	e, ok := k.routes[key]
	if !ok || (r.Protocol != 0 && e.Protocol != r.Protocol) {
		return syscall.ESRCH
	}
	delete(k.routes, key)
	return nil
}

// RouteListFiltered implements dataplane.Netlink (family, protocol,
// table, dst and oif filters).
func (k *Kernel) RouteListFiltered(family int, f *netlink.Route, mask uint64) ([]netlink.Route, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.call("RouteListFiltered")
	var out []netlink.Route
	for _, r := range k.routesLocked(f, mask) {
		if family == netlink.FAMILY_ALL || r.Family == family {
			out = append(out, r)
		}
	}
	return dumped(k, "RouteListFiltered", out)
}

func (k *Kernel) routesLocked(f *netlink.Route, mask uint64) []netlink.Route {
	var out []netlink.Route
	for _, r := range k.routes {
		if f != nil {
			if mask&netlink.RT_FILTER_PROTOCOL != 0 && r.Protocol != f.Protocol {
				continue
			}
			if mask&netlink.RT_FILTER_TABLE != 0 && f.Table != 0 && r.Table != f.Table {
				continue
			}
			if mask&netlink.RT_FILTER_OIF != 0 && r.LinkIndex != f.LinkIndex {
				continue
			}
			if mask&netlink.RT_FILTER_DST != 0 && (r.Dst == nil) != (f.Dst == nil) || (f.Dst != nil && r.Dst != nil && r.Dst.String() != f.Dst.String()) {
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// Routes returns every route (for assertions).
func (k *Kernel) Routes() []netlink.Route {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.routesLocked(nil, 0)
}

// DeleteRoute removes a route behind the dataplane's back (drift).
func (k *Kernel) DeleteRoute(dst string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	for key, r := range k.routes {
		if r.Dst != nil && r.Dst.String() == dst {
			delete(k.routes, key)
			return true
		}
	}
	return false
}

func neighKey(n *netlink.Neigh) string {
	if n.Family == unix.AF_BRIDGE {
		return fmt.Sprintf("%d/br/%s", n.LinkIndex, n.HardwareAddr)
	}
	return fmt.Sprintf("%d/%d/%s", n.LinkIndex, n.Family, n.IP)
}

// NeighList implements dataplane.Netlink.
func (k *Kernel) NeighList(linkIndex, family int) ([]netlink.Neigh, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.call("NeighList")
	var out []netlink.Neigh
	for _, n := range k.neighs {
		if (linkIndex == 0 || n.LinkIndex == linkIndex) && (family == 0 || n.Family == family) {
			out = append(out, n)
		}
	}
	return dumped(k, "NeighList", out)
}

// NeighSet implements dataplane.Netlink.
func (k *Kernel) NeighSet(n *netlink.Neigh) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.call("NeighSet")
	if _, ok := k.links[n.LinkIndex]; !ok {
		return syscall.ENODEV
	}
	c := *n
	if c.Family == 0 {
		c.Family = netlink.FAMILY_V4
	}
	k.neighs[neighKey(&c)] = c
	return nil
}

// NeighDel implements dataplane.Netlink.
func (k *Kernel) NeighDel(n *netlink.Neigh) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.call("NeighDel")
	c := *n
	if c.Family == 0 {
		c.Family = netlink.FAMILY_V4
	}
	key := neighKey(&c)
	if _, ok := k.neighs[key]; !ok {
		return syscall.ENOENT
	}
	delete(k.neighs, key)
	return nil
}

// Link returns a copy of the named link, or nil.
func (k *Kernel) Link(name string) netlink.Link {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l := k.byName(name); l != nil {
		return clone(l)
	}
	return nil
}

// Addrs returns the addresses of the named link as CIDR strings.
func (k *Kernel) Addrs(name string) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.byName(name)
	if l == nil {
		return nil
	}
	var out []string
	for _, a := range k.addrs[l.Attrs().Index] {
		out = append(out, a.IPNet.String())
	}
	sort.Strings(out)
	return out
}

package dataplane

import (
	"errors"
	"syscall"

	"github.com/vishvananda/netlink"
)

// The link cache: names and indexes of the kernel's links as last seen,
// and what a link that goes away takes with it.

func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, syscall.ENODEV)
}

// linkIndex resolves a device name, asking the kernel on a cache miss.
func (d *Dataplane) linkIndex(name string) (int, bool) {
	if i, ok := d.linkIdx[name]; ok {
		return i, true
	}
	l, err := d.nl.LinkByName(name)
	if err != nil {
		return 0, false
	}
	d.noteLink(l)
	return l.Attrs().Index, true
}

func (d *Dataplane) noteLink(l netlink.Link) {
	a := l.Attrs()
	if old, ok := d.linkName[a.Index]; ok && old != a.Name {
		delete(d.linkIdx, old)
	}
	d.linkIdx[a.Name] = a.Index
	d.linkName[a.Index] = a.Name
}

// linkGone forgets the routes the kernel dropped with a link (deleted or
// taken down) and marks them for reprogramming.
func (d *Dataplane) linkGone(idx int) {
	for dst := range d.progByLink[idx] {
		delete(d.programmed, dst)
		d.dirtyRoutes.add(dst)
	}
	delete(d.progByLink, idx)
	for _, v := range d.vx {
		if i, ok := d.linkIdx[v.dev]; ok && idx != 0 && idx == i {
			clear(v.neighs)
			clear(v.fdb)
			for n := range v.vteps {
				d.dirtyVTEPs.add(n)
			}
		}
	}
}

package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/api"
)

// FamilyMode says whether an address family is wanted (AssignArgs).
type FamilyMode int

const (
	// FamilyAuto: an address of the family when a usable pool of it
	// exists for the node (the default).
	FamilyAuto FamilyMode = iota
	// FamilyOn: an address of the family is required.
	FamilyOn
	// FamilyOff: no address of the family.
	FamilyOff
)

// ParseFamilyMode reads "auto", "true" or "false" (and the usual boolean
// spellings).
func ParseFamilyMode(s string) (FamilyMode, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	if v == "" || v == "auto" {
		return FamilyAuto, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return FamilyAuto, fmt.Errorf("%q: use auto, true or false", s)
	}
	if b {
		return FamilyOn, nil
	}
	return FamilyOff, nil
}

// AssignArgs asks for the addresses of one handle (a workload, a pod):
// at most one per family.
type AssignArgs struct {
	Handle     string            // required
	Attrs      map[string]string // secondary attributes (node, namespace, pod...)
	NodeLabels map[string]string // for the pools' nodeSelector
	// Namespace is the workload's namespace: the pools' namespaceSelector
	// is evaluated against its labels (NamespaceLabels); "" is a request
	// outside any namespace (a namespaceSelector sees no labels).
	Namespace  string
	Use        string // api.UseWorkload (default) or api.UseTunnel
	IPv4, IPv6 FamilyMode
	// IPs are specific addresses, at most one per family; giving one
	// turns its family on.
	IPs []netip.Addr
	// Pools restricts the candidates (nil: every pool in the datastore),
	// e.g. a CNI configuration's ipv4_pools/ipv6_pools.
	Pools []*api.IPPool
}

// Assignment is what a handle holds after Assign (zero Addr: none of the
// family).
type Assignment struct {
	IPv4, IPv6 netip.Addr
}

// Addrs lists the assigned addresses, IPv4 first.
func (a Assignment) Addrs() []netip.Addr {
	var out []netip.Addr
	for _, x := range []netip.Addr{a.IPv4, a.IPv6} {
		if x.IsValid() {
			out = append(out, x)
		}
	}
	return out
}

// Assign gives handle one address of each wanted family. It converges:
// an address the handle already holds is kept (a different specific
// address for a family it has one of is refused: release first), so
// running it again after a crash never takes a second address. A failure
// gives back what this call took: nothing is left half-assigned.
func (c *Client) Assign(ctx context.Context, a AssignArgs) (Assignment, error) {
	var out Assignment
	if a.Handle == "" {
		return out, errors.New("ipam: a handle is required")
	}
	want := map[int]FamilyMode{4: a.IPv4, 6: a.IPv6}
	specific := map[int]netip.Addr{}
	for _, ip := range a.IPs {
		ip = ip.Unmap()
		f := family(ip)
		if old, dup := specific[f]; dup && old != ip {
			return out, fmt.Errorf("ipam: two IPv%d addresses requested (%s, %s): at most one per family", f, old, ip)
		}
		specific[f] = ip
		want[f] = FamilyOn
	}
	nsLabels, err := NamespaceLabels(ctx, c.ds, a.Namespace)
	if err != nil {
		return out, err
	}
	held, err := c.AddrsByHandle(ctx, a.Handle)
	if err != nil {
		return out, err
	}
	var took []netip.Addr
	var skips []string // why each family found no pool
	undo := func(cause error) (Assignment, error) {
		for _, ip := range took {
			if _, err := c.ReleaseIP(context.WithoutCancel(ctx), ip, a.Handle); err != nil {
				c.log.WithError(err).WithFields(logrus.Fields{"ip": ip, "handle": a.Handle}).Error("ipam: giving back an address after a failed assignment")
			}
		}
		return Assignment{}, cause
	}
	for _, f := range []int{4, 6} {
		if want[f] == FamilyOff {
			continue
		}
		var have netip.Addr
		for _, h := range held {
			if family(h) == f {
				have = h
				break
			}
		}
		req := Request{Handle: a.Handle, Attrs: a.Attrs, Family: f, Use: a.Use, NodeLabels: a.NodeLabels, NamespaceLabels: nsLabels, Pools: a.Pools}
		var got netip.Addr
		switch ip, ok := specific[f]; {
		case ok && have.IsValid() && have != ip:
			return undo(fmt.Errorf("ipam: %s already holds %s; release it first to take %s", a.Handle, have, ip))
		case ok && !have.IsValid():
			if err := c.AssignIP(ctx, ip, req); err != nil {
				return undo(err)
			}
			got = ip
			took = append(took, ip)
		case have.IsValid():
			got = have
		default:
			ip, err := c.AutoAssign(ctx, req)
			if errors.Is(err, ErrNoPool) && want[f] == FamilyAuto {
				skips = append(skips, fmt.Sprintf("IPv%d: %v", f, err))
				continue
			}
			if err != nil {
				return undo(err)
			}
			got = ip
			took = append(took, ip)
		}
		if f == 4 {
			out.IPv4 = got
		} else {
			out.IPv6 = got
		}
	}
	if !out.IPv4.IsValid() && !out.IPv6.IsValid() {
		return out, fmt.Errorf("ipam: no address for %s: no enabled IPv4 or IPv6 pool allows %s addresses on node %s%s: %w (%s)",
			a.Handle, orDefault(a.Use, api.UseWorkload), c.node, inNamespace(a.Namespace), ErrNoPool, strings.Join(skips, "; "))
	}
	return out, nil
}

func inNamespace(ns string) string {
	if ns == "" {
		return ""
	}
	return " in namespace " + ns
}

func family(ip netip.Addr) int {
	if ip.Is4() {
		return 4
	}
	return 6
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

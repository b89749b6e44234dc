package startup

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/roostnet/roost/node/internal/nldump"
)

// Autodetection methods (IP_AUTODETECTION_METHOD / IP6_AUTODETECTION_METHOD).
const (
	MethodFirstFound    = "first-found"
	MethodInterface     = "interface"
	MethodSkipInterface = "skip-interface"
	MethodCIDR          = "cidr"
	MethodCanReach      = "can-reach"
)

// DefaultExcludes are the interfaces first-found never picks: container
// bridges, veths, tunnels, loopback and other virtual devices whose
// addresses are not the host's identity.
var DefaultExcludes = []string{
	`^docker.*`, `^cbr.*`, `^dummy.*`, `^virbr.*`, `^lxcbr.*`, `^veth.*`, `^lo$`,
	`^cali.*`, `^tunl.*`, `^flannel.*`, `^kube-ipvs.*`, `^cni.*`, `^vxlan\.calico.*`,
	`^vxlan-v6\.calico.*`, `^wireguard\.cali.*`, `^wg-v6\.cali.*`, `^br-.*`,
	`^nodelocaldns.*`, `^podman.*`, `^egress\.calico.*`, `^bpf(in|out)\.cali.*`,
}

// Method is a parsed autodetection method.
type Method struct {
	Kind    string
	Regexes []*regexp.Regexp // interface, skip-interface
	CIDRs   []netip.Prefix   // cidr
	Target  string           // can-reach: an IP or host name
	text    string
}

func (m Method) String() string { return m.text }

// ParseMethod parses "first-found", "interface=eth.*,ens.*",
// "skip-interface=...", "cidr=10.0.0.0/8,..." or "can-reach=8.8.8.8".
func ParseMethod(s string) (Method, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		s = MethodFirstFound
	}
	m := Method{text: s}
	kind, arg, hasArg := strings.Cut(s, "=")
	m.Kind = kind
	switch kind {
	case MethodFirstFound:
		if hasArg {
			return m, fmt.Errorf("autodetection method %q takes no argument", s)
		}
		return m, nil
	case MethodInterface, MethodSkipInterface:
		for _, r := range splitList(arg) {
			re, err := regexp.Compile(r)
			if err != nil {
				return m, fmt.Errorf("autodetection method %q: bad regular expression %q: %v", s, r, err)
			}
			m.Regexes = append(m.Regexes, re)
		}
		if len(m.Regexes) == 0 {
			return m, fmt.Errorf("autodetection method %q: give at least one interface regular expression", s)
		}
		return m, nil
	case MethodCIDR:
		for _, c := range splitList(arg) {
			p, err := netip.ParsePrefix(c)
			if err != nil {
				return m, fmt.Errorf("autodetection method %q: %q is not a CIDR", s, c)
			}
			m.CIDRs = append(m.CIDRs, p.Masked())
		}
		if len(m.CIDRs) == 0 {
			return m, fmt.Errorf("autodetection method %q: give at least one CIDR", s)
		}
		return m, nil
	case MethodCanReach:
		m.Target = strings.TrimSpace(arg)
		if m.Target == "" {
			return m, fmt.Errorf("autodetection method %q: give an address or host name to reach", s)
		}
		return m, nil
	}
	return m, fmt.Errorf("unknown autodetection method %q (use first-found, interface=, skip-interface=, cidr= or can-reach=)", s)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// LinkLister is the part of *netlink.Handle autodetection uses.
type LinkLister interface {
	LinkList() ([]netlink.Link, error)
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
}

// Detector finds this host's address.
type Detector struct {
	NL LinkLister
	// Dial opens a UDP "connection" for can-reach (no packet is sent);
	// nil means net.Dial. Tests dial inside a namespace.
	Dial func(network, address string) (net.Conn, error)
	// Resolve looks up can-reach host names; nil means net.LookupIP.
	Resolve func(host string) ([]net.IP, error)
}

// Detected is an address found on an interface, with its prefix length.
type Detected struct {
	Addr  netip.Prefix // e.g. 10.0.0.5/24 (host bits kept)
	Iface string
}

// ErrNotFound means no address matched.
var ErrNotFound = errors.New("no matching address")

type ifaceAddrs struct {
	name  string
	index int
	addrs []netip.Prefix
}

// interfaces lists the up interfaces with their usable addresses of
// family, in interface index order.
func (d *Detector) interfaces(family int) ([]ifaceAddrs, error) {
	// Dumps are retried until complete (nldump): an interrupted one may
	// miss the interface that should be picked.
	links, err := nldump.List(d.NL.LinkList)
	if err != nil {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	sort.Slice(links, func(i, j int) bool { return links[i].Attrs().Index < links[j].Attrs().Index })
	fam := netlink.FAMILY_V4
	if family == 6 {
		fam = netlink.FAMILY_V6
	}
	var out []ifaceAddrs
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := nldump.List(func() ([]netlink.Addr, error) { return d.NL.AddrList(l, fam) })
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, fmt.Errorf("listing addresses of %s: %w", a.Name, err)
		}
		if err != nil {
			continue // the interface went away meanwhile
		}
		ia := ifaceAddrs{name: a.Name, index: a.Index}
		for _, ad := range addrs {
			ip, ok := netip.AddrFromSlice(ad.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			if !usable(ip, family) {
				continue
			}
			ones, _ := ad.Mask.Size()
			ia.addrs = append(ia.addrs, netip.PrefixFrom(ip, ones))
		}
		out = append(out, ia)
	}
	return out, nil
}

// usable: a global unicast address of the family (no loopback, link-local,
// multicast or unspecified).
func usable(ip netip.Addr, family int) bool {
	if (family == 6) != ip.Is6() {
		return false
	}
	return ip.IsGlobalUnicast() && !ip.IsLinkLocalUnicast()
}

func matchAny(res []*regexp.Regexp, s string) bool {
	for _, r := range res {
		if r.MatchString(s) {
			return true
		}
	}
	return false
}

var defaultExcludeREs = func() []*regexp.Regexp {
	var out []*regexp.Regexp
	for _, s := range DefaultExcludes {
		out = append(out, regexp.MustCompile(s))
	}
	return out
}()

// Detect runs the method for family 4 or 6.
func (d *Detector) Detect(m Method, family int) (Detected, error) {
	if m.Kind == "" {
		m, _ = ParseMethod(MethodFirstFound)
	}
	if m.Kind == MethodCanReach {
		return d.canReach(m, family)
	}
	ifaces, err := d.interfaces(family)
	if err != nil {
		return Detected{}, err
	}
	for _, ia := range ifaces {
		switch m.Kind {
		case MethodFirstFound:
			if matchAny(defaultExcludeREs, ia.name) {
				continue
			}
		case MethodInterface:
			if !matchAny(m.Regexes, ia.name) {
				continue
			}
		case MethodSkipInterface:
			if matchAny(m.Regexes, ia.name) {
				continue
			}
		}
		for _, a := range ia.addrs {
			if m.Kind == MethodCIDR && !inAny(m.CIDRs, a.Addr()) {
				continue
			}
			return Detected{Addr: a, Iface: ia.name}, nil
		}
	}
	return Detected{}, fmt.Errorf("IPv%d autodetection %q: %w on any up interface", family, m.String(), ErrNotFound)
}

func inAny(cidrs []netip.Prefix, a netip.Addr) bool {
	for _, c := range cidrs {
		if c.Contains(a) {
			return true
		}
	}
	return false
}

// canReach asks the kernel which source address it would use toward the
// target (a UDP "connect" sends nothing) and finds it on an interface.
func (d *Detector) canReach(m Method, family int) (Detected, error) {
	target := m.Target
	ip, err := netip.ParseAddr(target)
	if err != nil {
		resolve := d.Resolve
		if resolve == nil {
			resolve = net.LookupIP
		}
		ips, rerr := resolve(target)
		if rerr != nil {
			return Detected{}, fmt.Errorf("autodetection %q: resolving %s: %w", m.String(), target, rerr)
		}
		for _, x := range ips {
			if a, ok := netip.AddrFromSlice(x); ok && (family == 6) == a.Unmap().Is6() {
				ip = a.Unmap()
				break
			}
		}
		if !ip.IsValid() {
			return Detected{}, fmt.Errorf("autodetection %q: %s has no IPv%d address", m.String(), target, family)
		}
	}
	if (family == 6) != ip.Is6() {
		return Detected{}, fmt.Errorf("autodetection %q: %s is not an IPv%d address", m.String(), ip, family)
	}
	dial := d.Dial
	if dial == nil {
		dial = net.Dial
	}
	conn, err := dial("udp", netip.AddrPortFrom(ip, 80).String())
	if err != nil {
		return Detected{}, fmt.Errorf("autodetection %q: no route to %s: %w", m.String(), ip, err)
	}
	local, _ := netip.ParseAddrPort(conn.LocalAddr().String())
	conn.Close()
	src := local.Addr().Unmap()
	ifaces, err := d.interfaces(family)
	if err != nil {
		return Detected{}, err
	}
	for _, ia := range ifaces {
		for _, a := range ia.addrs {
			if a.Addr() == src {
				return Detected{Addr: a, Iface: ia.name}, nil
			}
		}
	}
	return Detected{}, fmt.Errorf("autodetection %q: source address %s toward %s is on no up interface: %w", m.String(), src, ip, ErrNotFound)
}

// Package nstest gives the node agent's tests throwaway network
// namespaces: unique names, loopback up, always deleted by t.Cleanup.
// Tests need root; without it they skip, except under CI=true where a
// missing privilege is a failure.
package nstest

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/roostnet/roost/internal/nsutil"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// RequireRoot skips (or fails under CI=true) when not running as root or
// when network namespaces cannot be created.
func RequireRoot(t testing.TB) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root (network namespaces)"
	} else if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		why = "no network namespace support: " + err.Error()
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true: %s", why)
	}
	t.Skip(why)
}

// NS is one named network namespace.
type NS struct {
	Name   string
	Path   string
	Handle netns.NsHandle
	NL     *netlink.Handle
	peers  int
}

// New creates a namespace named after the test; it is removed when the
// test ends, whatever the outcome.
func New(t testing.TB, role string) *NS {
	t.Helper()
	RequireRoot(t)
	var rb [3]byte
	_, _ = rand.Read(rb[:])
	name := fmt.Sprintf("roost-%s-%s-%d-%s", short(t.Name()), role, os.Getpid()%100000, hex.EncodeToString(rb[:]))
	ns, err := create(name)
	if err != nil {
		t.Fatalf("nstest: create namespace %s: %v", name, err)
	}
	t.Cleanup(func() { ns.Close() })
	lo, err := ns.NL.LinkByName("lo")
	if err == nil {
		err = ns.NL.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("nstest: %s: loopback: %v", name, err)
	}
	return ns
}

func short(s string) string {
	s = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, strings.TrimPrefix(s, "Test"))
	if len(s) > 20 {
		s = s[:20]
	}
	return strings.ToLower(s)
}

func create(name string) (*NS, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return nil, err
	}
	defer orig.Close()
	h, err := netns.NewNamed(name)
	if serr := netns.Set(orig); serr != nil {
		panic("nstest: cannot return to the original namespace: " + serr.Error())
	}
	if err != nil {
		return nil, err
	}
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		h.Close()
		_ = netns.DeleteNamed(name)
		return nil, err
	}
	return &NS{Name: name, Path: "/var/run/netns/" + name, Handle: h, NL: nl}, nil
}

// Close deletes the namespace.
func (n *NS) Close() {
	if n.NL != nil {
		n.NL.Close()
		n.NL = nil
	}
	if n.Handle.IsOpen() {
		n.Handle.Close()
	}
	_ = netns.DeleteNamed(n.Name)
}

// Do runs fn on an OS thread switched into the namespace.
func (n *NS) Do(fn func() error) error { return Do(n.Handle, fn) }

// Do runs fn on an OS thread switched into ns.
func Do(ns netns.NsHandle, fn func() error) error { return nsutil.Do(ns, fn) }

// Veth connects a (name aName) and b (name bName) with a veth pair, up.
func Veth(t testing.TB, a *NS, aName string, b *NS, bName string) {
	t.Helper()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: aName}, PeerName: bName, PeerNamespace: netlink.NsFd(int(b.Handle))}
	if err := a.NL.LinkAdd(v); err != nil {
		t.Fatalf("nstest: veth %s/%s: %v", aName, bName, err)
	}
	for _, x := range []struct {
		ns   *NS
		name string
	}{{a, aName}, {b, bName}} {
		l, err := x.ns.NL.LinkByName(x.name)
		if err == nil {
			err = x.ns.NL.LinkSetUp(l)
		}
		if err != nil {
			t.Fatalf("nstest: up %s: %v", x.name, err)
		}
	}
}

// Link adds a link (dummy, bridge, ...) to the namespace and sets it up.
func (n *NS) Link(t testing.TB, l netlink.Link) netlink.Link {
	t.Helper()
	if err := n.NL.LinkAdd(l); err != nil {
		t.Fatalf("nstest: add %s: %v", l.Attrs().Name, err)
	}
	got, err := n.NL.LinkByName(l.Attrs().Name)
	if err == nil {
		err = n.NL.LinkSetUp(got)
	}
	if err != nil {
		t.Fatalf("nstest: up %s: %v", l.Attrs().Name, err)
	}
	return got
}

// Dummy adds an interface that is up with carrier. Some kernels (this
// one) lack the dummy driver, so it is one end of a veth pair whose other
// end ("veth" + a number, which no autodetection method picks by default)
// stays in the namespace, up, without addresses.
func (n *NS) Dummy(t testing.TB, name string) netlink.Link {
	t.Helper()
	n.peers++
	peer := fmt.Sprintf("vethp%d", n.peers)
	if err := n.NL.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer}); err != nil {
		t.Fatalf("nstest: add %s: %v", name, err)
	}
	for _, x := range []string{peer, name} {
		l, err := n.NL.LinkByName(x)
		if err == nil {
			err = n.NL.LinkSetUp(l)
		}
		if err != nil {
			t.Fatalf("nstest: up %s: %v", x, err)
		}
	}
	l, err := n.NL.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Addr adds an address given as CIDR ("10.0.0.1/24", "fd00::1/64") to
// link name; IPv6 addresses skip duplicate address detection, so they are
// usable at once.
func (n *NS) Addr(t testing.TB, name, cidr string) {
	t.Helper()
	l, err := n.NL.LinkByName(name)
	if err != nil {
		t.Fatalf("nstest: %s: %v", name, err)
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	if a.IP.To4() == nil {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := n.NL.AddrAdd(l, a); err != nil {
		t.Fatalf("nstest: addr %s on %s: %v", cidr, name, err)
	}
}

// Route adds "dst dev name [via gw]" (gw may be "").
func (n *NS) Route(t testing.TB, dst, name, gw string) {
	t.Helper()
	l, err := n.NL.LinkByName(name)
	if err != nil {
		t.Fatalf("nstest: %s: %v", name, err)
	}
	_, d, err := net.ParseCIDR(dst)
	if err != nil {
		t.Fatal(err)
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: d}
	if gw != "" {
		r.Gw = net.ParseIP(gw)
	} else {
		r.Scope = netlink.SCOPE_LINK
	}
	if err := n.NL.RouteAdd(r); err != nil {
		t.Fatalf("nstest: route %s: %v", dst, err)
	}
}

// Sysctl writes a /proc/sys value inside the namespace.
func (n *NS) Sysctl(t testing.TB, path, value string) {
	t.Helper()
	err := n.Do(func() error {
		return os.WriteFile("/proc/sys/"+strings.ReplaceAll(path, ".", "/"), []byte(value), 0o644)
	})
	if err != nil {
		t.Fatalf("nstest: sysctl %s=%s: %v", path, value, err)
	}
}

// Ping sends ICMP (ICMPv6 for an IPv6 dst) echo requests from inside the
// namespace to dst until one is answered or the timeout passes.
func (n *NS) Ping(dst netip.Addr, timeout time.Duration) error {
	return n.ping(dst, 8, false, timeout)
}

// PingDF is Ping with payload bytes of ICMP data (an IPv4 packet is
// payload + 28 bytes, an IPv6 one payload + 48) and fragmentation
// forbidden. A packet larger than the route's MTU fails at once with an
// error wrapping unix.EMSGSIZE.
func (n *NS) PingDF(dst netip.Addr, payload int, timeout time.Duration) error {
	return n.ping(dst, payload, true, timeout)
}

func (n *NS) ping(dst netip.Addr, payload int, df bool, timeout time.Duration) error {
	v6 := dst.Is6()
	var fd int
	err := n.Do(func() error {
		var err error
		if v6 {
			fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
		} else {
			fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("ping: socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	if df {
		level, opt, val := unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO
		if v6 {
			level, opt, val = unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DO
		}
		if err := unix.SetsockoptInt(fd, level, opt, val); err != nil {
			return err
		}
	}
	id := uint16(os.Getpid())
	var to unix.Sockaddr
	request, reply := byte(8), byte(0)
	if v6 {
		// The kernel fills in the ICMPv6 checksum of raw sockets.
		to = &unix.SockaddrInet6{Addr: dst.As16()}
		request, reply = 128, 129
	} else {
		to = &unix.SockaddrInet4{Addr: dst.As4()}
	}
	deadline := time.Now().Add(timeout)
	var lastErr error = errors.New("no reply")
	for seq := uint16(1); time.Now().Before(deadline); seq++ {
		msg := make([]byte, 8+max(payload, 0))
		msg[0] = request
		binary.BigEndian.PutUint16(msg[4:], id)
		binary.BigEndian.PutUint16(msg[6:], seq)
		copy(msg[8:], "roost!!!")
		if !v6 {
			binary.BigEndian.PutUint16(msg[2:], checksum(msg))
		}
		if err := unix.Sendto(fd, msg, 0, to); err != nil {
			if errors.Is(err, unix.EMSGSIZE) {
				return fmt.Errorf("ping %s from %s with %d bytes, DF: %w", dst, n.Name, payload, err)
			}
			lastErr = err
			time.Sleep(100 * time.Millisecond)
			continue
		}
		buf := make([]byte, 65536)
		for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
			k, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				break
			}
			icmp := buf[:k]
			var src netip.Addr
			if v6 { // raw ICMPv6 sockets deliver no IP header
				if f, ok := from.(*unix.SockaddrInet6); ok {
					src = netip.AddrFrom16(f.Addr)
				}
			} else {
				if k < 20 {
					continue
				}
				ihl := int(buf[0]&0x0f) * 4
				if k < ihl+8 {
					continue
				}
				icmp = buf[ihl:k]
				if f, ok := from.(*unix.SockaddrInet4); ok {
					src = netip.AddrFrom4(f.Addr)
				}
			}
			if len(icmp) >= 8 && icmp[0] == reply && binary.BigEndian.Uint16(icmp[4:]) == id && src == dst {
				return nil
			}
			if !v6 && len(icmp) >= 8+20+8 && icmp[0] == 3 && icmp[1] == 4 {
				// Fragmentation needed, for one of ours.
				inner := icmp[8:]
				if ihl := int(inner[0]&0x0f) * 4; len(inner) >= ihl+8 && binary.BigEndian.Uint16(inner[ihl+4:]) == id {
					lastErr = fmt.Errorf("fragmentation needed (next-hop MTU %d)", binary.BigEndian.Uint16(icmp[6:]))
				}
			}
		}
	}
	return fmt.Errorf("ping %s from %s: %w", dst, n.Name, lastErr)
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

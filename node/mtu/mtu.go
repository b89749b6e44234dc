// Package mtu works out the MTUs of the node's tunnel devices and
// workload interfaces the way calico-node (Felix) does, and keeps the
// result in the file the CNI plugin and `roost-node workload add` read.
//
// The host MTU is that of the interface(s) holding the node's addresses;
// with an interface pattern (FELIX_MTUIFACEPATTERN) it is the smallest MTU
// of the up interfaces matching it, as in Felix. Each encapsulation costs
// a fixed overhead (IPIP 20 bytes, VXLAN 50 over IPv4, 70 over IPv6); a
// configured tunnel MTU replaces the derived one. Workloads get the
// smallest MTU of the encapsulations the pools use, or the host MTU when
// none does, unless a workload MTU is configured.
package mtu

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/roostnet/roost/internal/atomicfile"
)

// Encapsulation overheads (outer headers) in bytes, as Felix uses them.
const (
	OverheadIPIP    = 20 // outer IPv4 header
	OverheadVXLAN   = 50 // outer IPv4 + UDP + VXLAN + inner Ethernet
	OverheadVXLANV6 = 70 // outer IPv6 + UDP + VXLAN + inner Ethernet
)

// Fallback is the host MTU when no interface tells (Felix's choice: the
// smallest among common cloud providers).
const Fallback = 1460

// DefaultFile is where Calico keeps the workload MTU for its CNI plugin.
const DefaultFile = "/var/lib/calico/mtu"

// DefaultIfacePattern is Felix's default MTUIfacePattern: the usual names
// of physical and virtual NICs. It is used when the node has no address
// to take the interface from.
var DefaultIfacePattern = regexp.MustCompile(`^((en|wl|ww|sl|ib)[Pcopsvx].*|(eth|wlan|wwan).*)`)

// Min and Max bound a configured MTU (IPv4's minimum; the largest MTU a
// veth takes).
const (
	Min = 68
	Max = 65535
)

// Link is what the host MTU is chosen from.
type Link struct {
	Name string
	MTU  int
	Up   bool
}

// Smallest returns the smallest MTU of the up links whose name matches
// pattern (false when none does).
func Smallest(links []Link, pattern *regexp.Regexp) (int, bool) {
	best := 0
	for _, l := range links {
		if !l.Up || l.MTU <= 0 || !pattern.MatchString(l.Name) {
			continue
		}
		if best == 0 || l.MTU < best {
			best = l.MTU
		}
	}
	return best, best > 0
}

// Encaps says which encapsulations the pools use (a mode other than
// Never), per family of the pool.
type Encaps struct {
	IPIP    bool // IPv4 pools with ipipMode
	VXLAN   bool // IPv4 pools with vxlanMode
	VXLANV6 bool // IPv6 pools with vxlanMode
}

// Overrides are configured MTUs; 0 means derive it.
type Overrides struct {
	IPIP     int // FELIX_IPINIPMTU
	VXLAN    int // FELIX_VXLANMTU
	VXLANV6  int // FELIX_VXLANMTUV6
	Workload int // ROOST_WORKLOAD_MTU
}

// MTUs are the computed values.
type MTUs struct {
	Host     int `json:"host"`
	IPIP     int `json:"ipip"`    // tunl0
	VXLAN    int `json:"vxlan"`   // vxlan.calico
	VXLANV6  int `json:"vxlanV6"` // vxlan-v6.calico
	Workload int `json:"workload"`
}

// Compute derives the tunnel and workload MTUs from the host MTU.
func Compute(host int, enc Encaps, o Overrides) MTUs {
	pick := func(set, overhead int) int {
		if set > 0 {
			return set
		}
		return host - overhead
	}
	m := MTUs{Host: host, IPIP: pick(o.IPIP, OverheadIPIP), VXLAN: pick(o.VXLAN, OverheadVXLAN), VXLANV6: pick(o.VXLANV6, OverheadVXLANV6)}
	for _, e := range []struct {
		on  bool
		mtu int
	}{{enc.IPIP, m.IPIP}, {enc.VXLAN, m.VXLAN}, {enc.VXLANV6, m.VXLANV6}} {
		if e.on && (m.Workload == 0 || e.mtu < m.Workload) {
			m.Workload = e.mtu
		}
	}
	if m.Workload == 0 {
		m.Workload = host
	}
	if o.Workload > 0 {
		m.Workload = o.Workload
	}
	return m
}

// Valid checks a configured MTU (0: not set).
func Valid(v int) error {
	if v != 0 && (v < Min || v > Max) {
		return fmt.Errorf("MTU %d is out of range (%d-%d, or 0 to derive it)", v, Min, Max)
	}
	return nil
}

// ReadFile reads an MTU file. A missing file is an error satisfying
// errors.Is(err, os.ErrNotExist).
func ReadFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || Valid(v) != nil || v == 0 {
		return 0, fmt.Errorf("%s: %q is not an MTU", path, strings.TrimSpace(string(b)))
	}
	return v, nil
}

// WriteFile makes path hold mtu (as Calico writes it: the number, no
// newline), replacing it atomically; it reports whether it wrote. A file
// that already holds the value is left alone.
func WriteFile(path string, mtu int) (bool, error) {
	if have, err := ReadFile(path); err == nil && have == mtu {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, fmt.Errorf("MTU file: %w", err)
	}
	wrote, err := atomicfile.WriteIfChanged(path, []byte(strconv.Itoa(mtu)), 0o644)
	if err != nil {
		return false, fmt.Errorf("MTU file %s: %w", path, err)
	}
	return wrote, nil
}

package api

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// ASNumber is a 4-byte AS number. It decodes from a JSON number, a decimal
// string, or asdot notation ("1.10" = 1*65536+10) and encodes as a number.
type ASNumber uint32

// ParseASNumber parses plain or asdot notation; 0 is not a valid AS.
func ParseASNumber(s string) (ASNumber, error) {
	s = strings.TrimSpace(s)
	var v uint64
	if hi, lo, ok := strings.Cut(s, "."); ok {
		h, err1 := strconv.ParseUint(hi, 10, 16)
		l, err2 := strconv.ParseUint(lo, 10, 16)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("asdot AS number must be X.Y with X and Y in 0-65535")
		}
		v = h<<16 | l
	} else {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("AS number must be an integer or asdot X.Y")
		}
		v = n
	}
	if v < 1 || v > math.MaxUint32 {
		return 0, fmt.Errorf("AS number must be in 1-4294967295")
	}
	return ASNumber(v), nil
}

// UnmarshalJSON accepts 64512, "64512" and "1.10".
func (a *ASNumber) UnmarshalJSON(b []byte) error {
	s := string(b)
	if uq, err := strconv.Unquote(s); err == nil {
		s = uq
	}
	v, err := ParseASNumber(s)
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// MarshalJSON writes a plain number, as Calico does.
func (a ASNumber) MarshalJSON() ([]byte, error) { return strconv.AppendUint(nil, uint64(a), 10), nil }

// String gives the plain decimal form.
func (a ASNumber) String() string { return strconv.FormatUint(uint64(a), 10) }

// Duration is a Go duration written as a string ("10s", "2m0s").
type Duration struct{ time.Duration }

// UnmarshalJSON accepts a duration string; negative durations are rejected.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"10s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("not a duration (use e.g. \"10s\", \"2m\")")
	}
	if v < 0 {
		return fmt.Errorf("duration must not be negative")
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes the Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.Duration.String()) }

// ParseCIDR parses a CIDR that may have host bits set and returns it masked.
func ParseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, err
	}
	return p.Masked(), nil
}

// ParseAddrMaybeCIDR parses "10.0.0.1" or "10.0.0.1/24", returning the
// address and (when given) the prefix; the address keeps its host bits.
func ParseAddrMaybeCIDR(s string) (netip.Addr, netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Addr{}, netip.Prefix{}, err
		}
		return p.Addr(), p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, netip.Prefix{}, err
	}
	return a, netip.Prefix{}, nil
}

// ParseIPPort parses a BGPPeer peerIP: "10.0.0.1", "10.0.0.1:1790",
// "fd00::1" or "[fd00::1]:1790". Port 0 means the default (179).
func ParseIPPort(s string) (netip.Addr, uint16, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return netip.Addr{}, 0, fmt.Errorf("zoned addresses are not supported")
		}
		return a, 0, nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("expected IP, IP:port or [IPv6]:port")
	}
	if ap.Port() == 0 {
		return netip.Addr{}, 0, fmt.Errorf("port must be in 1-65535")
	}
	if ap.Addr().Is4In6() {
		return netip.Addr{}, 0, fmt.Errorf("IPv4-mapped IPv6 addresses are not supported")
	}
	return ap.Addr(), ap.Port(), nil
}

// Time is a timestamp as Kubernetes' metav1.Time writes it: RFC 3339 in
// UTC with whole seconds, and null when unset.
type Time struct{ time.Time }

// NewTime truncates t to whole seconds, the precision Time keeps.
func NewTime(t time.Time) Time { return Time{t.Truncate(time.Second)} }

// MarshalJSON writes "2006-01-02T15:04:05Z", or null for the zero time.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(t.UTC().Format(time.RFC3339))
}

// UnmarshalJSON reads null or an RFC 3339 time (fractions allowed).
func (t *Time) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		t.Time = time.Time{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("must be an RFC 3339 time such as 2024-01-02T15:04:05Z")
	}
	if s == "" {
		t.Time = time.Time{}
		return nil
	}
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return fmt.Errorf("must be an RFC 3339 time such as 2024-01-02T15:04:05Z")
	}
	t.Time = v.Local()
	return nil
}

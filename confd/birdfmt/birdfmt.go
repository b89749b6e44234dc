// Package birdfmt formats values for BIRD 2 configuration files and offers
// them to templates as a text/template FuncMap.
//
// BIRD's configuration language has no escape sequences in strings: a
// string runs from one double quote to the next and cannot hold a newline.
// A value that cannot be written safely is therefore an error, never a
// best-effort rewrite: the template stops and the renderer keeps the last
// good configuration.
//
// Facts checked with `bird -p` on BIRD 2.0.12 (the version this package
// targets):
//   - symbols (protocol, function, filter names) are at most 64 bytes
//     ("Symbol too long" beyond);
//   - keywords are lower case and case-sensitive ("filter" is rejected as a
//     protocol name, "Filter" is accepted);
//   - 32 or more hex digits lex as a byte string, not a symbol;
//   - `include "x.cfg";` resolves a relative path against the directory of
//     the file that contains the include, not the working directory.
package birdfmt

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"text/template"
	"unicode"
	"unicode/utf8"
)

// MaxSymbolLen is BIRD's limit on symbol names (checked on 2.0.12).
const MaxSymbolLen = 64

// identHashLen is the number of hex digits of the hash suffix Ident adds.
const identHashLen = 10

// StringError says why a value cannot be written as a BIRD string. It never
// contains the value itself: the value may be a password.
type StringError struct {
	Offset int    // byte offset of the offending character
	Reason string // what is wrong
}

func (e *StringError) Error() string {
	return fmt.Sprintf("value cannot be written as a BIRD string: %s at byte %d (BIRD strings have no escapes)", e.Reason, e.Offset)
}

// CheckString reports whether s can be placed between double quotes in a
// BIRD configuration. Rejected: '"', '\\', invalid UTF-8, and every
// character that is not printable (newlines, tabs, other control and format
// characters such as U+2028 or bidi overrides). Printable Unicode is kept.
func CheckString(s string) error {
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !validAt(s, i):
			return &StringError{Offset: i, Reason: "invalid UTF-8"}
		case r == '"':
			return &StringError{Offset: i, Reason: "double quote"}
		case r == '\\':
			return &StringError{Offset: i, Reason: "backslash"}
		case r == '\n' || r == '\r':
			return &StringError{Offset: i, Reason: "line break"}
		case r < 0x20 || r == 0x7f:
			return &StringError{Offset: i, Reason: fmt.Sprintf("control character U+%04X", r)}
		case !unicode.IsPrint(r):
			return &StringError{Offset: i, Reason: fmt.Sprintf("non-printable character U+%04X", r)}
		}
	}
	return nil
}

func validAt(s string, i int) bool {
	r, size := utf8.DecodeRuneInString(s[i:])
	return !(r == utf8.RuneError && size <= 1)
}

// Printable returns s with every character CheckString rejects replaced
// by '?', for text Roost composes itself (a reason, a message) that must
// fit in a BIRD string and on one comment line whatever it quotes.
func Printable(s string) string {
	if CheckString(s) == nil {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		if r == utf8.RuneError && !validAt(s, i) || r == '"' || r == '\\' || !unicode.IsPrint(r) {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// String returns s in double quotes, or an error when BIRD cannot hold it
// (see CheckString).
func String(s string) (string, error) {
	if err := CheckString(s); err != nil {
		return "", err
	}
	return `"` + s + `"`, nil
}

// Ident turns s into a BIRD symbol name (protocols, functions, filters).
//
// s is returned unchanged when it is already safe: it starts with a letter,
// holds only [A-Za-z0-9_], is at most MaxSymbolLen bytes, contains an
// upper-case letter (BIRD keywords are all lower case), is not made only of
// hex digits (BIRD would lex 32 of them as a byte string) and does not end
// in "_" plus 10 hex digits (the form of hashed names below).
//
// Anything else is rewritten: characters outside [A-Za-z0-9_] become '_',
// "X" is prepended when the result does not start with a letter, the result
// is cut so that it fits, and "_" plus the first 10 hex digits of
// SHA-256(s) is appended. Unchanged names never end in such a suffix and
// rewritten names always do, so distinct inputs give distinct names (up to
// a 40-bit hash collision).
func Ident(s string) string {
	if identSafe(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + identHashLen + 2)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlnum(c) || c == '_' {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
	base := b.String()
	if base == "" || !isLetter(base[0]) {
		base = "X" + base
	}
	if max := MaxSymbolLen - identHashLen - 1; len(base) > max {
		base = base[:max]
	}
	sum := sha256.Sum256([]byte(s))
	return base + "_" + hex.EncodeToString(sum[:])[:identHashLen]
}

func identSafe(s string) bool {
	if s == "" || len(s) > MaxSymbolLen || !isLetter(s[0]) {
		return false
	}
	upper, allHex := false, true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '_' {
			return false
		}
		if c >= 'A' && c <= 'Z' {
			upper = true
		}
		if !isHex(c) {
			allHex = false
		}
	}
	return upper && !allHex && !hasHashSuffix(s)
}

func hasHashSuffix(s string) bool {
	if len(s) < identHashLen+1 || s[len(s)-identHashLen-1] != '_' {
		return false
	}
	for i := len(s) - identHashLen; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isAlnum(c byte) bool  { return isLetter(c) || c >= '0' && c <= '9' }
func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// NameIP writes an IP address the way Calico's session names do: dots and
// colons become underscores ("10.0.0.1" -> "10_0_0_1", "fd00::1" ->
// "fd00__1"). The input must be a valid IP address.
func NameIP(ip string) (string, error) {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Zone() != "" {
		return "", fmt.Errorf("nameIP: %q is not an IP address", ip)
	}
	return strings.NewReplacer(".", "_", ":", "_").Replace(a.String()), nil
}

// IP parses and re-formats an address (canonical form, no zone).
func IP(s string) (string, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return "", fmt.Errorf("birdIP: %q is not an IP address", s)
	}
	return a.Unmap().String(), nil
}

// CIDR parses and re-formats a prefix with its host bits cleared.
func CIDR(s string) (string, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil || p.Addr().Zone() != "" {
		return "", fmt.Errorf("birdCIDR: %q is not a CIDR", s)
	}
	return p.Masked().String(), nil
}

// IPFamily returns 4 or 6 for an address or CIDR.
func IPFamily(s string) (int, error) {
	a, err := parseAddrOrPrefix(s)
	if err != nil {
		return 0, fmt.Errorf("ipFamily: %w", err)
	}
	if a.Is4() {
		return 4, nil
	}
	return 6, nil
}

// IsIPv6 reports whether s (address or CIDR) is IPv6.
func IsIPv6(s string) (bool, error) {
	f, err := IPFamily(s)
	return f == 6, err
}

// IsIPv4 reports whether s (address or CIDR) is IPv4.
func IsIPv4(s string) (bool, error) {
	f, err := IPFamily(s)
	return f == 4, err
}

// CIDRContains reports whether ipOrCIDR lies inside cidr (a CIDR inside
// cidr must be equal or more specific).
func CIDRContains(cidr, ipOrCIDR string) (bool, error) {
	outer, err := netip.ParsePrefix(cidr)
	if err != nil {
		return false, fmt.Errorf("cidrContains: %q is not a CIDR", cidr)
	}
	outer = outer.Masked()
	if p, err := netip.ParsePrefix(ipOrCIDR); err == nil {
		return p.Addr().Is4() == outer.Addr().Is4() && p.Bits() >= outer.Bits() && outer.Contains(p.Addr()), nil
	}
	a, err := netip.ParseAddr(ipOrCIDR)
	if err != nil {
		return false, fmt.Errorf("cidrContains: %q is neither an IP address nor a CIDR", ipOrCIDR)
	}
	return outer.Contains(a), nil
}

// CIDRPrefixLen returns the prefix length of a CIDR.
func CIDRPrefixLen(cidr string) (int, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return 0, fmt.Errorf("cidrPrefixLen: %q is not a CIDR", cidr)
	}
	return p.Bits(), nil
}

// CIDRAddr returns the network address of a CIDR ("10.0.0.0/8" -> "10.0.0.0").
func CIDRAddr(cidr string) (string, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return "", fmt.Errorf("cidrAddr: %q is not a CIDR", cidr)
	}
	return p.Masked().Addr().String(), nil
}

func parseAddrOrPrefix(s string) (netip.Addr, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is neither an IP address nor a CIDR", s)
	}
	return a, nil
}

// Community is a parsed BGP community value.
type Community struct {
	Large bool      // a:b:c (RFC 8092) rather than a:b (RFC 1997)
	Parts [3]uint32 // a, b and (large only) c
}

// ParseCommunity parses a standard "a:b" (16-bit parts) or large "a:b:c"
// (32-bit parts) community.
func ParseCommunity(s string) (Community, error) {
	parts := strings.Split(s, ":")
	var c Community
	bits := 16
	switch len(parts) {
	case 2:
	case 3:
		bits, c.Large = 32, true
	default:
		return Community{}, fmt.Errorf("community %q: expected a:b or a:b:c", s)
	}
	for i, p := range parts {
		v, err := strconv.ParseUint(p, 10, bits)
		if err != nil {
			return Community{}, fmt.Errorf("community %q: part %d must be a number in 0-%d", s, i+1, uint64(1)<<bits-1)
		}
		c.Parts[i] = uint32(v)
	}
	return c, nil
}

// Literal is the BIRD pair or triple: "(a,b)" or "(a,b,c)".
func (c Community) Literal() string {
	if c.Large {
		return fmt.Sprintf("(%d,%d,%d)", c.Parts[0], c.Parts[1], c.Parts[2])
	}
	return fmt.Sprintf("(%d,%d)", c.Parts[0], c.Parts[1])
}

// Attribute is the route attribute the community belongs in.
func (c Community) Attribute() string {
	if c.Large {
		return "bgp_large_community"
	}
	return "bgp_community"
}

// String gives the a:b[:c] form.
func (c Community) String() string {
	if c.Large {
		return fmt.Sprintf("%d:%d:%d", c.Parts[0], c.Parts[1], c.Parts[2])
	}
	return fmt.Sprintf("%d:%d", c.Parts[0], c.Parts[1])
}

// CommunityLiteral formats "a:b" as "(a,b)" and "a:b:c" as "(a,b,c)".
func CommunityLiteral(s string) (string, error) {
	c, err := ParseCommunity(s)
	if err != nil {
		return "", err
	}
	return c.Literal(), nil
}

// CommunityAttr names the attribute a community value goes into:
// bgp_community or bgp_large_community.
func CommunityAttr(s string) (string, error) {
	c, err := ParseCommunity(s)
	if err != nil {
		return "", err
	}
	return c.Attribute(), nil
}

// AddCommunity gives the statement adding a community to a route:
// "bgp_community.add((a,b));" or "bgp_large_community.add((a,b,c));".
func AddCommunity(s string) (string, error) {
	c, err := ParseCommunity(s)
	if err != nil {
		return "", err
	}
	return c.Attribute() + ".add(" + c.Literal() + ");", nil
}

// MatchCommunity gives the condition "route carries this community":
// "(a,b) ~ bgp_community" or "(a,b,c) ~ bgp_large_community".
func MatchCommunity(s string) (string, error) {
	c, err := ParseCommunity(s)
	if err != nil {
		return "", err
	}
	return c.Literal() + " ~ " + c.Attribute(), nil
}

// PrefixSet formats CIDRs as a BIRD prefix set; with orLonger each entry
// also matches its more-specific prefixes ("[ 10.0.0.0/8+, 10.1.0.0/16+ ]").
// An empty list is an error: BIRD has no empty set literal, so templates
// must test for emptiness first.
func PrefixSet(cidrs []string, orLonger bool) (string, error) {
	if len(cidrs) == 0 {
		return "", fmt.Errorf("prefixSet: empty list (BIRD has no empty prefix set; guard with if)")
	}
	var b strings.Builder
	b.WriteString("[ ")
	for i, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil || p.Addr().Zone() != "" {
			return "", fmt.Errorf("prefixSet: %q is not a CIDR", c)
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p.Masked().String())
		if orLonger {
			b.WriteByte('+')
		}
	}
	b.WriteString(" ]")
	return b.String(), nil
}

// Comment returns s when it can go on a BIRD "#" comment line (a single
// printable line), else an error.
func Comment(s string) (string, error) {
	for i, r := range s {
		if r == '\n' || r == '\r' || r == utf8.RuneError && !validAt(s, i) || !unicode.IsPrint(r) && r != '\t' {
			return "", fmt.Errorf("birdComment: value has a line break or non-printable character at byte %d", i)
		}
	}
	return s, nil
}

// Funcs returns the template functions of this package:
//
//	birdString        s -> "s" (error if BIRD cannot hold s)
//	birdIdent         s -> BIRD-safe symbol name (see Ident)
//	birdComment       s -> s if it fits on one comment line, else error
//	birdIP            canonical IP address (error if not an IP)
//	birdCIDR          canonical CIDR, host bits cleared (error if not a CIDR)
//	nameIP            "10.0.0.1" -> "10_0_0_1", "fd00::1" -> "fd00__1"
//	ipFamily          4 or 6 for an address or CIDR
//	isIPv4, isIPv6    family tests for an address or CIDR
//	cidrContains      cidr, ipOrCIDR -> bool
//	cidrPrefixLen     "10.0.0.0/8" -> 8
//	cidrAddr          "10.0.0.0/8" -> "10.0.0.0"
//	prefixSet         list, orLonger -> "[ a+, b+ ]" (error if empty)
//	communityLiteral  "a:b" -> "(a,b)", "a:b:c" -> "(a,b,c)"
//	communityAttr     bgp_community or bgp_large_community
//	addCommunity      "bgp_community.add((a,b));" / large equivalent
//	matchCommunity    "(a,b) ~ bgp_community" / large equivalent
func Funcs() template.FuncMap {
	return template.FuncMap{
		"birdString":       String,
		"birdIdent":        Ident,
		"birdComment":      Comment,
		"birdIP":           IP,
		"birdCIDR":         CIDR,
		"nameIP":           NameIP,
		"ipFamily":         IPFamily,
		"isIPv4":           IsIPv4,
		"isIPv6":           IsIPv6,
		"cidrContains":     CIDRContains,
		"cidrPrefixLen":    CIDRPrefixLen,
		"cidrAddr":         CIDRAddr,
		"prefixSet":        PrefixSet,
		"communityLiteral": CommunityLiteral,
		"communityAttr":    CommunityAttr,
		"addCommunity":     AddCommunity,
		"matchCommunity":   MatchCommunity,
	}
}

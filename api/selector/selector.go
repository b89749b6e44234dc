// Package selector parses and evaluates Calico label selector expressions,
// the syntax used by projectcalico.org/v3 resources such as the BGPPeer
// nodeSelector/peerSelector and IPPool nodeSelector fields.
//
// Supported syntax:
//
//	all()                      matches everything (so does the empty selector "")
//	global()                   accepted for compatibility; matches everything
//	k == "v"                   label k is present and equal to v
//	k != "v"                   label k is absent or not equal to v
//	has(k)                     label k is present
//	k in {"a", "b"}            label k is present and one of the values
//	k not in {"a", "b"}        label k is absent or none of the values
//	k contains "s"             label k is present and contains s
//	k starts with "s"          label k is present and has prefix s
//	k ends with "s"            label k is present and has suffix s
//	!e, e && f, e || f, (e)    logical operators and grouping
//
// String literals use single or double quotes and have no escape sequences.
// "!" binds tightest, then "&&", then "||". Label keys are Kubernetes
// qualified names: an optional DNS subdomain prefix and a slash, then a name
// of at most 63 characters, for example "projectcalico.org/zone".
//
// A Selector is parsed once and can then be evaluated any number of times,
// concurrently, without allocating.
package selector

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
)

// Selector is a parsed label selector.
type Selector interface {
	// Evaluate reports whether the selector matches the given labels.
	// A nil map is treated as an empty label set.
	Evaluate(labels map[string]string) bool
	// String returns the canonical form of the selector. Parsing it
	// yields a selector with the same canonical form.
	String() string
	// UniqueID returns a stable hash of String(), suitable as a map key.
	UniqueID() string
}

// ParseError describes a syntax error in a selector.
type ParseError struct {
	Selector string // the input that failed to parse
	Offset   int    // byte offset in Selector where the problem was found
	Msg      string // what was wrong
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("selector %q: %s at offset %d", e.Selector, e.Msg, e.Offset)
}

// maxDepth bounds the nesting of parentheses and "!" operators so that
// hostile input cannot exhaust the stack.
const maxDepth = 100

// Parse parses a selector expression. The empty (or all-whitespace) string
// is equivalent to "all()". Errors are of type *ParseError.
func Parse(s string) (Selector, error) {
	p := parser{in: s}
	p.skipSpace()
	var root node
	if p.pos == len(s) {
		root = allNode{}
	} else {
		n, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		if p.pos < len(s) {
			if s[p.pos] == ')' {
				return nil, p.errorf("unbalanced ')'")
			}
			return nil, p.errorf("expected &&, || or end of selector")
		}
		root = n
	}
	var b strings.Builder
	root.write(&b)
	str := b.String()
	sum := sha256.Sum256([]byte(str))
	return &selector{
		root: root,
		str:  str,
		id:   "s:" + base64.RawURLEncoding.EncodeToString(sum[:]),
	}, nil
}

// MustParse is like Parse but panics on error. It is intended for tests and
// package-level constants.
func MustParse(s string) Selector {
	sel, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return sel
}

type selector struct {
	root node
	str  string
	id   string
}

func (s *selector) Evaluate(labels map[string]string) bool { return s.root.eval(labels) }
func (s *selector) String() string                         { return s.str }
func (s *selector) UniqueID() string                       { return s.id }

// node is an element of the parsed expression tree.
type node interface {
	eval(labels map[string]string) bool
	write(b *strings.Builder)
}

type allNode struct{ global bool }

func (allNode) eval(map[string]string) bool { return true }
func (n allNode) write(b *strings.Builder) {
	if n.global {
		b.WriteString("global()")
	} else {
		b.WriteString("all()")
	}
}

type hasNode struct{ key string }

func (n hasNode) eval(labels map[string]string) bool {
	_, ok := labels[n.key]
	return ok
}
func (n hasNode) write(b *strings.Builder) {
	b.WriteString("has(")
	b.WriteString(n.key)
	b.WriteByte(')')
}

type cmpOp uint8

const (
	opEq cmpOp = iota
	opNe
	opContains
	opStartsWith
	opEndsWith
)

var opText = [...]string{
	opEq:         " == ",
	opNe:         " != ",
	opContains:   " contains ",
	opStartsWith: " starts with ",
	opEndsWith:   " ends with ",
}

type cmpNode struct {
	op    cmpOp
	key   string
	value string
}

func (n cmpNode) eval(labels map[string]string) bool {
	v, ok := labels[n.key]
	switch n.op {
	case opEq:
		return ok && v == n.value
	case opNe:
		return !ok || v != n.value
	case opContains:
		return ok && strings.Contains(v, n.value)
	case opStartsWith:
		return ok && strings.HasPrefix(v, n.value)
	case opEndsWith:
		return ok && strings.HasSuffix(v, n.value)
	}
	return false
}

func (n cmpNode) write(b *strings.Builder) {
	b.WriteString(n.key)
	b.WriteString(opText[n.op])
	writeQuoted(b, n.value)
}

type setNode struct {
	key    string
	values []string // sorted, deduplicated
	not    bool
}

func (n setNode) eval(labels map[string]string) bool {
	v, ok := labels[n.key]
	if !ok {
		return n.not
	}
	_, found := slices.BinarySearch(n.values, v)
	return found != n.not
}

func (n setNode) write(b *strings.Builder) {
	b.WriteString(n.key)
	if n.not {
		b.WriteString(" not in {")
	} else {
		b.WriteString(" in {")
	}
	for i, v := range n.values {
		if i > 0 {
			b.WriteString(", ")
		}
		writeQuoted(b, v)
	}
	b.WriteByte('}')
}

type notNode struct{ operand node }

func (n notNode) eval(labels map[string]string) bool { return !n.operand.eval(labels) }
func (n notNode) write(b *strings.Builder) {
	b.WriteByte('!')
	switch n.operand.(type) {
	case cmpNode, setNode:
		// "!a == 'b'" parses the same way, but is easy to misread.
		b.WriteByte('(')
		n.operand.write(b)
		b.WriteByte(')')
	default:
		n.operand.write(b)
	}
}

type andNode struct{ operands []node }

func (n andNode) eval(labels map[string]string) bool {
	for _, o := range n.operands {
		if !o.eval(labels) {
			return false
		}
	}
	return true
}
func (n andNode) write(b *strings.Builder) { writeList(b, n.operands, " && ") }

type orNode struct{ operands []node }

func (n orNode) eval(labels map[string]string) bool {
	for _, o := range n.operands {
		if o.eval(labels) {
			return true
		}
	}
	return false
}
func (n orNode) write(b *strings.Builder) { writeList(b, n.operands, " || ") }

func writeList(b *strings.Builder, operands []node, sep string) {
	b.WriteByte('(')
	for i, o := range operands {
		if i > 0 {
			b.WriteString(sep)
		}
		o.write(b)
	}
	b.WriteByte(')')
}

// writeQuoted writes v as a string literal. There are no escapes, so double
// quotes are used unless v contains one; the parser guarantees that a value
// never contains both kinds of quote.
func writeQuoted(b *strings.Builder, v string) {
	q := byte('"')
	if strings.IndexByte(v, '"') >= 0 {
		q = '\''
	}
	b.WriteByte(q)
	b.WriteString(v)
	b.WriteByte(q)
}

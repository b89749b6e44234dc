package selector

import (
	"fmt"
	"slices"
	"strings"
)

// parser is a recursive-descent parser over the selector text. Every method
// consumes input left to right without backtracking more than one token, so
// parsing is linear in the length of the input (plus sorting set literals).
type parser struct {
	in    string
	pos   int
	depth int
}

func (p *parser) errorf(format string, args ...any) error {
	return p.errorAt(p.pos, format, args...)
}

func (p *parser) errorAt(off int, format string, args ...any) error {
	return &ParseError{Selector: p.in, Offset: off, Msg: fmt.Sprintf(format, args...)}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// isWordChar reports whether c may appear in a label key or keyword.
func isWordChar(c byte) bool {
	return isAlnum(c) || c == '_' || c == '.' || c == '-' || c == '/'
}

func (p *parser) skipSpace() {
	for p.pos < len(p.in) && isSpace(p.in[p.pos]) {
		p.pos++
	}
}

func (p *parser) eof() bool { return p.pos >= len(p.in) }

func (p *parser) peekByte(c byte) bool { return p.pos < len(p.in) && p.in[p.pos] == c }

func (p *parser) peekString(s string) bool { return strings.HasPrefix(p.in[p.pos:], s) }

// readWord consumes a run of label-key characters (possibly empty).
func (p *parser) readWord() string {
	start := p.pos
	for p.pos < len(p.in) && isWordChar(p.in[p.pos]) {
		p.pos++
	}
	return p.in[start:p.pos]
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > maxDepth {
		return p.errorf("selector nested more than %d levels deep", maxDepth)
	}
	return nil
}

// parseOr parses: and ( "||" and )*
func (p *parser) parseOr() (node, error) {
	first, err := p.parseAnd()
	if err != nil {
		return nil, err
	}
	var ops []node
	for {
		p.skipSpace()
		if !p.peekString("||") {
			break
		}
		p.pos += 2
		n, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		if ops == nil {
			ops = appendOr(ops, first)
		}
		ops = appendOr(ops, n)
	}
	if ops == nil {
		return first, nil
	}
	return orNode{operands: ops}, nil
}

// parseAnd parses: unary ( "&&" unary )*
func (p *parser) parseAnd() (node, error) {
	first, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	var ops []node
	for {
		p.skipSpace()
		if !p.peekString("&&") {
			break
		}
		p.pos += 2
		n, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		if ops == nil {
			ops = appendAnd(ops, first)
		}
		ops = appendAnd(ops, n)
	}
	if ops == nil {
		return first, nil
	}
	return andNode{operands: ops}, nil
}

// appendAnd and appendOr flatten parenthesised sub-expressions of the same
// kind, so "(a && b) && c" and "a && (b && c)" have the same canonical form.
func appendAnd(ops []node, n node) []node {
	if a, ok := n.(andNode); ok {
		return append(ops, a.operands...)
	}
	return append(ops, n)
}

func appendOr(ops []node, n node) []node {
	if o, ok := n.(orNode); ok {
		return append(ops, o.operands...)
	}
	return append(ops, n)
}

// parseUnary parses: "!"* primary
func (p *parser) parseUnary() (node, error) {
	saved := p.depth
	nots := 0
	for {
		p.skipSpace()
		if !p.peekByte('!') {
			break
		}
		if err := p.enter(); err != nil {
			return nil, err
		}
		p.pos++
		nots++
	}
	n, err := p.parsePrimary()
	if err != nil {
		return nil, err
	}
	p.depth = saved
	for range nots {
		n = notNode{operand: n}
	}
	return n, nil
}

// parsePrimary parses a parenthesised expression, a function call (all(),
// global(), has(key)) or a label comparison.
func (p *parser) parsePrimary() (node, error) {
	p.skipSpace()
	if p.eof() {
		return nil, p.errorf("expected a label key, has(), all(), '!' or '('")
	}
	if p.peekByte('(') {
		if err := p.enter(); err != nil {
			return nil, err
		}
		open := p.pos
		p.pos++
		n, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.eof() {
			return nil, p.errorAt(open, "unbalanced '('")
		}
		if !p.peekByte(')') {
			return nil, p.errorf("expected ')', && or ||")
		}
		p.pos++
		p.depth--
		return n, nil
	}

	start := p.pos
	word := p.readWord()
	if word == "" {
		return nil, p.errorf("expected a label key, has(), all(), '!' or '('")
	}
	p.skipSpace()
	if p.peekByte('(') {
		p.pos++
		switch word {
		case "all", "global":
			p.skipSpace()
			if !p.peekByte(')') {
				return nil, p.errorf("expected ')' after %s(", word)
			}
			p.pos++
			return allNode{global: word == "global"}, nil
		case "has":
			p.skipSpace()
			key, err := p.parseKey()
			if err != nil {
				return nil, err
			}
			p.skipSpace()
			if !p.peekByte(')') {
				return nil, p.errorf("expected ')' after has(%s", key)
			}
			p.pos++
			return hasNode{key: key}, nil
		default:
			return nil, p.errorAt(start, "unknown function %q", word)
		}
	}
	if err := checkKey(word); err != "" {
		return nil, p.errorAt(start, "invalid label key %q: %s", word, err)
	}
	return p.parseOperator(word)
}

// parseKey parses and validates a label key.
func (p *parser) parseKey() (string, error) {
	start := p.pos
	key := p.readWord()
	if key == "" {
		return "", p.errorf("expected a label key")
	}
	if err := checkKey(key); err != "" {
		return "", p.errorAt(start, "invalid label key %q: %s", key, err)
	}
	return key, nil
}

// parseOperator parses the operator and operand following a label key.
func (p *parser) parseOperator(key string) (node, error) {
	p.skipSpace()
	opStart := p.pos
	var op cmpOp
	switch {
	case p.peekString("=="):
		p.pos += 2
		op = opEq
	case p.peekString("!="):
		p.pos += 2
		op = opNe
	default:
		switch w := p.readWord(); w {
		case "in", "not":
			if w == "not" {
				p.skipSpace()
				inStart := p.pos
				if p.readWord() != "in" {
					return nil, p.errorAt(inStart, "expected 'in' after 'not'")
				}
			}
			values, err := p.parseSet()
			if err != nil {
				return nil, err
			}
			return setNode{key: key, values: values, not: w == "not"}, nil
		case "contains":
			op = opContains
		case "starts", "ends":
			p.skipSpace()
			withStart := p.pos
			if p.readWord() != "with" {
				return nil, p.errorAt(withStart, "expected 'with' after '%s'", w)
			}
			op = opStartsWith
			if w == "ends" {
				op = opEndsWith
			}
		default:
			return nil, p.errorAt(opStart, "expected an operator (==, !=, in, not in, contains, starts with, ends with) after label key %q", key)
		}
	}
	value, err := p.parseString()
	if err != nil {
		return nil, err
	}
	return cmpNode{op: op, key: key, value: value}, nil
}

// parseString parses a single- or double-quoted string literal. There are no
// escape sequences: the literal ends at the next matching quote.
func (p *parser) parseString() (string, error) {
	p.skipSpace()
	if p.eof() || (p.in[p.pos] != '"' && p.in[p.pos] != '\'') {
		return "", p.errorf("expected a quoted string")
	}
	open := p.pos
	q := p.in[open]
	end := strings.IndexByte(p.in[open+1:], q)
	if end < 0 {
		return "", p.errorAt(open, "unterminated string")
	}
	p.pos = open + 1 + end + 1
	return p.in[open+1 : open+1+end], nil
}

// parseSet parses: "{" [ string ( "," string )* ] "}"
// The result is sorted and deduplicated.
func (p *parser) parseSet() ([]string, error) {
	p.skipSpace()
	if !p.peekByte('{') {
		return nil, p.errorf("expected '{'")
	}
	open := p.pos
	p.pos++
	p.skipSpace()
	values := []string{}
	if p.peekByte('}') {
		p.pos++
		return values, nil
	}
	for {
		v, err := p.parseString()
		if err != nil {
			return nil, err
		}
		values = append(values, v)
		p.skipSpace()
		switch {
		case p.eof():
			return nil, p.errorAt(open, "unbalanced '{'")
		case p.peekByte(','):
			p.pos++
		case p.peekByte('}'):
			p.pos++
			slices.Sort(values)
			return slices.Compact(values), nil
		default:
			return nil, p.errorf("expected ',' or '}'")
		}
	}
}

// checkKey validates a Kubernetes qualified name: an optional DNS-1123
// subdomain prefix and "/", then a name of at most 63 characters from
// [A-Za-z0-9_.-] that begins and ends with a letter or digit. It returns a
// description of the problem, or "" if key is valid. Characters outside
// isWordChar never reach it.
func checkKey(key string) string {
	name := key
	if i := strings.IndexByte(key, '/'); i >= 0 {
		prefix := key[:i]
		name = key[i+1:]
		if strings.IndexByte(name, '/') >= 0 {
			return "at most one '/' is allowed"
		}
		if prefix == "" {
			return "prefix before '/' must not be empty"
		}
		if len(prefix) > 253 {
			return "prefix must be at most 253 characters"
		}
		for _, label := range strings.Split(prefix, ".") {
			if !isDNSLabel(label) {
				return "prefix must be a lowercase DNS subdomain"
			}
		}
	}
	switch {
	case name == "":
		return "name must not be empty"
	case len(name) > 63:
		return "name must be at most 63 characters"
	case !isAlnum(name[0]) || !isAlnum(name[len(name)-1]):
		return "name must begin and end with a letter or digit"
	}
	return ""
}

func isDNSLabel(s string) bool {
	if s == "" || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

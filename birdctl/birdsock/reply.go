package birdsock

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Reply is BIRD's complete answer to one command.
type Reply struct {
	// Code is the code of the terminating line (0 for "0000", 3 for
	// "0003 Reconfigured", 8002 for a configuration error...).
	Code int
	// Lines holds every line of the reply in order, the terminating one
	// included. Continuation lines carry the code of the line they continue.
	Lines []Line
	// Async holds asynchronous messages ("+" lines) received while the
	// reply was read, without the "+". They are not part of the reply.
	Async []string
}

// Line is one line of a reply, without its code prefix.
type Line struct {
	Code int
	Text string
}

// Text returns the reply as birdc prints it: the lines' text without codes,
// one per line. An empty terminating line ("0000 ") is left out.
func (r *Reply) Text() string {
	lines := r.Lines
	if n := len(lines); n > 0 && lines[n-1].Text == "" {
		lines = lines[:n-1]
	}
	var b strings.Builder
	for i, l := range lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(l.Text)
	}
	return b.String()
}

// IsError reports whether the terminating code is a BIRD runtime (8xxx) or
// syntax (9xxx) error.
func (r *Reply) IsError() bool { return r.Code >= 8000 }

// BirdError is a reply that BIRD terminated with an error code (8xxx runtime
// errors such as "8002 file:line:col syntax error", 9xxx syntax errors) or,
// from the typed helpers, a code they did not expect.
type BirdError struct {
	Code    int
	Text    string // BIRD's message, e.g. "/etc/bird.conf:3:1 syntax error"
	Command string // the command that was sent
}

func (e *BirdError) Error() string {
	return fmt.Sprintf("bird: %s: %s (code %04d)", e.Command, e.Text, e.Code)
}

// errMalformed marks a line that does not follow the protocol; the stream
// cannot be trusted afterwards.
var errMalformed = errors.New("malformed reply line")

// readReply reads lines until the first one whose four-digit code is followed
// by a space. Asynchronous "+" lines may come before or inside the reply.
func readReply(r *bufio.Reader) (*Reply, error) {
	rep := &Reply{}
	last := -1
	for {
		raw, err := r.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				if len(rep.Lines) > 0 || raw != "" {
					err = io.ErrUnexpectedEOF
				}
			}
			return rep, err
		}
		line := strings.TrimSuffix(strings.TrimSuffix(raw, "\n"), "\r")
		switch {
		case strings.HasPrefix(line, "+"):
			rep.Async = append(rep.Async, line[1:])
		case strings.HasPrefix(line, " "):
			if last < 0 {
				return rep, fmt.Errorf("%w: continuation without a code: %q", errMalformed, line)
			}
			rep.Lines = append(rep.Lines, Line{Code: last, Text: line[1:]})
		default:
			code, ok := parseCode(line)
			if !ok {
				return rep, fmt.Errorf("%w: %q", errMalformed, line)
			}
			text := ""
			if len(line) > 5 {
				text = line[5:]
			}
			rep.Lines = append(rep.Lines, Line{Code: code, Text: text})
			last = code
			// BIRD always writes "0000 "; a bare "0000" is accepted as final too.
			if len(line) == 4 || line[4] == ' ' {
				rep.Code = code
				return rep, nil
			}
		}
	}
}

// parseCode returns the code of a line starting with four digits followed by
// '-', ' ' or nothing.
func parseCode(line string) (int, bool) {
	if len(line) < 4 || (len(line) > 4 && line[4] != '-' && line[4] != ' ') {
		return 0, false
	}
	code := 0
	for i := 0; i < 4; i++ {
		c := line[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		code = code*10 + int(c-'0')
	}
	return code, true
}

// ParseReply parses one reply in wire format (as recorded from the socket,
// codes included), e.g. a saved transcript. It does not return a BirdError
// for error codes: check Reply.Code.
func ParseReply(raw string) (*Reply, error) {
	return readReply(bufio.NewReader(strings.NewReader(raw)))
}

// plainText accepts parser input either as birdc prints it or in wire
// format (possibly several replies including the hello) and returns the
// former. Wire format is recognised by a first line starting with a code.
func plainText(s string) string {
	first := s
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		first = s[:i]
	}
	if _, ok := parseCode(first); !ok {
		return s
	}
	r := bufio.NewReader(strings.NewReader(s))
	var parts []string
	for {
		rep, err := readReply(r)
		if len(rep.Lines) > 0 && rep.Lines[0].Code != 1 { // skip the hello
			parts = append(parts, rep.Text())
		}
		if err != nil {
			break
		}
	}
	return strings.Join(parts, "\n")
}

package bgp

import (
	"errors"
	"fmt"
	"strings"
)

// Problem is something Compute found wrong. Kind and Name name the resource
// (e.g. BGPPeer "rr"), Field the field path. A Fatal problem means the
// Model must not be rendered (and Compute may return a nil Model); the
// others are warnings about a session or setting that was left out or
// degraded, while the rest of the configuration stays valid.
type Problem struct {
	Kind  string
	Name  string
	Field string
	Msg   string
	Fatal bool
}

func (p *Problem) Error() string {
	var b strings.Builder
	if p.Kind != "" {
		b.WriteString(p.Kind)
		if p.Name != "" {
			fmt.Fprintf(&b, " %q", p.Name)
		}
		b.WriteString(": ")
	}
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Fatal returns the fatal problems among errs joined into one error, or nil.
func Fatal(errs []error) error {
	var fatal []error
	for _, e := range errs {
		var p *Problem
		if !errors.As(e, &p) || p.Fatal {
			fatal = append(fatal, e)
		}
	}
	return errors.Join(fatal...)
}

type problems struct{ list []error }

func (ps *problems) warn(kind, name, field, format string, args ...any) {
	ps.list = append(ps.list, &Problem{Kind: kind, Name: name, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (ps *problems) fatal(kind, name, field, format string, args ...any) {
	ps.list = append(ps.list, &Problem{Kind: kind, Name: name, Field: field, Msg: fmt.Sprintf(format, args...), Fatal: true})
}

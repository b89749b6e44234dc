package bgp

import (
	"errors"
	"fmt"

	"github.com/roostnet/roost/api"
)

// Problem is something Compute found wrong. Kind and Name name the resource
// (e.g. BGPPeer "rr"), Field the field path. A Fatal problem means the
// Model must not be rendered (and Compute may return a nil Model); the
// others are warnings about a session or setting that was left out or
// degraded, while the rest of the configuration stays valid.
type Problem struct {
	api.FieldError // Kind, Name, Field, Msg; its Error() formats them
	Fatal          bool
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
	ps.list = append(ps.list, &Problem{FieldError: api.FieldError{Kind: kind, Name: name, Field: field, Msg: fmt.Sprintf(format, args...)}})
}

func (ps *problems) fatal(kind, name, field, format string, args ...any) {
	ps.list = append(ps.list, &Problem{FieldError: api.FieldError{Kind: kind, Name: name, Field: field, Msg: fmt.Sprintf(format, args...)}, Fatal: true})
}

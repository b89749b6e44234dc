package api

import (
	"fmt"
	"strings"

	"github.com/roostnet/roost/internal/clip"
)

// FieldError is one problem with one field of one resource. Kind and Name
// are filled in once the resource is known. Error() cuts the name and the
// value (internal/clip), so that a huge value gives a short message.
type FieldError struct {
	Kind  string
	Name  string
	Field string // dotted path, e.g. spec.bgp.ipv4Address or spec.filters[2]
	Value any    // the offending value; nil when there is none
	Msg   string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Kind != "" {
		b.WriteString(e.Kind)
		if e.Name != "" {
			fmt.Fprintf(&b, " %q", clip.Value(e.Name))
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		if e.Value != nil {
			fmt.Fprintf(&b, "=%s", formatValue(e.Value))
		}
		b.WriteString(": ")
	}
	// The explanation may quote the value too (a parse error): bound it.
	b.WriteString(clip.String(e.Msg, 4*clip.Max))
	return b.String()
}

// ValueString is the value as messages show it: strings quoted, long
// values cut.
func (e *FieldError) ValueString() string {
	if e.Value == nil {
		return ""
	}
	return formatValue(e.Value)
}

func formatValue(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("%q", clip.Value(x))
	default:
		return clip.Value(fmt.Sprintf("%v", x))
	}
}

// maxListed bounds how many problems of one resource a message lists.
const maxListed = 20

// ErrorList collects the problems of one resource.
type ErrorList []*FieldError

func (l ErrorList) Error() string {
	n := min(len(l), maxListed)
	msgs := make([]string, n, n+1)
	for i, e := range l[:n] {
		msgs[i] = e.Error()
	}
	if len(l) > n {
		msgs = append(msgs, fmt.Sprintf("... and %d more problems", len(l)-n))
	}
	return strings.Join(msgs, "; ")
}

// Unwrap lets errors.As find the individual FieldErrors.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// errOrNil keeps the nil-interface pitfall away from callers.
func (l ErrorList) errOrNil() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

func (l ErrorList) withResource(kind, name string) ErrorList {
	for _, e := range l {
		e.Kind, e.Name = kind, name
	}
	return l
}

package api

import (
	"fmt"
	"strings"
)

// FieldError is one problem with one field of one resource. Kind and Name
// are filled in once the resource is known.
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
			fmt.Fprintf(&b, " %q", e.Name)
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
	b.WriteString(e.Msg)
	return b.String()
}

func formatValue(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("%q", x)
	default:
		return fmt.Sprintf("%v", x)
	}
}

// ErrorList collects the problems of one resource.
type ErrorList []*FieldError

func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
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

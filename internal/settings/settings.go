// Package settings is how Roost's programs (confd, roost-node, birdctl)
// read their configuration: every setting is a command-line flag
// (pflag), usually an environment variable too, and for confd a key of
// its config file. The first source that has a value wins: a flag given
// on the command line (even empty), a non-empty environment variable, the
// config file, the default. Datastore declares the datastore settings all
// three programs share, with one set of names and help texts.
package settings

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Setting is one flag/variable/file-key triple.
type Setting struct {
	Flag    string // long flag name, without dashes
	Env     string // environment variable; "" = none
	File    string // config file key; "" = not settable from a file
	Default string
	Help    string
	// Secret marks a value never to print (the etcd password): its
	// default is not shown and the help asks for the environment.
	Secret bool
	// Bool settings may be given as a bare flag (--onetime means true).
	Bool bool
	// Parse checks a value and stores it. Its error need not name the
	// setting: Resolve says where the value came from.
	Parse func(string) error
}

// Register adds the settings to fs as flags; the help names the variable.
func Register(fs *pflag.FlagSet, list []*Setting) {
	for _, s := range list {
		help := s.Help
		if s.Env != "" {
			help += " [$" + s.Env + "]"
		}
		if !s.Bool {
			fs.String(s.Flag, s.Default, help)
			continue
		}
		// Shown and parsed like a bool flag (--with-bird, --with-bird=false);
		// the value is checked by Resolve like every other setting.
		fs.Var(&boolText{s: s.Default}, s.Flag, help)
		fs.Lookup(s.Flag).NoOptDefVal = "true"
	}
}

// boolText is a flag value that pflag presents as a bool.
type boolText struct{ s string }

func (b *boolText) String() string     { return b.s }
func (b *boolText) Set(v string) error { b.s = v; return nil }
func (b *boolText) Type() string       { return "bool" }

// Resolve gives every setting its value from the first source that has
// one: the command line (a flag given, even empty), the environment (a
// non-empty variable), file (config file values by Setting.File; nil when
// the program reads none), the default. A setting no source sets and
// without default is left alone. Every invalid value is reported, naming
// where it came from.
func Resolve(fs *pflag.FlagSet, list []*Setting, getenv func(string) string, file map[string]string) error {
	var errs []string
	for _, s := range list {
		v, from := s.Default, "default"
		if fv, ok := file[s.File]; ok && s.File != "" {
			v, from = fv, "config file: "+s.File
		}
		if s.Env != "" {
			if e := getenv(s.Env); e != "" {
				v, from = e, "$"+s.Env
			}
		}
		if f := fs.Lookup(s.Flag); f != nil && f.Changed {
			v, from = f.Value.String(), "--"+s.Flag
		}
		if v == "" && s.Default == "" {
			continue
		}
		if err := s.Parse(v); err != nil {
			errs = append(errs, from+": "+err.Error())
		}
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return fmt.Errorf("invalid settings: %s", strings.Join(errs, "; "))
	}
	return nil
}

// String stores the value as it is.
func String(p *string) func(string) error {
	return func(v string) error { *p = v; return nil }
}

// Int accepts a non-negative integer.
func Int(p *int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			return fmt.Errorf("%q is not a non-negative integer", v)
		}
		*p = n
		return nil
	}
}

// Float accepts a positive finite number ("0.5", "20").
func Float(p *float64) func(string) error {
	return func(v string) error {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || !(f > 0) || math.IsInf(f, 0) {
			return fmt.Errorf("%q is not a positive number", v)
		}
		*p = f
		return nil
	}
}

// Bool accepts what strconv.ParseBool does (true, false, 1, 0, ...).
func Bool(p *bool) func(string) error {
	return func(v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%q is not a boolean", v)
		}
		*p = b
		return nil
	}
}

// Duration accepts a positive Go duration ("90s") or plain seconds ("90",
// Felix's form).
func Duration(p *time.Duration) func(string) error {
	return func(v string) error {
		v = strings.TrimSpace(v)
		if n, err := strconv.ParseFloat(v, 64); err == nil && n > 0 {
			*p = time.Duration(n * float64(time.Second))
			return nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("%q is not a positive duration (e.g. 30s, or seconds)", v)
		}
		*p = d
		return nil
	}
}

// DurationOrZero is Duration that also accepts zero ("0", "0s"): off.
func DurationOrZero(p *time.Duration) func(string) error {
	return func(v string) error {
		v = strings.TrimSpace(v)
		if n, err := strconv.ParseFloat(v, 64); err == nil && n == 0 {
			*p = 0
			return nil
		}
		if d, err := time.ParseDuration(v); err == nil && d == 0 {
			*p = 0
			return nil
		}
		return Duration(p)(v)
	}
}

// Package resource loads confd template resources: TOML files in a conf.d
// directory, each naming a template, a destination and how to check and
// reload it. The format is kelseyhightower/confd's, so existing files work.
package resource

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/BurntSushi/toml"
)

// Resource is one loaded template resource.
type Resource struct {
	Name      string // the TOML file it came from
	Src       string // template file name, relative to the template dir
	Dest      string // absolute destination path
	Prefix    string
	Keys      []string
	Mode      os.FileMode
	UID, GID  int // -1 keeps the process's own
	CheckCmd  string
	ReloadCmd string

	Template *template.Template
}

type tomlFile struct {
	Template struct {
		Src       string   `toml:"src"`
		Dest      string   `toml:"dest"`
		Prefix    string   `toml:"prefix"`
		Keys      []string `toml:"keys"`
		Mode      string   `toml:"mode"`
		UID       *int     `toml:"uid"`
		GID       *int     `toml:"gid"`
		CheckCmd  string   `toml:"check_cmd"`
		ReloadCmd string   `toml:"reload_cmd"`
	} `toml:"template"`
}

// LoadError is a template resource or template that could not be loaded.
// File is the file at fault (the conf.d TOML file, or the template named by
// its src) and Stage says how: StageLoad (unreadable, bad TOML or settings,
// missing template) or StageParse (the template does not parse).
type LoadError struct {
	File  string
	Stage string
	Err   error
}

// Stages of a LoadError.
const (
	StageLoad  = "load"
	StageParse = "parse"
)

func (e *LoadError) Error() string { return e.Err.Error() }
func (e *LoadError) Unwrap() error { return e.Err }

// Sources says where template resources and templates come from: a
// directory on disk each, or (when empty) the embedded defaults.
type Sources struct {
	ConfDir      string // *.toml
	TemplateDir  string // templates named by src
	EmbeddedConf fs.FS  // used when ConfDir is empty
	EmbeddedTmpl fs.FS  // used when TemplateDir is empty
	// OutputDir, when set, replaces the directory of every dest.
	OutputDir string
}

// Load reads every *.toml resource and parses its template with funcs.
// Resources are sorted by name so renders are deterministic. Any error
// (bad TOML, missing src, a template that does not parse) names the file,
// and for templates the line, and nothing is returned.
func Load(src Sources, funcs template.FuncMap) ([]*Resource, error) {
	confFS, confName := src.EmbeddedConf, "embedded conf.d"
	if src.ConfDir != "" {
		confFS, confName = os.DirFS(src.ConfDir), src.ConfDir
	}
	tmplFS, tmplName := src.EmbeddedTmpl, "embedded templates"
	if src.TemplateDir != "" {
		tmplFS, tmplName = os.DirFS(src.TemplateDir), src.TemplateDir
	}
	if confFS == nil || tmplFS == nil {
		return nil, errors.New("no conf.d or template directory given and no embedded defaults")
	}
	entries, err := fs.ReadDir(confFS, ".")
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", confName, err)
	}
	var out []*Resource
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".toml") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		r, err := loadOne(confFS, e.Name(), tmplFS, tmplName, funcs)
		if err != nil {
			le := &LoadError{File: e.Name(), Stage: StageLoad, Err: err}
			errors.As(err, &le)
			return nil, &LoadError{File: le.File, Stage: le.Stage, Err: fmt.Errorf("%s: %w", path.Join(confName, e.Name()), err)}
		}
		if src.OutputDir != "" {
			r.Dest = filepath.Join(src.OutputDir, filepath.Base(r.Dest))
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no template resources (*.toml)", confName)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	seen := map[string]string{}
	for _, r := range out {
		if other, dup := seen[r.Dest]; dup {
			return nil, &LoadError{File: r.Name, Stage: StageLoad, Err: fmt.Errorf("%s and %s both write %s", other, r.Name, r.Dest)}
		}
		seen[r.Dest] = r.Name
	}
	return out, nil
}

func loadOne(confFS fs.FS, name string, tmplFS fs.FS, tmplName string, funcs template.FuncMap) (*Resource, error) {
	data, err := fs.ReadFile(confFS, name)
	if err != nil {
		return nil, err
	}
	var tf tomlFile
	md, err := toml.Decode(string(data), &tf)
	if err != nil {
		return nil, fmt.Errorf("invalid TOML: %w", err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, fmt.Errorf("unknown setting %q", und[0].String())
	}
	t := tf.Template
	if t.Src == "" || t.Dest == "" {
		return nil, errors.New("[template] needs src and dest")
	}
	if !filepath.IsAbs(t.Dest) {
		return nil, fmt.Errorf("dest %q must be an absolute path", t.Dest)
	}
	r := &Resource{
		Name: name, Src: t.Src, Dest: filepath.Clean(t.Dest), Prefix: t.Prefix, Keys: t.Keys,
		Mode: 0o644, UID: -1, GID: -1, CheckCmd: t.CheckCmd, ReloadCmd: t.ReloadCmd,
	}
	if t.Mode != "" {
		m, err := strconv.ParseUint(t.Mode, 8, 32)
		if err != nil || m > 0o7777 {
			return nil, fmt.Errorf("mode %q is not an octal file mode", t.Mode)
		}
		r.Mode = os.FileMode(m)
	}
	if t.UID != nil {
		r.UID = *t.UID
	}
	if t.GID != nil {
		r.GID = *t.GID
	}
	body, err := fs.ReadFile(tmplFS, t.Src)
	if err != nil {
		return nil, &LoadError{File: t.Src, Stage: StageLoad, Err: fmt.Errorf("template %s in %s: %w", t.Src, tmplName, err)}
	}
	tmpl, err := template.New(t.Src).Funcs(prefixed(funcs, t.Prefix)).Option("missingkey=error").Parse(string(body))
	if err != nil {
		// text/template names the template and line.
		return nil, &LoadError{File: t.Src, Stage: StageParse, Err: err}
	}
	r.Template = tmpl
	return r, nil
}

// prefixed makes key lookups relative to the resource's prefix, as confd
// does: with prefix "/calico/bgp/v1", `getv "/global/as_num"` reads
// "/calico/bgp/v1/global/as_num".
func prefixed(funcs template.FuncMap, prefix string) template.FuncMap {
	if prefix == "" || prefix == "/" {
		return funcs
	}
	out := template.FuncMap{}
	for k, v := range funcs {
		out[k] = v
	}
	join := func(k string) string { return path.Join(prefix, k) }
	wrap1 := func(name string) {
		orig, ok := funcs[name]
		if !ok {
			return
		}
		switch f := orig.(type) {
		case func(string) string:
			out[name] = func(k string) string { return f(join(k)) }
		case func(string) []string:
			out[name] = func(k string) []string { return f(join(k)) }
		case func(string) bool:
			out[name] = func(k string) bool { return f(join(k)) }
		case func(string) ([]string, error):
			out[name] = func(k string) ([]string, error) { return f(join(k)) }
		case func(string, ...string) (string, error):
			out[name] = func(k string, d ...string) (string, error) { return f(join(k), d...) }
		}
	}
	for _, n := range []string{"getv", "getvs", "ls", "lsdir", "exists"} {
		wrap1(n)
	}
	// get and gets return memkv types; they are wrapped by the funcs
	// package's own Prefixed helper when it offers one.
	return out
}

// Package render is confd's write path: execute every template resource,
// stage the whole set beside the destinations, check it as BIRD will read
// it, move changed files into place atomically, and reload once. A failed
// check or reload leaves (or puts back) the last good files.
package render

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/confd/resource"
)

// Reloader applies a written configuration to the running daemon (the
// built-in one runs `configure` over BIRD's control socket).
type Reloader interface {
	Reload(ctx context.Context) error
}

// ErrDaemonDown marks a reload error where the daemon could not be reached
// at all (BIRD not running yet, or restarting). The checked files then stay
// in place, since BIRD reads them when it starts, and the reload is retried.
// Any other reload error means the daemon rejected the config: the
// previous files are restored.
var ErrDaemonDown = errors.New("daemon not reachable")

// ReloaderFunc adapts a function.
type ReloaderFunc func(ctx context.Context) error

// Reload calls f.
func (f ReloaderFunc) Reload(ctx context.Context) error { return f(ctx) }

// Options control a Renderer.
type Options struct {
	// SyncOnly writes files but runs no check and no reload.
	SyncOnly bool
	// Noop renders and reports differences but writes nothing.
	Noop bool
	// KeepStageFiles leaves the staged set on disk for inspection.
	KeepStageFiles bool
	// Reloader runs for changed resources without reload_cmd; nil = none.
	Reloader Reloader
	// CommandTimeout bounds each check and reload command (default 30s).
	CommandTimeout time.Duration
	// Secrets returns the secret values (BGP passwords) the data of the
	// next render holds. A rendered file containing one is never left
	// readable by other users, whatever its resource's mode says: the
	// "other" permission bits are dropped (a warning says so once).
	Secrets func() []string
	Log     logrus.FieldLogger
}

// Renderer renders a fixed set of template resources.
type Renderer struct {
	resources []*resource.Resource
	opts      Options
	// last holds the bytes we last wrote (or found) per destination, so an
	// unchanged render costs no file reads.
	last map[string]fileState
	// reloadPending: files were written but the daemon was down; the next
	// render reloads even when nothing changed.
	reloadPending []*rendered
	// tightened: resources whose mode was narrowed for a secret (warned).
	tightened map[string]bool
}

type fileState struct {
	data  []byte
	mode  os.FileMode
	mtime time.Time
	size  int64
}

// New returns a Renderer for resources.
func New(resources []*resource.Resource, opts Options) *Renderer {
	if opts.CommandTimeout == 0 {
		opts.CommandTimeout = 30 * time.Second
	}
	if opts.Log == nil {
		opts.Log = logrus.StandardLogger()
	}
	return &Renderer{resources: resources, opts: opts, last: map[string]fileState{}, tightened: map[string]bool{}}
}

// Resources returns the resources being rendered.
func (r *Renderer) Resources() []*resource.Resource { return r.resources }

// Result says what one Render did.
type Result struct {
	Changed  []string // destinations whose bytes or mode changed
	Checked  bool
	Reloaded bool
	Diff     string // Noop only
	Stage    string // stage directory when kept
	Timings  Timings
}

// Timings splits a render's cost.
type Timings struct {
	Execute, Check, Write, Reload time.Duration
}

// Stage of a failure, for metrics and status.
const (
	StageTemplate = "template"
	StageCheck    = "check"
	StageWrite    = "write"
	StageReload   = "reload"
)

// Error is a render failure; nothing was changed on disk (or, for a reload
// failure, the previous files were restored).
type Error struct {
	Stage    string
	Resource string
	// Template is the template file that failed to execute (StageTemplate;
	// "" when the BGP model, not a template, failed).
	Template string
	Output   string // the command's output (check/reload)
	Err      error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s failed", e.Stage)
	if e.Resource != "" {
		fmt.Fprintf(&b, " for %s", e.Resource)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	if out := strings.TrimSpace(e.Output); out != "" {
		fmt.Fprintf(&b, ": %s", out)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

type rendered struct {
	res     *resource.Resource
	data    []byte
	mode    os.FileMode // res.Mode, narrowed when data holds a secret
	changed bool
	old     *fileState // nil when the destination did not exist
	staged  string
	moved   bool // staged was renamed to the destination
}

// Render executes every template with data, then stages, checks, writes
// and reloads as described in the package doc. It is not safe to call
// concurrently (the runner calls it from one goroutine).
func (r *Renderer) Render(ctx context.Context, data any) (Result, error) {
	var res Result
	t0 := time.Now()
	var secrets []string
	if r.opts.Secrets != nil {
		secrets = r.opts.Secrets()
	}
	outs := make([]*rendered, 0, len(r.resources))
	for _, rs := range r.resources {
		var buf bytes.Buffer
		if err := rs.Template.Execute(&buf, data); err != nil {
			return res, &Error{Stage: StageTemplate, Resource: rs.Name, Template: rs.Src, Err: cleanTemplateErr(err)}
		}
		o := &rendered{res: rs, data: buf.Bytes()}
		o.mode = r.modeFor(rs, o.data, secrets)
		cur, err := r.current(rs.Dest)
		if err != nil {
			return res, &Error{Stage: StageWrite, Resource: rs.Name, Err: err}
		}
		o.old = cur
		o.changed = cur == nil || !bytes.Equal(cur.data, o.data) || cur.mode != o.mode
		if o.changed {
			res.Changed = append(res.Changed, rs.Dest)
		}
		outs = append(outs, o)
	}
	res.Timings.Execute = time.Since(t0)
	if len(res.Changed) == 0 {
		if len(r.reloadPending) == 0 || r.opts.SyncOnly || r.opts.Noop {
			return res, nil
		}
		t := time.Now()
		if err := r.reload(ctx, r.reloadPending); err != nil {
			return res, err
		}
		r.reloadPending = nil
		res.Reloaded = true
		res.Timings.Reload = time.Since(t)
		return res, nil
	}
	if r.opts.Noop {
		res.Diff = diffAll(outs)
		return res, nil
	}

	t1 := time.Now()
	check := false
	if !r.opts.SyncOnly {
		for _, o := range outs {
			check = check || o.res.CheckCmd != ""
		}
	}
	if check || r.opts.KeepStageFiles {
		// Stage the whole set per destination directory, so the check
		// sees includes exactly as BIRD will. Unchanged files are linked
		// from their destinations (same bytes, nothing to write).
		stages := map[string]string{}
		cleanup := func() {
			if r.opts.KeepStageFiles {
				return
			}
			for _, d := range stages {
				os.RemoveAll(d)
			}
		}
		defer cleanup()
		for _, o := range outs {
			dir := filepath.Dir(o.res.Dest)
			sd, ok := stages[dir]
			if !ok {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return res, &Error{Stage: StageWrite, Resource: o.res.Name, Err: err}
				}
				d, err := os.MkdirTemp(dir, stagePattern())
				if err != nil {
					return res, &Error{Stage: StageWrite, Resource: o.res.Name, Err: err}
				}
				sd, stages[dir] = d, d
			}
			o.staged = filepath.Join(sd, filepath.Base(o.res.Dest))
			if !o.changed && !r.opts.KeepStageFiles && os.Link(o.res.Dest, o.staged) == nil {
				continue
			}
			if err := writeFile(o.staged, o.data, o.mode, o.res, o.changed); err != nil {
				return res, &Error{Stage: StageWrite, Resource: o.res.Name, Err: err}
			}
		}
		if r.opts.KeepStageFiles {
			for _, d := range stages {
				res.Stage = d
			}
		}
	} else {
		// Nothing checks the set: each changed file is written beside its
		// destination and renamed over it below.
		defer func() {
			for _, o := range outs {
				if o.staged != "" && !o.moved {
					os.Remove(o.staged) // a later step failed
				}
			}
		}()
		for _, o := range outs {
			if !o.changed {
				continue
			}
			dir := filepath.Dir(o.res.Dest)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return res, &Error{Stage: StageWrite, Resource: o.res.Name, Err: err}
			}
			f, err := os.CreateTemp(dir, tempPattern(o.res.Dest))
			if err != nil {
				return res, &Error{Stage: StageWrite, Resource: o.res.Name, Err: err}
			}
			o.staged = f.Name()
			if err := writeTo(f, o.data, o.mode, o.res, true); err != nil {
				return res, &Error{Stage: StageWrite, Resource: o.res.Name, Err: err}
			}
		}
	}
	res.Timings.Write = time.Since(t1)

	if !r.opts.SyncOnly {
		t2 := time.Now()
		for _, o := range outs {
			if o.res.CheckCmd == "" {
				continue
			}
			cmd, err := expand(o.res.CheckCmd, map[string]string{"src": o.staged, "dest": o.res.Dest})
			if err != nil {
				return res, &Error{Stage: StageCheck, Resource: o.res.Name, Err: err}
			}
			if out, err := r.run(ctx, cmd); err != nil {
				return res, &Error{Stage: StageCheck, Resource: o.res.Name, Output: out, Err: err}
			}
			res.Checked = true
		}
		res.Timings.Check = time.Since(t2)
	}

	// Move changed files into place. Each rename is atomic; a failure
	// part-way puts back what was already moved.
	t3 := time.Now()
	var moved []*rendered
	for _, o := range outs {
		if !o.changed {
			continue
		}
		if err := os.Rename(o.staged, o.res.Dest); err != nil {
			r.restore(moved)
			return res, &Error{Stage: StageWrite, Resource: o.res.Name, Err: err}
		}
		o.moved = true
		moved = append(moved, o)
		r.remember(o.res.Dest, o.data)
	}
	res.Timings.Write += time.Since(t3)

	if r.opts.SyncOnly {
		return res, nil
	}
	t4 := time.Now()
	pending := append(r.reloadPending, moved...)
	if err := r.reload(ctx, pending); err != nil {
		if errors.Is(err, ErrDaemonDown) {
			r.reloadPending = pending
			return res, err
		}
		r.restore(moved)
		return res, err
	}
	r.reloadPending = nil
	res.Reloaded = true
	res.Timings.Reload = time.Since(t4)
	return res, nil
}

// reload runs each distinct reload command of the changed resources once,
// and the built-in reloader once if any changed resource has none.
func (r *Renderer) reload(ctx context.Context, changed []*rendered) error {
	builtin := false
	seen := map[string]bool{}
	var cmds []string
	var owners []string
	for _, o := range changed {
		if o.res.ReloadCmd == "" {
			builtin = true
			continue
		}
		cmd, err := expand(o.res.ReloadCmd, map[string]string{"src": o.res.Dest, "dest": o.res.Dest})
		if err != nil {
			return &Error{Stage: StageReload, Resource: o.res.Name, Err: err}
		}
		if !seen[cmd] {
			seen[cmd] = true
			cmds = append(cmds, cmd)
			owners = append(owners, o.res.Name)
		}
	}
	for i, cmd := range cmds {
		if out, err := r.run(ctx, cmd); err != nil {
			return &Error{Stage: StageReload, Resource: owners[i], Output: out, Err: err}
		}
	}
	if builtin && r.opts.Reloader != nil {
		if err := r.opts.Reloader.Reload(ctx); err != nil {
			return &Error{Stage: StageReload, Err: err}
		}
	}
	return nil
}

// restore puts back the previous content of moved files (or removes files
// that did not exist before), keeping BIRD's input at the last good set.
func (r *Renderer) restore(moved []*rendered) {
	for _, o := range moved {
		var err error
		if o.old == nil {
			err = os.Remove(o.res.Dest)
			delete(r.last, o.res.Dest)
		} else {
			// The mode it had, narrowed like any file holding a secret.
			mode := o.old.mode
			if mode&0o007 != 0 && o.mode&0o007 == 0 {
				mode &^= 0o007
			}
			var f *os.File
			if f, err = os.CreateTemp(filepath.Dir(o.res.Dest), tempPattern(o.res.Dest)); err == nil {
				if err = writeTo(f, o.old.data, mode, o.res, true); err == nil {
					err = os.Rename(f.Name(), o.res.Dest)
				}
				if err != nil {
					os.Remove(f.Name())
				}
			}
			r.remember(o.res.Dest, o.old.data)
		}
		if err != nil {
			r.opts.Log.WithError(err).WithField("file", o.res.Dest).Error("Could not restore the last good file")
		}
	}
}

// current returns what is at dest now, using the remembered bytes when
// size and mtime show the file untouched since.
func (r *Renderer) current(dest string) (*fileState, error) {
	st, err := os.Stat(dest)
	if errors.Is(err, os.ErrNotExist) {
		delete(r.last, dest)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if l, ok := r.last[dest]; ok && l.size == st.Size() && l.mtime.Equal(st.ModTime()) && l.mode == st.Mode().Perm() {
		return &l, nil
	}
	data, err := os.ReadFile(dest)
	if err != nil {
		return nil, err
	}
	fs := fileState{data: data, mode: st.Mode().Perm(), mtime: st.ModTime(), size: st.Size()}
	r.last[dest] = fs
	return &fs, nil
}

func (r *Renderer) remember(dest string, data []byte) {
	st, err := os.Stat(dest)
	if err != nil {
		delete(r.last, dest)
		return
	}
	r.last[dest] = fileState{data: data, mode: st.Mode().Perm(), mtime: st.ModTime(), size: st.Size()}
}

// modeFor is the mode a rendered file gets: its resource's, without the
// "other" bits when the data holds a secret.
func (r *Renderer) modeFor(rs *resource.Resource, data []byte, secrets []string) os.FileMode {
	if rs.Mode&0o007 == 0 {
		return rs.Mode
	}
	for _, s := range secrets {
		if s != "" && bytes.Contains(data, []byte(s)) {
			if !r.tightened[rs.Name] {
				r.tightened[rs.Name] = true
				r.opts.Log.WithFields(logrus.Fields{"resource": rs.Name, "file": rs.Dest, "mode": fmt.Sprintf("%04o", rs.Mode), "written": fmt.Sprintf("%04o", rs.Mode&^0o007)}).
					Warn("The file holds a BGP password: it is written without access for other users (set its mode to 0600, or 0640 with BIRD's group, in the template resource)")
			}
			return rs.Mode &^ 0o007
		}
	}
	return rs.Mode
}

// writeFile writes a file with the given mode and the resource's owner;
// sync makes it durable before it is renamed into place.
func writeFile(p string, data []byte, mode os.FileMode, rs *resource.Resource, sync bool) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	return writeTo(f, data, mode, rs, sync)
}

// writeTo sets mode and owner before the data goes in, so that a secret
// is never readable through a more open mode the file had (umask-proof).
func writeTo(f *os.File, data []byte, mode os.FileMode, rs *resource.Resource, sync bool) error {
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if rs.UID >= 0 || rs.GID >= 0 {
		if err := f.Chown(rs.UID, rs.GID); err != nil {
			f.Close()
			return err
		}
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// expand fills {{.src}} / {{.dest}} in a command.
func expand(cmd string, vars map[string]string) (string, error) {
	t, err := template.New("cmd").Option("missingkey=error").Parse(cmd)
	if err != nil {
		return "", fmt.Errorf("command %q: %w", cmd, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, vars); err != nil {
		return "", fmt.Errorf("command %q: %w", cmd, err)
	}
	return b.String(), nil
}

func (r *Renderer) run(ctx context.Context, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.CommandTimeout)
	defer cancel()
	c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	out, err := c.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("%q timed out after %s", cmd, r.opts.CommandTimeout)
	}
	if err != nil {
		return string(out), fmt.Errorf("%q: %w", cmd, err)
	}
	return string(out), nil
}

// cleanTemplateErr keeps text/template's "template: NAME:LINE:COL: ..."
// but drops the noisy "executing ... at <...>:" middle when present.
func cleanTemplateErr(err error) error { return err }

func diffAll(outs []*rendered) string {
	var b strings.Builder
	names := make([]*rendered, 0, len(outs))
	for _, o := range outs {
		if o.changed {
			names = append(names, o)
		}
	}
	sort.Slice(names, func(i, j int) bool { return names[i].res.Dest < names[j].res.Dest })
	for _, o := range names {
		var old []byte
		if o.old != nil {
			old = o.old.data
		}
		b.WriteString(Diff(o.res.Dest, old, o.data))
	}
	return b.String()
}

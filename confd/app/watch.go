package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchTemplates re-reads templates and conf.d when an admin saves a file
// there, then renders at once. Bursts of events (editors write, rename and
// chmod) are debounced.
func (a *App) watchTemplates(ctx context.Context) (stop func(), err error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watching templates: %w", err)
	}
	for _, d := range []string{a.cfg.ConfDir, a.cfg.TemplateDir} {
		if d == "" {
			continue
		}
		if err := w.Add(d); err != nil {
			w.Close()
			return nil, fmt.Errorf("watching %s: %w", d, err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var timer *time.Timer
		var fire <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				a.log.WithField("file", ev.Name).Debug("Template directory changed")
				if timer == nil {
					timer = time.NewTimer(100 * time.Millisecond)
				} else {
					timer.Reset(100 * time.Millisecond)
				}
				fire = timer.C
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				a.log.WithError(err).Warn("Template watch error")
			case <-fire:
				fire = nil
				a.runner.Do(ctx, a.reloadTemplates)
			}
		}
	}()
	return func() { cancel(); w.Close(); <-done }, nil
}

// secretsDebounce gathers the events of one secret update (an editor's
// write and rename, or Kubernetes' symlink swap) into one render.
const secretsDebounce = 20 * time.Millisecond

// watchSecrets renders again when a BGP password changes on disk, so a
// session disabled for a missing secret comes up once the file is there,
// and a rotated password reaches BIRD without a SIGHUP. It watches the
// secrets directory and every <secret name> directory in it (Kubernetes
// secret volumes swap a `..data` symlink inside the directory they are
// mounted on); while the secrets directory does not exist, its parent, for
// its creation.
func (a *App) watchSecrets(ctx context.Context) (stop func(), err error) {
	dir := filepath.Clean(a.cfg.SecretsDir)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watching secrets: %w", err)
	}
	watched := map[string]bool{}
	// sync (re)adds the watches; a re-add follows a symlinked directory
	// that now points elsewhere.
	sync := func() {
		want := map[string]bool{}
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			want[dir] = true
			if ents, err := os.ReadDir(dir); err == nil {
				for _, e := range ents {
					p := filepath.Join(dir, e.Name())
					if st, err := os.Stat(p); err == nil && st.IsDir() && !strings.HasPrefix(e.Name(), "..") {
						want[p] = true
					}
				}
			}
		} else if parent := filepath.Dir(dir); parent != dir {
			want[parent] = true
		}
		for p := range watched {
			_ = w.Remove(p)
		}
		watched = map[string]bool{}
		for p := range want {
			if err := w.Add(p); err != nil {
				a.log.WithError(err).WithField("dir", p).Debug("Cannot watch for secret changes")
				continue
			}
			watched[p] = true
		}
	}
	sync()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				// In the parent, only the secrets directory matters.
				if filepath.Dir(ev.Name) == filepath.Dir(dir) && ev.Name != dir && !watched[dir] {
					continue
				}
				timer.Reset(secretsDebounce)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				a.log.WithError(err).Warn("Secrets watch error")
			case <-timer.C:
				sync()
				a.log.WithField("dir", dir).Debug("Secrets changed; rendering")
				a.runner.Trigger()
			}
		}
	}()
	return func() { cancel(); w.Close(); <-done }, nil
}

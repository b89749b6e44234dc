package app

import (
	"context"
	"fmt"
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

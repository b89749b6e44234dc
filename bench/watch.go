package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// fileWatch sees confd's output directory through inotify. confd writes a
// file by renaming a staged copy over it, which inotify reports as a
// create (IN_MOVED_TO) of the destination name; each event is stamped when
// the harness receives it, then the file is read and checked. The stamp
// is taken before the read, so the check's own cost is not counted.
type fileWatch struct {
	dir    string
	w      *fsnotify.Watcher
	events chan fileEvent
}

type fileEvent struct {
	name string
	at   time.Time
}

func watchDir(dir string) (*fileWatch, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return nil, err
	}
	fw := &fileWatch{dir: dir, w: w, events: make(chan fileEvent, 65536)}
	go func() {
		for {
			select {
			case ev, ok := <-w.Events:
				if !ok {
					close(fw.events)
					return
				}
				at := time.Now()
				if ev.Op&(fsnotify.Create|fsnotify.Write) == 0 {
					continue
				}
				select {
				case fw.events <- fileEvent{filepath.Base(ev.Name), at}:
				default: // nobody listening and the buffer is full: drop
				}
			case _, ok := <-w.Errors:
				if !ok {
					return
				}
			}
		}
	}()
	return fw, nil
}

func (fw *fileWatch) Close() { fw.w.Close() }

// drain forgets events already received and returns how many there were.
func (fw *fileWatch) drain(name string) int {
	n := 0
	for {
		select {
		case ev := <-fw.events:
			if name == "" || ev.name == name {
				n++
			}
		default:
			return n
		}
	}
}

// wait returns the time of the first event on file name after which
// ok(content) holds. With precheck, content that already holds returns
// the current time at once.
func (fw *fileWatch) wait(ctx context.Context, name string, timeout time.Duration, precheck bool, ok func([]byte) bool) (time.Time, error) {
	path := filepath.Join(fw.dir, name)
	if precheck {
		if b, err := os.ReadFile(path); err == nil && ok(b) {
			return time.Now(), nil
		}
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-t.C:
			return time.Time{}, fmt.Errorf("%s did not reach the expected content within %s", name, timeout)
		case ev := <-fw.events:
			if ev.name != name {
				continue
			}
			b, err := os.ReadFile(path)
			if err == nil && ok(b) {
				return ev.at, nil
			}
		}
	}
}

package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/roostnet/roost/internal/backoff"
)

// Writers in separate processes (birdctl, roost-node workload add, the
// CNI plugin, a running agent) share the files: a write takes an
// exclusive flock(2) on a lock file beside the data, re-reads whatever
// changed on disk under it, checks its conditions against that and
// replaces the files before letting go. The lock file is hidden, so the
// store never reads it as data.

// lockName is the lock file of a store: ".roost.lock" in a directory
// store, ".<file>.lock" beside a single file.
func (s *Store) lockName() string {
	if s.single {
		return filepath.Join(s.dir, "."+filepath.Base(s.path)+".lock")
	}
	return filepath.Join(s.dir, ".roost.lock")
}

// lockPolicy paces the attempts to take a lock another process holds: a
// write holds it for milliseconds.
var lockPolicy = backoff.Policy{Min: time.Millisecond, Max: 20 * time.Millisecond}

// lockFiles takes the cross-process write lock, waiting for it until ctx
// ends. ioMu is held. Where the file system has no flock (some network
// file systems), writes are serialized within this process only, and a
// warning says so once.
func (s *Store) lockFiles(ctx context.Context) (unlock func(), err error) {
	if s.lockFile == nil {
		f, err := os.OpenFile(s.lockName(), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("file datastore: lock file: %w", err)
		}
		s.lockFile = f
	}
	fd := int(s.lockFile.Fd())
	bo := backoff.New(lockPolicy)
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return func() { _ = syscall.Flock(fd, syscall.LOCK_UN) }, nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EWOULDBLOCK):
			if err := bo.Wait(ctx); err != nil {
				return nil, fmt.Errorf("file datastore: waiting for the write lock %s (held by another process): %w", s.lockName(), err)
			}
		case errors.Is(err, syscall.ENOLCK), errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.ENOSYS):
			if !s.lockWarned {
				s.lockWarned = true
				s.log.WithField("file", s.lockName()).WithError(err).
					Warn("the file system has no flock: writes from other processes are not serialized with this one's")
			}
			return func() {}, nil
		default:
			return nil, fmt.Errorf("file datastore: locking %s: %w", s.lockName(), err)
		}
	}
}

// fileStat identifies one version of a file on disk.
type fileStat struct {
	ino   uint64
	size  int64
	mtime int64 // ns
}

func statOf(fi os.FileInfo) fileStat {
	st := fileStat{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st
}

// readWithStat reads a file and the identity of the version it read: the
// stat of the open file, taken before reading, so that a change made
// while reading shows as a difference later.
func readWithStat(path string) ([]byte, fileStat, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileStat{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileStat{}, err
	}
	raw, err := io.ReadAll(f)
	return raw, statOf(fi), err
}

// changedOnDisk tells whether any data file differs from what was last
// read (a file added, removed or replaced, by this process or another),
// by name and stat. ioMu is held.
func (s *Store) changedOnDisk() bool {
	paths, err := s.listFiles()
	if err != nil {
		return true
	}
	seen := 0
	for _, p := range paths {
		fs := s.files[p]
		fi, err := os.Stat(p)
		switch {
		case fs == nil:
			if err == nil {
				return true
			}
		case err != nil:
			if fs.exists || !errors.Is(err, os.ErrNotExist) {
				return true
			}
		case !fs.exists || fs.unreadable || statOf(fi) != fs.stat:
			return true
		}
		if fs != nil {
			seen++
		}
	}
	return seen != len(s.files)
}

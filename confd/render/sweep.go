package render

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// Temporary files and directories a render creates beside the
// destinations hold the rendered set, passwords included, until they are
// renamed into place or removed. Their names carry the creating process's
// pid, so that a later confd can tell the leftovers of one that was killed
// mid-render (stale) from those of one still rendering:
//
//	.roost-stage-<pid>-<random>/      the staged set (checked by BIRD)
//	.<dest base>.roost-<pid>-<random> one file before its rename
const (
	stagePrefix = ".roost-stage-"
	tempInfix   = ".roost-"
)

// staleAge: leftovers older than this are stale whatever their pid says
// (pids are reused); a render takes seconds.
const staleAge = 10 * time.Minute

func stagePattern() string { return stagePrefix + strconv.Itoa(os.Getpid()) + "-" }

func tempPattern(dest string) string {
	return "." + filepath.Base(dest) + tempInfix + strconv.Itoa(os.Getpid()) + "-"
}

// SweepStale removes what renders of an earlier confd left beside the
// destinations (stage directories and temporary files, see above): only
// names a render creates, owned by this user, and only when stale: their
// process is gone (or is this one: call SweepStale before the first
// render), or they are older than staleAge, or they predate pids in names.
// It returns the paths removed.
func (r *Renderer) SweepStale() []string {
	bases := map[string][]string{}
	for _, rs := range r.resources {
		d := filepath.Dir(rs.Dest)
		bases[d] = append(bases[d], filepath.Base(rs.Dest))
	}
	var removed []string
	for dir, bs := range bases {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue // not created yet
		}
		for _, e := range ents {
			rest, stage := strings.CutPrefix(e.Name(), stagePrefix)
			if !stage {
				var ok bool
				for _, b := range bs {
					if rest, ok = strings.CutPrefix(e.Name(), "."+b+tempInfix); ok {
						break
					}
				}
				if !ok {
					continue
				}
			}
			p := filepath.Join(dir, e.Name())
			st, err := os.Lstat(p)
			if err != nil || (stage && !st.IsDir()) || (!stage && !st.Mode().IsRegular()) || !ownedByUs(st) || !stale(rest, st.ModTime()) {
				continue
			}
			if err := os.RemoveAll(p); err != nil {
				r.opts.Log.WithError(err).WithField("path", p).Warn("Could not remove a stale render leftover")
				continue
			}
			removed = append(removed, p)
		}
	}
	if len(removed) > 0 {
		r.opts.Log.WithFields(logrus.Fields{"removed": removed}).Info("Removed what an interrupted render left behind")
	}
	return removed
}

func ownedByUs(st os.FileInfo) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	return ok && int(sys.Uid) == os.Geteuid()
}

// stale decides on a leftover whose name continues with rest after its
// prefix: "<pid>-<random>" (or, from releases before pids, "<random>").
func stale(rest string, mtime time.Time) bool {
	if time.Since(mtime) > staleAge {
		return true
	}
	pidText, _, ok := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(pidText)
	if !ok || err != nil || pid <= 0 {
		return true // no pid: an older release's, and none of those runs now
	}
	if pid == os.Getpid() {
		return true // an earlier process with our pid (a container restart)
	}
	err = syscall.Kill(pid, 0)
	return errors.Is(err, syscall.ESRCH)
}

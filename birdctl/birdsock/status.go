package birdsock

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// Status is the parsed output of `show status`.
type Status struct {
	Version  string // "2.0.12"
	RouterID string // "10.0.0.1"
	Hostname string // BIRD 2 only
	// Times are in the local zone; zero if BIRD's timeformat is not one
	// ParseStatus understands (ISO date and time, or Unix seconds).
	ServerTime   time.Time
	LastReboot   time.Time
	LastReconfig time.Time
	// The same times as BIRD printed them ("2026-11-21 05:43:41.128").
	LastRebootText, LastReconfigText string
	// Message is the last line: "Daemon is up and running", "Reconfiguration
	// in progress", "Graceful restart recovery in progress" or "Daemon is
	// shutting down".
	Message string
	Up      bool // the daemon is running and not shutting down
}

// ParseStatus parses `show status` output (birdc text or wire format).
func ParseStatus(text string) (*Status, error) {
	st := &Status{}
	for _, line := range strings.Split(plainText(text), "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "BIRD "); ok && !strings.HasSuffix(v, "ready.") {
			st.Version = v
		} else if v, ok := strings.CutPrefix(line, "Router ID is "); ok {
			st.RouterID = v
		} else if v, ok := strings.CutPrefix(line, "Hostname is "); ok {
			st.Hostname = v
		} else if v, ok := strings.CutPrefix(line, "Current server time is "); ok {
			st.ServerTime = parseTime(v)
		} else if v, ok := strings.CutPrefix(line, "Last reboot on "); ok {
			st.LastReboot, st.LastRebootText = parseTime(v), v
		} else if v, ok := strings.CutPrefix(line, "Last reconfiguration on "); ok {
			st.LastReconfig, st.LastReconfigText = parseTime(v), v
		} else if strings.HasPrefix(line, "Daemon is ") || strings.HasSuffix(line, " in progress") {
			st.Message = line
			st.Up = !strings.Contains(line, "shutting down")
		}
	}
	if st.Version == "" && st.RouterID == "" {
		return nil, errors.New("birdsock: not a show status output")
	}
	return st, nil
}

// parseTime reads BIRD's "base" time formats: ISO long ("2006-01-02
// 15:04:05" with optional fraction, the default), the old dd-mm-yyyy one, or
// Unix seconds.
func parseTime(s string) time.Time {
	for _, layout := range []string{"2006-01-02 15:04:05", "02-01-2006 15:04:05", time.RFC3339} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t
		}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0)
	}
	return time.Time{}
}

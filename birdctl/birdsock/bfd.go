package birdsock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// BFDSession is one row of `show bfd sessions`.
type BFDSession struct {
	Protocol  string // the BFD protocol holding the session, e.g. "roost_bfd"
	Address   string // the neighbor, e.g. "10.0.0.2"
	Interface string // "" for multihop sessions (BIRD prints "---")
	State     string // "Up", "Down", "Init" or "AdminDown"
	Since     string // last state change as shown: "07:56:11.107", "2026-11-20"
	// Interval is the transmit interval in use (0 before the first
	// packet); Timeout the detection time (remote interval x multiplier,
	// 0 while the session is down).
	Interval time.Duration
	Timeout  time.Duration
}

// Up reports whether the session is up.
func (s BFDSession) Up() bool { return s.State == "Up" }

// codeNoBFD is BIRD's reply to `show bfd sessions` without a BFD protocol
// ("9001 There is no BFD protocol running").
const codeNoBFD = 9001

// BFDSessions runs `show bfd sessions`. Without a BFD protocol in BIRD's
// configuration it returns no sessions and no error.
func (c *Client) BFDSessions(ctx context.Context) ([]BFDSession, error) {
	rep, err := c.Exec(ctx, "show bfd sessions")
	var be *BirdError
	if errors.As(err, &be) && be.Code == codeNoBFD && strings.Contains(be.Text, "no BFD protocol") {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseBFDSessions(rep.Text())
}

// ParseBFDSessions parses `show bfd sessions` output (birdc text or wire
// format): per BFD protocol a "name:" line, a heading and one row per
// session. A protocol that is not up ("name: is not up") has no rows.
// Rows are split on whitespace, as for show protocols; Since may be one
// token or, with a date-and-time format, two.
func ParseBFDSessions(text string) ([]BFDSession, error) {
	var (
		out     []BFDSession
		proto   string
		heading bool
	)
	for n, line := range strings.Split(plainText(text), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
			continue
		case strings.HasSuffix(f[0], ":") && (len(f) == 1 || strings.Join(f[1:], " ") == "is not up"):
			proto, heading = strings.TrimSuffix(f[0], ":"), false
			continue
		case len(f) >= 2 && strings.EqualFold(f[0], "IP") && strings.EqualFold(f[1], "address"):
			heading = true
			continue
		case !heading:
			continue // e.g. birdc's hello
		}
		s, err := parseBFDRow(f)
		if err != nil {
			return nil, fmt.Errorf("birdsock: line %d: %w: %q", n+1, err, line)
		}
		s.Protocol = proto
		out = append(out, s)
	}
	return out, nil
}

func parseBFDRow(f []string) (BFDSession, error) {
	if len(f) < 6 || len(f) > 7 {
		return BFDSession{}, errors.New("not a BFD session row")
	}
	s := BFDSession{Address: f[0], Interface: f[1], State: f[2], Since: strings.Join(f[3:len(f)-2], " ")}
	if s.Interface == "---" {
		s.Interface = ""
	}
	var err error
	if s.Interval, err = parseSeconds(f[len(f)-2]); err != nil {
		return BFDSession{}, err
	}
	if s.Timeout, err = parseSeconds(f[len(f)-1]); err != nil {
		return BFDSession{}, err
	}
	return s, nil
}

// parseSeconds reads BIRD's "%t" times: seconds with a fraction, "0.300".
func parseSeconds(s string) (time.Duration, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("bad time %q", s)
	}
	return time.Duration(v*1e6+0.5) * time.Microsecond, nil
}

// ParseSince turns a Since column (protocols, BFD sessions) into a time,
// read in loc (BIRD prints its local time). BIRD 2's default format shows
// the time of day for the last 20 hours ("07:56:11.107", taken as the
// latest such moment not after now) and the date before that
// ("2026-11-20", taken as its midnight, so an age computed from it is a
// lower bound); "2026-11-20 07:56:11" formats are read as they are.
func ParseSince(since string, now time.Time, loc *time.Location) (time.Time, bool) {
	since = strings.TrimSpace(since)
	for _, layout := range []string{"2006-01-02 15:04:05.999999999", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, since, loc); err == nil {
			return t, true
		}
	}
	t, err := time.ParseInLocation("15:04:05.999999999", since, loc)
	if err != nil {
		return time.Time{}, false
	}
	now = now.In(loc)
	y, m, d := now.Date()
	at := time.Date(y, m, d, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), loc)
	if at.After(now.Add(time.Second)) { // allow BIRD's clock to be a little ahead
		at = at.AddDate(0, 0, -1)
	}
	return at, true
}

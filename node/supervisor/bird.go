package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/birdctl/birdsock"
	"github.com/roostnet/roost/confd/bgp"
)

// BIRD 2 facts the supervisor relies on (checked with BIRD 2.0.12):
//
//   - SIGTERM and the `down` command are the same orderly shutdown: every
//     BGP session is closed with a Cease notification, so peers withdraw the
//     node's routes at once, and the kernel protocol removes its routes
//     (unless `persist`).
//   - The `graceful restart` command (BIRD >= 2.0.5) closes the sessions
//     without a notification: peers that negotiated graceful restart keep
//     the routes as stale for the restart time ("Neighbor graceful restart
//     active"), and kernel routes stay.
//   - `bird -R` starts in graceful restart recovery: the kernel protocol
//     keeps stale routes and exports to peers are deferred until every BGP
//     session delivered End-of-RIB (at most `graceful restart wait`, 240 s
//     by default). A session that never comes up holds recovery for that
//     long, so -R is used only after a crash or a graceful stop.
//   - Without a `log` statement BIRD logs to syslog only, even with -f.

// grMarker records a graceful stop, so that the next start recovers (-R).
const grMarker = "bird.graceful-stop"

// grMarkerMaxAge: an older marker is ignored (peers dropped the routes).
const grMarkerMaxAge = 10 * time.Minute

// BirdOptions configure the supervised BIRD.
type BirdOptions struct {
	Path            string // resolved executable
	Config          string // rendered main file
	Socket          string
	LogStderr       bool
	GracefulRestart bool
}

// BirdBinary resolves the BIRD executable: path if set, else bird in PATH,
// else /usr/sbin/bird (often missing from PATH).
func BirdBinary(path string) (string, error) {
	if path != "" {
		return exec.LookPath(path)
	}
	if p, err := exec.LookPath("bird"); err == nil {
		return p, nil
	}
	if st, err := os.Stat("/usr/sbin/bird"); err == nil && !st.IsDir() {
		return "/usr/sbin/bird", nil
	}
	return "", errors.New("bird not found in PATH or /usr/sbin/bird (install bird2, or set ROOST_BIRD_PATH)")
}

// runDir is where the supervisor keeps BIRD's wrapper and marker: the
// socket's directory (/var/run/roost).
func (o BirdOptions) runDir() string { return filepath.Dir(o.Socket) }

// WrapperPath is the file BIRD is started on when LogStderr is set.
func (o BirdOptions) WrapperPath() string { return filepath.Join(o.runDir(), "bird-supervised.conf") }

// writeWrapper writes the wrapper configuration: BIRD's log to stderr,
// then the rendered configuration. confd's `configure` (no file name)
// rereads it, and with it the rendered file.
func (o BirdOptions) writeWrapper() error {
	if strings.ContainsAny(o.Config, "\"\r\n") {
		return fmt.Errorf("bird config path %q contains a quote or line break", o.Config)
	}
	cfg, err := filepath.Abs(o.Config)
	if err != nil {
		return err
	}
	body := "# Written by roost-node (supervisor). BIRD runs on this file so that its log\n" +
		"# reaches roost-node's; the configuration itself is the one confd renders.\n" +
		"log stderr all;\n" +
		"include \"" + cfg + "\";\n"
	path := o.WrapperPath()
	if old, err := os.ReadFile(path); err == nil && string(old) == body {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// takeGRMarker reports whether BIRD was stopped gracefully recently, and
// removes the marker.
func (o BirdOptions) takeGRMarker() bool {
	path := filepath.Join(o.runDir(), grMarker)
	st, err := os.Stat(path)
	if err != nil {
		return false
	}
	os.Remove(path)
	return time.Since(st.ModTime()) < grMarkerMaxAge
}

// args returns BIRD's command line for a start.
func (o BirdOptions) args(restart bool) ([]string, error) {
	if err := os.MkdirAll(o.runDir(), 0o755); err != nil {
		return nil, err
	}
	if _, err := os.Stat(o.Config); err != nil {
		return nil, fmt.Errorf("no BIRD configuration: %w", err)
	}
	cfg := o.Config
	if o.LogStderr {
		if err := o.writeWrapper(); err != nil {
			return nil, fmt.Errorf("writing %s: %w", o.WrapperPath(), err)
		}
		cfg = o.WrapperPath()
	}
	args := []string{"-f", "-c", cfg, "-s", o.Socket}
	// A crashed BIRD (restart) or one stopped with `graceful restart` left
	// routes in peers and the kernel: recover them.
	if o.GracefulRestart && (o.takeGRMarker() || restart) {
		args = append(args, "-R")
	}
	return args, nil
}

// stop asks BIRD to stop: `graceful restart` over the socket when
// configured (falling back to SIGTERM), else SIGTERM (= `down`).
func (o BirdOptions) stop(log logrus.FieldLogger) func(pid int) error {
	return func(pid int) error {
		if !o.GracefulRestart {
			return syscall.Kill(pid, syscall.SIGTERM)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		c, err := birdsock.Dial(ctx, o.Socket, birdsock.WithTimeout(3*time.Second))
		if err == nil {
			var rep *birdsock.Reply
			rep, err = c.Exec(ctx, "graceful restart")
			c.Close()
			if err == nil {
				log.WithField("reply", rep.Text()).Info("BIRD left with graceful restart: peers keep its routes for their restart time")
				marker := filepath.Join(o.runDir(), grMarker)
				_ = os.WriteFile(marker, []byte(strconv.FormatInt(time.Now().Unix(), 10)+"\n"), 0o644)
				return nil
			}
		}
		log.WithError(err).Warn("graceful restart over the socket failed; stopping BIRD with SIGTERM")
		return syscall.Kill(pid, syscall.SIGTERM)
	}
}

// waitAnswers polls the socket until BIRD answers `show status`.
func waitAnswers(ctx context.Context, socket string) error {
	var last error
	for {
		err := BirdLive(ctx, socket)
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", context.Cause(ctx), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// BGPState is what the supervisor knows about BIRD's BGP sessions.
type BGPState struct {
	Answering bool   `json:"answering"`
	Status    string `json:"status,omitempty"` // `show status`'s last line
	// Sessions maps each BGP protocol to its state ("Established",
	// "Active Socket: Connection refused"...).
	Sessions map[string]string `json:"sessions"`
	// EverEstablished lists the sessions seen Established since BIRD started.
	EverEstablished []string `json:"everEstablished,omitempty"`
	// AllEstablishedOnce latches when every configured session has been
	// Established at least once since BIRD (re)started.
	AllEstablishedOnce bool      `json:"allEstablishedOnce"`
	Ready              bool      `json:"ready"`
	Reason             string    `json:"reason,omitempty"`
	Checked            time.Time `json:"checked,omitzero"`
}

// BGPTracker polls BIRD for /readyz: ready when BIRD answers and (when
// required) every BGP session has reached Established once since BIRD
// started. Once reached, readiness stays while BIRD answers: a peer that
// goes down later does not make this node unready (that would make every
// node unready when one fails).
type BGPTracker struct {
	socket  string
	require bool
	log     logrus.FieldLogger

	mu      sync.Mutex
	client  *birdsock.Client
	seen    map[string]bool
	latched bool
	state   BGPState
}

// NewBGPTracker returns a tracker of the BIRD at socket.
func NewBGPTracker(socket string, requireEstablished bool, log logrus.FieldLogger) *BGPTracker {
	return &BGPTracker{socket: socket, require: requireEstablished, log: log, seen: map[string]bool{},
		state: BGPState{Reason: "BIRD not checked yet", Sessions: map[string]string{}}}
}

// Reset forgets the sessions seen: BIRD (re)started.
func (t *BGPTracker) Reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seen = map[string]bool{}
	t.latched = false
	t.state = BGPState{Reason: "BIRD (re)started; not checked yet", Sessions: map[string]string{}}
	if t.client != nil {
		t.client.Close()
		t.client = nil
	}
}

// State returns the last observation.
func (t *BGPTracker) State() BGPState {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.state
	s.Sessions = make(map[string]string, len(t.state.Sessions))
	for k, v := range t.state.Sessions {
		s.Sessions[k] = v
	}
	s.EverEstablished = append([]string(nil), t.state.EverEstablished...)
	return s
}

// Run polls every interval until ctx ends.
func (t *BGPTracker) Run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		t.Poll(ctx)
		select {
		case <-ctx.Done():
			t.Reset()
			return
		case <-tick.C:
		}
	}
}

// Poll asks BIRD once and updates the state.
func (t *BGPTracker) Poll(ctx context.Context) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	now := time.Now()
	fail := func(err error) {
		if t.client != nil {
			t.client.Close()
			t.client = nil
		}
		t.state = BGPState{Reason: "BIRD is not answering: " + oneLine(err.Error()), Sessions: map[string]string{}, Checked: now,
			AllEstablishedOnce: t.latched, EverEstablished: t.state.EverEstablished}
	}
	if t.client == nil {
		c, err := birdsock.Dial(ctx, t.socket, birdsock.WithTimeout(3*time.Second))
		if err != nil {
			fail(err)
			return
		}
		t.client = c
	}
	st, recovering, err := birdStatus(ctx, t.client)
	if err != nil {
		fail(err)
		return
	}
	protos, err := t.client.Protocols(ctx)
	if err != nil {
		fail(err)
		return
	}
	sessions := map[string]string{}
	var missing []string
	for _, p := range protos {
		if !strings.EqualFold(p.Proto, "BGP") {
			continue
		}
		info := strings.Join(strings.Fields(p.Info), " ")
		if info == "" {
			info = p.State
		}
		if strings.HasPrefix(info, "Established") {
			t.seen[p.Name] = true
		}
		if !t.seen[p.Name] && strings.EqualFold(p.State, "down") {
			// A session confd disabled (its password cannot be used)
			// says why in its description.
			if d, err := t.client.ProtocolDetail(ctx, p.Name); err == nil && strings.HasPrefix(d.Fields["Description"], bgp.DisabledPrefix) {
				info = d.Fields["Description"]
			}
		}
		sessions[p.Name] = info
		if !t.seen[p.Name] {
			missing = append(missing, p.Name+" ("+info+")")
		}
	}
	sort.Strings(missing)
	settled, why := birdSettled(st, recovering)
	if !t.latched && len(missing) == 0 && settled {
		t.latched = true
		if t.require && t.log != nil {
			t.log.WithField("sessions", len(sessions)).Info("every BGP session has been Established")
		}
	}
	var ever []string
	for n := range t.seen {
		ever = append(ever, n)
	}
	sort.Strings(ever)
	s := BGPState{Answering: true, Status: st.Message, Sessions: sessions, EverEstablished: ever,
		AllEstablishedOnce: t.latched, Checked: now}
	switch {
	case !settled:
		s.Reason = "BIRD: " + why
	case !t.require || t.latched:
		s.Ready = true
	default:
		s.Reason = fmt.Sprintf("%d of %d BGP sessions not yet Established: %s", len(missing), len(sessions), strings.Join(firstN(missing, 5), ", "))
	}
	t.state = s
}

// birdStatus runs `show status`. BIRD 2 reports graceful restart recovery
// on extra lines ("Graceful restart recovery in progress", code 0024)
// before the final "Daemon is up and running".
func birdStatus(ctx context.Context, c *birdsock.Client) (st *birdsock.Status, recovering bool, err error) {
	rep, err := c.Exec(ctx, "show status")
	if err != nil {
		return nil, false, err
	}
	text := rep.Text()
	st, err = birdsock.ParseStatus(text)
	if err != nil {
		return nil, false, err
	}
	return st, strings.Contains(text, "Graceful restart recovery in progress"), nil
}

// birdSettled: BIRD runs and is not shutting down or recovering from a
// graceful restart (exports to peers are deferred until recovery ends).
func birdSettled(st *birdsock.Status, recovering bool) (bool, string) {
	switch {
	case !st.Up:
		return false, st.Message
	case recovering:
		return false, "graceful restart recovery in progress"
	}
	return true, ""
}

func firstN(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return append(append([]string(nil), s[:n]...), fmt.Sprintf("and %d more", len(s)-n))
}

func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

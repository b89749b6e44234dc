package birdtest

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Recordings of real BIRD control-socket sessions live in this package's
// testdata, for tests of any package: BIRD's hello, then for each command
// a line "> COMMAND" followed by the reply exactly as BIRD sent it.
//
//	bird2-status.txt          BIRD 2.0.12: mesh sessions (IPv4, IPv6) up with routes, a node peer
//	                          refused, a global peer disabled; static, direct, kernel routes
//	bird2-status-peerdown.txt the same BIRD after its mesh peer stopped
//	bird16-status.txt         BIRD 1.6 output of the same commands (one channel per protocol)

// RecordingPath is the path of a recording in this package's testdata.
func RecordingPath(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata", name)
}

// Replay serves the recording name (see RecordingPath) until the test
// ends: every connection gets the hello, every recorded command its reply,
// any other command BIRD's syntax error. Replies are written in small
// pieces, so clients cannot rely on whole lines.
func Replay(t testing.TB, name string) *Server {
	t.Helper()
	return ReplayFile(t, RecordingPath(name))
}

// ReplayFile is Replay for a recording at path.
func ReplayFile(t testing.TB, path string) *Server {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("birdtest: %v", err)
	}
	rec := ParseRecording(string(data))
	return Serve(t, rec.Hello, 61, func(c *Conn, cmd string) bool {
		reply, ok := rec.Replies[cmd]
		if !ok {
			reply, ok = rec.Replies[strings.ReplaceAll(cmd, `"`, "")]
		}
		if !ok {
			reply = "9001 syntax error, unexpected CF_SYM_UNDEFINED\n"
		}
		return c.Send(reply) == nil
	})
}

// Recording is a parsed recording: the hello, the commands in order and
// each command's reply as BIRD sent it.
type Recording struct {
	Hello    string
	Commands []string
	Replies  map[string]string
}

// ParseRecording parses the format described above.
func ParseRecording(data string) *Recording {
	rec := &Recording{Replies: map[string]string{}}
	cmd, first := "", true
	var cur strings.Builder
	flush := func() {
		if first {
			rec.Hello = cur.String()
		} else {
			rec.Commands = append(rec.Commands, cmd)
			rec.Replies[cmd] = cur.String()
		}
		cur.Reset()
	}
	for _, line := range strings.SplitAfter(data, "\n") {
		if c, ok := strings.CutPrefix(line, "> "); ok {
			flush()
			first, cmd = false, strings.TrimSuffix(c, "\n")
			continue
		}
		cur.WriteString(line)
	}
	flush()
	return rec
}

package birdtest

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Recordings of real BIRD control-socket sessions live in this package's
// testdata, for tests of any package: BIRD's hello, then for each command
// a line "> COMMAND" followed by the reply exactly as BIRD sent it.
//
//	bird2-status.txt          BIRD 2.0.12: mesh sessions (IPv4, IPv6) up with routes, a node peer
//	                          refused, a global peer disabled; static, direct, kernel routes
//	bird2-status-peerdown.txt the same BIRD after its mesh peer stopped
//	bird16-status.txt         BIRD 1.6 output of the same commands (one channel per protocol)

// Replayer serves a recording on a Unix socket.
type Replayer struct {
	Socket string

	mu   sync.Mutex
	cmds []string
}

// RecordingPath is the path of a recording in this package's testdata.
func RecordingPath(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata", name)
}

// Replay serves the recording name (see RecordingPath) until the test
// ends: every connection gets the hello, every recorded command its reply,
// any other command BIRD's syntax error. Replies are written in small
// pieces, so clients cannot rely on whole lines.
func Replay(t testing.TB, name string) *Replayer {
	t.Helper()
	return ReplayFile(t, RecordingPath(name))
}

// ReplayFile is Replay for a recording at path.
func ReplayFile(t testing.TB, path string) *Replayer {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("birdtest: %v", err)
	}
	hello, replies := parseRecording(string(data))
	r := &Replayer{Socket: SocketPath(t, "bird.ctl")}
	ln, err := net.Listen("unix", r.Socket)
	if err != nil {
		t.Fatalf("birdtest: %v", err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				r.serve(conn, hello, replies)
			}()
		}
	}()
	return r
}

func (r *Replayer) serve(conn net.Conn, hello string, replies map[string]string) {
	conn.SetDeadline(time.Now().Add(time.Minute))
	if _, err := conn.Write([]byte(hello)); err != nil {
		return
	}
	br := bufio.NewReader(conn)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.TrimSuffix(line, "\n")
		r.mu.Lock()
		r.cmds = append(r.cmds, cmd)
		r.mu.Unlock()
		reply, ok := replies[cmd]
		if !ok {
			reply, ok = replies[strings.ReplaceAll(cmd, `"`, "")]
		}
		if !ok {
			reply = "9001 syntax error, unexpected CF_SYM_UNDEFINED\n"
		}
		for len(reply) > 0 {
			n := min(61, len(reply))
			if _, err := conn.Write([]byte(reply[:n])); err != nil {
				return
			}
			reply = reply[n:]
		}
	}
}

// Commands returns the commands received so far, in order.
func (r *Replayer) Commands() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.cmds...)
}

func parseRecording(data string) (hello string, replies map[string]string) {
	replies = map[string]string{}
	cmd, first := "", true
	var cur strings.Builder
	flush := func() {
		if first {
			hello = cur.String()
		} else {
			replies[cmd] = cur.String()
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
	return hello, replies
}

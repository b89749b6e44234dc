package birdsock

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/roostnet/roost/birdctl/birdsock/birdtest"
)

// transcript is a recorded control-socket session from testdata: BIRD's
// hello, then for each command a line "> COMMAND" followed by the raw reply.
type transcript struct {
	hello   string
	cmds    []string
	replies map[string]string // raw wire text, lines ending in "\n"
}

func loadTranscript(t testing.TB, name string) *transcript {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	tr := &transcript{replies: map[string]string{}}
	cmd := ""
	var cur strings.Builder
	flush := func() {
		if cmd == "" {
			tr.hello = cur.String()
		} else {
			tr.cmds = append(tr.cmds, cmd)
			tr.replies[cmd] = cur.String()
		}
		cur.Reset()
	}
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if line == "" {
			continue
		}
		if c, ok := strings.CutPrefix(line, "> "); ok {
			flush()
			cmd = strings.TrimSuffix(c, "\n")
			continue
		}
		cur.WriteString(line)
	}
	flush()
	return tr
}

// reply returns the parsed reply recorded for cmd.
func (tr *transcript) reply(t testing.TB, cmd string) *Reply {
	t.Helper()
	raw, ok := tr.replies[cmd]
	if !ok {
		t.Fatalf("no recorded reply for %q", cmd)
	}
	rep, err := ParseReply(raw)
	if err != nil {
		t.Fatalf("recorded reply for %q: %v", cmd, err)
	}
	return rep
}

// fakeConn is the server side of one client connection.
type fakeConn struct {
	net.Conn
	n     int // connection number, from 1
	chunk int // write size; 0 writes everything at once
	done  <-chan struct{}
}

// hang blocks like a stuck server until the test ends.
func (fc *fakeConn) hang() { <-fc.done }

// send writes raw in chunks of fc.chunk bytes so that the client sees split
// reads, lines cut in the middle, and codes cut from their text.
func (fc *fakeConn) send(raw string) error {
	if fc.chunk <= 0 {
		_, err := fc.Write([]byte(raw))
		return err
	}
	for len(raw) > 0 {
		n := min(fc.chunk, len(raw))
		if _, err := fc.Write([]byte(raw[:n])); err != nil {
			return err
		}
		raw = raw[n:]
	}
	return nil
}

// fakeServer speaks BIRD's control protocol on a Unix socket, writing in
// chunks of chunk bytes. handle is called for each command line and writes
// the reply; returning false closes the connection.
type fakeServer struct {
	path  string
	hello string
	chunk int

	mu     sync.Mutex
	conns  int
	handle func(fc *fakeConn, cmd string) bool
}

func startFake(t testing.TB, hello string, chunk int, handle func(fc *fakeConn, cmd string) bool) *fakeServer {
	t.Helper()
	s := &fakeServer{path: birdtest.SocketPath(t, "s"), hello: hello, chunk: chunk, handle: handle}
	ln, err := net.Listen("unix", s.path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	done := make(chan struct{})
	t.Cleanup(func() { close(done) }) // runs first: unblocks hanging handlers
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns++
			fc := &fakeConn{Conn: conn, n: s.conns, chunk: s.chunk, done: done}
			s.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				go func() { <-done; conn.Close() }()
				s.serve(fc)
			}()
		}
	}()
	return s
}

func (s *fakeServer) serve(fc *fakeConn) {
	if fc.send(s.hello) != nil {
		return
	}
	r := bufio.NewReader(fc)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if !s.handle(fc, strings.TrimSuffix(line, "\n")) {
			return
		}
	}
}

func (s *fakeServer) connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// transcriptHandler replays tr, answering unknown commands like BIRD does.
func transcriptHandler(tr *transcript) func(fc *fakeConn, cmd string) bool {
	return func(fc *fakeConn, cmd string) bool {
		raw, ok := tr.replies[cmd]
		if !ok {
			raw = "9001 syntax error\n"
		}
		return fc.send(raw) == nil
	}
}

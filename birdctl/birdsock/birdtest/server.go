package birdtest

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"
)

// Server speaks BIRD's control protocol on a Unix socket for tests that
// need replies a real BIRD cannot be made to give (recordings, partial
// replies, hangs): every connection gets the hello, then Handle is called
// for each command line.
type Server struct {
	Socket string

	hello  string
	chunk  int
	handle func(c *Conn, cmd string) bool

	mu    sync.Mutex
	conns int
	cmds  []string
}

// Conn is the server side of one client connection.
type Conn struct {
	net.Conn
	N     int // connection number, from 1
	chunk int
	done  <-chan struct{}
}

// Hang blocks like a stuck server until the test ends.
func (c *Conn) Hang() { <-c.done }

// Send writes raw in the server's chunk size, so that clients see split
// reads, lines cut in the middle and codes cut from their text.
func (c *Conn) Send(raw string) error {
	if c.chunk <= 0 {
		_, err := c.Write([]byte(raw))
		return err
	}
	for len(raw) > 0 {
		n := min(c.chunk, len(raw))
		if _, err := c.Write([]byte(raw[:n])); err != nil {
			return err
		}
		raw = raw[n:]
	}
	return nil
}

// Serve listens until the test ends. Replies are written chunk bytes at a
// time (0: at once); handle writes the reply to cmd and returns false to
// close the connection.
func Serve(t testing.TB, hello string, chunk int, handle func(c *Conn, cmd string) bool) *Server {
	t.Helper()
	s := &Server{Socket: SocketPath(t, "bird.ctl"), hello: hello, chunk: chunk, handle: handle}
	ln, err := net.Listen("unix", s.Socket)
	if err != nil {
		t.Fatalf("birdtest: %v", err)
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
			c := &Conn{Conn: conn, N: s.conns, chunk: chunk, done: done}
			s.mu.Unlock()
			wg.Add(2)
			go func() {
				defer wg.Done()
				<-done
				conn.Close()
			}()
			go func() {
				defer wg.Done()
				defer conn.Close()
				s.serve(c)
			}()
		}
	}()
	return s
}

func (s *Server) serve(c *Conn) {
	if c.Send(s.hello) != nil {
		return
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.TrimSuffix(line, "\n")
		s.mu.Lock()
		s.cmds = append(s.cmds, cmd)
		s.mu.Unlock()
		if !s.handle(c, cmd) {
			return
		}
	}
}

// Connections is the number of connections accepted so far.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// Commands returns the commands received so far, in order.
func (s *Server) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.cmds...)
}

// Package birdsock talks to the BIRD routing daemon over its control socket
// (the one birdc uses, `bird -s PATH`) and parses the output of the commands
// roost needs. Parsers accept both BIRD 2 and BIRD 1.6 output and can be
// used without a socket on recorded text.
//
// Wire format: BIRD greets with "0001 BIRD x.y.z ready.". Each command is
// one line. Reply lines start with a four-digit code followed by '-' (more
// lines follow) or ' ' (last line); a line starting with a single space
// continues the previous code; lines starting with '+' are asynchronous log
// messages that belong to no reply.
package birdsock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultTimeout bounds one command (sending it and reading the whole reply)
// when the context has no earlier deadline.
const DefaultTimeout = 10 * time.Second

// ErrClosed is returned by calls on a closed Client.
var ErrClosed = errors.New("birdsock: client closed")

// Client is a connection to BIRD's control socket.
//
// A Client is safe for concurrent use: it keeps one connection and runs one
// command at a time on it, in the order callers acquire it (BIRD's CLI is
// sequential anyway). If a command fails on the connection (I/O error,
// timeout, cancellation, protocol violation) the connection is closed, the
// error is returned, and the next call dials again. Failed commands are not
// retried, since a command such as configure may already have run; but an
// idle connection that BIRD closed meanwhile (BIRD restarted) is noticed
// before a command is sent on it, and replaced at once.
type Client struct {
	path    string
	timeout time.Duration

	sem     chan struct{} // one slot: held while a command uses the connection
	version atomic.Pointer[string]

	mu     sync.Mutex // guards conn and closed, so Close can interrupt a command
	conn   net.Conn
	r      *bufio.Reader
	closed bool
}

// Option configures a Client.
type Option func(*Client)

// WithTimeout sets the per-command timeout (DefaultTimeout if d <= 0).
func WithTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// Dial connects to the control socket at path and reads BIRD's hello.
func Dial(ctx context.Context, path string, opts ...Option) (*Client, error) {
	c := &Client{path: path, timeout: DefaultTimeout, sem: make(chan struct{}, 1)}
	for _, o := range opts {
		o(c)
	}
	conn, r, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	c.conn, c.r = conn, r
	return c, nil
}

// dial opens a connection and consumes the hello, recording the version.
func (c *Client) dial(ctx context.Context) (net.Conn, *bufio.Reader, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		return nil, nil, fmt.Errorf("birdsock: connect to %s: %w", c.path, err)
	}
	start := time.Now()
	stop := watchConn(ctx, conn)
	r := bufio.NewReader(conn)
	hello, err := readReply(r)
	if err == nil && hello.Code != 1 {
		err = fmt.Errorf("unexpected hello %q", hello.Text())
	}
	if !stop() && err == nil {
		err = context.Cause(ctx) // cancelled at the last moment
	}
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("birdsock: hello from %s: %w", c.path, c.ioError(ctx, err, time.Since(start)))
	}
	conn.SetDeadline(time.Time{})
	v := parseHello(hello.Text())
	c.version.Store(&v)
	return conn, r, nil
}

// watchConn applies ctx's deadline to conn and makes cancellation interrupt
// blocked I/O. The returned function stops watching.
func watchConn(ctx context.Context, conn net.Conn) (stop func() bool) {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	return context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
}

// ioError explains an I/O error caused by the deadline or a cancellation.
// Timeouts match both context.DeadlineExceeded and os.ErrDeadlineExceeded;
// cancellations match the context's cause.
func (c *Client) ioError(ctx context.Context, err error, waited time.Duration) error {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	// The connection's deadline is ctx's, and it may fire before ctx's own
	// timer marks ctx done: then the cause is still nil.
	cause := context.Cause(ctx)
	if cause == nil || errors.Is(cause, context.DeadlineExceeded) {
		return fmt.Errorf("no complete reply after %v: %w (%w)", waited.Round(time.Millisecond), context.DeadlineExceeded, err)
	}
	return cause
}

// parseHello extracts "2.0.12" from "BIRD 2.0.12 ready.".
func parseHello(text string) string {
	f := strings.Fields(text)
	if len(f) >= 2 && f[0] == "BIRD" {
		return f[1]
	}
	return text
}

// Version returns BIRD's version from the most recent hello, e.g. "2.0.12".
func (c *Client) Version() string {
	if v := c.version.Load(); v != nil {
		return *v
	}
	return ""
}

// Path returns the control socket path.
func (c *Client) Path() string { return c.path }

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Close closes the connection; a command in progress fails with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn, c.r = nil, nil
	return err
}

// Exec sends one command line and reads BIRD's whole reply. It gives up when
// ctx is done or after the Client's timeout. If BIRD terminates the reply
// with an error code, Exec returns the reply together with a *BirdError.
func (c *Client) Exec(ctx context.Context, cmd string) (*Reply, error) {
	cmd = strings.TrimSpace(cmd)
	if cmd == "" || strings.ContainsAny(cmd, "\r\n") {
		// A line break would send two commands and desynchronise replies.
		return nil, fmt.Errorf("birdsock: invalid command %q", cmd)
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("birdsock: %s: %w", cmd, context.Cause(ctx))
	}
	defer func() { <-c.sem }()

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	conn, r, err := c.connection(ctx)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	rep, reuse, err := c.roundTrip(ctx, conn, r, cmd)
	if !reuse {
		c.drop(conn)
	}
	if err != nil {
		if c.isClosed() {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("birdsock: %s on %s: %w", cmd, c.path, c.ioError(ctx, err, time.Since(start)))
	}
	if rep.IsError() {
		return rep, &BirdError{Code: rep.Code, Text: rep.Lines[len(rep.Lines)-1].Text, Command: cmd}
	}
	return rep, nil
}

// roundTrip sends cmd and reads its reply. reuse is false when the
// connection's deadline may have been disturbed by a late cancellation.
func (c *Client) roundTrip(ctx context.Context, conn net.Conn, r *bufio.Reader, cmd string) (rep *Reply, reuse bool, err error) {
	stop := watchConn(ctx, conn)
	if _, err := conn.Write([]byte(cmd + "\n")); err != nil {
		stop()
		return nil, false, err
	}
	rep, err = readReply(r)
	if !stop() || err != nil {
		return rep, false, err
	}
	conn.SetDeadline(time.Time{})
	return rep, true, nil
}

// connection returns the open connection, dialling if the last one failed.
// The caller holds sem.
func (c *Client) connection(ctx context.Context) (net.Conn, *bufio.Reader, error) {
	c.mu.Lock()
	closed, conn, r := c.closed, c.conn, c.r
	c.mu.Unlock()
	if closed {
		return nil, nil, ErrClosed
	}
	if conn != nil {
		if r.Buffered() > 0 || peerOpen(conn) {
			return conn, r, nil
		}
		// BIRD closed the idle connection (it restarted): nothing was
		// sent on it, so dial afresh now rather than fail the command.
		c.drop(conn)
	}
	conn, r, err := c.dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed { // Close ran while we were dialling
		conn.Close()
		return nil, nil, ErrClosed
	}
	c.conn, c.r = conn, r
	return conn, r, nil
}

// peerOpen reports whether the other end of an idle connection is still
// there: a non-blocking peek finds nothing to read (EAGAIN). End of file
// means BIRD closed it (it exited or restarted); a connection that cannot
// be checked counts as open.
func peerOpen(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	open := true
	var buf [1]byte
	_ = raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		open = n > 0 || errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR)
		return true // never wait for readiness
	})
	return open
}

// drop closes a connection that failed so that the next call redials.
func (c *Client) drop(conn net.Conn) {
	conn.Close()
	c.mu.Lock()
	if c.conn == conn {
		c.conn, c.r = nil, nil
	}
	c.mu.Unlock()
}

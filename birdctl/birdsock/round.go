package birdsock

import (
	"context"
	"sync"
	"time"
)

// Round is one round of queries for a program that looks at BIRD
// periodically (metrics, status reports): each command runs at most once
// per Round, on the first call, on one connection dialled then; later
// calls get the same answer. Close ends the connection; answers stay.
type Round struct {
	socket  string
	timeout time.Duration

	mu      sync.Mutex
	client  *Client
	err     error // the round's first failure
	dialErr error // BIRD did not answer the connection
	queries int
	answers map[string]*answer
}

type answer struct {
	v   any
	err error
}

// NewRound prepares a round against the socket; timeout bounds each
// command (and the dial).
func NewRound(socket string, timeout time.Duration) *Round {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Round{socket: socket, timeout: timeout, answers: map[string]*answer{}}
}

// query runs cmd once per round through f.
func query[T any](r *Round, cmd string, f func(c *Client, ctx context.Context) (T, error)) (T, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.answers[cmd]; ok {
		v, _ := a.v.(T)
		return v, a.err
	}
	a := &answer{}
	r.answers[cmd] = a
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	if r.client == nil {
		c, err := Dial(ctx, r.socket, WithTimeout(r.timeout))
		if err != nil {
			a.err = err
			r.dialErr = err
			r.fail(err)
			var zero T
			return zero, err
		}
		r.client = c
	}
	r.queries++
	v, err := f(r.client, ctx)
	a.v, a.err = v, err
	if err != nil {
		r.fail(err)
	}
	return v, err
}

func (r *Round) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// Status is `show status`.
func (r *Round) Status() (*Status, error) {
	return query(r, "show status", (*Client).Status)
}

// Protocols is `show protocols`.
func (r *Round) Protocols() ([]Protocol, error) {
	return query(r, "show protocols", (*Client).Protocols)
}

// ProtocolDetails is `show protocols all`.
func (r *Round) ProtocolDetails() ([]ProtocolDetail, error) {
	return query(r, "show protocols all", (*Client).ProtocolDetails)
}

// Routes is `show route`: every table's routes.
func (r *Round) Routes() ([]Route, error) {
	return query(r, "show route", func(c *Client, ctx context.Context) ([]Route, error) { return c.Routes(ctx, "") })
}

// BFDSessions is `show bfd sessions` (none without a BFD protocol).
func (r *Round) BFDSessions() ([]BFDSession, error) {
	return query(r, "show bfd sessions", (*Client).BFDSessions)
}

// Err is the round's first failure, nil if every query succeeded.
func (r *Round) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Unreachable reports whether the round could not connect to BIRD (it is
// not running, or its socket is elsewhere), as opposed to a query failing.
func (r *Round) Unreachable() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dialErr != nil
}

// Queries is the number of commands sent to BIRD.
func (r *Round) Queries() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.queries
}

// Close ends the round's connection; cached answers stay readable.
func (r *Round) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.client != nil {
		r.client.Close()
		r.client = nil
	}
}

// Package backoff is Roost's one retry-delay policy: exponential growth
// between a minimum and a maximum with "full jitter" below the current
// ceiling. Jitter matters in a cluster: after an etcd outage every node
// retries at once, and without it their watches and writes come back in
// lockstep.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy is the shape of a backoff. The zero Jitter means the default (0.5).
type Policy struct {
	// Min is the first ceiling; Max caps every delay.
	Min, Max time.Duration
	// Factor multiplies the ceiling after each attempt (default 2).
	Factor float64
	// Jitter is the share of the ceiling that is randomised: a delay lies
	// in [ceiling*(1-Jitter), ceiling]. 0 picks 0.5; a negative value
	// turns jitter off (tests that need exact delays).
	Jitter float64
}

// Backoff hands out successive delays of a Policy. Not safe for concurrent
// use: each retry loop owns one.
type Backoff struct {
	p    Policy
	ceil time.Duration
	n    int
	rnd  func() float64
}

// New returns a Backoff for p.
func New(p Policy) *Backoff {
	if p.Min <= 0 {
		p.Min = time.Millisecond
	}
	if p.Max < p.Min {
		p.Max = p.Min
	}
	if p.Factor < 1 {
		p.Factor = 2
	}
	switch {
	case p.Jitter == 0:
		p.Jitter = 0.5
	case p.Jitter < 0:
		p.Jitter = 0
	case p.Jitter > 1:
		p.Jitter = 1
	}
	return &Backoff{p: p, rnd: rand.Float64}
}

// Next returns the delay before the next attempt and advances.
func (b *Backoff) Next() time.Duration {
	if b.ceil == 0 {
		b.ceil = b.p.Min
	} else {
		next := time.Duration(float64(b.ceil) * b.p.Factor)
		if next > b.p.Max || next < b.ceil { // cap, and guard overflow
			next = b.p.Max
		}
		b.ceil = next
	}
	b.n++
	d := b.ceil - time.Duration(b.p.Jitter*b.rnd()*float64(b.ceil))
	return max(d, time.Duration(1))
}

// Attempts is how many delays Next has handed out since the last Reset.
func (b *Backoff) Attempts() int { return b.n }

// AtMax reports whether the ceiling has grown to Max: the failures have
// outlasted the backoff's growth (callers report such an outage louder).
func (b *Backoff) AtMax() bool { return b.ceil >= b.p.Max }

// Max is the longest delay the Backoff hands out.
func (b *Backoff) Max() time.Duration { return b.p.Max }

// Reset starts again from Min (after a success).
func (b *Backoff) Reset() { b.ceil, b.n = 0, 0 }

// Wait sleeps for Next() or until ctx ends; it returns ctx's error then.
func (b *Backoff) Wait(ctx context.Context) error {
	return Sleep(ctx, b.Next())
}

// Sleep waits d or until ctx ends, whichever is first.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDelaysGrowAndCap(t *testing.T) {
	b := New(Policy{Min: 10 * time.Millisecond, Max: 80 * time.Millisecond, Jitter: -1})
	want := []time.Duration{10, 20, 40, 80, 80}
	for i, w := range want {
		if got := b.Next(); got != w*time.Millisecond {
			t.Fatalf("delay %d = %v, want %v", i, got, w*time.Millisecond)
		}
	}
	if !b.AtMax() || b.Max() != 80*time.Millisecond {
		t.Fatalf("AtMax = %v, Max = %v after reaching the cap", b.AtMax(), b.Max())
	}
	if b.Attempts() != len(want) {
		t.Fatalf("Attempts = %d, want %d", b.Attempts(), len(want))
	}
	b.Reset()
	if b.AtMax() {
		t.Fatal("AtMax after Reset")
	}
	if got := b.Next(); got != 10*time.Millisecond {
		t.Fatalf("after Reset: %v, want 10ms", got)
	}
}

func TestJitterStaysInRangeAndVaries(t *testing.T) {
	tests := []struct {
		name   string
		jitter float64
		lo     float64 // share of the ceiling
	}{
		{"default", 0, 0.5},
		{"full", 1, 0},
		{"quarter", 0.25, 0.75},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen := map[time.Duration]bool{}
			for range 200 {
				b := New(Policy{Min: time.Second, Max: time.Second, Jitter: tc.jitter})
				d := b.Next()
				if d < time.Duration(tc.lo*float64(time.Second)) || d > time.Second {
					t.Fatalf("delay %v outside [%v, 1s]", d, time.Duration(tc.lo*float64(time.Second)))
				}
				seen[d] = true
			}
			if len(seen) < 50 {
				t.Fatalf("only %d distinct delays in 200 draws: not jittered", len(seen))
			}
		})
	}
}

func TestDeterministicRandomSource(t *testing.T) {
	b := New(Policy{Min: 100 * time.Millisecond, Max: time.Second})
	b.rnd = func() float64 { return 1 } // the largest jitter
	if got := b.Next(); got != 50*time.Millisecond {
		t.Fatalf("got %v, want 50ms (half of the 100ms ceiling)", got)
	}
	b.rnd = func() float64 { return 0 }
	if got := b.Next(); got != 200*time.Millisecond {
		t.Fatalf("got %v, want the 200ms ceiling", got)
	}
}

func TestNoOverflowAtLargeAttempts(t *testing.T) {
	b := New(Policy{Min: time.Hour, Max: 1 << 62, Factor: 10, Jitter: -1})
	for range 100 {
		if d := b.Next(); d <= 0 || d > 1<<62 {
			t.Fatalf("delay %v out of range", d)
		}
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := New(Policy{Min: time.Hour, Max: time.Hour})
	if err := b.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on a cancelled context = %v, want context.Canceled", err)
	}
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("Sleep = %v", err)
	}
}

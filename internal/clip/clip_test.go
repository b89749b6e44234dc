package clip

import (
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{strings.Repeat("a", 20), 5, "aaaaa...(15 more bytes)"},
		// A multi-byte rune is never split: "é" is 2 bytes.
		{"aéb", 2, "a...(3 more bytes)"},
		{"abc", 0, "...(3 more bytes)"},
	} {
		if got := String(tc.in, tc.max); got != tc.want {
			t.Errorf("String(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
	long := strings.Repeat("x", 100_000)
	if got := Value(long); len(got) > Max+30 {
		t.Errorf("Value of 100K bytes is %d bytes long", len(got))
	}
}

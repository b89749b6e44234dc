// Package clip cuts long values for messages: one home for the rule, so
// that a 100 KB name in a resource gives an error of a few hundred bytes
// (api validation errors, datastore decode errors, metric labels).
package clip

import (
	"fmt"
	"unicode/utf8"
)

// Max is the length kept of a value quoted in a message.
const Max = 100

// String returns s unchanged when it has at most max bytes, else its
// first max bytes (never splitting a UTF-8 sequence) and a note saying
// how much was left out.
func String(s string, max int) string {
	if max < 0 {
		max = 0
	}
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s...(%d more bytes)", s[:cut], len(s)-cut)
}

// Value is String with Max.
func Value(s string) string { return String(s, Max) }

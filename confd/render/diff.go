package render

import (
	"fmt"
	"strings"
)

// Diff returns a unified-style line diff of old and new for --noop. It
// uses an LCS table, so very large inputs fall back to a summary.
func Diff(name string, old, new []byte) string {
	a := splitLines(string(old))
	b := splitLines(string(new))
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s (rendered)\n", name, name)
	if len(a)*len(b) > 4_000_000 {
		fmt.Fprintf(&out, "@@ %d lines -> %d lines (too large to diff line by line) @@\n", len(a), len(b))
		return out.String()
	}
	// lcs[i][j] = length of the LCS of a[i:] and b[j:].
	lcs := make([][]int32, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int32, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			i, j = i+1, j+1
		case j < len(b) && (i == len(a) || lcs[i][j+1] >= lcs[i+1][j]):
			fmt.Fprintf(&out, "+%s\n", b[j])
			j++
		default:
			fmt.Fprintf(&out, "-%s\n", a[i])
			i++
		}
	}
	return out.String()
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = redact(l)
	}
	return lines
}

// redact hides BGP passwords: a diff is printed to a terminal or a log.
func redact(line string) string {
	i := strings.Index(line, `password "`)
	if i < 0 {
		return line
	}
	rest := line[i+len(`password "`):]
	j := strings.IndexByte(rest, '"')
	if j < 0 {
		return line[:i] + `password "<redacted>`
	}
	return line[:i] + `password "<redacted>"` + rest[j+1:]
}

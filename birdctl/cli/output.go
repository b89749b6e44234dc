package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/roostnet/roost/api"
	"github.com/spf13/cobra"
)

// Output formats.
const (
	fmtTable = "table"
	fmtWide  = "wide"
	fmtJSON  = "json"
	fmtYAML  = "yaml"
)

// addOutputFlag registers -o with the given formats, the first being the
// default, and shell completion for them.
func addOutputFlag(cmd *cobra.Command, p *string, formats ...string) {
	cmd.Flags().StringVarP(p, "output", "o", formats[0], "output format: "+strings.Join(formats, "|"))
	cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(formats, cobra.ShellCompDirectiveNoFileComp))
}

// checkFormat rejects a format the command does not offer.
func checkFormat(f string, formats ...string) error {
	if slices.Contains(formats, f) {
		return nil
	}
	return fmt.Errorf("unknown output format %q (use %s)", f, strings.Join(formats, ", "))
}

// writeData prints v as indented JSON or as YAML (keys in the JSON order).
func writeData(w io.Writer, format string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if format == fmtJSON {
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	y, err := api.JSONToYAML(b)
	if err != nil {
		return err
	}
	_, err = w.Write(y)
	return err
}

// writeColumns prints a calicoctl get style table: a heading and rows
// separated by three spaces, no borders, no trailing blanks.
func writeColumns(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	line := func(cells []string) {
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	line(header)
	for _, r := range rows {
		line(r)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return nil
}

// trimWriter removes the blanks tabwriter leaves at the end of lines.
type trimWriter struct {
	w   io.Writer
	buf []byte
}

func (t *trimWriter) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	for {
		i := bytes.IndexByte(t.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		if _, err := t.w.Write(append(bytes.TrimRight(t.buf[:i], " "), '\n')); err != nil {
			return 0, err
		}
		t.buf = t.buf[i+1:]
	}
}

// columns prints like writeColumns without trailing blanks on any line.
func columns(w io.Writer, header []string, rows [][]string) error {
	return writeColumns(&trimWriter{w: w}, header, rows)
}

// boxTable prints a bordered table in the style of calicoctl's node status
// and ipam show (olekukonko/tablewriter defaults): upper-case centred
// headings, cells left-aligned except numbers, which are right-aligned.
func boxTable(w io.Writer, header []string, rows [][]string) error {
	widths := make([]int, len(header))
	head := make([]string, len(header))
	for i, h := range header {
		head[i] = strings.ToUpper(h)
		widths[i] = utf8.RuneCountInString(head[i])
	}
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	rule := func() {
		b.WriteByte('+')
		for _, wd := range widths {
			b.WriteString(strings.Repeat("-", wd+2))
			b.WriteByte('+')
		}
		b.WriteByte('\n')
	}
	row := func(cells []string, align func(i int, c string) string) {
		b.WriteByte('|')
		for i, wd := range widths {
			c := ""
			if i < len(cells) {
				c = cells[i]
			}
			gap := wd - utf8.RuneCountInString(c)
			switch align(i, c) {
			case "center":
				b.WriteString(" " + strings.Repeat(" ", gap/2) + c + strings.Repeat(" ", gap-gap/2) + " |")
			case "right":
				b.WriteString(" " + strings.Repeat(" ", gap) + c + " |")
			default:
				b.WriteString(" " + c + strings.Repeat(" ", gap) + " |")
			}
		}
		b.WriteByte('\n')
	}
	rule()
	row(head, func(int, string) string { return "center" })
	rule()
	for _, r := range rows {
		row(r, func(_ int, c string) string {
			if isNumber(c) {
				return "right"
			}
			return "left"
		})
	}
	rule()
	_, err := io.WriteString(w, b.String())
	return err
}

// numberRE is tablewriter's test for cells it right-aligns.
var numberRE = regexp.MustCompile(`^-?(?:\d{1,3}(?:,\d{3})*|\d+)(?:\.\d+)?(?:e[+-]\d+)?$`)

func isNumber(s string) bool { return numberRE.MatchString(s) }

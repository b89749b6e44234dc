package birdsock

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Protocol is one row of `show protocols`. Fields are as BIRD prints them.
type Protocol struct {
	Name  string // "Mesh_10_0_0_2"
	Proto string // "BGP", "Static", "Device"...
	Table string // "master4"; "---" in BIRD 2 for multi-channel protocols
	State string // "up", "start", "down"...
	Since string // "05:43:33.894" (BIRD 2), "2024-01-01" or "10:00:01" (1.6)
	Info  string // "Established", "Active        Socket: Connection refused", ""
}

// ParseProtocols parses `show protocols` output (birdc text or wire format).
// Rows are split on whitespace rather than column offsets: BIRD lets a long
// name push the other columns right, and widths differ between versions.
// Detail lines of `show protocols all` are ignored.
func ParseProtocols(text string) ([]Protocol, error) {
	var ps []Protocol
	err := scanProtocols(plainText(text), func(p Protocol) { ps = append(ps, p) }, nil)
	return ps, err
}

// scanProtocols calls row for each protocol row and detail for each
// indented, non-empty line after it.
func scanProtocols(text string, row func(Protocol), detail func(line string)) error {
	heading := false
	for n, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		if !heading {
			// Skip anything before the heading, e.g. birdc's hello line.
			f := strings.Fields(line)
			heading = len(f) >= 2 && strings.EqualFold(f[0], "name") && strings.EqualFold(f[1], "proto")
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if detail != nil {
				detail(line)
			}
			continue
		}
		p, ok := parseProtocolRow(line)
		if !ok {
			return fmt.Errorf("birdsock: line %d: not a protocol row: %q", n+1, line)
		}
		row(p)
	}
	if !heading {
		return errors.New("birdsock: no protocol table heading")
	}
	return nil
}

func parseProtocolRow(line string) (Protocol, bool) {
	var f [4]string
	rest := line
	for i := range f {
		f[i], rest = nextField(rest)
		if f[i] == "" {
			return Protocol{}, false
		}
	}
	p := Protocol{Name: f[0], Proto: f[1], Table: f[2], State: f[3]}
	// Since is one token, or two when the time format has date and time.
	p.Since, rest = nextField(rest)
	if isDate(p.Since) {
		if t, r := nextField(rest); isClock(t) {
			p.Since += " " + t
			rest = r
		}
	}
	p.Info = strings.TrimSpace(rest)
	return p, true
}

// nextField splits off the first whitespace-separated field of s.
func nextField(s string) (field, rest string) {
	s = strings.TrimLeft(s, " \t")
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i:]
}

// isDate matches "2024-01-01" and "01-01-2024".
func isDate(s string) bool {
	return strings.Count(s, "-") == 2 && strings.Trim(s, "0123456789-") == ""
}

// isClock matches "10:00:01" and "10:00:01.123".
func isClock(s string) bool {
	return strings.Contains(s, ":") && strings.Trim(s, "0123456789:.") == ""
}

// ProtocolDetail is the parsed output of `show protocols all NAME`.
type ProtocolDetail struct {
	Protocol

	// BGP session; empty for other protocols.
	BGPState        string // "Established", "Active", "Idle", "Connect"...
	NeighborAddress string // "127.0.0.2"
	NeighborAS      uint32
	LocalAS         uint32 // BIRD 2 only
	NeighborID      string // once the session has been established
	Session         string // "internal multihop AS4"
	SourceAddress   string
	HoldTimer       string // as shown: "227.641/240" (BIRD 2), "187/240" (1.6)
	KeepaliveTimer  string
	LastError       string // "Socket: Connection refused"

	// Channels are BIRD 2's "Channel ipv4" sections. BIRD 1.6 has no
	// channels; its protocol-wide preference, filters and route counts are
	// reported as one Channel with an empty Name.
	Channels []Channel

	// Fields holds every protocol-level "Key: value" line as shown, including
	// the ones above (e.g. "Neighbor port", "Connect delay", "Description").
	Fields map[string]string
}

// Channel is one channel of a protocol.
type Channel struct {
	Name         string // "ipv4", "ipv6"
	State        string // "UP", "DOWN"
	Table        string
	Preference   int
	InputFilter  string // "ACCEPT", "REJECT" or a filter name
	OutputFilter string
	// Route counts from "Routes: 3 imported, 0 filtered, 3 exported, 2 preferred".
	Imported, Filtered, Exported, Preferred int
	// Fields holds every "Key: value" line of the channel as shown, including
	// the route change statistics rows ("Import updates" and so on).
	Fields map[string]string
}

// channelKeys are the BIRD 1.6 protocol-level keys that BIRD 2 moved into
// channels.
var channelKeys = map[string]bool{
	"Preference": true, "Input filter": true, "Output filter": true,
	"Routes": true, "Route change stats": true, "Import limit": true,
	"Receive limit": true, "Export limit": true, "Import updates": true,
	"Import withdraws": true, "Export updates": true, "Export withdraws": true,
}

// ParseProtocolDetails parses `show protocols all [NAME]` output (birdc text
// or wire format), one ProtocolDetail per protocol.
func ParseProtocolDetails(text string) ([]ProtocolDetail, error) {
	var ds []*detailParser
	err := scanProtocols(plainText(text),
		func(p Protocol) {
			ds = append(ds, newDetailParser(p))
		},
		func(line string) { ds[len(ds)-1].line(line) })
	if err != nil {
		return nil, err
	}
	out := make([]ProtocolDetail, len(ds))
	for i, p := range ds {
		out[i] = p.finish()
	}
	return out, nil
}

type detailParser struct {
	d ProtocolDetail
	// ch is the index in d.Channels of the BIRD 2 channel being read, anon
	// that of BIRD 1.6's anonymous one; -1 if none.
	ch, anon int
	// skipIndent > 0 while inside a block such as "Local capabilities"
	// whose deeper-indented lines are not key/value pairs of the protocol.
	skipIndent int
}

func newDetailParser(p Protocol) *detailParser {
	return &detailParser{d: ProtocolDetail{Protocol: p, Fields: map[string]string{}}, ch: -1, anon: -1}
}

func (p *detailParser) line(line string) {
	indent := len(line) - len(strings.TrimLeft(line, " \t"))
	line = strings.TrimSpace(line)
	if p.skipIndent > 0 {
		if indent > p.skipIndent {
			return
		}
		p.skipIndent = 0
	}
	if name, ok := strings.CutPrefix(line, "Channel "); ok {
		p.d.Channels = append(p.d.Channels, Channel{Name: name, Fields: map[string]string{}})
		p.ch = len(p.d.Channels) - 1
		return
	}
	key, value, ok := strings.Cut(line, ":")
	if !ok {
		p.skipIndent = indent
		return
	}
	value = strings.TrimSpace(value)
	switch {
	case p.ch >= 0: // BIRD 2: channels come last
		p.d.Channels[p.ch].Fields[key] = value
	case channelKeys[key]: // BIRD 1.6
		if p.anon < 0 {
			p.d.Channels = append(p.d.Channels, Channel{Table: p.d.Table, Fields: map[string]string{}})
			p.anon = len(p.d.Channels) - 1
		}
		p.d.Channels[p.anon].Fields[key] = value
	default:
		p.d.Fields[key] = value
	}
}

func (p *detailParser) finish() ProtocolDetail {
	d := p.d
	f := d.Fields
	d.BGPState = f["BGP state"]
	d.NeighborAddress = f["Neighbor address"]
	d.NeighborAS = parseUint32(f["Neighbor AS"])
	d.LocalAS = parseUint32(f["Local AS"])
	d.NeighborID = f["Neighbor ID"]
	d.Session = f["Session"]
	d.SourceAddress = f["Source address"]
	d.HoldTimer = f["Hold timer"]
	d.KeepaliveTimer = f["Keepalive timer"]
	d.LastError = f["Last error"]
	for i := range d.Channels {
		ch := &d.Channels[i]
		cf := ch.Fields
		ch.State = cf["State"]
		if t := cf["Table"]; t != "" {
			ch.Table = t
		}
		ch.Preference, _ = strconv.Atoi(cf["Preference"])
		ch.InputFilter = cf["Input filter"]
		ch.OutputFilter = cf["Output filter"]
		ch.Imported, ch.Filtered, ch.Exported, ch.Preferred = parseRouteCounts(cf["Routes"])
	}
	return d
}

// parseRouteCounts reads "3 imported, 0 filtered, 3 exported, 2 preferred".
func parseRouteCounts(s string) (imported, filtered, exported, preferred int) {
	for _, part := range strings.Split(s, ",") {
		f := strings.Fields(part)
		if len(f) != 2 {
			continue
		}
		n, err := strconv.Atoi(f[0])
		if err != nil {
			continue
		}
		switch f[1] {
		case "imported":
			imported = n
		case "filtered":
			filtered = n
		case "exported":
			exported = n
		case "preferred":
			preferred = n
		}
	}
	return
}

func parseUint32(s string) uint32 {
	n, _ := strconv.ParseUint(s, 10, 32)
	return uint32(n)
}

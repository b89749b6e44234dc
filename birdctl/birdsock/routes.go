package birdsock

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Route is one route of `show route [all]`. Alternative routes for a prefix
// (printed by BIRD under the prefix's first route) are separate Routes with
// the same Prefix.
type Route struct {
	Table    string // "master4" (BIRD 2 "Table master4:" headings); "" in BIRD 1.6
	Prefix   string // "10.0.0.0/24"
	Type     string // "unicast", "blackhole", "unreachable" or "prohibited"
	NextHops []NextHop
	Protocol string // "static1", "Mesh_10_0_0_2"
	Since    string // as shown, "05:43:41.128"
	From     string // BGP: address of the neighbor it came from
	Primary  bool   // marked "*": the preferred route for the prefix
	// Preference and IGP metric from "(100/20)"; Metric is -1 when not shown.
	Preference int
	Metric     int
	// Info is the protocol's suffix without brackets, for BGP the origin AS
	// and origin code: "AS64513i", "i".
	Info string
	// Attributes from `show route all`: "Type" ("BGP univ"), "BGP.as_path",
	// "BGP.next_hop", "BGP.local_pref"... Values as shown.
	Attributes map[string]string
}

// NextHop is one gateway of a unicast route.
type NextHop struct {
	Gateway   string // "192.0.2.5"; empty for a device route
	Interface string // "eth0"
	Weight    int    // multipath weight, 0 if not shown
}

// routeTypes are the words that start the destination part of a route line.
var routeTypes = map[string]bool{
	"unicast": true, "blackhole": true, "unreachable": true, "prohibited": true,
	"multipath": true, "via": true, "dev": true, "???": true,
}

// ParseRoutes parses `show route` or `show route all` output (birdc text or
// wire format) from BIRD 2 or 1.6. It handles BIRD 2's separate next-hop
// lines, 1.6's inline "via X on Y", multipath next hops, alternative routes
// on lines without a prefix, and attribute lines.
func ParseRoutes(text string) ([]Route, error) {
	var (
		routes  []Route
		table   string
		prefix  string
		lastKey string // last attribute, continued by "\t\t" lines
	)
	for n, line := range strings.Split(plainText(text), "\n") {
		trimmed := strings.TrimSpace(line)
		indented := line != "" && (line[0] == ' ' || line[0] == '\t')
		var cur *Route
		if len(routes) > 0 {
			cur = &routes[len(routes)-1]
		}
		switch {
		case trimmed == "":
		case !indented && strings.HasPrefix(line, "Table ") && strings.HasSuffix(line, ":"):
			table = strings.TrimSuffix(strings.TrimPrefix(line, "Table "), ":")
		case strings.Contains(trimmed, " [") && (!indented || routeTypes[firstWord(trimmed)]):
			r, err := parseRouteLine(trimmed, indented)
			if err != nil {
				return nil, fmt.Errorf("birdsock: line %d: %w: %q", n+1, err, line)
			}
			if indented {
				if prefix == "" {
					return nil, fmt.Errorf("birdsock: line %d: alternative route without a prefix: %q", n+1, line)
				}
				r.Prefix = prefix
			}
			prefix = r.Prefix
			r.Table = table
			routes = append(routes, r)
			lastKey = ""
		case cur == nil:
			return nil, fmt.Errorf("birdsock: line %d: not a route: %q", n+1, line)
		case strings.HasPrefix(trimmed, "via ") || strings.HasPrefix(trimmed, "dev "):
			cur.NextHops = append(cur.NextHops, parseNextHop(strings.Fields(trimmed)))
		case strings.HasPrefix(line, "\t\t") && lastKey != "":
			cur.Attributes[lastKey] += " " + trimmed // wrapped long set
		default:
			key, value, ok := strings.Cut(trimmed, ":")
			if !ok || !indented {
				return nil, fmt.Errorf("birdsock: line %d: not a route or attribute: %q", n+1, line)
			}
			if cur.Attributes == nil {
				cur.Attributes = map[string]string{}
			}
			lastKey = key
			cur.Attributes[key] = strings.TrimSpace(value)
		}
	}
	return routes, nil
}

func firstWord(s string) string {
	w, _ := nextField(s)
	return w
}

// parseRouteLine parses "PREFIX TYPE-OR-NEXTHOP [PROTO SINCE [from ADDR]] [*] (PREF[/METRIC]) [INFO]"
// where PREFIX is absent on alternative-route lines.
func parseRouteLine(line string, alternative bool) (Route, error) {
	r := Route{Metric: -1}
	open := strings.Index(line, " [")
	if open < 0 {
		return r, fmt.Errorf("no [protocol ...]")
	}
	end := strings.IndexByte(line[open:], ']')
	if end < 0 {
		return r, fmt.Errorf("unterminated [")
	}
	head := strings.Fields(line[:open])
	source := strings.Fields(line[open+2 : open+end])
	tail := strings.Fields(line[open+end+1:])

	// The prefix may contain spaces (VPN route distinguishers, flowspec),
	// so it ends where the destination keyword starts.
	k := 0
	for k < len(head) && !routeTypes[head[k]] {
		k++
	}
	switch {
	case alternative && k != 0:
		return r, fmt.Errorf("alternative route without a destination")
	case !alternative && k == 0:
		return r, fmt.Errorf("route without a prefix")
	case k == len(head): // unknown destination word: keep it as the type
		r.Prefix, r.Type = head[0], strings.Join(head[1:], " ")
	default:
		r.Prefix = strings.Join(head[:k], " ")
		switch head[k] {
		case "via", "dev": // BIRD 1.6 and early 2.0: one next hop inline
			r.Type = "unicast"
			r.NextHops = []NextHop{parseNextHop(head[k:])}
		case "multipath": // BIRD 1.6; next hops follow on their own lines
			r.Type = "unicast"
		default:
			r.Type = head[k]
		}
	}

	if len(source) == 0 {
		return r, fmt.Errorf("no protocol")
	}
	r.Protocol = source[0]
	since := source[1:]
	for i, w := range since {
		if w == "from" && i+1 < len(since) {
			r.From = since[i+1]
			since = since[:i]
			break
		}
	}
	r.Since = strings.Join(since, " ")

	for _, w := range tail {
		switch {
		case w == "*":
			r.Primary = true
		case strings.HasPrefix(w, "(") && strings.HasSuffix(w, ")"):
			pref, metric, hasMetric := strings.Cut(w[1:len(w)-1], "/")
			r.Preference, _ = strconv.Atoi(pref)
			if m, err := strconv.Atoi(metric); hasMetric && err == nil {
				r.Metric = m
			}
		case strings.HasPrefix(w, "[") && strings.HasSuffix(w, "]"):
			r.Info = w[1 : len(w)-1]
		}
	}
	return r, nil
}

// parseNextHop reads "via 192.0.2.5 on eth0 weight 2" or "dev eth0"; words
// it does not know (onlink, mpls labels) are skipped.
func parseNextHop(words []string) NextHop {
	var h NextHop
	for i := 0; i+1 < len(words); i++ {
		switch words[i] {
		case "via":
			h.Gateway = words[i+1]
		case "on", "dev":
			h.Interface = words[i+1]
		case "weight":
			h.Weight, _ = strconv.Atoi(words[i+1])
		default:
			continue
		}
		i++
	}
	return h
}

// KernelMetric is the kernel metric BIRD wants for its route to prefix in
// the kernel protocol kernelProto ("kernel_v4"): the Kernel.metric of the
// route it exports there (`show route <prefix> export <proto> all`). ok
// is false when BIRD exports no route for prefix or sets no metric.
func (c *Client) KernelMetric(ctx context.Context, prefix, kernelProto string) (metric int, ok bool, err error) {
	routes, err := c.Routes(ctx, prefix+" export "+kernelProto+" all")
	if err != nil {
		return 0, false, err
	}
	for _, r := range routes {
		if r.Prefix != prefix {
			continue
		}
		if v, err := strconv.Atoi(strings.TrimSpace(r.Attributes["Kernel.metric"])); err == nil {
			return v, true, nil
		}
	}
	return 0, false, nil
}

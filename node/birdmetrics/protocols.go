package birdmetrics

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roostnet/roost/birdctl/birdsock"
)

// protocolFamily is bird_exporter's generic protocol metrics in its "new
// format" (bird_protocol_*), one series per protocol and address family
// (BIRD 2 channel), from `show protocols all`. Labels are bird_exporter's
// (name, proto, ip_version, import_filter, export_filter; bird_protocol_up
// also state) plus Roost's peer_type: NodeMesh, NodePeer or GlobalPeer for
// the BGP sessions Roost names, empty for other protocols.
type protocolFamily struct {
	up, imported, exported, filtered, preferred, uptime *prometheus.Desc
}

// exportedProtos are the protocol types bird_exporter reports this way
// (BFD has its own family; Device and Pipe are not reported).
var exportedProtos = map[string]string{
	"BGP": "BGP", "Static": "Static", "Kernel": "Kernel", "Direct": "Direct",
	"OSPF": "OSPF", "Babel": "Babel", "RPKI": "RPKI",
}

func newProtocolFamily() *protocolFamily {
	l := []string{"name", "proto", "ip_version", "import_filter", "export_filter", "peer_type"}
	d := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc("bird_protocol_"+name, help, labels, nil)
	}
	return &protocolFamily{
		up:        d("up", "1 when the protocol is up; state is BIRD's Info column (for BGP the session state and last error).", append(append([]string{}, l...), "state")),
		imported:  d("prefix_import_count", "Routes the channel imported.", l),
		exported:  d("prefix_export_count", "Routes the channel exported.", l),
		filtered:  d("prefix_filter_count", "Routes the channel's import filter rejected (kept with import keep filtered).", l),
		preferred: d("prefix_preferred_count", "Imported routes that are the best for their prefix.", l),
		uptime:    d("uptime", "Seconds since the protocol's state last changed (BIRD's Since column), whatever the state.", l),
	}
}

func (f *protocolFamily) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{f.up, f.imported, f.exported, f.filtered, f.preferred, f.uptime} {
		ch <- d
	}
}

func (f *protocolFamily) collect(r *round, ch chan<- prometheus.Metric) {
	ps, err := r.ProtocolDetails()
	if err != nil {
		return
	}
	now := r.opts.Now()
	for _, p := range ps {
		proto, ok := exportedProtos[p.Proto]
		if !ok {
			continue
		}
		up, uptime := 0.0, 0.0
		if strings.EqualFold(p.State, "up") {
			up = 1
		}
		if at, ok := birdsock.ParseSince(p.Since, now, r.opts.Location); ok {
			uptime = float64(int64(max(0, now.Sub(at).Seconds())))
		}
		state := strings.Join(strings.Fields(p.Info), " ")
		peerType := birdsock.PeerTypeOf(p.Name)
		for _, c := range channels(p) {
			if proto == "OSPF" && c.version == "6" {
				proto = "OSPFv3"
			}
			l := []string{p.Name, proto, c.version, c.InputFilter, c.OutputFilter, peerType}
			gauge := func(d *prometheus.Desc, v float64, labels ...string) {
				ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
			}
			gauge(f.up, up, append(append([]string{}, l...), state)...)
			gauge(f.imported, float64(c.Imported), l...)
			gauge(f.exported, float64(c.Exported), l...)
			gauge(f.filtered, float64(c.Filtered), l...)
			gauge(f.preferred, float64(c.Preferred), l...)
			gauge(f.uptime, uptime, l...)
		}
	}
}

// channel is one address family of a protocol.
type channel struct {
	birdsock.Channel
	version string // "4", "6"; "" when BIRD says nothing
}

// channels lists a protocol's IPv4 and IPv6 channels (BIRD 2). BIRD 1.6
// has one anonymous channel per daemon: it is IPv4, unless the name of a
// Roost BGP session says the peer is IPv6. A protocol without channels is
// reported once, without ip_version, as bird_exporter does.
func channels(p birdsock.ProtocolDetail) []channel {
	var out []channel
	for _, c := range p.Channels {
		switch c.Name {
		case "ipv4":
			out = append(out, channel{c, "4"})
		case "ipv6":
			out = append(out, channel{c, "6"})
		case "":
			v := "4"
			if n, ok := birdsock.ParsePeerName(p.Name); ok && n.IPv6() {
				v = "6"
			}
			out = append(out, channel{c, v})
		}
	}
	if len(p.Channels) == 0 {
		out = append(out, channel{version: ""})
	}
	return out
}

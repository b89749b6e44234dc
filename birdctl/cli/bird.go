package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/roostnet/roost/birdctl/birdsock"
	"github.com/roostnet/roost/confd/bgp"
)

// dial connects to BIRD's control socket.
func (a *app) dial(ctx context.Context) (*birdsock.Client, error) {
	return birdsock.Dial(ctx, a.socket, birdsock.WithTimeout(a.timeout))
}

// birdError turns a BIRD error reply into BIRD's own text, which carries
// file:line for configuration errors.
func birdError(err error) error {
	var be *birdsock.BirdError
	if errors.As(err, &be) {
		return fmt.Errorf("%s: %s", be.Command, be.Text)
	}
	return err
}

// ---- node status ----

func (a *app) nodeCmd() *cobra.Command {
	node := &cobra.Command{
		Use:     "node",
		Short:   "Inspect this node's BGP daemon",
		GroupID: "bird",
	}
	var output string
	status := &cobra.Command{
		Use:   "status",
		Short: "Show whether BIRD runs and the state of its BGP peers (like calicoctl node status)",
		Long: `Show whether BIRD is running and, per address family, the BGP sessions
Roost configured: peer address, peer type (node-to-node mesh, node specific or
global, from the Mesh_/Node_/Global_ protocol names), state, since and info
(BGP state and last error). Exits with status 1, naming the socket, when BIRD
cannot be reached.`,
		Example: "  birdctl node status\n  birdctl node status -o json --socket /run/bird/bird.ctl",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(output, fmtTable, fmtJSON, fmtYAML); err != nil {
				return err
			}
			return a.nodeStatus(cmd.Context(), cmd.OutOrStdout(), output)
		},
	}
	addOutputFlag(status, &output, fmtTable, fmtJSON, fmtYAML)
	node.AddCommand(status)
	return node
}

// peerStatus is one BGP session of node status.
type peerStatus struct {
	Address   string `json:"peerAddress"`
	Port      int    `json:"port,omitempty"`
	Type      string `json:"peerType"`
	Protocol  string `json:"protocol"`
	State     string `json:"state"`
	Since     string `json:"since"`
	BGPState  string `json:"bgpState,omitempty"`
	LastError string `json:"lastError,omitempty"`
	// Disabled is why Roost rendered the session disabled (a password
	// that cannot be used), from its description in BIRD.
	Disabled string `json:"disabled,omitempty"`
	Info     string `json:"info"`
	// BFD is the state of the BFD session to the peer address ("Up",
	// "Down", "Init", "AdminDown"); empty when there is none.
	BFD    string `json:"bfd,omitempty"`
	family int
}

type nodeStatus struct {
	Running bool         `json:"birdRunning"`
	Socket  string       `json:"socket"`
	Version string       `json:"birdVersion,omitempty"`
	IPv4    []peerStatus `json:"ipv4Peers"`
	IPv6    []peerStatus `json:"ipv6Peers"`
}

func (a *app) nodeStatus(ctx context.Context, w io.Writer, output string) error {
	c, err := a.dial(ctx)
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("BIRD is not running (socket %s): %w", a.socket, err)}
	}
	defer c.Close()
	protos, err := c.Protocols(ctx)
	if err != nil {
		return birdError(err)
	}
	st := nodeStatus{Running: true, Socket: a.socket, Version: c.Version(), IPv4: []peerStatus{}, IPv6: []peerStatus{}}
	bfd, err := bfdStates(ctx, c)
	if err != nil {
		return birdError(err)
	}
	for _, p := range protos {
		if !strings.EqualFold(p.Proto, "BGP") {
			continue
		}
		ps, ok, err := peerFromProtocol(ctx, c, p)
		if err != nil {
			return birdError(err)
		}
		if !ok {
			continue
		}
		if addr, err := netip.ParseAddr(ps.Address); err == nil {
			ps.BFD = bfd[addr]
		}
		if ps.family == 6 {
			st.IPv6 = append(st.IPv6, ps)
		} else {
			st.IPv4 = append(st.IPv4, ps)
		}
	}
	if output != fmtTable {
		return writeData(w, output, st)
	}
	fmt.Fprintln(w, "BIRD is running.")
	for _, fam := range []struct {
		name  string
		peers []peerStatus
	}{{"IPv4", st.IPv4}, {"IPv6", st.IPv6}} {
		fmt.Fprintf(w, "\n%s BGP status\n", fam.name)
		if len(fam.peers) == 0 {
			fmt.Fprintf(w, "No %s peers found.\n", fam.name)
			continue
		}
		// The BFD column shows only where BIRD runs BFD sessions.
		header := []string{"Peer address", "Peer type", "State", "Since", "Info"}
		if len(bfd) > 0 {
			header = append(header, "BFD")
		}
		rows := make([][]string, len(fam.peers))
		for i, p := range fam.peers {
			addr := p.Address
			if p.Port != 0 {
				addr = net.JoinHostPort(p.Address, strconv.Itoa(p.Port))
			}
			rows[i] = []string{addr, p.Type, p.State, p.Since, p.Info}
			if len(bfd) > 0 {
				rows[i] = append(rows[i], cmp.Or(p.BFD, "-"))
			}
		}
		if err := boxTable(w, header, rows); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	return nil
}

// peerFromProtocol builds the node status row of a BGP protocol; ok is
// false for protocols Roost does not name (not Mesh_, Node_ or Global_).
// The details of `show protocols all` are fetched only when the summary
// lacks something: the session is not up and the summary shows no error, or
// the name does not decode to an address.
func peerFromProtocol(ctx context.Context, c *birdsock.Client, p birdsock.Protocol) (peerStatus, bool, error) {
	name, ok := parsePeerName(p.Name)
	if !ok {
		return peerStatus{}, false, nil
	}
	ps := peerStatus{Type: name.Type, Protocol: p.Name, State: p.State, Since: p.Since, Port: name.Port}
	info := collapseSpaces(p.Info)
	// In BIRD 2 and 1.6 the Info of a BGP protocol that is starting or up
	// is its BGP state, then the last error if any; a protocol that is
	// down shows the error ("Error: Hold timer expired") or nothing.
	if !strings.EqualFold(p.State, "down") {
		ps.BGPState, ps.LastError, _ = strings.Cut(info, " ")
	} else {
		ps.LastError = info
	}
	needDetail := !name.Addr.IsValid() ||
		(!strings.EqualFold(p.State, "up") && (ps.LastError == "" || ps.BGPState == ""))
	if needDetail {
		d, err := c.ProtocolDetail(ctx, p.Name)
		var be *birdsock.BirdError
		switch {
		case errors.As(err, &be):
			// E.g. the protocol went away meanwhile: show the summary.
			d = &birdsock.ProtocolDetail{}
		case err != nil:
			return ps, false, err
		}
		if !name.Addr.IsValid() {
			if a, err := netip.ParseAddr(d.NeighborAddress); err == nil {
				name.Addr = a
			}
			if port, err := strconv.Atoi(d.Fields["Neighbor port"]); err == nil && ps.Port == 0 {
				ps.Port = port
			}
		}
		if d.BGPState != "" {
			ps.BGPState = d.BGPState
		}
		if ps.LastError == "" {
			ps.LastError = d.LastError
		}
		if r, ok := strings.CutPrefix(d.Fields["Description"], bgp.DisabledPrefix); ok && strings.EqualFold(p.State, "down") {
			ps.Disabled = r
		}
	}
	ps.Address = name.Addr.String()
	ps.family = 4
	if name.Addr.Is6() && !name.Addr.Is4In6() {
		ps.family = 6
	}
	if !name.Addr.IsValid() {
		ps.Address = "?"
	}
	ps.Info = strings.TrimSpace(ps.BGPState + " " + ps.LastError)
	if ps.Disabled != "" {
		ps.Info = bgp.DisabledPrefix + ps.Disabled
	}
	return ps, true, nil
}

// ---- show ----

func (a *app) showCmd() *cobra.Command {
	show := &cobra.Command{
		Use:     "show",
		Short:   "Show BIRD's status, protocols or routes",
		GroupID: "bird",
	}
	var output string
	status := &cobra.Command{
		Use:   "status",
		Short: "Show BIRD's version, router ID and uptime (show status)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withBird(cmd, output, func(ctx context.Context, c *birdsock.Client, w io.Writer) error {
				st, err := c.Status(ctx)
				if err != nil {
					return err
				}
				return writeStatus(w, output, st)
			})
		},
	}
	addOutputFlag(status, &output, fmtTable, fmtJSON, fmtYAML)

	var protoOutput string
	protocols := &cobra.Command{
		Use:   "protocols [all] [NAME|PATTERN]",
		Short: "List BIRD's protocols (show protocols [all])",
		Long: `List BIRD's protocols as a table, or with "all" every detail BIRD reports
(BGP state, neighbor, timers, channels and route counts). NAME may be a
BIRD pattern such as "Mesh_*".`,
		Example: "  birdctl show protocols\n  birdctl show protocols all Mesh_10_0_0_2\n  birdctl show protocols 'Node_*' -o json",
		Args:    cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			all := len(args) > 0 && args[0] == "all"
			if all {
				args = args[1:]
			}
			if len(args) > 1 {
				return fmt.Errorf("show protocols takes at most one name or pattern")
			}
			command := "show protocols"
			if all {
				command += " all"
			}
			if len(args) == 1 {
				if strings.ContainsAny(args[0], "\"\r\n") {
					return fmt.Errorf("invalid protocol name %q", args[0])
				}
				command += ` "` + args[0] + `"`
			}
			return a.withBird(cmd, protoOutput, func(ctx context.Context, c *birdsock.Client, w io.Writer) error {
				rep, err := c.Exec(ctx, command)
				if err != nil {
					return err
				}
				if all {
					ds, err := birdsock.ParseProtocolDetails(rep.Text())
					if err != nil {
						return err
					}
					if protoOutput == fmtTable {
						// BIRD's own layout is the readable one for details.
						_, err := fmt.Fprintln(w, rep.Text())
						return err
					}
					return writeData(w, protoOutput, detailsOut(ds))
				}
				ps, err := birdsock.ParseProtocols(rep.Text())
				if err != nil {
					return err
				}
				return writeProtocols(w, protoOutput, ps)
			})
		},
	}
	addOutputFlag(protocols, &protoOutput, fmtTable, fmtJSON, fmtYAML)

	var routeOutput string
	route := &cobra.Command{
		Use:   "route [all] [for ADDR|PREFIX] [protocol NAME] [table NAME] ...",
		Short: "List routes (show route ...)",
		Long: `List routes of BIRD's tables. The arguments are passed to BIRD's
"show route" as they are, e.g. "for 10.65.0.1", "protocol Mesh_10_0_0_2",
"table master6", "all" (attributes, shown in json and yaml output).`,
		Example: "  birdctl show route\n  birdctl show route for 10.65.1.0/26 -o yaml\n  birdctl show route all protocol Mesh_10_0_0_2 -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withBird(cmd, routeOutput, func(ctx context.Context, c *birdsock.Client, w io.Writer) error {
				rs, err := c.Routes(ctx, strings.Join(args, " "))
				if err != nil {
					return err
				}
				return writeRoutes(w, routeOutput, rs)
			})
		},
	}
	addOutputFlag(route, &routeOutput, fmtTable, fmtJSON, fmtYAML)
	show.AddCommand(status, protocols, route)
	return show
}

// withBird checks the output format, connects and runs f.
func (a *app) withBird(cmd *cobra.Command, output string, f func(ctx context.Context, c *birdsock.Client, w io.Writer) error) error {
	if err := checkFormat(output, fmtTable, fmtJSON, fmtYAML); err != nil {
		return err
	}
	ctx := cmd.Context()
	c, err := a.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return birdError(f(ctx, c, cmd.OutOrStdout()))
}

type statusOut struct {
	Version             string     `json:"version"`
	RouterID            string     `json:"routerID"`
	Hostname            string     `json:"hostname,omitempty"`
	ServerTime          *time.Time `json:"serverTime,omitempty"`
	LastReboot          *time.Time `json:"lastReboot,omitempty"`
	LastReconfiguration *time.Time `json:"lastReconfiguration,omitempty"`
	Message             string     `json:"message"`
	Up                  bool       `json:"up"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func writeStatus(w io.Writer, output string, st *birdsock.Status) error {
	out := statusOut{
		Version: st.Version, RouterID: st.RouterID, Hostname: st.Hostname,
		ServerTime: timePtr(st.ServerTime), LastReboot: timePtr(st.LastReboot), LastReconfiguration: timePtr(st.LastReconfig),
		Message: st.Message, Up: st.Up,
	}
	if output != fmtTable {
		return writeData(w, output, out)
	}
	ts := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.Format("2006-01-02 15:04:05.000")
	}
	rows := [][]string{
		{"BIRD version:", st.Version},
		{"Router ID:", st.RouterID},
	}
	if st.Hostname != "" {
		rows = append(rows, []string{"Hostname:", st.Hostname})
	}
	rows = append(rows,
		[]string{"Server time:", ts(out.ServerTime)},
		[]string{"Last reboot:", ts(out.LastReboot)},
		[]string{"Last reconfiguration:", ts(out.LastReconfiguration)},
		[]string{"Status:", st.Message},
	)
	return columns(w, rows[0], rows[1:])
}

type protocolOut struct {
	Name  string `json:"name"`
	Proto string `json:"proto"`
	Table string `json:"table"`
	State string `json:"state"`
	Since string `json:"since"`
	Info  string `json:"info"`
}

func protoOut(p birdsock.Protocol) protocolOut {
	return protocolOut{Name: p.Name, Proto: p.Proto, Table: p.Table, State: p.State, Since: p.Since, Info: collapseSpaces(p.Info)}
}

func writeProtocols(w io.Writer, output string, ps []birdsock.Protocol) error {
	out := make([]protocolOut, len(ps))
	rows := make([][]string, len(ps))
	for i, p := range ps {
		out[i] = protoOut(p)
		rows[i] = []string{p.Name, p.Proto, p.Table, p.State, p.Since, out[i].Info}
	}
	if output != fmtTable {
		return writeData(w, output, out)
	}
	return columns(w, []string{"NAME", "PROTO", "TABLE", "STATE", "SINCE", "INFO"}, rows)
}

type channelOut struct {
	Name         string            `json:"name"`
	State        string            `json:"state,omitempty"`
	Table        string            `json:"table,omitempty"`
	Preference   int               `json:"preference,omitempty"`
	InputFilter  string            `json:"inputFilter,omitempty"`
	OutputFilter string            `json:"outputFilter,omitempty"`
	Imported     int               `json:"imported"`
	Filtered     int               `json:"filtered"`
	Exported     int               `json:"exported"`
	Preferred    int               `json:"preferred"`
	Fields       map[string]string `json:"fields,omitempty"`
}

type detailOut struct {
	protocolOut
	BGPState        string            `json:"bgpState,omitempty"`
	NeighborAddress string            `json:"neighborAddress,omitempty"`
	NeighborAS      uint32            `json:"neighborAS,omitempty"`
	LocalAS         uint32            `json:"localAS,omitempty"`
	NeighborID      string            `json:"neighborID,omitempty"`
	Session         string            `json:"session,omitempty"`
	SourceAddress   string            `json:"sourceAddress,omitempty"`
	HoldTimer       string            `json:"holdTimer,omitempty"`
	KeepaliveTimer  string            `json:"keepaliveTimer,omitempty"`
	LastError       string            `json:"lastError,omitempty"`
	Channels        []channelOut      `json:"channels,omitempty"`
	Fields          map[string]string `json:"fields,omitempty"`
}

func detailsOut(ds []birdsock.ProtocolDetail) []detailOut {
	out := make([]detailOut, len(ds))
	for i, d := range ds {
		o := detailOut{
			protocolOut: protoOut(d.Protocol), BGPState: d.BGPState, NeighborAddress: d.NeighborAddress,
			NeighborAS: d.NeighborAS, LocalAS: d.LocalAS, NeighborID: d.NeighborID, Session: d.Session,
			SourceAddress: d.SourceAddress, HoldTimer: d.HoldTimer, KeepaliveTimer: d.KeepaliveTimer,
			LastError: d.LastError, Fields: d.Fields,
		}
		if len(o.Fields) == 0 {
			o.Fields = nil
		}
		for _, ch := range d.Channels {
			co := channelOut{
				Name: ch.Name, State: ch.State, Table: ch.Table, Preference: ch.Preference,
				InputFilter: ch.InputFilter, OutputFilter: ch.OutputFilter,
				Imported: ch.Imported, Filtered: ch.Filtered, Exported: ch.Exported, Preferred: ch.Preferred,
				Fields: ch.Fields,
			}
			if len(co.Fields) == 0 {
				co.Fields = nil
			}
			o.Channels = append(o.Channels, co)
		}
		out[i] = o
	}
	return out
}

type nextHopOut struct {
	Gateway   string `json:"gateway,omitempty"`
	Interface string `json:"interface,omitempty"`
	Weight    int    `json:"weight,omitempty"`
}

type routeOut struct {
	Table      string            `json:"table,omitempty"`
	Prefix     string            `json:"prefix"`
	Type       string            `json:"type"`
	NextHops   []nextHopOut      `json:"nextHops,omitempty"`
	Protocol   string            `json:"protocol"`
	Since      string            `json:"since"`
	From       string            `json:"from,omitempty"`
	Primary    bool              `json:"primary"`
	Preference int               `json:"preference"`
	Metric     *int              `json:"metric,omitempty"`
	Info       string            `json:"info,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

func writeRoutes(w io.Writer, output string, rs []birdsock.Route) error {
	out := make([]routeOut, len(rs))
	rows := make([][]string, len(rs))
	for i, r := range rs {
		o := routeOut{
			Table: r.Table, Prefix: r.Prefix, Type: r.Type, Protocol: r.Protocol, Since: r.Since,
			From: r.From, Primary: r.Primary, Preference: r.Preference, Info: r.Info, Attributes: r.Attributes,
		}
		if r.Metric >= 0 {
			m := r.Metric
			o.Metric = &m
		}
		var hops []string
		for _, h := range r.NextHops {
			o.NextHops = append(o.NextHops, nextHopOut(h))
			s := h.Gateway
			switch {
			case s == "":
				s = "dev " + h.Interface
			case h.Interface != "":
				s += " on " + h.Interface
			}
			if h.Weight > 0 {
				s += " weight " + strconv.Itoa(h.Weight)
			}
			hops = append(hops, s)
		}
		out[i] = o
		best := ""
		if r.Primary {
			best = "*"
		}
		pref := strconv.Itoa(r.Preference)
		if o.Metric != nil {
			pref += "/" + strconv.Itoa(*o.Metric)
		}
		rows[i] = []string{dash(r.Table), r.Prefix, r.Type, dash(strings.Join(hops, ", ")), r.Protocol, r.Since, dash(r.From), dash(best), pref, dash(r.Info)}
	}
	if output != fmtTable {
		return writeData(w, output, out)
	}
	if len(rs) == 0 {
		_, err := fmt.Fprintln(w, "No routes found.")
		return err
	}
	return columns(w, []string{"TABLE", "PREFIX", "TYPE", "NEXT HOP", "PROTOCOL", "SINCE", "FROM", "BEST", "PREF", "INFO"}, rows)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ---- configure, raw ----

func (a *app) configureCmd() *cobra.Command {
	var check bool
	cmd := &cobra.Command{
		Use:   "configure [--check] [FILE]",
		Short: "Make BIRD load a configuration file, or only check it",
		Long: `Make BIRD re-read its configuration file, or load FILE instead
(configure "FILE"). With --check BIRD only parses it (configure check).
On failure BIRD's message is printed, with file:line:column, and the exit
status is 1. FILE is made absolute, since BIRD resolves it from its own
working directory.`,
		Example: "  birdctl configure\n  birdctl configure --check /etc/roost/bird.conf",
		GroupID: "bird",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file := ""
			if len(args) == 1 {
				abs, err := filepath.Abs(args[0])
				if err != nil {
					return err
				}
				file = abs
			}
			ctx := cmd.Context()
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			msg, err := c.ConfigureResult(ctx, file, check)
			if err != nil {
				var be *birdsock.BirdError
				if errors.As(err, &be) {
					what := "configuration failed"
					if check {
						what = "configuration check failed"
					}
					return fmt.Errorf("%s: %s", what, be.Text)
				}
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), msg)
			return err
		},
	}
	cmd.Flags().BoolVar(&check, "check", false, "only check the configuration (configure check)")
	return cmd
}

func (a *app) rawCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "raw 'COMMAND'",
		Short: "Send any command to BIRD and print its reply as birdc does",
		Long: `Send one command line to BIRD's control socket and print the reply text
(without reply codes), e.g. "show route count" or "show ospf". Words are
joined with spaces. An error reply is printed to stderr, exit status 1.`,
		Example: "  birdctl raw 'show route count'\n  birdctl raw show memory",
		GroupID: "bird",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			rep, err := c.Exec(ctx, strings.Join(args, " "))
			var be *birdsock.BirdError
			if errors.As(err, &be) {
				return fmt.Errorf("%s", rep.Text())
			}
			if err != nil {
				return err
			}
			if text := rep.Text(); text != "" {
				_, err = fmt.Fprintln(cmd.OutOrStdout(), text)
			}
			return err
		},
	}
}

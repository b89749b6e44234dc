package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/roostnet/roost/birdctl/birdsock"
)

func (a *app) bfdCmd() *cobra.Command {
	bfd := &cobra.Command{
		Use:     "bfd",
		Short:   "Inspect BIRD's BFD sessions",
		GroupID: "bird",
	}
	var output string
	status := &cobra.Command{
		Use:   "status",
		Short: "Show BIRD's BFD sessions (show bfd sessions) and the BGP sessions they guard",
		Long: `Show BIRD's BFD sessions: peer address, interface ("multihop" for
multihop sessions, which Roost's are), state (Up, Down, Init, AdminDown),
since, the transmit interval in use and the detection timeout, and the BGP
sessions to that address. A BGP session gets BFD from the BFDProfile its
bfd.roost.io/profile annotation names; without any, BIRD runs no BFD.`,
		Example: "  birdctl bfd status\n  birdctl bfd status -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withBird(cmd, output, func(ctx context.Context, c *birdsock.Client, w io.Writer) error {
				st, err := bfdStatus(ctx, c)
				if err != nil {
					return err
				}
				return writeBFD(w, output, st)
			})
		},
	}
	addOutputFlag(status, &output, fmtTable, fmtJSON, fmtYAML)
	bfd.AddCommand(status)
	return bfd
}

// bfdSessionOut is one BFD session of bfd status.
type bfdSessionOut struct {
	PeerAddress string   `json:"peerAddress"`
	Interface   string   `json:"interface,omitempty"`
	Multihop    bool     `json:"multihop"`
	State       string   `json:"state"`
	Since       string   `json:"since"`
	Interval    float64  `json:"intervalSeconds"`
	Timeout     float64  `json:"timeoutSeconds"`
	Protocol    string   `json:"protocol"`
	BGPSessions []string `json:"bgpSessions"`
	addr        netip.Addr
}

// bfdStatus lists BIRD's BFD sessions with the Roost BGP sessions to each
// address, sorted by address (IPv4 first).
func bfdStatus(ctx context.Context, c *birdsock.Client) ([]bfdSessionOut, error) {
	ss, err := c.BFDSessions(ctx)
	if err != nil || len(ss) == 0 {
		return []bfdSessionOut{}, err
	}
	protos, err := c.Protocols(ctx)
	if err != nil {
		return nil, err
	}
	bgp := map[netip.Addr][]string{}
	for _, p := range protos {
		if n, ok := parsePeerName(p.Name); ok && n.Addr.IsValid() && strings.EqualFold(p.Proto, "BGP") {
			bgp[n.Addr] = append(bgp[n.Addr], p.Name)
		}
	}
	out := make([]bfdSessionOut, len(ss))
	for i, s := range ss {
		a, _ := netip.ParseAddr(s.Address)
		out[i] = bfdSessionOut{
			PeerAddress: s.Address, Interface: s.Interface, Multihop: s.Interface == "", State: s.State, Since: s.Since,
			Interval: s.Interval.Seconds(), Timeout: s.Timeout.Seconds(), Protocol: s.Protocol,
			BGPSessions: append([]string{}, bgp[a]...), addr: a,
		}
		slices.Sort(out[i].BGPSessions)
	}
	slices.SortStableFunc(out, func(x, y bfdSessionOut) int {
		if x.addr.Is4() != y.addr.Is4() {
			if x.addr.Is4() {
				return -1
			}
			return 1
		}
		return x.addr.Compare(y.addr)
	})
	return out, nil
}

func writeBFD(w io.Writer, output string, ss []bfdSessionOut) error {
	if output != fmtTable {
		return writeData(w, output, ss)
	}
	if len(ss) == 0 {
		_, err := fmt.Fprintln(w, "No BFD sessions (no BGP session has a BFDProfile, see bfd.roost.io/profile).")
		return err
	}
	rows := make([][]string, len(ss))
	for i, s := range ss {
		iface := s.Interface
		if s.Multihop {
			iface = "multihop"
		}
		sessions := strings.Join(s.BGPSessions, ",")
		if sessions == "" {
			sessions = "-"
		}
		rows[i] = []string{s.PeerAddress, iface, s.State, s.Since, seconds(s.Interval), seconds(s.Timeout), sessions}
	}
	return columns(w, []string{"PEER ADDRESS", "INTERFACE", "STATE", "SINCE", "INTERVAL", "TIMEOUT", "BGP SESSIONS"}, rows)
}

// seconds prints BIRD's intervals as durations ("100ms", "1s"), "-" for 0.
func seconds(s float64) string {
	if s == 0 {
		return "-"
	}
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}

// bfdStates maps peer addresses to the state of their BFD session, for
// node status. BIRD errors (no BFD protocol, a BIRD without BFD) give no
// states: BFD is optional there.
func bfdStates(ctx context.Context, c *birdsock.Client) (map[netip.Addr]string, error) {
	ss, err := c.BFDSessions(ctx)
	var be *birdsock.BirdError
	if errors.As(err, &be) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	m := map[netip.Addr]string{}
	for _, s := range ss {
		if a, err := netip.ParseAddr(s.Address); err == nil {
			m[a] = s.State
		}
	}
	return m, nil
}

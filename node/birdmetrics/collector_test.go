package birdmetrics

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/birdctl/birdsock/birdtest"
)

// A recorded BIRD 2.0.12 reply to `show bfd sessions`: a direct session
// up, a multihop one up and one down.
const bfdReply = `1020-roost_bfd:
 IP address                Interface  State      Since         Interval  Timeout
 fd00::2                   ---        Up         08:02:48.069    0.200    1.000
 10.0.0.9                  ---        Down       08:02:47.316    1.000    0.000
 10.0.0.2                  eth0       Up         08:02:48.069    0.100    0.300
0000 
`

// bfdProtocol is `show protocols all` of a BIRD running only a BFD protocol.
const bfdProtocol = "2002-Name       Proto      Table      State  Since         Info\n" +
	"1002-roost_bfd  BFD        ---        up     08:02:40.000  \n1006-\n0000 \n"

// startFake serves a BIRD that answers `show protocols all` with
// bfdProtocol and anything else with reply.
func startFake(t *testing.T, reply string) *birdtest.Server {
	t.Helper()
	return birdtest.Serve(t, "0001 BIRD 2.0.12 ready.\n", 0, func(c *birdtest.Conn, cmd string) bool {
		if cmd == "show protocols all" {
			return c.Send(bfdProtocol) == nil
		}
		return c.Send(reply) == nil
	})
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetLevel(logrus.PanicLevel)
	return l
}

func TestBFDMetrics(t *testing.T) {
	f := startFake(t, bfdReply)
	clk := &clock{now: time.Date(2026, 12, 3, 8, 3, 18, 69e6, time.UTC)} // 30 s after the sessions came up
	c := New(Options{Socket: f.Socket, Now: clk.Now, Location: time.UTC, Log: quietLog()})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	want := []string{
		`bird_bfd_session_interval_seconds{interface="---",ip="10.0.0.9",name="roost_bfd"} 1`,
		`bird_bfd_session_interval_seconds{interface="---",ip="fd00::2",name="roost_bfd"} 0.2`,
		`bird_bfd_session_interval_seconds{interface="eth0",ip="10.0.0.2",name="roost_bfd"} 0.1`,
		`bird_bfd_session_timeout_seconds{interface="---",ip="10.0.0.9",name="roost_bfd"} 0`,
		`bird_bfd_session_timeout_seconds{interface="---",ip="fd00::2",name="roost_bfd"} 1`,
		`bird_bfd_session_timeout_seconds{interface="eth0",ip="10.0.0.2",name="roost_bfd"} 0.3`,
		`bird_bfd_session_uptime_seconds{interface="---",ip="10.0.0.9",name="roost_bfd"} 0`,
		`bird_bfd_session_uptime_seconds{interface="---",ip="fd00::2",name="roost_bfd"} 30`,
		`bird_bfd_session_uptime_seconds{interface="eth0",ip="10.0.0.2",name="roost_bfd"} 30`,
		`bird_bfd_session_up{interface="---",ip="10.0.0.9",name="roost_bfd"} 0`,
		`bird_bfd_session_up{interface="---",ip="fd00::2",name="roost_bfd"} 1`,
		`bird_bfd_session_up{interface="eth0",ip="10.0.0.2",name="roost_bfd"} 1`,
		`bird_socket_query_success 1`,
	}
	if got := gather(t, reg); !slices.Equal(got, want) {
		t.Errorf("metrics:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// One round: one connection, one command per family.
	if conns, cmds := f.Connections(), len(f.Commands()); conns != 1 || cmds != 2 {
		t.Errorf("first scrape: %d connections, %d commands; want 1 and 2", conns, cmds)
	}
	// A scrape within MaxAge reuses the round; a later one queries again.
	clk.add(DefaultMaxAge / 2)
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
	if conns, cmds := f.Connections(), len(f.Commands()); conns != 1 || cmds != 2 {
		t.Errorf("scrape within MaxAge: %d connections, %d commands; want no new query", conns, cmds)
	}
	clk.add(DefaultMaxAge)
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
	if conns, cmds := f.Connections(), len(f.Commands()); conns != 2 || cmds != 4 {
		t.Errorf("scrape after MaxAge: %d connections, %d commands; want 2 and 4", conns, cmds)
	}
}

func TestNoBFDAndBirdDown(t *testing.T) {
	for _, tt := range []struct {
		name, reply string
		ok          string
	}{
		{"no BFD protocol", "9001 There is no BFD protocol running\n", "1"},
		{"query fails", "9001 syntax error, unexpected CF_SYM_UNDEFINED\n", "0"},
		{"BIRD down", "", "0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := birdtest.SocketPath(t, "none.ctl")
			if tt.reply != "" {
				path = startFake(t, tt.reply).Socket
			}
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(New(Options{Socket: path, Log: quietLog(), Timeout: time.Second}))
			want := []string{"bird_socket_query_success " + tt.ok}
			if got := gather(t, reg); !slices.Equal(got, want) {
				t.Errorf("metrics %q, want %q", got, want)
			}
		})
	}
}

// gather returns the registry's samples as sorted `name{labels} value`
// lines (gauges only).
func gather(t *testing.T, reg *prometheus.Registry) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			name := mf.GetName()
			if len(ls) > 0 {
				name += "{" + strings.Join(ls, ",") + "}"
			}
			out = append(out, fmt.Sprintf("%s %v", name, m.GetGauge().GetValue()))
		}
	}
	slices.Sort(out)
	return out
}

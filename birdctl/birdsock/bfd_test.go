package birdsock

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/roostnet/roost/birdctl/birdsock/birdtest"
)

func TestParseBFDSessions(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name, text string
		want       []BFDSession
	}{
		{"recorded BIRD 2", recorded(t, "bird2-bfd.txt", "show bfd sessions"), []BFDSession{
			{Protocol: "roost_bfd", Address: "fd00::2", State: "Up", Since: "08:02:48.069", Interval: 200 * ms, Timeout: time.Second},
			{Protocol: "roost_bfd", Address: "10.0.0.9", State: "Down", Since: "08:02:47.316", Interval: time.Second},
			{Protocol: "roost_bfd", Address: "10.0.0.2", Interface: "eth0", State: "Up", Since: "08:02:48.069", Interval: 100 * ms, Timeout: 300 * ms},
		}},
		{"two protocols, one not up, date since", `bfd1:
IP address                Interface  State      Since         Interval  Timeout
192.168.64.9              enp0s2     Init       2026-11-20 09:00:00    0.100    1.000
192.168.64.10             enp0s2     AdminDown  2026-11-19    0.300    0.000
bfd2: is not up
`, []BFDSession{
			{Protocol: "bfd1", Address: "192.168.64.9", Interface: "enp0s2", State: "Init", Since: "2026-11-20 09:00:00", Interval: 100 * ms, Timeout: time.Second},
			{Protocol: "bfd1", Address: "192.168.64.10", Interface: "enp0s2", State: "AdminDown", Since: "2026-11-19", Interval: 300 * ms},
		}},
		{"no sessions", "roost_bfd:\nIP address                Interface  State      Since         Interval  Timeout\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseBFDSessions(tt.text)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
	for _, bad := range []string{
		"bfd1:\nIP address Interface State Since Interval Timeout\n10.0.0.1 eth0 Up 10:00:00 fast 0.300\n",
		"bfd1:\nIP address Interface State Since Interval Timeout\n10.0.0.1 eth0 Up\n",
	} {
		if _, err := ParseBFDSessions(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestParseSince(t *testing.T) {
	loc := time.FixedZone("X", 3600)
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, loc)
	tests := []struct {
		in   string
		want time.Time
	}{
		{"09:59:58.500", time.Date(2026, 11, 21, 9, 59, 58, 5e8, loc)},
		{"10:00:00.800", time.Date(2026, 11, 21, 10, 0, 0, 8e8, loc)}, // BIRD's clock a bit ahead
		{"23:00:00.000", time.Date(2026, 11, 20, 23, 0, 0, 0, loc)},   // yesterday
		{"2026-11-19", time.Date(2026, 11, 19, 0, 0, 0, 0, loc)},      // older than 20 h: the date only
		{"2026-11-19 08:30:01", time.Date(2026, 11, 19, 8, 30, 1, 0, loc)},
	}
	for _, tt := range tests {
		got, ok := ParseSince(tt.in, now, loc)
		if !ok || !got.Equal(tt.want) {
			t.Errorf("ParseSince(%q) = %v %v, want %v", tt.in, got, ok, tt.want)
		}
	}
	if _, ok := ParseSince("yesterday", now, loc); ok {
		t.Error("accepted garbage")
	}
}

// Without a BFD protocol BIRD answers with an error; BFDSessions reports
// no sessions. Other errors are errors.
func TestBFDSessionsNoProtocol(t *testing.T) {
	for _, tt := range []struct {
		reply   string
		wantErr bool
	}{
		{"9001 There is no BFD protocol running\n", false},
		{"9001 syntax error, unexpected CF_SYM_UNDEFINED\n", true},
	} {
		s := birdtest.Serve(t, "0001 BIRD 2.0.12 ready.\n", 0, func(fc *birdtest.Conn, cmd string) bool {
			return fc.Send(tt.reply) == nil
		})
		c, err := Dial(context.Background(), s.Socket)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.BFDSessions(context.Background())
		var be *BirdError
		if tt.wantErr != (err != nil) || (err != nil && !errors.As(err, &be)) || got != nil {
			t.Errorf("reply %q: sessions %v, err %v", tt.reply, got, err)
		}
		c.Close()
	}
}

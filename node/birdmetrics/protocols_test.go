package birdmetrics

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roostnet/roost/birdctl/birdsock/birdtest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.metrics")

// The protocol metrics of recorded BIRD 2 and BIRD 1.6 sessions, compared
// with testdata/<recording>.metrics (go test -update rewrites them).
func TestProtocolMetrics(t *testing.T) {
	for _, tt := range []struct {
		recording string
		now       time.Time // BIRD's server time when recorded
		cmds      []string
	}{
		{"bird2-status.txt", time.Date(2026, 12, 3, 8, 39, 32, 649e6, time.UTC), []string{"show protocols all"}},
		{"bird16-status.txt", time.Date(2024, 1, 1, 10, 5, 0, 0, time.UTC), []string{"show protocols all"}},
	} {
		t.Run(tt.recording, func(t *testing.T) {
			bird := birdtest.Replay(t, tt.recording)
			clk := &clock{now: tt.now}
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(New(Options{Socket: bird.Socket, Now: clk.Now, Location: time.UTC, Log: quietLog()}))
			got := gather(t, reg)
			var protos []string
			for _, l := range got {
				if strings.HasPrefix(l, "bird_protocol_") || strings.HasPrefix(l, "bird_socket") {
					protos = append(protos, l)
				}
			}
			gotText := strings.Join(protos, "\n") + "\n"
			path := filepath.Join("testdata", strings.TrimSuffix(tt.recording, ".txt")+".metrics")
			if *update {
				if err := os.WriteFile(path, []byte(gotText), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if gotText != string(want) {
				t.Errorf("metrics differ from %s (-update rewrites it):\n%s", path, gotText)
			}
			// No BFD protocol: no BFD query.
			if cmds := bird.Commands(); !slices.Equal(cmds, tt.cmds) {
				t.Errorf("commands %q, want %q", cmds, tt.cmds)
			}
		})
	}
}

package birdsock_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/roostnet/roost/birdctl/birdsock"
	"github.com/roostnet/roost/birdctl/birdsock/birdtest"
)

// bfdPeerConfig is one end of a multihop BGP session with BFD between two
// loopback addresses. `strict bind` lets two daemons in one network
// namespace share the BFD ports.
func bfdPeerConfig(local, remote string, localPort, remotePort int) string {
	return fmt.Sprintf(`router id %[1]s;
protocol device {}
protocol bfd roost_bfd { strict bind on; }
protocol bgp Mesh_peer {
	local %[1]s port %[3]d as 64512;
	neighbor %[2]s port %[4]d as 64512;
	multihop;
	bfd { min rx interval 50 ms; min tx interval 50 ms; multiplier 3; };
	ipv4 { import all; export none; };
}
`, local, remote, localPort, remotePort)
}

// Two real BIRDs bring a BFD session up; when one dies, the other shows
// it Down. The parser reads BIRD's live output.
func TestRealBirdBFD(t *testing.T) {
	// Loopback addresses of this process, away from other tests' BFD ports.
	pfx := fmt.Sprintf("127.%d.%d.", 100+os.Getpid()%100, (os.Getpid()/100)%250+1)
	a, b := pfx+"1", pfx+"2"
	ports := birdtest.FreePorts(t, 2)
	ba := birdtest.Start(t, bfdPeerConfig(a, b, ports[0], ports[1]))
	bb := birdtest.Start(t, bfdPeerConfig(b, a, ports[1], ports[0]))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := birdsock.Dial(ctx, ba.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	wait := func(what string, ok func(s birdsock.BFDSession) bool) birdsock.BFDSession {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			ss, err := c.BFDSessions(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(ss) == 1 && ss[0].Protocol == "roost_bfd" && ss[0].Address == b && ss[0].Interface == "" && ok(ss[0]) {
				return ss[0]
			}
			if time.Now().After(deadline) {
				t.Fatalf("BFD session %s: got %+v", what, ss)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	up := wait("up", birdsock.BFDSession.Up)
	if up.Interval != 50*time.Millisecond || up.Timeout != 150*time.Millisecond {
		t.Errorf("up session %+v: want interval 50ms, timeout 150ms", up)
	}
	if at, ok := birdsock.ParseSince(up.Since, time.Now(), time.Local); !ok || time.Since(at) > time.Minute || time.Since(at) < -2*time.Second {
		t.Errorf("since %q -> %v %v", up.Since, at, ok)
	}
	bb.Stop()
	down := wait("down", func(s birdsock.BFDSession) bool { return s.State == "Down" })
	if down.Timeout != 0 {
		t.Errorf("down session %+v: want no timeout", down)
	}
}

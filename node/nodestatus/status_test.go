package nodestatus

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/birdctl/birdsock"
	"github.com/roostnet/roost/birdctl/birdsock/birdtest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.json")

// The status calico-node's fields get from recorded BIRD 2 and BIRD 1.6
// sessions, every class, compared with testdata/<recording>.json.
func TestStatusFromBird(t *testing.T) {
	all := &api.CalicoNodeStatusSpec{Classes: api.NodeStatusClasses}
	for _, tt := range []struct {
		recording string
		ipv6      bool
		cmds      []string
	}{
		{"bird2-status.txt", true, []string{"show status", "show protocols", "show route"}},
		{"bird2-status-peerdown.txt", false, []string{"show status", "show protocols", "show route"}},
		{"bird16-status.txt", false, []string{"show status", "show protocols", "show route"}},
	} {
		t.Run(tt.recording, func(t *testing.T) {
			bird := birdtest.Replay(t, tt.recording)
			round := birdsock.NewRound(bird.Socket, 0)
			defer round.Close()
			rep, err := collect(round, classSet(all.Classes), tt.ipv6)
			if err != nil {
				t.Fatal(err)
			}
			st := rep.status(all)
			got, err := json.MarshalIndent(st, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, strings.TrimSuffix(tt.recording, ".txt")+".json", string(got)+"\n")
			if cmds := bird.Commands(); !slices.Equal(cmds, tt.cmds) {
				t.Errorf("BIRD got %q, want one round %q", cmds, tt.cmds)
			}
		})
	}
}

// Only the classes asked for are filled in, with only their commands.
func TestStatusClasses(t *testing.T) {
	bird := birdtest.Replay(t, "bird2-status.txt")
	round := birdsock.NewRound(bird.Socket, 0)
	defer round.Close()
	spec := &api.CalicoNodeStatusSpec{Classes: []string{api.NodeStatusClassBGP}}
	rep, err := collect(round, classSet(spec.Classes), false)
	if err != nil {
		t.Fatal(err)
	}
	st := rep.status(spec)
	if st.Agent != (api.CalicoNodeAgentStatus{}) || len(st.Routes.RoutesV4) != 0 || st.BGP.NumberEstablishedV4 != 1 || st.BGP.NumberNotEstablishedV4 != 2 || st.BGP.NumberEstablishedV6 != 1 {
		t.Errorf("BGP only: %+v", st)
	}
	if cmds := bird.Commands(); !slices.Equal(cmds, []string{"show protocols"}) {
		t.Errorf("BIRD got %q", cmds)
	}
}

// A BIRD that does not answer is reported as calico-node does: NotReady,
// no sessions, no routes.
func TestStatusBirdDown(t *testing.T) {
	round := birdsock.NewRound(birdtest.SocketPath(t, "none.ctl"), 0)
	rep, err := collect(round, classSet(api.NodeStatusClasses), true)
	if err != nil {
		t.Fatal(err)
	}
	st := rep.status(&api.CalicoNodeStatusSpec{Classes: api.NodeStatusClasses})
	want := api.CalicoNodeStatusStatus{Agent: api.CalicoNodeAgentStatus{BIRDV4: notAnswering, BIRDV6: notAnswering}}
	if !st.SameContent(&want) {
		t.Errorf("got %+v", st)
	}
}

// The peer types birdsock decodes are CalicoNodeStatus's.
func TestPeerTypes(t *testing.T) {
	if birdsock.PeerTypeNodeMesh != api.BGPPeerTypeNodeMesh || birdsock.PeerTypeNodePeer != api.BGPPeerTypeNodePeer || birdsock.PeerTypeGlobalPeer != api.BGPPeerTypeGlobalPeer {
		t.Fatal("peer type names differ between birdsock and api")
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it):\n%s", path, got)
	}
}

func TestSessionStates(t *testing.T) {
	for _, tt := range []struct{ state, info, want string }{
		{"up", "Established", "Established"},
		{"start", "Passive       Socket: Connection closed", "Active"},
		{"start", "Connect", "Connect"},
		{"start", "OpenSent", "OpenSent"},
		{"start", "Idle          BGP Error: Bad peer AS", "Idle"},
		{"start", "", "Active"},
		{"down", "Error: Hold timer expired", "Idle"},
		{"down", "", "Idle"},
	} {
		st := bgpStatus([]birdsock.Protocol{{Name: "Mesh_10_0_0_2", Proto: "BGP", State: tt.state, Info: tt.info}}, nil)
		if len(st.PeersV4) != 1 || st.PeersV4[0].State != tt.want {
			t.Errorf("%s %q: %+v, want %s", tt.state, tt.info, st.PeersV4, tt.want)
		}
	}
}

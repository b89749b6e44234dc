package birdsock

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/roostnet/roost/birdctl/birdsock/birdtest"
)

// transcript is a recorded control-socket session from testdata.
type transcript = birdtest.Recording

func loadTranscript(t testing.TB, name string) *transcript {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return birdtest.ParseRecording(string(data))
}

// reply returns the parsed reply recorded for cmd.
func reply(t testing.TB, tr *transcript, cmd string) *Reply {
	t.Helper()
	raw, ok := tr.Replies[cmd]
	if !ok {
		t.Fatalf("no recorded reply for %q", cmd)
	}
	rep, err := ParseReply(raw)
	if err != nil {
		t.Fatalf("recorded reply for %q: %v", cmd, err)
	}
	return rep
}

// transcriptHandler replays tr, answering unknown commands like BIRD does.
func transcriptHandler(tr *transcript) func(c *birdtest.Conn, cmd string) bool {
	return func(c *birdtest.Conn, cmd string) bool {
		raw, ok := tr.Replies[cmd]
		if !ok {
			raw = "9001 syntax error\n"
		}
		return c.Send(raw) == nil
	}
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/birdctl/birdsock/birdtest"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/etcd"
	"github.com/roostnet/roost/internal/etcdtest"
)

// fakeBird answers BIRD's control protocol for confd's reloads: each
// `configure` first checks the live files with `bird -p`, so every
// configuration confd hands to BIRD is known to parse.
type fakeBird struct {
	bird, cfg string
	mu        sync.Mutex
	reloads   int
	failures  []string
}

// serve starts the fake BIRD; its socket is the server's Socket.
func (f *fakeBird) serve(t *testing.T) *birdtest.Server {
	return birdtest.Serve(t, "0001 BIRD 2.0.12 ready.\n", 0, func(c *birdtest.Conn, cmd string) bool {
		if !strings.HasPrefix(cmd, "configure") {
			return c.Send("0000 \n") == nil
		}
		out, err := exec.Command(f.bird, "-p", "-c", f.cfg).CombinedOutput()
		f.mu.Lock()
		f.reloads++
		if err != nil {
			f.failures = append(f.failures, fmt.Sprintf("%v: %s", err, out))
		}
		f.mu.Unlock()
		if err != nil {
			return c.Send(fmt.Sprintf("8002 %s\n", strings.TrimSpace(string(out)))) == nil
		}
		return c.Send(fmt.Sprintf("0002-Reading configuration from %s\n0003 Reconfigured\n", f.cfg)) == nil
	})
}

// etcd killed during churn, the short form of the fault run: a confd
// daemon follows 300 changes while etcd is killed three times; every
// configuration it checks and hands to BIRD parses (`bird -p`), and its
// final files are byte-identical to `confd --onetime` over the same data.
func TestEtcdKilledDuringChurn(t *testing.T) {
	bird := birdBin(t)
	e := etcdtest.Start(t)
	dir := t.TempDir()
	out, once := filepath.Join(dir, "out"), filepath.Join(dir, "once")
	fb := &fakeBird{bird: bird, cfg: filepath.Join(out, "bird.cfg")}
	socket := fb.serve(t).Socket

	ds, err := etcd.New(context.Background(), datastore.Config{Type: datastore.TypeEtcd, EtcdEndpoints: e.Endpoint()})
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	// write retries while etcd is down.
	write := func(op datastore.Op) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := ds.Txn(ctx, op)
			cancel()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("write %s: %v", op.Key, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	put := func(o api.Resource) { write(datastore.Op{Type: datastore.OpPut, Value: o}) }
	del := func(key string) { write(datastore.Op{Type: datastore.OpDelete, Key: key}) }
	mkNode := func(name, ip string, as uint32) *api.Node {
		n := &api.Node{}
		n.Metadata.Name = name
		n.Spec.BGP = &api.NodeBGPSpec{IPv4Address: ip + "/24"}
		if as != 0 {
			a := api.ASNumber(as)
			n.Spec.BGP.ASNumber = &a
		}
		return n
	}
	global := func(as uint32, mesh bool) *api.BGPConfiguration {
		c := &api.BGPConfiguration{}
		c.Metadata.Name = api.DefaultBGPConfigName
		a := api.ASNumber(as)
		c.Spec.ASNumber, c.Spec.NodeToNodeMeshEnabled = &a, &mesh
		return c
	}
	put(global(64512, true))
	put(mkNode("node1", "10.203.0.1", 0))
	pool := &api.IPPool{}
	pool.Metadata.Name = "pool1"
	pool.Spec.CIDR = "10.204.0.0/16"
	put(pool)

	var logs bytes.Buffer
	cmd := exec.Command(confdBin, "--nodename=node1", "--etcd-endpoints="+e.Endpoint(), "--output-dir="+out,
		"--bird-socket="+socket, "--retry-min=20ms", "--retry-max=200ms")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("confd output:\n%s", logs.String())
		}
	})
	waitFor(t, "first render", func() bool { _, err := os.Stat(fb.cfg); return err == nil })

	// 300 changes: nodes, global peers, the global configuration, a pool
	// and block affinities come, change and go; etcd is killed at 75, 150
	// and 225 and comes back about a second later, mid-stream.
	rng := rand.New(rand.NewPCG(18, 1))
	nodes, peers := map[string]bool{}, map[string]bool{}
	pick := func(m map[string]bool) string {
		for k := range m {
			return k
		}
		return ""
	}
	var restarts sync.WaitGroup
	for i := range 300 {
		time.Sleep(10 * time.Millisecond) // a stream of changes, not one burst
		if i == 75 || i == 150 || i == 225 {
			e.Stop()
			restarts.Add(1)
			go func() { defer restarts.Done(); time.Sleep(time.Second); e.StartAgain() }()
		}
		switch r := rng.IntN(10); {
		case r < 4 || len(nodes) == 0:
			name := fmt.Sprintf("n%d", i)
			nodes[name] = true
			put(mkNode(name, fmt.Sprintf("10.203.%d.%d", 1+i/200, 1+i%200), uint32(64512+rng.IntN(3))))
		case r < 5:
			name := pick(nodes)
			delete(nodes, name)
			del(datastore.ResourceKey(api.KindNode, "", name))
		case r < 6:
			name := pick(nodes)
			put(mkNode(name, fmt.Sprintf("10.205.%d.%d", 1+i/200, 1+i%200), 0))
		case r < 8:
			name := fmt.Sprintf("p%d", i%20)
			if peers[name] && rng.IntN(2) == 0 {
				delete(peers, name)
				del(datastore.ResourceKey(api.KindBGPPeer, "", name))
				break
			}
			peers[name] = true
			p := &api.BGPPeer{}
			p.Metadata.Name = name
			p.Spec.PeerIP = fmt.Sprintf("172.16.%d.%d", i%20, 1+rng.IntN(200))
			p.Spec.ASNumber = api.ASNumber(65000 + rng.IntN(100))
			put(p)
		case r < 9:
			put(global(uint32(64512+rng.IntN(3)), rng.IntN(4) != 0))
		default:
			a := &api.BlockAffinity{}
			cidr := fmt.Sprintf("10.204.%d.0/26", rng.IntN(8))
			a.Metadata.Name = "node1-" + strings.ReplaceAll(cidr, "/", "-")
			a.Spec = api.BlockAffinitySpec{Node: "node1", CIDR: cidr, State: api.AffinityConfirmed}
			if rng.IntN(3) == 0 {
				a.Spec.State = api.AffinityPending
			}
			put(a)
		}
	}
	restarts.Wait()

	// The contract: --onetime over the final data.
	c := exec.Command(confdBin, "--onetime", "--sync-only", "--nodename=node1", "--etcd-endpoints="+e.Endpoint(), "--output-dir="+once)
	if b, err := c.CombinedOutput(); err != nil {
		t.Fatalf("confd --onetime: %v\n%s", err, b)
	}
	want := readDir(t, once)
	var got map[string]string
	deadline := time.Now().Add(30 * time.Second)
	for {
		got = readDir(t, out)
		if maps.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			for name, w := range want {
				if got[name] != w {
					t.Errorf("%s differs from --onetime:\n--- daemon\n%s\n--- onetime\n%s", name, got[name], w)
				}
			}
			t.Fatal("the daemon's final configuration is not the --onetime one")
		}
		time.Sleep(100 * time.Millisecond)
	}
	fb.mu.Lock()
	defer fb.mu.Unlock()
	if len(fb.failures) > 0 {
		t.Fatalf("%d of %d configurations handed to BIRD do not parse; first: %s", len(fb.failures), fb.reloads, fb.failures[0])
	}
	if fb.reloads < 10 {
		t.Fatalf("only %d reloads for 300 changes", fb.reloads)
	}
	t.Logf("300 changes, 3 etcd kills: %d reloads, each parsed by bird -p; final files identical to --onetime", fb.reloads)
}

func readDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, en := range ents {
		if en.IsDir() || strings.HasPrefix(en.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, en.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[en.Name()] = string(b)
	}
	return out
}

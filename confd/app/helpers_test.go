package app

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/birdctl/birdsock"
	"github.com/roostnet/roost/confd/config"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/etcd"
	"github.com/roostnet/roost/internal/etcdtest"
)

// requireRootAndBird skips without root or bird, but fails under CI.
func requireRootAndBird(t *testing.T) string {
	t.Helper()
	fail := func(msg string) {
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + " (CI=true requires it)")
		}
		t.Skip(msg)
	}
	if os.Geteuid() != 0 {
		fail("needs root for a network namespace")
	}
	bird, err := exec.LookPath("bird")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/bird"); serr != nil {
			fail("bird is not installed")
		}
		bird = "/usr/sbin/bird"
	}
	return bird
}

var nsSeq atomic.Int32

// birdNS runs BIRD inside a fresh network namespace, so the rendered
// config's kernel protocols and BGP sessions stay away from the host.
type birdNS struct {
	t      *testing.T
	ns     string
	bin    string
	cfg    string
	socket string
	cmd    *exec.Cmd
	done   chan struct{}
	log    string
}

func newBirdNS(t *testing.T, bin, cfg, socket string) *birdNS {
	t.Helper()
	ns := fmt.Sprintf("rcd%d-%d", os.Getpid()%100000, nsSeq.Add(1))
	_ = exec.Command("ip", "netns", "del", ns).Run()
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	b := &birdNS{t: t, ns: ns, bin: bin, cfg: cfg, socket: socket, log: filepath.Join(filepath.Dir(socket), "bird.log")}
	t.Cleanup(func() {
		b.stop()
		_ = exec.Command("ip", "netns", "del", ns).Run()
		if t.Failed() {
			if data, err := os.ReadFile(b.log); err == nil {
				t.Logf("bird log:\n%s", data)
			}
		}
	})
	exec.Command("ip", "-n", ns, "link", "set", "lo", "up").Run()
	return b
}

func (b *birdNS) start() {
	b.t.Helper()
	logf, err := os.OpenFile(b.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		b.t.Fatal(err)
	}
	b.cmd = exec.Command("ip", "netns", "exec", b.ns, b.bin, "-f", "-c", b.cfg, "-s", b.socket)
	b.cmd.Stdout, b.cmd.Stderr = logf, logf
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := b.cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	b.done = make(chan struct{})
	go func() { b.cmd.Wait(); logf.Close(); close(b.done) }()
	waitFor(b.t, "BIRD socket", func() bool {
		c, err := birdsock.Dial(context.Background(), b.socket)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

func (b *birdNS) stop() {
	if b.cmd == nil || b.cmd.Process == nil {
		return
	}
	select {
	case <-b.done:
		return
	default:
	}
	b.cmd.Process.Kill()
	<-b.done
	os.Remove(b.socket)
}

// configure makes BIRD load cfg (birdc configure "cfg").
func (b *birdNS) configure(cfg string) {
	b.t.Helper()
	c, err := birdsock.Dial(context.Background(), b.socket)
	if err != nil {
		b.t.Fatal(err)
	}
	defer c.Close()
	if err := c.Configure(context.Background(), cfg); err != nil {
		b.t.Fatalf("configure %s: %v", cfg, err)
	}
	b.cfg = cfg
}

// protocols lists BIRD's protocol names.
func (b *birdNS) protocols() map[string]bool {
	c, err := birdsock.Dial(context.Background(), b.socket)
	if err != nil {
		return nil
	}
	defer c.Close()
	ps, err := c.Protocols(context.Background())
	if err != nil {
		return nil
	}
	out := map[string]bool{}
	for _, p := range ps {
		out[p.Name] = true
	}
	return out
}

func (b *birdNS) lastReconfig() time.Time {
	c, err := birdsock.Dial(context.Background(), b.socket)
	if err != nil {
		b.t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Status(context.Background())
	if err != nil {
		b.t.Fatal(err)
	}
	return st.LastReconfig
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// env is one confd under test against a real etcd.
type env struct {
	t      *testing.T
	etcd   *etcdtest.Etcd
	ds     datastore.Datastore
	cfg    *config.Config
	app    *App
	out    string
	cancel context.CancelFunc
	done   chan error
	stop   func()
}

func newEnv(t *testing.T, mutate func(*config.Config)) *env {
	t.Helper()
	e := &env{t: t, etcd: etcdtest.Start(t), out: t.TempDir()}
	ds, err := etcd.New(context.Background(), datastore.Config{Type: datastore.TypeEtcd, EtcdEndpoints: e.etcd.Endpoint()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ds.Close() })
	e.ds = ds
	e.cfg = &config.Config{
		NodeName:   "node1",
		Datastore:  datastore.Config{Type: datastore.TypeEtcd, EtcdEndpoints: e.etcd.Endpoint()},
		OutputDir:  e.out,
		BirdSocket: filepath.Join(e.out, "bird.ctl"),
		RetryMin:   20 * time.Millisecond,
		RetryMax:   200 * time.Millisecond,
		LogLevel:   "warning",
	}
	if mutate != nil {
		mutate(e.cfg)
	}
	return e
}

func (e *env) start() {
	e.t.Helper()
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	if testing.Verbose() {
		log.SetLevel(logrus.InfoLevel)
	} else {
		log.SetOutput(io.Discard)
	}
	a, err := New(context.Background(), e.cfg, log)
	if err != nil {
		e.t.Fatal(err)
	}
	e.app = a
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	done := make(chan error, 1)
	e.done = done
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				e.t.Error("confd did not stop")
			}
			a.Close()
		})
	}
	e.t.Cleanup(e.stop)
}

// restart stops confd and starts a fresh one with the same settings and
// output directory, as a restarted process does.
func (e *env) restart() {
	e.t.Helper()
	e.stop()
	e.start()
}

// events is how many datastore events of type typ (e.g. "added") the
// runner has taken in, from confd's own metric: a test that asserts that
// something did not happen first waits for the event that could cause it.
func (e *env) events(typ string) int {
	e.t.Helper()
	mfs, err := e.app.metrics.Registry.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "roost_confd_datastore_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "type" && l.GetValue() == typ {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return int(n)
}

func (e *env) put(objs ...api.Resource) {
	e.t.Helper()
	for _, o := range objs {
		kv, err := e.ds.Get(context.Background(), mustKey(e.t, o))
		if err == nil {
			kv.Value = o
			if _, err := e.ds.Update(context.Background(), kv); err != nil {
				e.t.Fatal(err)
			}
			continue
		}
		if _, err := e.ds.Create(context.Background(), o); err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e *env) del(o api.Resource) {
	e.t.Helper()
	if err := e.ds.Delete(context.Background(), mustKey(e.t, o), 0); err != nil {
		e.t.Fatal(err)
	}
}

func mustKey(t *testing.T, o api.Resource) string {
	k, err := datastore.KeyFor(o)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (e *env) file(name string) string {
	b, _ := os.ReadFile(filepath.Join(e.out, name))
	return string(b)
}

func node(name, ip string) *api.Node {
	n := &api.Node{}
	n.Metadata.Name = name
	n.Spec.BGP = &api.NodeBGPSpec{IPv4Address: ip + "/24"}
	return n
}

func globalConfig() *api.BGPConfiguration {
	c := &api.BGPConfiguration{}
	c.Metadata.Name = "default"
	api.Default(c)
	return c
}

func meshName(ip string) string { return "Mesh_" + strings.ReplaceAll(ip, ".", "_") }

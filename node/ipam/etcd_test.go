package ipam

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/api"

	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/etcd"
	"github.com/roostnet/roost/internal/etcdtest"
)

// The etcd backend runs every backend test against a real etcd (skipped
// without an etcd binary, a failure under CI=true).
func init() {
	extraBackends = append(extraBackends, backend{"etcd", openEtcd})
}

func openEtcd(t *testing.T) (datastore.Datastore, func(string) []byte) {
	ds, raw, _ := openEtcdAt(t)
	return ds, raw
}

func openEtcdAt(t *testing.T) (datastore.Datastore, func(string) []byte, string) {
	e := etcdtest.Start(t)
	ds, err := etcd.New(context.Background(), datastore.Config{Type: datastore.TypeEtcd, EtcdEndpoints: e.Endpoint()},
		etcd.WithLogger(logrus.NewEntry(quietLog().(*logrus.Logger))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ds.Close() })
	cli := e.Client(t)
	raw := func(key string) []byte {
		resp, err := cli.Get(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 0 {
			return nil
		}
		return resp.Kvs[0].Value
	}
	return ds, raw, e.Endpoint()
}

// TestConcurrentProcesses runs claimers in separate processes (this test
// binary, re-executed), two of them for the same node, against one etcd.
func TestConcurrentProcesses(t *testing.T) {
	ds, _, endpoint := openEtcdAt(t)
	mkPool(t, ds, "p1", "10.70.0.0/22", 29, api.EncapNever, api.EncapNever)
	nodes := []string{"n0", "n0", "n1", "n2"}
	const count = 12
	type child struct {
		cmd *exec.Cmd
		out *bytes.Buffer
	}
	var children []child
	for i, node := range nodes {
		cmd := exec.Command(os.Args[0], "-test.run=^TestIPAMChildProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), "ROOST_IPAM_CHILD=1", "ROOST_IPAM_ETCD="+endpoint,
			"ROOST_IPAM_NODE="+node, fmt.Sprintf("ROOST_IPAM_COUNT=%d", count), fmt.Sprintf("ROOST_IPAM_ID=%d", i))
		out := &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		children = append(children, child{cmd, out})
	}
	seen := map[string]string{}
	for i, c := range children {
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, c.out)
		}
		n := 0
		for _, line := range strings.Split(c.out.String(), "\n") {
			ip, ok := strings.CutPrefix(line, "ASSIGNED ")
			if !ok {
				continue
			}
			n++
			if prev, dup := seen[ip]; dup {
				t.Fatalf("%s assigned to %s and child %d", ip, prev, i)
			}
			seen[ip] = fmt.Sprint("child ", i)
		}
		if n != count {
			t.Fatalf("child %d assigned %d, want %d:\n%s", i, n, count, c.out)
		}
	}
	checkConsistent(t, ds)
}

// TestIPAMChildProcess is the child side of TestConcurrentProcesses.
func TestIPAMChildProcess(t *testing.T) {
	if os.Getenv("ROOST_IPAM_CHILD") != "1" {
		t.Skip("child process of TestConcurrentProcesses")
	}
	ctx := context.Background()
	ds, err := etcd.New(ctx, datastore.Config{Type: datastore.TypeEtcd, EtcdEndpoints: os.Getenv("ROOST_IPAM_ETCD")},
		etcd.WithLogger(logrus.NewEntry(quietLog().(*logrus.Logger))))
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	node := os.Getenv("ROOST_IPAM_NODE")
	count, _ := strconv.Atoi(os.Getenv("ROOST_IPAM_COUNT"))
	c := New(ds, node, WithLogger(quietLog()), WithAttempts(1000))
	for i := range count {
		h := fmt.Sprintf("%s-p%s-%d", node, os.Getenv("ROOST_IPAM_ID"), i)
		ip, err := c.AutoAssign(ctx, Request{Handle: h, Attrs: map[string]string{AttrNode: node}})
		if err != nil {
			t.Fatalf("%s: %v", h, err)
		}
		fmt.Printf("ASSIGNED %s\n", ip)
	}
}

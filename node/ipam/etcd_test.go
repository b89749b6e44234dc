package ipam

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
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

// TestCalicoIPAMConfig: the IPAM configuration as `calicoctl ipam
// configure --strictaffinity=true` writes it, raw at /calico/ipam/v2/config,
// stops borrowing; an undecodable value stops allocation with an error
// naming the key instead of falling back to the defaults.
func TestCalicoIPAMConfig(t *testing.T) {
	e := etcdtest.Start(t)
	ds, err := etcd.New(context.Background(), datastore.Config{Type: datastore.TypeEtcd, EtcdEndpoints: e.Endpoint()},
		etcd.WithLogger(logrus.NewEntry(quietLog().(*logrus.Logger))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ds.Close() })
	cli := e.Client(t)
	ctx := ctxT(t)
	put := func(v string) {
		t.Helper()
		if _, err := cli.Put(ctx, "/calico/ipam/v2/config", v); err != nil {
			t.Fatal(err)
		}
	}
	mkPool(t, ds, "p1", "10.57.0.0/30", 31, api.EncapNever, api.EncapNever)
	c1, c2 := New(ds, "n1", WithLogger(quietLog())), New(ds, "n2", WithLogger(quietLog()))
	for i, c := range []*Client{c1, c1, c2, c2} {
		if _, err := c.AutoAssign(ctx, Request{Handle: fmt.Sprintf("h%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c1.ReleaseByHandle(ctx, "h2"); err != nil { // a free address in n2's block
		t.Fatal(err)
	}
	put(`{"strict_affinity":true,"auto_allocate_blocks":true}`)
	if _, err := c1.AutoAssign(ctx, Request{Handle: "x"}); err == nil || !strings.Contains(err.Error(), "strictAffinity") {
		t.Fatalf("strict affinity from Calico's key: %v", err)
	}
	put(`{"strict_affinity":`)
	if _, err := c1.AutoAssign(ctx, Request{Handle: "x"}); err == nil || !strings.Contains(err.Error(), "/calico/ipam/v2/config") {
		t.Fatalf("undecodable IPAM configuration: %v", err)
	}
	put(`{"strict_affinity":false,"auto_allocate_blocks":true}`)
	if ip, err := c1.AutoAssign(ctx, Request{Handle: "x"}); err != nil || ip != netip.MustParseAddr("10.57.0.2") {
		t.Fatalf("borrowing allowed again: %s %v", ip, err)
	}
}

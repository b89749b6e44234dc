package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdServer is a throwaway etcd on free loopback ports, started the way
// internal/etcdtest starts one (which needs a testing.TB): data in a
// temporary directory, its own process group, killed with the harness.
type etcdServer struct {
	URL  string
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

func etcdBinary() (string, error) {
	if fi, err := os.Stat("/usr/bin/etcd"); err == nil && !fi.IsDir() {
		return "/usr/bin/etcd", nil
	}
	p, err := exec.LookPath("etcd")
	if err != nil {
		return "", errors.New("etcd not found (apt-get install etcd-server, or `make deps`)")
	}
	return p, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startEtcd runs etcd with its data under dir (on disk: etcd fsyncs its
// WAL, as in production).
func startEtcd(dir string) (*etcdServer, error) {
	bin, err := etcdBinary()
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		cport, err1 := freePort()
		pport, err2 := freePort()
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		e := &etcdServer{
			URL:  fmt.Sprintf("http://127.0.0.1:%d", cport),
			dir:  filepath.Join(dir, fmt.Sprintf("etcd-%d", attempt)),
			done: make(chan struct{}),
		}
		e.log = e.dir + ".log"
		peer := fmt.Sprintf("http://127.0.0.1:%d", pport)
		args := []string{
			"--name", "default", "--data-dir", e.dir,
			"--listen-client-urls", e.URL, "--advertise-client-urls", e.URL,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", "default=" + peer, "--initial-cluster-state", "new",
			"--logger", "zap", "--log-outputs", "stderr",
			"--heartbeat-interval", "10", "--election-timeout", "100",
			"--enable-pprof=false",
		}
		logf, err := os.Create(e.log)
		if err != nil {
			return nil, err
		}
		e.cmd = exec.Command(bin, args...)
		e.cmd.Stdout, e.cmd.Stderr = logf, logf
		e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := e.cmd.Start(); err != nil {
			logf.Close()
			return nil, err
		}
		go func() { e.cmd.Wait(); logf.Close(); close(e.done) }()
		if lastErr = e.waitHealthy(); lastErr == nil {
			return e, nil
		}
		e.Stop()
		if b, _ := os.ReadFile(e.log); !strings.Contains(string(b), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("etcd did not start: %w", lastErr)
}

func (e *etcdServer) waitHealthy() error {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-e.done:
			return errors.New("etcd exited during startup (see " + e.log + ")")
		default:
		}
		if resp, err := c.Get(e.URL + "/health"); err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.Contains(string(b), `"health":"true"`) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("etcd not healthy after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills etcd's process group and removes its data.
func (e *etcdServer) Stop() {
	if e == nil || e.cmd == nil || e.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
	<-e.done
	os.RemoveAll(e.dir)
	os.Remove(e.log)
	e.cmd = nil
}

func (e *etcdServer) Client() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints: []string{e.URL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		MaxCallSendMsgSize: 16 << 20,
	})
}

// wipe deletes everything under /calico/ and compacts, so a scenario
// starts from an empty datastore with a small history.
func wipe(ctx context.Context, cli *clientv3.Client) error {
	resp, err := cli.Delete(ctx, "/calico/", clientv3.WithPrefix())
	if err != nil {
		return err
	}
	_, err = cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical())
	return err
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/confd/app"
	"github.com/roostnet/roost/confd/config"
)

// confd is either bin/confd as a child process (the default: CPU and
// memory are then confd's alone) or the same code in this process
// (-inproc: config.Load + app.New + Run, exactly what confd/main.go does;
// for profiling with -cpuprofile, CPU then includes the harness).
type confd interface {
	Pid() int
	Metrics() string
	Exited() bool
	Log() string
	Stop()
}

func (p *confdProc) Metrics() string { return p.metrics }

func launchConfd(o confdOpts, inproc bool) (confd, error) {
	if !inproc {
		return startConfd(o)
	}
	return startInproc(o)
}

type inprocConfd struct {
	cancel  context.CancelFunc
	done    chan error
	metrics string
	logBuf  *bytes.Buffer
}

func startInproc(o confdOpts) (*inprocConfd, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	args := []string{
		"--nodename", thisNode,
		"--datastore-type", "etcdv3", "--etcd-endpoints", o.etcd,
		"--output-dir", o.outDir,
		"--metrics-addr", fmt.Sprintf("127.0.0.1:%d", port),
		"--retry-min", "50ms", "--retry-max", "200ms",
		"--secrets-dir", filepath.Join(o.logDir, "secrets"),
	}
	if o.syncOnly {
		args = append(args, "--sync-only")
	} else {
		args = append(args, "--bird-socket", o.socket)
	}
	args = append(args, o.extra...)
	cfg, err := config.Load(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		return nil, err
	}
	log := logrus.New()
	buf := &bytes.Buffer{}
	log.SetOutput(buf)
	log.SetLevel(logrus.WarnLevel)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		cancel()
		return nil, err
	}
	c := &inprocConfd{cancel: cancel, done: make(chan error, 1), metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", port), logBuf: buf}
	go func() { c.done <- a.Run(ctx); a.Close() }()
	return c, nil
}

func (c *inprocConfd) Pid() int        { return os.Getpid() }
func (c *inprocConfd) Metrics() string { return c.metrics }
func (c *inprocConfd) Log() string     { return c.logBuf.String() }
func (c *inprocConfd) Exited() bool {
	select {
	case err := <-c.done:
		c.done <- err
		return true
	default:
		return false
	}
}
func (c *inprocConfd) Stop() {
	c.cancel()
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
	}
}

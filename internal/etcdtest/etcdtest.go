// Package etcdtest runs a real, throwaway etcd server for tests.
//
// Start launches /usr/bin/etcd (or etcd from PATH) on free loopback ports
// with its data in t.TempDir(), waits until it is healthy and stops it when
// the test ends, even when the test fails. Without an etcd binary the test
// is skipped, except under CI=true where that is a failure: a CI that
// lacks etcd must not pass silently.
//
// etcd's own log goes to a file; its tail is printed when the test fails.
package etcdtest

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Options tune the server. The zero value gives a plain-HTTP etcd.
type Options struct {
	// TLS serves clients over HTTPS with these files (paths). With
	// ClientCertAuth, clients must present a certificate signed by CAFile.
	TLS *TLS
	// ExtraArgs are appended to etcd's command line.
	ExtraArgs []string
}

// TLS holds the server side of a TLS setup plus a client certificate the
// helper itself uses for health checks, Client and Compact.
type TLS struct {
	CAFile         string // trusted CA, for client certificates and for the helper
	CertFile       string // server certificate (must be valid for 127.0.0.1)
	KeyFile        string
	ClientCertAuth bool
	// ClientCertFile/ClientKeyFile: needed when ClientCertAuth is set.
	ClientCertFile string
	ClientKeyFile  string
}

// Etcd is one running (or stopped) etcd server.
type Etcd struct {
	t       testing.TB
	bin     string
	opts    Options
	dataDir string
	logPath string

	clientURL string
	peerURL   string

	tlsConfig *tls.Config // client side, nil for plain HTTP

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has been waited for

	userMu   sync.Mutex
	username string
	password string
}

const (
	startTimeout = 30 * time.Second
	bindRetries  = 5
	logTailLines = 60
)

// defaultBinary is where Debian's etcd-server package installs etcd.
var defaultBinary = "/usr/bin/etcd"

// Binary finds the etcd executable: /usr/bin/etcd, else etcd in PATH.
func Binary() (string, error) {
	if fi, err := os.Stat(defaultBinary); err == nil && !fi.IsDir() {
		return defaultBinary, nil
	}
	p, err := exec.LookPath("etcd")
	if err != nil {
		return "", fmt.Errorf("etcd binary not found (neither /usr/bin/etcd nor etcd in PATH); install it, e.g. apt-get install etcd-server")
	}
	return p, nil
}

// RequireBinary skips the test when etcd is missing, or fails it when the
// environment has CI=true.
func RequireBinary(t testing.TB) string {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		skipOrFail(t, err)
	}
	return bin
}

func skipOrFail(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and %v: a CI run must not skip the etcd tests", err)
		return
	}
	t.Skipf("skipping: %v", err)
}

// Start runs a fresh single-member etcd with plain HTTP.
func Start(t testing.TB) *Etcd {
	t.Helper()
	return StartWithOptions(t, Options{})
}

// StartWithOptions runs a fresh single-member etcd.
func StartWithOptions(t testing.TB, opts Options) *Etcd {
	t.Helper()
	bin := RequireBinary(t)
	dir := t.TempDir()
	e := &Etcd{
		t:       t,
		bin:     bin,
		opts:    opts,
		dataDir: filepath.Join(dir, "data"),
		logPath: filepath.Join(dir, "etcd.log"),
	}
	if opts.TLS != nil {
		cfg, err := clientTLS(opts.TLS)
		if err != nil {
			t.Fatalf("etcdtest: %v", err)
		}
		e.tlsConfig = cfg
	}
	// Registered after t.TempDir, so it runs before the directory goes.
	t.Cleanup(func() {
		e.Stop()
		if t.Failed() {
			e.dumpLog()
		}
	})

	var lastErr error
	for attempt := 0; attempt < bindRetries; attempt++ {
		cport, perr1 := freePort()
		pport, perr2 := freePort()
		if err := errors.Join(perr1, perr2); err != nil {
			t.Fatalf("etcdtest: no free port: %v", err)
		}
		scheme := "http"
		if opts.TLS != nil {
			scheme = "https"
		}
		e.clientURL = fmt.Sprintf("%s://127.0.0.1:%d", scheme, cport)
		e.peerURL = fmt.Sprintf("http://127.0.0.1:%d", pport)
		t0 := time.Now()
		err := e.start()
		if err == nil {
			t.Logf("etcdtest: etcd at %s healthy after %s", e.clientURL, time.Since(t0).Round(time.Millisecond))
			return e
		}
		lastErr = err
		e.Stop()
		if !e.logContains("address already in use") {
			break
		}
		// Someone took a port between our probe and etcd's bind: retry
		// with new ports on a clean data dir.
		_ = os.RemoveAll(e.dataDir)
	}
	t.Fatalf("etcdtest: etcd did not start: %v", lastErr)
	return nil
}

// Endpoint is the client URL, e.g. http://127.0.0.1:43127.
func (e *Etcd) Endpoint() string { return e.clientURL }

// DataDir is the server's data directory.
func (e *Etcd) DataDir() string { return e.dataDir }

// TLSConfig is the client TLS configuration (nil for plain HTTP).
func (e *Etcd) TLSConfig() *tls.Config {
	if e.tlsConfig == nil {
		return nil
	}
	return e.tlsConfig.Clone()
}

// SetAuth makes Client and Compact authenticate (after the test enabled
// etcd authentication); empty user turns it off again.
func (e *Etcd) SetAuth(user, password string) {
	e.userMu.Lock()
	defer e.userMu.Unlock()
	e.username, e.password = user, password
}

func (e *Etcd) args() []string {
	a := []string{
		"--name", "default",
		"--data-dir", e.dataDir,
		"--listen-client-urls", e.clientURL,
		"--advertise-client-urls", e.clientURL,
		"--listen-peer-urls", e.peerURL,
		"--initial-advertise-peer-urls", e.peerURL,
		"--initial-cluster", "default=" + e.peerURL,
		"--initial-cluster-state", "new",
		"--logger", "zap",
		"--log-outputs", "stderr",
		// A single member needs no slack: elect fast after (re)starts.
		"--heartbeat-interval", "10",
		"--election-timeout", "100",
		"--enable-pprof=false",
	}
	if t := e.opts.TLS; t != nil {
		a = append(a, "--cert-file", t.CertFile, "--key-file", t.KeyFile, "--trusted-ca-file", t.CAFile)
		if t.ClientCertAuth {
			a = append(a, "--client-cert-auth")
		}
	}
	return append(a, e.opts.ExtraArgs...)
}

// start launches the process and waits until it answers /health.
func (e *Etcd) start() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cmd != nil {
		return errors.New("already running")
	}
	logf, err := os.OpenFile(e.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== etcdtest: starting %s %s\n", e.bin, strings.Join(e.args(), " "))
	cmd := exec.Command(e.bin, e.args()...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // so Stop can kill the whole group
		Pdeathsig: syscall.SIGKILL, // no orphan if the test binary dies
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", e.bin, err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		logf.Close()
		close(done)
	}()
	e.cmd, e.done = cmd, done

	deadline := time.Now().Add(startTimeout)
	client := e.httpClient()
	for {
		select {
		case <-done:
			return fmt.Errorf("etcd exited during startup: %v", waitErr)
		default:
		}
		if e.healthy(client) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd at %s not healthy after %s", e.clientURL, startTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *Etcd) httpClient() *http.Client {
	tr := &http.Transport{TLSClientConfig: e.TLSConfig(), DisableKeepAlives: true}
	return &http.Client{Transport: tr, Timeout: 2 * time.Second}
}

func (e *Etcd) healthy(c *http.Client) bool {
	resp, err := c.Get(e.clientURL + "/health")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode == http.StatusOK && strings.Contains(string(b), `"health":"true"`)
}

// Stop kills the server's process group and waits for it. Safe to call
// more than once and on a stopped server.
func (e *Etcd) Stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cmd == nil {
		return
	}
	if p := e.cmd.Process; p != nil {
		_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
		_ = p.Kill()
	}
	<-e.done
	e.cmd, e.done = nil, nil
}

// Restart stops the server and starts it again with the same data
// directory and ports: clients reconnect to the same endpoint and find
// their data and revisions.
func (e *Etcd) Restart() {
	e.t.Helper()
	e.Stop()
	var err error
	for attempt := 0; attempt < bindRetries; attempt++ {
		if err = e.start(); err == nil {
			return
		}
		e.Stop()
		if !e.logContains("address already in use") {
			break
		}
		time.Sleep(200 * time.Millisecond) // the port may still be held briefly
	}
	e.t.Fatalf("etcdtest: restart failed: %v", err)
}

// StartAgain starts a stopped server (Stop then, later, StartAgain is
// Restart with a gap under the test's control).
func (e *Etcd) StartAgain() {
	e.t.Helper()
	if err := e.start(); err != nil {
		e.t.Fatalf("etcdtest: start failed: %v", err)
	}
}

// ClientConfig is a client configuration for this server (endpoint, TLS,
// credentials set with SetAuth, quiet logger).
func (e *Etcd) ClientConfig() clientv3.Config {
	e.userMu.Lock()
	user, pw := e.username, e.password
	e.userMu.Unlock()
	return clientv3.Config{
		Endpoints:   []string{e.clientURL},
		DialTimeout: 5 * time.Second,
		TLS:         e.TLSConfig(),
		Username:    user,
		Password:    pw,
		Logger:      zap.NewNop(),
	}
}

// Client connects to the server; the client is closed when t ends.
func (e *Etcd) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(e.ClientConfig())
	if err != nil {
		t.Fatalf("etcdtest: client for %s: %v", e.clientURL, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Compact compacts the key space up to the current revision (physically,
// so watches from older revisions fail at once) and returns that revision.
func (e *Etcd) Compact(t testing.TB) int64 {
	t.Helper()
	c, err := clientv3.New(e.ClientConfig())
	if err != nil {
		t.Fatalf("etcdtest: client for %s: %v", e.clientURL, err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, "etcdtest-compact-probe")
	if err != nil {
		t.Fatalf("etcdtest: get revision: %v", err)
	}
	rev := resp.Header.Revision
	if _, err := c.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("etcdtest: compact to %d: %v", rev, err)
	}
	return rev
}

// Ctl runs etcdctl against the server (API v3, with the helper's TLS
// files) and returns its combined output; it fails the test on error.
func (e *Etcd) Ctl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := e.TryCtl(args...)
	if err != nil {
		t.Fatalf("etcdctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TryCtl is Ctl returning the error instead of failing.
func (e *Etcd) TryCtl(args ...string) (string, error) {
	ctl := filepath.Join(filepath.Dir(e.bin), "etcdctl")
	if _, err := os.Stat(ctl); err != nil {
		if ctl, err = exec.LookPath("etcdctl"); err != nil {
			return "", fmt.Errorf("etcdctl not found next to %s nor in PATH", e.bin)
		}
	}
	full := []string{"--endpoints", e.clientURL, "--dial-timeout", "5s", "--command-timeout", "10s"}
	if t := e.opts.TLS; t != nil {
		full = append(full, "--cacert", t.CAFile)
		if t.ClientCertFile != "" {
			full = append(full, "--cert", t.ClientCertFile, "--key", t.ClientKeyFile)
		}
	}
	full = append(full, args...)
	cmd := exec.Command(ctl, full...)
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (e *Etcd) logContains(s string) bool {
	b, err := os.ReadFile(e.logPath)
	return err == nil && strings.Contains(string(b), s)
}

// dumpLog prints the last lines of etcd's log into the test output.
func (e *Etcd) dumpLog() {
	f, err := os.Open(e.logPath)
	if err != nil {
		return
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 2*logTailLines {
			lines = lines[len(lines)-logTailLines:]
		}
	}
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	e.t.Logf("etcdtest: last %d lines of %s:\n%s", len(lines), e.logPath, strings.Join(lines, "\n"))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func clientTLS(t *TLS) (*tls.Config, error) {
	pem, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", t.CAFile)
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if t.ClientCertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.ClientCertFile, t.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("client key pair: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

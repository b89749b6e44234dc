// Package birdtest runs a real BIRD daemon for tests, in a temporary
// directory with its own control socket.
//
// Tests skip when no bird binary is found, except when the environment has
// CI=true: there a missing bird fails the test, so CI cannot pass by
// silently skipping. Set BIRD to use a binary outside PATH and /usr/sbin.
//
// Configurations must not contain a kernel protocol (it would change the
// host's routing table); device, static, direct and BGP peering on loopback
// addresses are fine.
package birdtest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// startTimeout bounds how long Start waits for the control socket.
const startTimeout = 15 * time.Second

// Bird is a running bird process.
type Bird struct {
	Dir        string // temporary directory holding config, socket, pid file and log
	Socket     string // control socket path
	ConfigPath string

	t        testing.TB
	bin      string
	cmd      *exec.Cmd
	logPath  string
	done     chan struct{} // closed when the process has exited
	waitErr  error
	stopOnce sync.Once
}

// Binary returns the path of the bird executable.
func Binary() (string, error) {
	if p := os.Getenv("BIRD"); p != "" {
		return exec.LookPath(p)
	}
	if p, err := exec.LookPath("bird"); err == nil {
		return p, nil
	}
	// /usr/sbin is often missing from a non-root PATH.
	if _, err := os.Stat("/usr/sbin/bird"); err == nil {
		return "/usr/sbin/bird", nil
	}
	return "", errors.New("bird not found in $BIRD, PATH or /usr/sbin/bird")
}

// Start writes config, starts `bird -f` with it and waits until the control
// socket answers. The process is killed in t.Cleanup, also when the test
// fails; the daemon's log is then printed.
func Start(t testing.TB, config string) *Bird {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("birdtest: %v; CI=true requires BIRD (install the bird2 package)", err)
		}
		t.Skipf("birdtest: %v; install the bird2 package to run this test", err)
	}
	dir := t.TempDir()
	b := &Bird{
		Dir:        dir,
		Socket:     filepath.Join(dir, "bird.ctl"),
		ConfigPath: filepath.Join(dir, "bird.conf"),
		t:          t,
		logPath:    filepath.Join(dir, "bird.log"),
		done:       make(chan struct{}),
	}
	// Unix socket paths are limited to 108 bytes; long test names and
	// TMPDIRs can exceed that.
	if len(b.Socket) > 100 {
		short, err := os.MkdirTemp("", "bird")
		if err != nil {
			t.Fatalf("birdtest: %v", err)
		}
		t.Cleanup(func() { os.RemoveAll(short) })
		b.Socket = filepath.Join(short, "bird.ctl")
	}
	if err := os.WriteFile(b.ConfigPath, []byte(config), 0o644); err != nil {
		t.Fatalf("birdtest: %v", err)
	}
	b.bin = bin
	t.Cleanup(func() {
		b.Stop()
		if t.Failed() {
			t.Logf("birdtest: bird log (%s):\n%s", b.logPath, b.Log())
		}
	})
	b.start()
	return b
}

// start runs bird on b's files and waits until its socket answers.
func (b *Bird) start() {
	t := b.t
	t.Helper()
	logf, err := os.OpenFile(b.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("birdtest: %v", err)
	}
	b.done = make(chan struct{})
	b.cmd = exec.Command(b.bin, "-f", "-c", b.ConfigPath, "-s", b.Socket, "-P", filepath.Join(b.Dir, "bird.pid"))
	b.cmd.Stdout, b.cmd.Stderr = logf, logf
	if err := b.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("birdtest: start %s: %v", b.bin, err)
	}
	cmd, done := b.cmd, b.done
	go func() {
		b.waitErr = cmd.Wait()
		logf.Close()
		close(done)
	}()
	if err := b.waitReady(); err != nil {
		t.Fatalf("birdtest: %v\nlog:\n%s", err, b.Log())
	}
}

// Restart kills bird and starts it again on the same configuration and
// control socket, as a crash and a supervisor's restart would.
func (b *Bird) Restart() {
	b.t.Helper()
	b.Stop()
	b.stopOnce = sync.Once{}
	b.start()
}

// waitReady polls the control socket until BIRD sends its hello.
func (b *Bird) waitReady() error {
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-b.done:
			return fmt.Errorf("bird exited during startup: %v", b.waitErr)
		default:
		}
		conn, err := net.DialTimeout("unix", b.Socket, time.Second)
		if err == nil {
			conn.SetDeadline(time.Now().Add(2 * time.Second))
			line, rerr := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if rerr == nil && strings.HasPrefix(line, "0001 ") {
				return nil
			}
			err = fmt.Errorf("hello %q: %v", line, rerr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("control socket %s not ready after %v: %v", b.Socket, startTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Reconfigure replaces the configuration file with config, makes BIRD load
// it and waits until the reconfiguration has finished. BIRD answers "0003
// Reconfigured", or "0004 Reconfiguration in progress" when protocols must
// shut down first; anything else fails the test.
func (b *Bird) Reconfigure(config string) {
	b.t.Helper()
	if err := os.WriteFile(b.ConfigPath, []byte(config), 0o644); err != nil {
		b.t.Fatalf("birdtest: %v", err)
	}
	last, err := b.command("configure")
	if err != nil {
		b.t.Fatalf("birdtest: configure: %v", err)
	}
	if strings.HasPrefix(last, "0003 ") {
		return
	}
	if !strings.HasPrefix(last, "0004 ") {
		b.t.Fatalf("birdtest: configure: %s", last)
	}
	// `show status` ends with "Reconfiguration in progress" until done.
	deadline := time.Now().Add(startTimeout)
	for {
		last, err = b.command("show status")
		if err != nil {
			b.t.Fatalf("birdtest: show status: %v", err)
		}
		if last == "0013 Daemon is up and running" {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("birdtest: reconfiguration not finished after %v: %s", startTimeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// command sends one command on a fresh connection and returns the final
// reply line. It is deliberately independent of package birdsock, whose
// tests use this package.
func (b *Bird) command(cmd string) (string, error) {
	conn, err := net.DialTimeout("unix", b.Socket, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil { // hello
		return "", err
	}
	if _, err := conn.Write([]byte(cmd + "\n")); err != nil {
		return "", err
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) >= 5 && line[4] == ' ' && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "+") {
			return line, nil
		}
	}
}

// Stop kills bird and waits for it to exit. It is safe to call repeatedly.
func (b *Bird) Stop() {
	b.stopOnce.Do(func() {
		b.cmd.Process.Kill()
		select {
		case <-b.done:
		case <-time.After(10 * time.Second):
			b.t.Errorf("birdtest: bird (pid %d) did not exit after SIGKILL", b.cmd.Process.Pid)
		}
	})
}

// Log returns what bird has written to stdout and stderr so far.
func (b *Bird) Log() string {
	data, err := os.ReadFile(b.logPath)
	if err != nil {
		return err.Error()
	}
	return string(data)
}

// FreePorts returns n TCP ports that were free on loopback a moment ago,
// so BGP protocols in tests need neither port 179 nor collide with another
// bird started by a parallel test.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// SocketPath returns a path for a Unix socket that fits sun_path (108
// bytes), in a directory removed when the test ends.
func SocketPath(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if len(p) < 100 {
		return p
	}
	dir, err := os.MkdirTemp("", "bs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, name)
}

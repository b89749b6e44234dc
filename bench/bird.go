package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// birdProc is a real BIRD 2 reading confd's rendered bird.cfg, in a fresh
// network namespace (`unshare -n`: only a loopback interface, left down),
// so its kernel protocols touch nothing of the host and its sessions
// cannot leave: every connect fails at once with "network unreachable".
// The control socket is a path in the harness's temp dir, reachable from
// the host namespace, where confd runs.
type birdProc struct {
	cmd    *exec.Cmd
	done   chan struct{}
	Socket string
	log    string
}

func birdBinary() (string, error) {
	if p, err := exec.LookPath("bird"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/bird"); err == nil {
		return "/usr/sbin/bird", nil
	}
	return "", errors.New("bird not found (apt-get install bird2, or `make deps`)")
}

func startBird(dir, config string) (*birdProc, error) {
	bin, err := birdBinary()
	if err != nil {
		return nil, err
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return nil, errors.New("unshare (util-linux) is needed to run BIRD in its own network namespace")
	}
	b := &birdProc{done: make(chan struct{}), Socket: filepath.Join(dir, "bird.ctl"), log: filepath.Join(dir, "bird.log")}
	os.Remove(b.Socket)
	logf, err := os.Create(b.log)
	if err != nil {
		return nil, err
	}
	// The default templates have no `log` statement, so BIRD logs through
	// syslog(3); without a syslog daemon (as on this test machine) libc
	// falls back to /dev/console, a 9600-baud serial console here that
	// costs ~0.6 ms per line, and BIRD logs a line per protocol on every
	// configure (`debug protocols { states }`). A private mount namespace
	// gives BIRD /dev/null as its console instead. The shell execs bird:
	// the child's pid is bird's.
	b.cmd = exec.Command(unshare, "-n", "-m", "--propagation", "private", "--", "/bin/sh", "-c",
		`mount --bind /dev/null /dev/console && exec "$0" "$@"`,
		bin, "-f", "-c", config, "-s", b.Socket, "-P", filepath.Join(dir, "bird.pid"))
	b.cmd.Stdout, b.cmd.Stderr = logf, logf
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := b.cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() { b.cmd.Wait(); logf.Close(); close(b.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-b.done:
			return nil, fmt.Errorf("bird exited during startup: %s", b.Log())
		default:
		}
		if conn, err := net.DialTimeout("unix", b.Socket, time.Second); err == nil {
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			line, rerr := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if rerr == nil && strings.HasPrefix(line, "0001 ") {
				return b, nil
			}
		}
		if time.Now().After(deadline) {
			b.Stop()
			return nil, errors.New("bird control socket not ready after 60s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (b *birdProc) Pid() int { return b.cmd.Process.Pid }

func (b *birdProc) Log() string {
	d, _ := os.ReadFile(b.log)
	if len(d) > 3000 {
		d = d[len(d)-3000:]
	}
	return string(d)
}

func (b *birdProc) Stop() {
	if b == nil || b.cmd.Process == nil {
		return
	}
	b.cmd.Process.Kill()
	<-b.done
}

// birdParse times `bird -p -c config` (the check confd runs).
func birdParse(config string) (time.Duration, error) {
	bin, err := birdBinary()
	if err != nil {
		return 0, err
	}
	t := time.Now()
	out, err := exec.Command(bin, "-p", "-c", config).CombinedOutput()
	d := time.Since(t)
	if err != nil {
		return 0, fmt.Errorf("bird -p: %v: %s", err, out)
	}
	return d, nil
}

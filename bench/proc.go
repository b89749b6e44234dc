package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat
// (100 on every Linux architecture Go supports).
const clockTicks = 100

// cpuTime is a process's user+system CPU time so far, all threads.
func cpuTime(pid int) (time.Duration, error) { return statCPU(pid, 11, 12) }

// statCPU sums fields of /proc/<pid>/stat, indexed after the command.
func statCPU(pid int, fields ...int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces) in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime 15, cutime and
	// cstime (waited-for children) 16 and 17.
	if len(f) < 15 {
		return 0, errors.New("short stat")
	}
	var sum int64
	for _, i := range fields {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return time.Duration(sum) * time.Second / clockTicks, nil
}

// childCPUTime is the CPU time of a process's waited-for children
// (confd's `bird -p` checks).
func childCPUTime(pid int) (time.Duration, error) { return statCPU(pid, 13, 14) }

// statusKB reads a "VmHWM:" style field of /proc/<pid>/status in kB.
func statusKB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, field+":") {
			fs := strings.Fields(line[len(field)+1:])
			if len(fs) == 0 {
				break
			}
			return strconv.ParseInt(fs[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// confdProc is bin/confd running as a child process.
type confdProc struct {
	cmd     *exec.Cmd
	done    chan struct{}
	metrics string // http://127.0.0.1:port/metrics
	logPath string
	started time.Time
}

type confdOpts struct {
	bin      string
	etcd     string
	outDir   string
	syncOnly bool
	socket   string // BIRD control socket (when not sync-only)
	logDir   string
	extra    []string // more confd flags (e.g. the fixed render spacing)
}

func startConfd(o confdOpts) (*confdProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	args := []string{
		"--nodename", thisNode,
		"--datastore-type", "etcdv3", "--etcd-endpoints", o.etcd,
		"--output-dir", o.outDir,
		"--log-level", "warning",
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
	p := &confdProc{done: make(chan struct{}), metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", port)}
	p.logPath = filepath.Join(o.logDir, fmt.Sprintf("confd-%d.log", time.Now().UnixNano()))
	logf, err := os.Create(p.logPath)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(o.bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.Env = append(os.Environ(), "PATH="+os.Getenv("PATH")+":/usr/sbin:/sbin")
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() { p.cmd.Wait(); logf.Close(); close(p.done) }()
	return p, nil
}

func (p *confdProc) Pid() int { return p.cmd.Process.Pid }

func (p *confdProc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *confdProc) Log() string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func (p *confdProc) Stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	os.Remove(p.logPath)
}

// scrape reads confd's Prometheus text; the map is keyed by series as
// written (name plus labels).
func scrape(ctx context.Context, url string) (map[string]float64, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' || !strings.HasPrefix(line, "roost_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, nil
}

// renders sums roost_confd_renders_total over results.
func renders(m map[string]float64) float64 {
	var n float64
	for k, v := range m {
		if strings.HasPrefix(k, "roost_confd_renders_total") {
			n += v
		}
	}
	return n
}

func reloads(m map[string]float64) float64 {
	return m[`roost_confd_reloads_total{result="ok"}`]
}

func stageSum(m map[string]float64, stage string) float64 {
	return m[`roost_confd_render_stage_seconds_sum{stage="`+stage+`"}`]
}

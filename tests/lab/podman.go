package lab

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Podman is a real container runtime on a lab host: podman with its CNI
// network backend, run inside the host's network namespace, with Roost's
// CNI plugin installed by `roost-node install-cni` into the runtime's own
// plugin and configuration directories. Everything (storage, run state,
// CNI files) lives under Dir; nothing global is touched but the named
// network namespaces podman creates for containers (removed with them).
type Podman struct {
	Host *Host
	Dir  string
	// RunRoot is podman's run state: outside Dir because podman wants
	// its path shorter than 50 characters.
	RunRoot string
	BinDir  string // CNI plugins (roost, roost-ipam)
	NetDir  string // CNI configuration (10-roost.conflist)
	Conf    string // containers.conf
	// Installed is what `roost-node install-cni` said when NewPodman ran
	// it: one line per file, "written" or "unchanged".
	Installed string
	lab       *Lab
}

// PodmanDirs are where NewPodman keeps h's podman files, the CNI plugin
// and its configuration (so that a test can have `roost-node run
// --install-cni` install into them beforehand).
func PodmanDirs(h *Host) (dir, binDir, netDir string) {
	dir = filepath.Join(h.Dir, "podman")
	return dir, filepath.Join(dir, "cni-bin"), filepath.Join(dir, "net.d")
}

// CNIEnv is the environment that makes a host's `roost-node run` install
// the CNI plugin into binDir and netDir at start (--install-cni), with
// the settings InstallCNI uses.
func (l *Lab) CNIEnv(h *Host, binDir, netDir string) []string {
	return []string{"ROOST_INSTALL_CNI=true", "CNI_BIN_DIR=" + binDir, "CNI_NET_DIR=" + netDir,
		"ROOST_CNI_PLUGIN=" + l.Bin("roost-cni"), "ROOST_CNI_LOG_FILE=" + filepath.Join(h.Dir, "cni.log"), "ROOST_CNI_LOG_LEVEL=debug"}
}

// Container is a container podman started on a lab host.
type Container struct {
	Name string
	ID   string // what the CNI plugin sees as CNI_CONTAINERID
	IP   netip.Addr
	Host *Host
}

// PodmanImage is the image every lab container runs: a static busybox
// (with sh, ping and sleep) imported from a tarball; no registry needed.
const PodmanImage = "localhost/roost-lab-busybox:1"

// CheckPodman says why containers cannot run here: podman, runc,
// nsenter or a static busybox missing (`make deps` installs them).
func CheckPodman() error {
	for _, bin := range []string{"podman", "runc", "nsenter"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s is not in PATH (run `make deps`: podman, runc, busybox-static)", bin)
		}
	}
	_, err := staticBusybox()
	return err
}

// staticBusybox finds a statically linked busybox: the image has no
// libraries.
func staticBusybox() (string, error) {
	var tried []string
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		dynamic := false
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				dynamic = true
			}
		}
		f.Close()
		if !dynamic {
			return p, nil
		}
		tried = append(tried, p+" is dynamically linked")
	}
	if len(tried) == 0 {
		tried = []string{"no /bin/busybox"}
	}
	return "", fmt.Errorf("no static busybox (install busybox-static): %s", strings.Join(tried, "; "))
}

// NewPodman installs the CNI plugin on h with `roost-node install-cni`
// (bin/roost-cni must exist) and prepares podman for h: a
// containers.conf for runc, cgroupfs and the CNI backend on the plugin's
// directories, and the busybox image. Containers are removed (through the
// plugin's DEL) and podman's storage unmounted when the lab closes.
func (l *Lab) NewPodman(ctx context.Context, h *Host) (*Podman, error) {
	if err := CheckPodman(); err != nil {
		return nil, err
	}
	p := &Podman{Host: h, lab: l}
	p.Dir, p.BinDir, p.NetDir = PodmanDirs(h)
	p.Conf = filepath.Join(p.Dir, "containers.conf")
	p.RunRoot = filepath.Join(os.TempDir(), "rpm-"+h.NS)
	_ = os.RemoveAll(p.RunRoot) // a killed run's
	for _, d := range []string{p.BinDir, p.NetDir, filepath.Join(p.Dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	var err error
	if p.Installed, err = p.InstallCNI(ctx); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`[containers]
default_ulimits = ["nofile=10000:10000", "nproc=1000:1000"]

[network]
network_backend = "cni"
cni_plugin_dirs = [%q]
network_config_dir = %q
default_network = "roost"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
`, p.BinDir, p.NetDir)
	if err := os.WriteFile(p.Conf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	// Remove the containers first (the plugin's DEL needs the host's
	// agents and etcd, which later cleanups stop), then podman's storage.
	l.defer_(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_, _ = p.Podman(ctx, "rm", "--all", "--force", "--time", "0")
		_, _ = p.Podman(ctx, "system", "reset", "--force")
		_ = os.RemoveAll(p.Dir)
		_ = os.RemoveAll(p.RunRoot)
	})
	tarball, err := l.busyboxTarball()
	if err != nil {
		return nil, err
	}
	if _, err := p.Podman(ctx, "import", "--quiet", tarball, PodmanImage); err != nil {
		return nil, err
	}
	return p, nil
}

// InstallCNI runs `roost-node install-cni` for the host into p's
// directories and returns its output (one line per file: written or
// unchanged).
func (p *Podman) InstallCNI(ctx context.Context) (string, error) {
	return p.lab.InstallCNI(ctx, p.Host, p.BinDir, p.NetDir)
}

// busyboxTarball writes (once per lab) a root file system holding only
// /bin/busybox and its sh, ping and sleep links, for `podman import`.
func (l *Lab) busyboxTarball() (string, error) {
	path := filepath.Join(l.Dir, "busybox-rootfs.tar")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	bb, err := staticBusybox()
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	hdrs := []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now},
		{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: now},
		{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data)), ModTime: now},
	}
	for _, link := range []string{"sh", "ping", "sleep", "ip", "cat"} {
		hdrs = append(hdrs, &tar.Header{Name: "bin/" + link, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: now})
	}
	for _, hd := range hdrs {
		if err := tw.WriteHeader(hd); err != nil {
			return "", err
		}
		if hd.Typeflag == tar.TypeReg {
			if _, err := tw.Write(data); err != nil {
				return "", err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return "", err
	}
	return path, os.Rename(tmp, path)
}

// Podman runs podman inside the host's network namespace. It enters only
// the network namespace (nsenter --net): `ip netns exec` would remount
// /sys and hide the cgroup mounts runc needs.
func (p *Podman) Podman(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"--net=/var/run/netns/" + p.Host.NS, "podman",
		"--root", filepath.Join(p.Dir, "root"), "--runroot", p.RunRoot, "--tmpdir", filepath.Join(p.Dir, "tmp")}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", full...)
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+p.Conf)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("podman %s (on %s): %w: %s", strings.Join(args, " "), p.Host.Name, err, bytes.TrimSpace(append(stdout.Bytes(), stderr.Bytes()...)))
	}
	return stdout.String(), nil
}

// Run starts a container on the roost network (it sleeps until removed)
// and returns it with the address the plugin gave it.
func (p *Podman) Run(ctx context.Context, name string) (*Container, error) {
	// The sleep ends on its own: a container of a run killed before its
	// cleanup does not live on for long.
	id, err := p.Podman(ctx, "run", "--detach", "--name", name, "--network", "roost", PodmanImage, "/bin/sleep", "900")
	if err != nil {
		return nil, err
	}
	c := &Container{Name: name, ID: strings.TrimSpace(id), Host: p.Host}
	out, err := p.Podman(ctx, "inspect", "--type", "container", name)
	if err != nil {
		return nil, err
	}
	var info []struct {
		ID              string
		NetworkSettings struct {
			Networks map[string]struct{ IPAddress string }
		}
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil || len(info) != 1 {
		return nil, fmt.Errorf("podman inspect %s: %v: %s", name, err, out)
	}
	c.ID = info[0].ID
	ip := info[0].NetworkSettings.Networks["roost"].IPAddress
	if c.IP, err = netip.ParseAddr(ip); err != nil {
		return nil, fmt.Errorf("container %s has no address on network roost: %q (%s)", name, ip, out)
	}
	return c, nil
}

// Ping pings ip from inside container c (busybox ping) until an echo is
// answered or timeout passes.
func (p *Podman) Ping(ctx context.Context, c *Container, ip netip.Addr, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := p.Podman(ctx, "exec", c.Name, "/bin/ping", "-c", "1", "-W", "1", ip.String())
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s/%s -> %s: %w", c.Host.Name, c.Name, ip, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Rm removes container c (podman stops it and runs the plugin's DEL).
func (p *Podman) Rm(ctx context.Context, c *Container) error {
	_, err := p.Podman(ctx, "rm", "--force", "--time", "0", c.Name)
	return err
}

// UnmountUnder lazily unmounts every mount point under dir (deepest
// first): the overlay and shm mounts podman leaves when a run is killed
// before its cleanup, so that the directory can be removed.
func UnmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			points = append(points, f[1])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		_ = syscall.Unmount(points[i], syscall.MNT_DETACH)
	}
}

// removePodmanLeftovers removes what the podman runtimes of a lab killed
// before its cleanup left: the containers' processes and conmon (their
// pid files are in the run state), the named network namespaces podman
// made for them, and the run state itself (outside the lab's directory,
// see Podman.RunRoot).
func removePodmanLeftovers(name string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "rpm-"+name+"-*"))
	for _, d := range dirs {
		pidfiles, _ := filepath.Glob(filepath.Join(d, "overlay-containers", "*", "userdata", "*.pid"))
		more, _ := filepath.Glob(filepath.Join(d, "overlay-containers", "*", "userdata", "pidfile"))
		for _, f := range append(more, pidfiles...) { // the container first: its namespace is found through it
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			var pid int
			if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &pid); err != nil || pid <= 1 {
				continue
			}
			// The container's network namespace, by inode, among
			// podman's named ones.
			var st syscall.Stat_t
			if filepath.Base(f) == "pidfile" && syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) == nil {
				named, _ := filepath.Glob("/var/run/netns/netns-*")
				for _, n := range named {
					var nst syscall.Stat_t
					if syscall.Stat(n, &nst) == nil && nst.Ino == st.Ino && nst.Dev == st.Dev {
						_ = syscall.Unmount(n, syscall.MNT_DETACH)
						_ = os.Remove(n)
					}
				}
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		UnmountUnder(d)
		_ = os.RemoveAll(d)
	}
}

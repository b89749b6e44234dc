package supervisor

import (
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	confdconfig "github.com/roostnet/roost/confd/config"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/node/config"
	"github.com/roostnet/roost/node/startup"
)

// The image, the systemd unit, the environment file and the Kubernetes
// manifest are checked against the settings tables the binaries use, so a
// renamed flag or variable breaks this test.

const repoRoot = "../.."

// knownEnv collects every variable roost-node, its `health` probe and confd
// read, from the code: the settings tables, and the names PoolFromEnv and
// confd's Load ask for.
type knownEnv struct {
	node  map[string]*config.Setting // roost-node run, workload, health
	pool  map[string]bool
	confd map[string]bool
	run   map[string]*config.Setting // flags of `run`, by flag name
}

func loadKnownEnv(t *testing.T) knownEnv {
	t.Helper()
	k := knownEnv{node: map[string]*config.Setting{}, pool: map[string]bool{}, confd: map[string]bool{}, run: map[string]*config.Setting{}}
	var r config.Run
	var w config.Workload
	var h config.Health
	for _, s := range r.RunSettings() {
		k.node[s.Env] = s
		k.run[s.Flag] = s
	}
	for _, s := range append(w.Settings(), h.Settings()...) {
		if s.Env != "" {
			if prev, ok := k.node[s.Env]; ok && prev.Default != s.Default && s.Flag != "listen" {
				t.Errorf("%s: default %q in one command, %q in another", s.Env, prev.Default, s.Default)
			}
			if _, ok := k.node[s.Env]; !ok {
				k.node[s.Env] = s
			}
		}
	}
	delete(k.node, "")
	if _, err := startup.PoolFromEnv(func(name string) string { k.pool[name] = true; return "" }); err != nil {
		t.Fatal(err)
	}
	_, _ = confdconfig.Load(nil, func(name string) string { k.confd[name] = true; return "" }, io.Discard)
	if len(k.pool) < 5 || len(k.confd) < 10 {
		t.Fatalf("too few variables found: pool %v, confd %v", k.pool, k.confd)
	}
	return k
}

func (k knownEnv) has(name string) bool { return k.node[name] != nil || k.pool[name] || k.confd[name] }

// checkRunArgs checks `run ...` arguments against the run command's flags.
func (k knownEnv) checkRunArgs(t *testing.T, where string, argv []string) {
	t.Helper()
	want := []string{"/usr/local/bin/roost-node", "run", "--with-bird", "--with-confd"}
	if !slices.Equal(argv, want) {
		t.Errorf("%s: command %q, want %q", where, argv, want)
	}
	for _, a := range argv[2:] {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		s := k.run[name]
		if s == nil {
			t.Errorf("%s: %s is not a flag of roost-node run", where, a)
		} else if !s.Bool {
			t.Errorf("%s: %s is not a boolean flag", where, a)
		}
	}
}

// checkHealthArgs checks a `roost-node health ...` probe.
func checkHealthArgs(t *testing.T, where string, argv []string) {
	t.Helper()
	if len(argv) < 3 || argv[0] != "/usr/local/bin/roost-node" || argv[1] != "health" {
		t.Errorf("%s: %q is not roost-node health", where, argv)
		return
	}
	for _, a := range argv[2:] {
		if !slices.ContainsFunc(config.HealthChecks, func(c struct{ Flag, Help string }) bool { return "--"+c.Flag == a }) {
			t.Errorf("%s: %s is not a check of roost-node health", where, a)
		}
	}
}

func listenPort(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// --- Dockerfile ---------------------------------------------------------------

type instruction struct {
	cmd  string // upper case
	args string
	line int
}

// parseDockerfile joins continuation lines and drops comments.
func parseDockerfile(t *testing.T, text string) []instruction {
	t.Helper()
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(line, "#") {
			continue // comment inside a continued instruction
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start})
		cur.Reset()
	}
	if cur.Len() > 0 {
		t.Fatal("Dockerfile ends inside a continued line")
	}
	return out
}

func jsonArgs(t *testing.T, in instruction) []string {
	t.Helper()
	var v []string
	if err := json.Unmarshal([]byte(in.args), &v); err != nil {
		t.Fatalf("line %d: %s is not in exec (JSON) form: %v", in.line, in.cmd, err)
	}
	return v
}

// envPairs parses ENV k=v k2=v2 (quotes are not used in our file).
func envPairs(args string) map[string]string {
	m := map[string]string{}
	for _, f := range strings.Fields(args) {
		if k, v, ok := strings.Cut(f, "="); ok {
			m[k] = v
		}
	}
	return m
}

func TestDockerfile(t *testing.T) {
	k := loadKnownEnv(t)
	b, err := os.ReadFile(filepath.Join(repoRoot, "etc/image/Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	ins := parseDockerfile(t, string(b))
	var stages [][]instruction
	for _, in := range ins {
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) > 0 {
			stages[len(stages)-1] = append(stages[len(stages)-1], in)
		}
	}
	if len(stages) != 2 {
		t.Fatalf("%d stages, want build and runtime", len(stages))
	}
	build, final := stages[0], stages[1]
	if f := build[0].args; !strings.HasPrefix(f, "golang:") || !strings.HasSuffix(f, " AS build") {
		t.Errorf("build stage: FROM %s", f)
	}
	if f := final[0].args; f != "debian:bookworm-slim" {
		t.Errorf("runtime stage: FROM %s", f)
	}

	// Static binaries: CGO off, one go build per program.
	cgoOff := false
	var runs string
	for _, in := range build {
		if in.cmd == "ENV" && envPairs(in.args)["CGO_ENABLED"] == "0" {
			cgoOff = true
		}
		if in.cmd == "RUN" {
			runs += in.args + "\n"
		}
	}
	if !cgoOff {
		t.Error("build stage: CGO_ENABLED=0 missing")
	}
	built := map[string]bool{}
	for _, m := range regexp.MustCompile(`go build [^&\n]*-o /out/(\S+) \./(\S+)`).FindAllStringSubmatch(runs, -1) {
		built[m[1]+"<-"+m[2]] = true
	}
	for _, want := range []string{"roost-node<-node", "confd<-confd", "birdctl<-birdctl"} {
		if !built[want] {
			t.Errorf("build stage does not build %s (found %v)", want, built)
		}
	}

	var entry, health []string
	env := map[string]string{}
	copied := map[string]bool{}
	apt := ""
	var exposed []string
	for _, in := range final {
		switch in.cmd {
		case "ENTRYPOINT":
			entry = jsonArgs(t, in)
		case "HEALTHCHECK":
			_, cmd, ok := strings.Cut(in.args, "CMD ")
			if !ok {
				t.Fatalf("HEALTHCHECK without CMD: %s", in.args)
			}
			health = jsonArgs(t, instruction{cmd: "CMD", args: cmd, line: in.line})
		case "ENV":
			for k, v := range envPairs(in.args) {
				env[k] = v
			}
		case "COPY":
			f := strings.Fields(in.args)
			if f[0] == "--from=build" && f[len(f)-1] == "/usr/local/bin/" {
				for _, src := range f[1 : len(f)-1] {
					copied[filepath.Base(src)] = true
				}
			}
			for _, src := range f {
				if strings.HasSuffix(src, ".sh") {
					t.Errorf("line %d: a shell script is copied into the image: %s", in.line, src)
				}
			}
		case "RUN":
			if strings.Contains(in.args, "apt-get install") {
				apt = in.args
			}
		case "EXPOSE":
			exposed = append(exposed, strings.Fields(in.args)...)
		case "CMD":
			t.Errorf("line %d: CMD would add arguments to the entrypoint", in.line)
		}
	}
	k.checkRunArgs(t, "ENTRYPOINT", entry)
	checkHealthArgs(t, "HEALTHCHECK", health)
	for _, bin := range []string{"roost-node", "confd", "birdctl"} {
		if !copied[bin] {
			t.Errorf("%s is not copied into /usr/local/bin", bin)
		}
	}
	for _, pkg := range []string{"bird2", "iproute2"} {
		if !slices.Contains(strings.Fields(apt), pkg) {
			t.Errorf("runtime stage does not install %s", pkg)
		}
	}
	for name := range env {
		if k.node[name] == nil {
			t.Errorf("ENV %s is not a roost-node setting", name)
		}
	}
	for name, want := range map[string]string{
		"ROOST_BIRD_CONFIG": config.DefaultBirdConfig, "BIRD_SOCKET": config.DefaultBirdSocket,
		"ROOST_NODE_LISTEN": config.DefaultNodeListen, "ROOST_CONFD_HEALTH_ADDR": config.DefaultConfdHealthAddr,
		"ROOST_CONFD_PATH": "/usr/local/bin/confd", "ROOST_BIRD_PATH": "/usr/sbin/bird",
	} {
		if env[name] != want {
			t.Errorf("ENV %s=%q, want %q", name, env[name], want)
		}
		if s := k.node[name]; s != nil && s.Default != "" && s.Default != want {
			t.Errorf("%s: the image says %q, the code's default is %q", name, want, s.Default)
		}
	}
	for _, p := range []string{"179/tcp", strconv.Itoa(listenPort(t, config.DefaultNodeListen)) + "/tcp"} {
		if !slices.Contains(exposed, p) {
			t.Errorf("EXPOSE lacks %s (has %v)", p, exposed)
		}
	}
	if _, err := os.Stat(filepath.Join(repoRoot, "etc/image/Dockerfile.dockerignore")); err != nil {
		t.Error(err)
	}
}

// --- systemd --------------------------------------------------------------------

// parseUnit reads a unit file: section -> key -> values (repeated keys
// accumulate).
func parseUnit(t *testing.T, text string) map[string]map[string][]string {
	t.Helper()
	out := map[string]map[string][]string{}
	section := ""
	for n, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			out[section] = map[string][]string{}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" || strings.HasSuffix(line, "\\") {
			t.Fatalf("unit line %d: %q", n+1, raw)
		}
		out[section][k] = append(out[section][k], v)
	}
	return out
}

func TestSystemdUnit(t *testing.T) {
	k := loadKnownEnv(t)
	path := filepath.Join(repoRoot, "etc/systemd/roost-node.service")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := parseUnit(t, string(b))
	svc := u["Service"]
	one := func(key string) string {
		if len(svc[key]) != 1 {
			t.Errorf("[Service] %s: %q, want one value", key, svc[key])
			return ""
		}
		return svc[key][0]
	}
	k.checkRunArgs(t, "ExecStart", strings.Fields(one("ExecStart")))
	for key, want := range map[string]string{
		"Type": "notify", "KillMode": "mixed", "EnvironmentFile": "-/etc/roost/roost.env",
		"ProtectSystem": "strict", "RuntimeDirectory": "roost", "RuntimeDirectoryPreserve": "yes",
		"NoNewPrivileges": "yes", "Restart": "always",
	} {
		if got := one(key); got != want {
			t.Errorf("[Service] %s=%q, want %q", key, got, want)
		}
	}
	rw := strings.Fields(one("ReadWritePaths"))
	for _, dir := range []string{"/etc/roost", filepath.Dir(config.DefaultBirdSocket)} {
		if !slices.Contains(rw, dir) {
			t.Errorf("ReadWritePaths %v lacks %s", rw, dir)
		}
	}
	if !strings.HasPrefix(config.DefaultBirdConfig, "/etc/roost/") {
		t.Errorf("the default BIRD config %s is outside /etc/roost", config.DefaultBirdConfig)
	}
	if filepath.Base(filepath.Dir(config.DefaultBirdSocket)) != one("RuntimeDirectory") {
		t.Errorf("RuntimeDirectory is not the socket's directory %s", filepath.Dir(config.DefaultBirdSocket))
	}
	caps := strings.Fields(one("CapabilityBoundingSet"))
	for _, c := range []string{"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE"} {
		if !slices.Contains(caps, c) {
			t.Errorf("CapabilityBoundingSet lacks %s", c)
		}
	}
	fams := strings.Fields(one("RestrictAddressFamilies"))
	for _, f := range []string{"AF_NETLINK", "AF_UNIX", "AF_INET", "AF_INET6", "AF_PACKET"} {
		if !slices.Contains(fams, f) {
			t.Errorf("RestrictAddressFamilies lacks %s", f)
		}
	}
	if one("ProtectKernelTunables") != "no" {
		t.Error("ProtectKernelTunables must stay off: the agent writes net.ipv4.ip_forward")
	}
	// Room for BIRD and confd to stop one after the other.
	var r config.Run
	for _, s := range r.RunSettings() {
		if s.Flag == "stop-timeout" {
			d, _ := time.ParseDuration(s.Default)
			sec, _ := strconv.Atoi(one("TimeoutStopSec"))
			if time.Duration(sec)*time.Second < 2*d+5*time.Second {
				t.Errorf("TimeoutStopSec=%d is too short for two children with stop timeout %v", sec, d)
			}
		}
	}
	if len(u["Install"]["WantedBy"]) == 0 {
		t.Error("no [Install] WantedBy")
	}

	// systemd's own check, where systemd-analyze exists (ExecStart must
	// name an executable: use roost-node's stand-in).
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: skipped `systemd-analyze verify`")
		return
	}
	dir := t.TempDir()
	unit := strings.ReplaceAll(string(b), "/usr/local/bin/roost-node", "/bin/true")
	if err := os.WriteFile(filepath.Join(dir, "roost-node.service"), []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", filepath.Join(dir, "roost-node.service")).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// --- environment file -------------------------------------------------------------

func TestEnvFile(t *testing.T) {
	k := loadKnownEnv(t)
	b, err := os.ReadFile(filepath.Join(repoRoot, "etc/roost.env"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^#?([A-Z][A-Z0-9_]*)=(.*)$`)
	documented := map[string]string{}
	for n, line := range strings.Split(string(b), "\n") {
		m := re.FindStringSubmatch(line)
		if m == nil {
			if line != "" && !strings.HasPrefix(line, "#") {
				t.Errorf("roost.env line %d is neither a setting nor a comment: %q", n+1, line)
			}
			continue
		}
		if _, dup := documented[m[1]]; dup {
			t.Errorf("roost.env: %s appears twice", m[1])
		}
		documented[m[1]] = m[2]
		if !k.has(m[1]) {
			t.Errorf("roost.env: %s is read by no program", m[1])
		}
		if strings.ContainsAny(m[2], `"'$`) {
			t.Errorf("roost.env: %s: quotes and $ are not expanded by systemd's EnvironmentFile", m[1])
		}
	}
	var missing []string
	for _, set := range []map[string]bool{k.pool, k.confd} {
		for name := range set {
			if _, ok := documented[name]; !ok {
				missing = append(missing, name)
			}
		}
	}
	for name, s := range k.node {
		v, ok := documented[name]
		if !ok {
			missing = append(missing, name)
			continue
		}
		if s.Default != "" && v != s.Default && name != datastore.EnvEtcdEndpoints {
			t.Errorf("roost.env: %s=%s, but its default is %s", name, v, s.Default)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("roost.env does not document %v", missing)
	}
}

// --- Kubernetes ---------------------------------------------------------------------

func TestKubernetesManifest(t *testing.T) {
	k := loadKnownEnv(t)
	f, err := os.Open(filepath.Join(repoRoot, "etc/kubernetes/roost-node.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type envVar struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			FieldRef *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
			ConfigMapKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"configMapKeyRef"`
		} `yaml:"valueFrom"`
	}
	type probe struct {
		Exec *struct {
			Command []string `yaml:"command"`
		} `yaml:"exec"`
	}
	type container struct {
		Name            string   `yaml:"name"`
		Command         []string `yaml:"command"`
		Args            []string `yaml:"args"`
		Env             []envVar `yaml:"env"`
		SecurityContext struct {
			Privileged bool `yaml:"privileged"`
		} `yaml:"securityContext"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		LivenessProbe  probe `yaml:"livenessProbe"`
		ReadinessProbe probe `yaml:"readinessProbe"`
		VolumeMounts   []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
		} `yaml:"volumeMounts"`
	}
	type doc struct {
		Kind     string                `yaml:"kind"`
		Metadata struct{ Name string } `yaml:"metadata"`
		Data     map[string]string     `yaml:"data"`
		Spec     struct {
			Template struct {
				Spec struct {
					HostNetwork                   bool        `yaml:"hostNetwork"`
					TerminationGracePeriodSeconds int         `yaml:"terminationGracePeriodSeconds"`
					Containers                    []container `yaml:"containers"`
					Volumes                       []struct {
						Name     string `yaml:"name"`
						HostPath *struct {
							Path string `yaml:"path"`
						} `yaml:"hostPath"`
						Secret *struct {
							SecretName string `yaml:"secretName"`
						} `yaml:"secret"`
					} `yaml:"volumes"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	dec := yaml.NewDecoder(f)
	configMaps := map[string]map[string]string{}
	var ds *doc
	for {
		var d doc
		if err := dec.Decode(&d); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		switch d.Kind {
		case "ConfigMap":
			configMaps[d.Metadata.Name] = d.Data
		case "DaemonSet":
			ds = &d
		}
	}
	if ds == nil {
		t.Fatal("no DaemonSet")
	}
	pod := ds.Spec.Template.Spec
	if !pod.HostNetwork {
		t.Error("hostNetwork must be true")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]
	k.checkRunArgs(t, "container command", append(append([]string(nil), c.Command...), c.Args...))
	if !c.SecurityContext.Privileged {
		t.Error("the container must be privileged (host routes, links, sysctls)")
	}
	env := map[string]envVar{}
	for _, e := range c.Env {
		if !k.has(e.Name) {
			t.Errorf("env %s is read by no program", e.Name)
		}
		env[e.Name] = e
		if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
			ref := e.ValueFrom.ConfigMapKeyRef
			if _, ok := configMaps[ref.Name][ref.Key]; !ok {
				t.Errorf("env %s: ConfigMap %s has no key %s", e.Name, ref.Name, ref.Key)
			}
		}
	}
	// calico-node's names.
	for _, name := range []string{"NODENAME", "DATASTORE_TYPE", "ETCD_ENDPOINTS", "ETCD_CA_CERT_FILE", "ETCD_CERT_FILE", "ETCD_KEY_FILE",
		"IP", "IP_AUTODETECTION_METHOD", "CALICO_IPV4POOL_CIDR", "CALICO_IPV4POOL_IPIP", "CALICO_IPV4POOL_VXLAN"} {
		if _, ok := env[name]; !ok {
			t.Errorf("env %s missing", name)
		}
	}
	if e := env["NODENAME"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Error("NODENAME must come from spec.nodeName")
	}
	if env["DATASTORE_TYPE"].Value != datastore.TypeEtcd {
		t.Errorf("DATASTORE_TYPE=%q", env["DATASTORE_TYPE"].Value)
	}
	value := func(name, def string) string {
		if e, ok := env[name]; ok && e.ValueFrom == nil {
			return e.Value
		}
		return def
	}
	sock := value("BIRD_SOCKET", config.DefaultBirdSocket)
	if sock != config.DefaultBirdSocket || value("ROOST_BIRD_CONFIG", config.DefaultBirdConfig) != config.DefaultBirdConfig {
		t.Errorf("BIRD paths differ from the defaults: %s", sock)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	secretMount := ""
	for _, v := range pod.Volumes {
		switch {
		case v.HostPath != nil && v.HostPath.Path == filepath.Dir(sock):
			if mounts[v.Name] != filepath.Dir(sock) {
				t.Errorf("volume %s (%s) mounted at %q", v.Name, v.HostPath.Path, mounts[v.Name])
			}
			sock = ""
		case v.Secret != nil:
			secretMount = mounts[v.Name]
		}
	}
	if sock != "" {
		t.Errorf("the socket's directory %s is not a hostPath volume", filepath.Dir(sock))
	}
	if secretMount == "" {
		t.Error("no etcd TLS Secret mounted")
	}
	for _, key := range []string{"etcd_ca", "etcd_cert", "etcd_key"} {
		if _, ok := configMaps["roost-config"][key]; !ok {
			t.Errorf("ConfigMap roost-config lacks %s", key)
		}
	}
	for _, p := range []struct {
		name string
		pr   probe
	}{{"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}} {
		if p.pr.Exec == nil {
			t.Errorf("%s is not an exec probe", p.name)
			continue
		}
		checkHealthArgs(t, p.name, p.pr.Exec.Command)
	}
	listen := value("ROOST_NODE_LISTEN", config.DefaultNodeListen)
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["health"] != listenPort(t, listen) || ports["bgp"] != 179 {
		t.Errorf("ports %v, listen %s", ports, listen)
	}
	if value("ROOST_CONFD_HEALTH_ADDR", config.DefaultConfdHealthAddr) != config.DefaultConfdHealthAddr {
		t.Error("ROOST_CONFD_HEALTH_ADDR differs from the default")
	}
	if pod.TerminationGracePeriodSeconds < 25 {
		t.Errorf("terminationGracePeriodSeconds %d leaves BIRD and confd too little time", pod.TerminationGracePeriodSeconds)
	}
}

// The supervisor's confd command line and environment are confd's.
func TestConfdContract(t *testing.T) {
	k := loadKnownEnv(t)
	dir := t.TempDir()
	o := ConfdOptions{BirdConfig: filepath.Join(dir, "bird", "bird.cfg"), BirdSocket: "/run/x/bird.ctl", HealthAddr: "127.0.0.1:9097"}
	args, err := o.args(false)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := confdconfig.Load(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("confd rejects the supervisor's arguments %q: %v", args, err)
	}
	if cfg.OutputDir != filepath.Dir(o.BirdConfig) || cfg.BirdSocket != o.BirdSocket || cfg.HealthAddr != o.HealthAddr {
		t.Errorf("confd read %+v from %q", cfg, args)
	}
	s := &Supervisor{}
	for name := range s.confdEnv("n") {
		if !k.confd[name] {
			t.Errorf("the supervisor sets %s for confd, which confd does not read", name)
		}
	}
}

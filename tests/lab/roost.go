package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/roostnet/roost/birdctl/birdsock"
)

// DatastoreEnv is the environment every Roost program in the lab gets.
func (l *Lab) DatastoreEnv() []string {
	return []string{"DATASTORE_TYPE=etcdv3", "ETCD_ENDPOINTS=" + l.EtcdURL}
}

// MTUFile is where the host's roost-node writes the workload MTU and
// `roost-node workload add` reads it (ROOST_MTU_FILE; not the machine's
// /var/lib/calico/mtu, which every lab host would share).
func (h *Host) MTUFile() string { return filepath.Join(h.Dir, "mtu") }

// NodenameFile is where the host's roost-node writes its name
// (ROOST_NODENAME_FILE; not the machine's /var/lib/calico/nodename).
func (h *Host) NodenameFile() string { return filepath.Join(h.Dir, "nodename") }

// NodeEnv is the environment of the host's roost-node commands.
func (l *Lab) NodeEnv(h *Host) []string {
	return append(l.DatastoreEnv(), "NODENAME="+h.Name, "ROOST_MTU_FILE="+h.MTUFile(), "ROOST_NODENAME_FILE="+h.NodenameFile())
}

// Bin is the path of a Roost binary.
func (l *Lab) Bin(name string) string { return filepath.Join(l.Opts.BinDir, name) }

// Birdctl runs bin/birdctl in a namespace against the lab's etcd and the
// host's BIRD socket (ns "" = the switch namespace).
func (l *Lab) Birdctl(ctx context.Context, h *Host, args ...string) (string, error) {
	ns := l.Switch
	env := l.DatastoreEnv()
	if h != nil {
		ns = h.NS
		env = append(env, "BIRD_SOCKET="+h.Socket())
	}
	return l.Exec(ctx, ns, env, l.Bin("birdctl"), args...)
}

// Apply applies YAML resources through birdctl.
func (l *Lab) Apply(ctx context.Context, yaml string) error {
	f, err := os.CreateTemp(l.Dir, "apply-*.yaml")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(yaml); err != nil {
		f.Close()
		return err
	}
	f.Close()
	_, err = l.Birdctl(ctx, nil, "apply", "-f", f.Name())
	return err
}

// StartOption changes how StartNode or StartConfdAndBird start a host's
// agents.
type StartOption func(*startConfig)

type startConfig struct {
	secretsDir string
	env        []string
}

// WithSecretsDir passes confd --secrets-dir: the password of a
// secretKeyRef {name: N, key: K} is the file <dir>/N/K.
func WithSecretsDir(dir string) StartOption {
	return func(c *startConfig) { c.secretsDir = dir }
}

// WithEnv adds environment variables (NAME=value) to the agents.
func WithEnv(env ...string) StartOption {
	return func(c *startConfig) { c.env = append(c.env, env...) }
}

func startConfigOf(opts []StartOption) startConfig {
	var c startConfig
	for _, o := range opts {
		o(&c)
	}
	return c
}

// startEntrypoint runs the host's node the way the image and the systemd
// unit do: `roost-node run --with-bird --with-confd`, one process that
// registers the node, starts confd, waits for its first render and starts
// BIRD on the rendered config (see docs/install.md).
func (l *Lab) startEntrypoint(ctx context.Context, h *Host, opts ...StartOption) (*Proc, error) {
	c := startConfigOf(opts)
	env := append(l.NodeEnv(h), "IP="+h.Prefix.String(), "ROOST_NODE_LISTEN=127.0.0.1:9098",
		"FELIX_ROUTEREFRESHINTERVAL=10s",
		// confd and BIRD, as StartConfdAndBird used to start them.
		"ROOST_BIRD_CONFIG="+filepath.Join(h.BirdDir(), "bird.cfg"), "BIRD_SOCKET="+h.Socket(),
		"ROOST_CONFD_PATH="+l.Bin("confd"), "ROOST_CONFD_HEALTH_ADDR=127.0.0.1:9099", "ROOST_CONFD_RETRY_MAX=2s")
	if h.Prefix6.IsValid() {
		env = append(env, "IP6="+h.Prefix6.String())
	}
	if c.secretsDir != "" {
		env = append(env, "ROOST_SECRETS_DIR="+c.secretsDir)
	}
	env = append(env, c.env...)
	p, err := l.StartEnv(ctx, h.NS, h.Name+"-node", env, l.Bin("roost-node"), "run", "--with-bird", "--with-confd")
	if err != nil {
		return nil, err
	}
	h.addAgent(p)
	return p, nil
}

// StartConfdAndBird makes sure confd and BIRD run on the host and waits
// until confd rendered and BIRD answers on the host's socket. The host's
// entrypoint (StartNode) starts them after registering the node; it is
// started here if it is not running yet.
func (l *Lab) StartConfdAndBird(ctx context.Context, h *Host, opts ...StartOption) error {
	p := h.agent()
	if p == nil {
		var err error
		if p, err = l.StartNode(ctx, h, opts...); err != nil {
			return err
		}
	}
	cfg := filepath.Join(h.BirdDir(), "bird.cfg")
	if err := waitFile(ctx, cfg, 30*time.Second); err != nil {
		return fmt.Errorf("%s: confd rendered no config: %w\n%s", h.Name, err, p.Tail(20))
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := birdsock.Dial(actx, h.Socket())
		if err == nil {
			_, err = c.Status(actx)
			c.Close()
		}
		cancel()
		if err == nil {
			return nil
		}
		if p.Exited() || time.Now().After(deadline) {
			return fmt.Errorf("%s: BIRD does not answer on %s: %v\n%s", h.Name, h.Socket(), err, p.Tail(20))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// agent returns the host's running entrypoint, if any.
func (h *Host) agent() *Proc {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.agents {
		if !p.Exited() {
			return p
		}
	}
	return nil
}

func (h *Host) addAgent(p *Proc) {
	h.mu.Lock()
	h.agents = append(h.agents, p)
	h.mu.Unlock()
}

// StopAgents stops what StartNode started on the host: SIGTERM makes
// roost-node stop BIRD (with graceful restart unless the host was started
// WithEnv("ROOST_BIRD_GRACEFUL_RESTART=false")), then confd, then itself.
func (h *Host) StopAgents() {
	h.mu.Lock()
	agents := h.agents
	h.agents = nil
	h.mu.Unlock()
	for i := len(agents) - 1; i >= 0; i-- {
		agents[i].Stop()
	}
}

// WaitNode waits until roost-node registered the host's Node resource.
func (l *Lab) WaitNode(ctx context.Context, h *Host, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := l.Birdctl(ctx, nil, "get", "node", h.Name)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: roost-node did not register the Node within %s: %v", h.Name, timeout, firstLine(err.Error()))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// StartHosts starts the agents of hosts the way a real cluster comes up:
// every host's entrypoint (roost-node registers the node, then runs confd
// and BIRD), then waits until every Node exists and every BIRD answers.
func (l *Lab) StartHosts(ctx context.Context, hosts []*Host, opts ...StartOption) error {
	for _, h := range hosts {
		if _, err := l.StartNode(ctx, h, opts...); err != nil {
			return err
		}
	}
	for _, h := range hosts {
		if err := l.WaitNode(ctx, h, 30*time.Second); err != nil {
			return err
		}
	}
	for _, h := range hosts {
		if err := l.StartConfdAndBird(ctx, h, opts...); err != nil {
			return err
		}
	}
	return nil
}

func waitFile(ctx context.Context, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %s", path, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// PeerState is one row of `birdctl node status -o json`.
type PeerState struct {
	Address   string `json:"peerAddress"`
	Type      string `json:"peerType"`
	Protocol  string `json:"protocol"`
	State     string `json:"state"`
	Since     string `json:"since"`
	BGPState  string `json:"bgpState"`
	LastError string `json:"lastError"`
	Info      string `json:"info"`
	BFD       string `json:"bfd"` // state of the BFD session to the peer, "" without
}

// Peers returns the host's BGP sessions as birdctl reports them.
func (l *Lab) Peers(ctx context.Context, h *Host) ([]PeerState, error) {
	out, err := l.Birdctl(ctx, h, "node", "status", "-o", "json")
	if err != nil {
		return nil, err
	}
	var st struct {
		IPv4 []PeerState `json:"ipv4Peers"`
		IPv6 []PeerState `json:"ipv6Peers"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, fmt.Errorf("parsing node status: %w: %s", err, out)
	}
	return append(st.IPv4, st.IPv6...), nil
}

// WaitEstablished waits until every host has want sessions, all
// Established, and returns how long it took.
func (l *Lab) WaitEstablished(ctx context.Context, hosts []*Host, want int, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		var missing []string
		for _, h := range hosts {
			peers, err := l.Peers(ctx, h)
			if err != nil {
				missing = append(missing, fmt.Sprintf("%s: %v", h.Name, firstLine(err.Error())))
				continue
			}
			up := 0
			for _, p := range peers {
				if p.BGPState == "Established" || strings.HasPrefix(p.Info, "Established") {
					up++
				}
			}
			if up != want || len(peers) != want {
				missing = append(missing, fmt.Sprintf("%s: %d/%d established (%d sessions)", h.Name, up, want, len(peers)))
			}
		}
		if len(missing) == 0 {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("sessions not established after %s: %s", timeout, strings.Join(missing, "; "))
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

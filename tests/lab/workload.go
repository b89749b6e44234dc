package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"time"
)

// Workload is a network namespace attached to a host by roost-node.
type Workload struct {
	Name string
	NS   string
	IP   netip.Addr
	Host *Host
}

// StartNode runs the host's node as a real host would: the entrypoint
// `roost-node run --with-bird --with-confd` (agent, confd and BIRD).
func (l *Lab) StartNode(ctx context.Context, h *Host, opts ...StartOption) (*Proc, error) {
	return l.startEntrypoint(ctx, h, opts...)
}

// AddWorkload creates a namespace and attaches it to h with
// `roost-node workload add`, returning the workload's address. It waits
// for the host's MTU file first (the agent writes it once it programmed
// the dataplane), as a CNI plugin on a starting node would need to.
func (l *Lab) AddWorkload(ctx context.Context, h *Host, name string) (*Workload, error) {
	w := &Workload{Name: name, NS: fmt.Sprintf("%s-%s", h.NS, name), Host: h}
	if err := waitFile(ctx, h.MTUFile(), 30*time.Second); err != nil {
		return nil, fmt.Errorf("%s: roost-node wrote no MTU file: %w", h.Name, err)
	}
	if err := l.addNS(w.NS); err != nil {
		return nil, err
	}
	out, err := l.Exec(ctx, h.NS, l.NodeEnv(h), l.Bin("roost-node"), "workload", "add", "--name", name, "--netns", "/var/run/netns/"+w.NS)
	if err != nil {
		return nil, err
	}
	fields := strings.Fields(out)
	if len(fields) == 0 {
		return nil, fmt.Errorf("workload add printed no address")
	}
	ip := strings.Split(fields[len(fields)-1], "/")[0]
	w.IP, err = netip.ParseAddr(ip)
	if err != nil {
		return nil, fmt.Errorf("workload add printed %q: %w", out, err)
	}
	// Detach before the namespace goes (cleanups run in reverse order).
	l.defer_(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = exec.CommandContext(ctx, "ip", "netns", "exec", h.NS, "env", "DATASTORE_TYPE=etcdv3", "ETCD_ENDPOINTS="+l.EtcdURL, "NODENAME="+h.Name,
			l.Bin("roost-node"), "workload", "del", "--name", name).Run()
	})
	return w, nil
}

// Ping sends a few ICMP echoes from w to ip and reports success.
func (l *Lab) Ping(ctx context.Context, w *Workload, ip netip.Addr) error {
	_, err := l.Exec(ctx, w.NS, nil, "ping", "-c", "2", "-i", "0.2", "-W", "1", "-q", ip.String())
	return err
}

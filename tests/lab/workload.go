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
	IP   netip.Addr   // the first address (IPv4 when it has one)
	IPs  []netip.Addr // every address, IPv4 first
	Host *Host
}

// IP6 is the workload's IPv6 address (invalid when it has none).
func (w *Workload) IP6() netip.Addr {
	for _, a := range w.IPs {
		if a.Is6() {
			return a
		}
	}
	return netip.Addr{}
}

// StartNode runs the host's node as a real host would: the entrypoint
// `roost-node run --with-bird --with-confd` (agent, confd and BIRD).
func (l *Lab) StartNode(ctx context.Context, h *Host, opts ...StartOption) (*Proc, error) {
	return l.startEntrypoint(ctx, h, opts...)
}

// AddWorkload creates a namespace and attaches it to h with
// `roost-node workload add` (extra arguments, e.g. "--ip", X, are passed
// on), returning the workload with its addresses. It waits for the host's
// MTU file first (the agent writes it once it programmed the dataplane),
// as a CNI plugin on a starting node would need to.
func (l *Lab) AddWorkload(ctx context.Context, h *Host, name string, args ...string) (*Workload, error) {
	w := &Workload{Name: name, NS: fmt.Sprintf("%s-%s", h.NS, name), Host: h}
	if err := waitFile(ctx, h.MTUFile(), 30*time.Second); err != nil {
		return nil, fmt.Errorf("%s: roost-node wrote no MTU file: %w", h.Name, err)
	}
	if err := l.addNS(w.NS); err != nil {
		return nil, err
	}
	out, err := l.Exec(ctx, h.NS, l.NodeEnv(h), l.Bin("roost-node"), append([]string{"workload", "add", "--name", name, "--netns", "/var/run/netns/" + w.NS}, args...)...)
	if err != nil {
		return nil, err
	}
	// One address per line; log lines (on stderr, merged here) are not
	// addresses.
	for _, line := range strings.Split(out, "\n") {
		if a, perr := netip.ParseAddr(strings.TrimSpace(line)); perr == nil {
			w.IPs = append(w.IPs, a)
		}
	}
	if len(w.IPs) == 0 {
		return nil, fmt.Errorf("workload add printed no address: %q", out)
	}
	w.IP = w.IPs[0]
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

// DelWorkload detaches w with `roost-node workload del` (its namespace
// stays until the lab is closed).
func (l *Lab) DelWorkload(ctx context.Context, w *Workload) error {
	env := append(l.DatastoreEnv(), "NODENAME="+w.Host.Name)
	_, err := l.Exec(ctx, w.Host.NS, env, l.Bin("roost-node"), "workload", "del", "--name", w.Name)
	return err
}

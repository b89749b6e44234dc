package cnitest_test

// The plugins driven through libcni, as a container runtime drives them:
// the built binary (as roost and roost-ipam) in a temporary bin dir, a
// real etcd or a file datastore, and the plugin processes started from
// inside a test "host" network namespace, attaching containers that are
// network namespaces of their own.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/cni/plugin"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/connect"
	"github.com/roostnet/roost/internal/etcdtest"
	"github.com/roostnet/roost/node/internal/nstest"
	"github.com/roostnet/roost/node/ipam"
	"github.com/roostnet/roost/node/names"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "roost-cni-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := 1
	if err := build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

func build(dir string) error {
	gobin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		if gobin, err = exec.LookPath("go"); err != nil {
			return errors.New("cannot build the plugin: go is not in PATH")
		}
	}
	out, err := exec.Command(gobin, "build", "-o", filepath.Join(dir, "roost"), "github.com/roostnet/roost/cni").CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build ./cni: %v\n%s", err, out)
	}
	if err := os.Symlink("roost", filepath.Join(dir, "roost-ipam")); err != nil {
		return err
	}
	// The same IPAM plugin under a name the network plugin does not know
	// as its own: it is exec'd, as any third-party IPAM plugin would be.
	return os.Symlink("roost", filepath.Join(dir, "other-ipam"))
}

// env is one host: its namespace, the datastore and a libcni runtime.
type env struct {
	t     *testing.T
	host  *nstest.NS
	ds    datastore.Datastore
	cfg   datastore.Config
	dsCfg map[string]any // the datastore fields of the configuration
	cni   *libcni.CNIConfig
}

func quiet() *logrus.Logger {
	l := logrus.New()
	l.SetLevel(logrus.ErrorLevel)
	return l
}

// setup makes a host with the given datastore kind ("etcd" or "file")
// and pools.
func setup(t *testing.T, kind string, pools ...string) *env {
	t.Helper()
	host := nstest.New(t, "host")
	host.Dummy(t, "eth0")
	host.Addr(t, "eth0", "10.0.0.1/24")
	host.Route(t, "0.0.0.0/0", "eth0", "10.0.0.254")
	e := &env{t: t, host: host}
	var cfg datastore.Config
	switch kind {
	case "etcd":
		et := etcdtest.Start(t)
		cfg = datastore.Config{Type: datastore.TypeEtcd, EtcdEndpoints: et.Endpoint()}
		e.dsCfg = map[string]any{"datastore_type": "etcdv3", "etcd_endpoints": et.Endpoint()}
	default:
		dir := t.TempDir()
		cfg = datastore.Config{Type: datastore.TypeFile, File: dir}
		e.dsCfg = map[string]any{"datastore_type": "file", "datastore_file": dir}
	}
	ds, err := connect.Open(context.Background(), cfg, connect.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ds.Close() })
	e.ds, e.cfg = ds, cfg
	for i, cidr := range pools {
		p := &api.IPPool{}
		p.Metadata.Name = fmt.Sprintf("pool%d", i+1)
		p.Spec.CIDR = cidr
		if strings.HasSuffix(cidr, "/30") {
			p.Spec.BlockSize = 30
		}
		api.Default(p)
		if _, err := ds.Create(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	e.cni = libcni.NewCNIConfigWithCacheDir([]string{binDir}, t.TempDir(), nil)
	return e
}

// conflist is a network configuration list of one roost plugin; extra
// fields are merged into the plugin's configuration (nil deletes).
func (e *env) conflist(version string, extra map[string]any) *libcni.NetworkConfigList {
	e.t.Helper()
	p := map[string]any{"type": "roost", "nodename": "n1", "mtu": 1450, "log_level": "error", "datastore_timeout_seconds": 5,
		"ipam": map[string]any{"type": "roost-ipam"}}
	for k, v := range e.dsCfg {
		p[k] = v
	}
	for k, v := range extra {
		if v == nil {
			delete(p, k)
		} else {
			p[k] = v
		}
	}
	b, err := json.Marshal(map[string]any{"cniVersion": version, "name": "roost", "plugins": []any{p}})
	if err != nil {
		e.t.Fatal(err)
	}
	l, err := libcni.NetworkConfFromBytes(b)
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

// inHost runs fn (which starts plugins) with the host namespace the
// plugins act on (the plugin processes stay in the test's namespace,
// where etcd listens).
func (e *env) inHost(fn func() error) error {
	os.Setenv(plugin.EnvHostNetNS, e.host.Path)
	defer os.Unsetenv(plugin.EnvHostNetNS)
	return fn()
}

func (e *env) add(l *libcni.NetworkConfigList, rt *libcni.RuntimeConf) (*current.Result, error) {
	var res types.Result
	err := e.inHost(func() error {
		var err error
		res, err = e.cni.AddNetworkList(context.Background(), l, rt)
		return err
	})
	if err != nil {
		return nil, err
	}
	if res.Version() != l.CNIVersion {
		e.t.Errorf("result version %s, want %s", res.Version(), l.CNIVersion)
	}
	return current.NewResultFromResult(res)
}

func (e *env) del(l *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	return e.inHost(func() error { return e.cni.DelNetworkList(context.Background(), l, rt) })
}

func (e *env) check(l *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	return e.inHost(func() error { return e.cni.CheckNetworkList(context.Background(), l, rt) })
}

func rtFor(ns *nstest.NS, id string, args ...[2]string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: ns.Path, IfName: "eth0", Args: args}
}

func k8sArgs(ns, pod, id string) [][2]string {
	return [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", ns}, {"K8S_POD_NAME", pod}, {"K8S_POD_INFRA_CONTAINER_ID", id}}
}

func addrs(res *current.Result) []netip.Addr {
	var out []netip.Addr
	for _, ipc := range res.IPs {
		a, _ := netip.AddrFromSlice(ipc.Address.IP)
		out = append(out, a.Unmap())
	}
	return out
}

// view is the datastore as it is now: a file store opened afresh (an
// open one sees other processes' writes only when it reloads).
func (e *env) view() datastore.Datastore {
	e.t.Helper()
	if e.cfg.Type != datastore.TypeFile {
		return e.ds
	}
	ds, err := connect.Open(context.Background(), e.cfg, connect.WithLogger(quiet()))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { ds.Close() })
	return ds
}

func (e *env) wep(namespace, name string) (*api.WorkloadEndpoint, error) {
	kv, err := e.view().Get(context.Background(), datastore.ResourceKey(api.KindWorkloadEndpoint, namespace, name))
	if err != nil {
		return nil, err
	}
	return kv.Value.(*api.WorkloadEndpoint), nil
}

// attached checks the dataplane of one container.
func (e *env) attached(c *nstest.NS, hostIface string, ips []netip.Addr) {
	e.t.Helper()
	e.attachedMTU(c, hostIface, ips, 1450)
}

func (e *env) attachedMTU(c *nstest.NS, hostIface string, ips []netip.Addr, mtu int) {
	e.t.Helper()
	hl, err := e.host.NL.LinkByName(hostIface)
	if err != nil {
		e.t.Fatalf("host end %s: %v", hostIface, err)
	}
	if hl.Attrs().HardwareAddr.String() != names.HostVethMAC || hl.Attrs().MTU != mtu {
		e.t.Fatalf("host end %s: MAC %s MTU %d", hostIface, hl.Attrs().HardwareAddr, hl.Attrs().MTU)
	}
	in, err := c.NL.LinkByName("eth0")
	if err != nil || in.Attrs().MTU != mtu {
		e.t.Fatalf("eth0 inside: %v (MTU %d, want %d)", err, in.Attrs().MTU, mtu)
	}
	routes, err := e.host.NL.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: hl.Attrs().Index}, netlink.RT_FILTER_OIF)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, ip := range ips {
		found := false
		for _, r := range routes {
			if r.Dst != nil && r.Dst.IP.Equal(ip.AsSlice()) && r.Protocol == names.RouteProtocol {
				ones, _ := r.Dst.Mask.Size()
				found = ones == ip.BitLen()
			}
		}
		if !found {
			e.t.Fatalf("no proto 80 host route to %s on %s: %v", ip, hostIface, routes)
		}
	}
	if ips[0].Is4() {
		if err := c.Ping(netip.MustParseAddr("10.0.0.1"), 5e9); err != nil {
			e.t.Fatalf("container cannot reach the host: %v", err)
		}
	}
}

// gone checks that nothing of a container is left.
func (e *env) gone(namespace, wep, hostIface, containerID string) {
	e.t.Helper()
	if _, err := e.host.NL.LinkByName(hostIface); err == nil {
		e.t.Fatalf("%s still there", hostIface)
	}
	if _, err := e.wep(namespace, wep); !errors.Is(err, datastore.ErrNotFound) {
		e.t.Fatalf("WorkloadEndpoint %s/%s: %v", namespace, wep, err)
	}
	cl := ipam.New(e.view(), "n1", ipam.WithLogger(quiet()))
	if held, err := cl.AddrsByHandle(context.Background(), names.PodHandle(containerID)); err != nil || len(held) != 0 {
		e.t.Fatalf("handle still holds %v (%v)", held, err)
	}
}

func cniError(t *testing.T, err error, code uint, contains ...string) {
	t.Helper()
	var te *types.Error
	if !errors.As(err, &te) {
		t.Fatalf("want a CNI error %d, got %v", code, err)
	}
	if te.Code != code {
		t.Fatalf("want code %d, got %d: %s (%s)", code, te.Code, te.Msg, te.Details)
	}
	for _, s := range contains {
		if !strings.Contains(te.Msg+" "+te.Details, s) {
			t.Fatalf("error %q (%q) does not mention %q", te.Msg, te.Details, s)
		}
	}
}

// ADD, CHECK and DEL for every configuration version, on both datastores,
// for a Kubernetes pod and a plain container; DEL twice; STATUS and GC
// for 1.1.0.
func TestAddCheckDel(t *testing.T) {
	for _, kind := range []string{"etcd", "file"} {
		for _, version := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
			t.Run(kind+"/"+version, func(t *testing.T) {
				e := setup(t, kind, "10.244.0.0/16")
				l := e.conflist(version, nil)
				pod := nstest.New(t, "pod")
				plain := nstest.New(t, "ctr")
				podRT := rtFor(pod, "c0ffee0000000001", k8sArgs("prod", "web-1", "c0ffee0000000001")...)
				plainRT := rtFor(plain, "d00d000000000002")

				res, err := e.add(l, podRT)
				if err != nil {
					t.Fatal(err)
				}
				ips := addrs(res)
				if len(ips) != 1 || !netip.MustParsePrefix("10.244.0.0/16").Contains(ips[0]) {
					t.Fatalf("ips %v", ips)
				}
				podIface := names.WorkloadInterface("prod", "web-1")
				e.attached(pod, podIface, ips)
				w, err := e.wep("prod", "n1-k8s-web--1-eth0")
				if err != nil {
					t.Fatal(err)
				}
				if w.Spec.Orchestrator != "k8s" || w.Spec.Pod != "web-1" || w.Spec.ContainerID != "c0ffee0000000001" ||
					w.Spec.InterfaceName != podIface || w.Spec.Node != "n1" || len(w.Spec.IPNetworks) != 1 || w.Spec.IPNetworks[0] != ips[0].String()+"/32" {
					t.Fatalf("WorkloadEndpoint %+v", w.Spec)
				}

				// ADD again (a runtime retrying): the same address, one
				// allocation.
				again, err := e.add(l, podRT)
				if err != nil || !slices.Equal(addrs(again), ips) {
					t.Fatalf("repeated ADD: %v %v, want %v", addrs(again), err, ips)
				}

				res2, err := e.add(l, plainRT)
				if err != nil {
					t.Fatal(err)
				}
				plainIface := names.ContainerInterface("d00d000000000002")
				e.attached(plain, plainIface, addrs(res2))
				if w, err := e.wep("default", "n1-cni-d00d000000000002-eth0"); err != nil || w.Spec.Orchestrator != "cni" || w.Spec.ContainerID != "d00d000000000002" {
					t.Fatalf("plain container's endpoint %+v %v", w, err)
				}

				if version != "0.3.1" {
					if err := e.check(l, podRT); err != nil {
						t.Fatalf("CHECK: %v", err)
					}
					// CHECK sees a host route gone.
					if err := e.host.NL.RouteDel(&netlink.Route{Dst: &net.IPNet{IP: ips[0].AsSlice(), Mask: net.CIDRMask(32, 32)}, Protocol: names.RouteProtocol, Table: unix.RT_TABLE_MAIN, Scope: netlink.SCOPE_LINK}); err != nil {
						t.Fatal(err)
					}
					if err := e.check(l, podRT); err == nil || !strings.Contains(err.Error(), "host route") {
						t.Fatalf("CHECK with the host route gone: %v", err)
					}
				}
				if version == "1.1.0" {
					if err := e.inHost(func() error { return e.cni.GetStatusNetworkList(context.Background(), l) }); err != nil {
						t.Fatalf("STATUS: %v", err)
					}
					// GC with only the pod listed removes the plain container.
					err := e.inHost(func() error {
						return e.cni.GCNetworkList(context.Background(), l, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: "c0ffee0000000001", IfName: "eth0"}}})
					})
					if err != nil {
						t.Fatalf("GC: %v", err)
					}
					e.gone("default", "n1-cni-d00d000000000002-eth0", plainIface, "d00d000000000002")
					if _, err := e.wep("prod", "n1-k8s-web--1-eth0"); err != nil {
						t.Fatalf("GC removed a valid attachment: %v", err)
					}
				}
				for range 2 {
					if err := e.del(l, podRT); err != nil {
						t.Fatalf("DEL: %v", err)
					}
					e.gone("prod", "n1-k8s-web--1-eth0", podIface, "c0ffee0000000001")
					if err := e.del(l, plainRT); err != nil {
						t.Fatalf("DEL: %v", err)
					}
					e.gone("default", "n1-cni-d00d000000000002-eth0", plainIface, "d00d000000000002")
				}
			})
		}
	}
}

// Dual-stack: assign_ipv6 gives an IPv6 address too, with a /128 host
// route; CHECK and DEL cover both.
func TestDualStack(t *testing.T) {
	e := setup(t, "etcd", "10.244.0.0/16", "fd00:244::/64")
	l := e.conflist("1.0.0", map[string]any{"ipam": map[string]any{"type": "roost-ipam", "assign_ipv4": "true", "assign_ipv6": "true"}})
	c := nstest.New(t, "ds")
	rt := rtFor(c, "dual000000000001", k8sArgs("default", "dual", "dual000000000001")...)
	res, err := e.add(l, rt)
	if err != nil {
		t.Fatal(err)
	}
	ips := addrs(res)
	if len(ips) != 2 || !ips[0].Is4() || !ips[1].Is6() || !netip.MustParsePrefix("fd00:244::/64").Contains(ips[1]) {
		t.Fatalf("ips %v", ips)
	}
	if len(res.Routes) != 2 {
		t.Fatalf("routes %v", res.Routes)
	}
	iface := names.WorkloadInterface("default", "dual")
	e.attached(c, iface, ips)
	w, err := e.wep("default", "n1-k8s-dual-eth0")
	if err != nil || len(w.Spec.IPNetworks) != 2 || w.Spec.IPNetworks[1] != ips[1].String()+"/128" {
		t.Fatalf("endpoint %+v %v", w, err)
	}
	if err := e.check(l, rt); err != nil {
		t.Fatal(err)
	}
	if err := e.del(l, rt); err != nil {
		t.Fatal(err)
	}
	e.gone("default", "n1-k8s-dual-eth0", iface, "dual000000000001")

	// IPv6 only.
	l6 := e.conflist("1.1.0", map[string]any{"ipam": map[string]any{"type": "roost-ipam", "assign_ipv4": "false", "assign_ipv6": "true"}})
	c6 := nstest.New(t, "v6")
	rt6 := rtFor(c6, "six0000000000001")
	res, err = e.add(l6, rt6)
	if err != nil {
		t.Fatal(err)
	}
	if ips := addrs(res); len(ips) != 1 || !ips[0].Is6() {
		t.Fatalf("IPv6 only: %v", ips)
	}
	e.attached(c6, names.ContainerInterface("six0000000000001"), addrs(res))
	if err := e.check(l6, rt6); err != nil {
		t.Fatal(err)
	}
	if err := e.del(l6, rt6); err != nil {
		t.Fatal(err)
	}
	e.gone("default", "n1-cni-six0000000000001-eth0", names.ContainerInterface("six0000000000001"), "six0000000000001")
}

// Addresses and pools asked for through CNI_ARGS (IP=, Calico's
// annotation keys), args.cni and the configuration.
func TestAddressRequests(t *testing.T) {
	e := setup(t, "file", "10.244.0.0/16", "10.50.0.0/24")
	for _, tc := range []struct {
		name  string
		extra map[string]any
		args  [][2]string
		want  string // a prefix the address must be in, or the address
	}{
		{"IP=", nil, [][2]string{{"IP", "10.244.7.7"}}, "10.244.7.7/32"},
		{"ipAddrs", nil, [][2]string{{"cni.projectcalico.org/ipAddrs", `["10.50.0.9"]`}}, "10.50.0.9/32"},
		{"ipv4pools by name in CNI_ARGS", nil, [][2]string{{"cni.projectcalico.org/ipv4pools", `["pool2"]`}}, "10.50.0.0/24"},
		{"ipv4_pools by CIDR", map[string]any{"ipam": map[string]any{"type": "roost-ipam", "ipv4_pools": []string{"10.50.0.0/24"}}}, nil, "10.50.0.0/24"},
		{"args.cni pools", map[string]any{"args": map[string]any{"cni": map[string]any{"cni.projectcalico.org/ipv4pools": []string{"pool2"}}}}, nil, "10.50.0.0/24"},
		{"args.cni ips", map[string]any{"args": map[string]any{"cni": map[string]any{"ips": []string{"10.244.3.3"}}}}, nil, "10.244.3.3/32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := nstest.New(t, "req")
			id := "req" + strings.NewReplacer(" ", "", "=", "", ".", "").Replace(tc.name)
			rt := rtFor(c, id, tc.args...)
			l := e.conflist("1.0.0", tc.extra)
			res, err := e.add(l, rt)
			if err != nil {
				t.Fatal(err)
			}
			ips := addrs(res)
			if len(ips) != 1 || !netip.MustParsePrefix(tc.want).Contains(ips[0]) {
				t.Fatalf("got %v, want one in %s", ips, tc.want)
			}
			if err := e.del(l, rt); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Bad input: each error is a CNI error naming the field and value, and a
// failed ADD leaves no veth, route, allocation or endpoint.
func TestAddErrors(t *testing.T) {
	e := setup(t, "etcd", "10.244.0.0/16", "10.60.0.0/30")
	type tc struct {
		name     string
		extra    map[string]any
		args     [][2]string
		netns    string // "" a fresh namespace
		prepare  func(*nstest.NS)
		code     uint
		contains []string
	}
	for _, c := range []tc{
		{name: "unknown pool", extra: map[string]any{"ipam": map[string]any{"type": "roost-ipam", "ipv4_pools": []string{"nosuch"}}},
			code: types.ErrInvalidNetworkConfig, contains: []string{"ipam.ipv4_pools", "nosuch", "pool1 (10.244.0.0/16)"}},
		{name: "unknown pool in CNI_ARGS", args: [][2]string{{"cni.projectcalico.org/ipv4pools", `["10.9.9.0/24"]`}},
			code: types.ErrInvalidNetworkConfig, contains: []string{"cni.projectcalico.org/ipv4pools", "10.9.9.0/24"}},
		{name: "malformed mtu", extra: map[string]any{"mtu": "big"}, code: types.ErrDecodingFailure, contains: []string{"mtu", `"big"`}},
		{name: "mtu out of range", extra: map[string]any{"mtu": 20}, code: types.ErrInvalidNetworkConfig, contains: []string{"mtu", "20"}},
		{name: "bad assign_ipv4", extra: map[string]any{"ipam": map[string]any{"type": "roost-ipam", "assign_ipv4": "maybe"}}, code: types.ErrInvalidNetworkConfig, contains: []string{"ipam.assign_ipv4", "maybe"}},
		{name: "bad datastore_type", extra: map[string]any{"datastore_type": "consul"}, code: types.ErrInvalidNetworkConfig, contains: []string{"datastore_type", "consul"}},
		{name: "bad IP in CNI_ARGS", args: [][2]string{{"IP", "10.1"}}, code: types.ErrInvalidEnvironmentVariables, contains: []string{"IP", "10.1"}},
		{name: "address outside every pool", args: [][2]string{{"IP", "192.0.2.1"}}, code: 100, contains: []string{"192.0.2.1"}},
		{name: "missing netns", netns: "/var/run/netns/roost-h12a-does-not-exist", code: types.ErrInvalidNetNS, contains: []string{"roost-h12a-does-not-exist"}},
		{name: "datastore unreachable", extra: map[string]any{"datastore_type": "etcdv3", "etcd_endpoints": "http://127.0.0.1:9", "datastore_timeout_seconds": 1},
			code: types.ErrTryAgainLater, contains: []string{"http://127.0.0.1:9", "1s"}},
		{name: "eth0 taken inside", prepare: func(n *nstest.NS) { n.Dummy(t, "eth0") }, code: types.ErrInternal, contains: []string{"eth0"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := nstest.New(t, "bad")
			if c.prepare != nil {
				c.prepare(n)
			}
			rt := rtFor(n, "bad0000000000001", c.args...)
			if c.netns != "" {
				rt.NetNS = c.netns
			}
			before := e.links()
			_, err := e.add(e.conflist("1.0.0", c.extra), rt)
			cniError(t, err, c.code, c.contains...)
			e.gone("default", "n1-cni-bad0000000000001-eth0", names.ContainerInterface("bad0000000000001"), "bad0000000000001")
			if after := e.links(); after != before {
				t.Fatalf("host links %d before, %d after", before, after)
			}
		})
	}

	// An exhausted pool: the /30 gives four addresses, the fifth fails and
	// leaves nothing.
	l := e.conflist("1.0.0", map[string]any{"ipam": map[string]any{"type": "roost-ipam", "ipv4_pools": []string{"pool2"}}})
	for i := range 4 {
		n := nstest.New(t, fmt.Sprintf("full%d", i))
		if _, err := e.add(l, rtFor(n, fmt.Sprintf("%dfull00000000000", i))); err != nil {
			t.Fatal(err)
		}
	}
	n := nstest.New(t, "full4")
	_, err := e.add(l, rtFor(n, "4full00000000000"))
	cniError(t, err, 100, "no address")
	e.gone("default", "n1-cni-4full00000000000-eth0", names.ContainerInterface("4full00000000000"), "4full00000000000")
}

func (e *env) links() int {
	ls, err := e.host.NL.LinkList()
	if err != nil {
		e.t.Fatal(err)
	}
	return len(ls)
}

// DEL succeeds whatever is already gone: the namespace, the veth, the
// allocation, the endpoint; and a DEL that never had an ADD.
func TestDelIdempotent(t *testing.T) {
	e := setup(t, "file", "10.244.0.0/16")
	l := e.conflist("0.4.0", nil)
	n := nstest.New(t, "gone")
	rt := rtFor(n, "gone000000000001")
	if _, err := e.add(l, rt); err != nil {
		t.Fatal(err)
	}
	rt.NetNS = "/var/run/netns/roost-h12a-vanished"
	for range 3 {
		if err := e.del(l, rt); err != nil {
			t.Fatal(err)
		}
	}
	e.gone("default", "n1-cni-gone000000000001-eth0", names.ContainerInterface("gone000000000001"), "gone000000000001")
	if err := e.del(l, rtFor(n, "never00000000001")); err != nil {
		t.Fatal(err)
	}
	// An unreachable datastore fails the DEL (the runtime retries) within
	// the timeout.
	bad := e.conflist("0.4.0", map[string]any{"datastore_type": "etcdv3", "etcd_endpoints": "http://127.0.0.1:9", "datastore_timeout_seconds": 1})
	start := time.Now()
	cniError(t, e.del(bad, rt), types.ErrTryAgainLater, "http://127.0.0.1:9")
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("DEL took %s with a 1 s timeout", d)
	}
	// CHECK is not part of 0.3.1.
	if err := e.check(e.conflist("0.3.1", nil), rt); err == nil {
		t.Fatal("CHECK accepted for 0.3.1")
	}
}

// The network plugin does roost-ipam's work in-process; another IPAM
// type is exec'd as the specification says. Both give the same result.
func TestIPAMInProcessAndExecd(t *testing.T) {
	e := setup(t, "etcd", "10.244.0.0/16")
	for _, typ := range []string{"roost-ipam", "other-ipam"} {
		t.Run(typ, func(t *testing.T) {
			l := e.conflist("1.0.0", map[string]any{"ipam": map[string]any{"type": typ}})
			n := nstest.New(t, "ipam")
			id := typ[:4] + strings.Repeat("0", 12)
			rt := rtFor(n, id)
			res, err := e.add(l, rt)
			if err != nil {
				t.Fatal(err)
			}
			ips := addrs(res)
			if len(ips) != 1 {
				t.Fatalf("ips %v", ips)
			}
			e.attached(n, names.ContainerInterface(id), ips)
			cl := ipam.New(e.view(), "n1", ipam.WithLogger(quiet()))
			if held, err := cl.AddrsByHandle(context.Background(), names.PodHandle(id)); err != nil || !slices.Equal(held, ips) {
				t.Fatalf("handle holds %v (%v), want %v", held, err, ips)
			}
			if err := e.del(l, rt); err != nil {
				t.Fatal(err)
			}
			e.gone("default", "n1-cni-"+id+"-eth0", names.ContainerInterface(id), id)
		})
	}
}

// 16 ADDs at once on one host: distinct addresses, every allocation and
// endpoint recorded, all released by the DELs.
func TestConcurrentAdds(t *testing.T) {
	e := setup(t, "etcd", "10.244.0.0/16")
	l := e.conflist("1.0.0", nil)
	const n = 16
	nss := make([]*nstest.NS, n)
	for i := range nss {
		nss[i] = nstest.New(t, fmt.Sprintf("c%d", i))
	}
	os.Setenv(plugin.EnvHostNetNS, e.host.Path)
	defer os.Unsetenv(plugin.EnvHostNetNS)
	results := make([][]netip.Addr, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := e.cni.AddNetworkList(context.Background(), l, rtFor(nss[i], fmt.Sprintf("conc%012d", i), k8sArgs("load", fmt.Sprintf("p%d", i), "x")...))
			if err == nil {
				var r *current.Result
				if r, err = current.NewResultFromResult(res); err == nil {
					results[i] = addrs(r)
				}
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	seen := map[netip.Addr]int{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("ADD %d: %v", i, errs[i])
		}
		if len(results[i]) != 1 {
			t.Fatalf("ADD %d: %v", i, results[i])
		}
		if j, dup := seen[results[i][0]]; dup {
			t.Fatalf("ADDs %d and %d both got %s", j, i, results[i][0])
		}
		seen[results[i][0]] = i
		cl := ipam.New(e.ds, "n1", ipam.WithLogger(quiet()))
		held, err := cl.AddrsByHandle(context.Background(), names.PodHandle(fmt.Sprintf("conc%012d", i)))
		if err != nil || len(held) != 1 || held[0] != results[i][0] {
			t.Fatalf("handle of ADD %d holds %v (%v), result %v", i, held, err, results[i])
		}
		if _, err := e.wep("load", fmt.Sprintf("n1-k8s-p%d-eth0", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.cni.DelNetworkList(context.Background(), l, rtFor(nss[i], fmt.Sprintf("conc%012d", i), k8sArgs("load", fmt.Sprintf("p%d", i), "x")...))
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("DEL %d: %v", i, errs[i])
		}
		e.gone("load", fmt.Sprintf("n1-k8s-p%d-eth0", i), names.WorkloadInterface("load", fmt.Sprintf("p%d", i)), fmt.Sprintf("conc%012d", i))
	}
}

// "mtu": 0 takes the MTU roost-node wrote for the pools' encapsulation
// (here 1450, VXLAN on a 1500-byte link); without the file, 1500.
func TestMTUFromNode(t *testing.T) {
	e := setup(t, "file", "10.244.0.0/16")
	l := e.conflist("1.0.0", map[string]any{"mtu": nil})
	file := filepath.Join(t.TempDir(), "mtu")
	t.Setenv(plugin.EnvMTUFile, file)
	for _, want := range []int{1500, 1450} {
		if want != 1500 {
			if err := os.WriteFile(file, []byte(fmt.Sprintf("%d\n", want)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		c := nstest.New(t, fmt.Sprintf("mtu%d", want))
		id := fmt.Sprintf("%dmtu000000000", want)
		res, err := e.add(l, rtFor(c, id))
		if err != nil {
			t.Fatal(err)
		}
		e.attachedMTU(c, names.ContainerInterface(id), addrs(res), want)
	}
}

// A Kubernetes pod whose sandbox is replaced before the old one's DEL:
// the new container takes the pod's endpoint and host veth over (as
// Calico does); the old container's late DEL releases its own addresses
// and leaves the new attachment alone.
func TestReplacedSandbox(t *testing.T) {
	e := setup(t, "etcd", "10.244.0.0/16")
	l := e.conflist("1.0.0", nil)
	c1 := nstest.New(t, "sb1")
	c2 := nstest.New(t, "sb2")
	rt1 := rtFor(c1, "old0000000000001", k8sArgs("prod", "api", "old0000000000001")...)
	rt2 := rtFor(c2, "new0000000000002", k8sArgs("prod", "api", "new0000000000002")...)
	if _, err := e.add(l, rt1); err != nil {
		t.Fatal(err)
	}
	res, err := e.add(l, rt2)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.del(l, rt1); err != nil {
		t.Fatal(err)
	}
	e.attached(c2, names.WorkloadInterface("prod", "api"), addrs(res))
	if w, err := e.wep("prod", "n1-k8s-api-eth0"); err != nil || w.Spec.ContainerID != "new0000000000002" {
		t.Fatalf("endpoint %+v %v", w, err)
	}
	if held, err := ipam.New(e.view(), "n1", ipam.WithLogger(quiet())).AddrsByHandle(context.Background(), names.PodHandle("old0000000000001")); err != nil || len(held) != 0 {
		t.Fatalf("old container's addresses: %v %v", held, err)
	}
	if err := e.check(l, rt2); err != nil {
		t.Fatal(err)
	}
}

// VERSION: both names speak the four configuration versions.
func TestVersion(t *testing.T) {
	c := libcni.NewCNIConfig([]string{binDir}, nil)
	for _, name := range []string{"roost", "roost-ipam"} {
		info, err := c.GetVersionInfo(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		got := info.SupportedVersions()
		for _, v := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
			if !slices.Contains(got, v) {
				t.Errorf("%s: %v lacks %s", name, got, v)
			}
		}
	}
}

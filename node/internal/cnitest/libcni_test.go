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
	"strings"
	"testing"

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
	return os.Symlink("roost", filepath.Join(dir, "roost-ipam"))
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
	hl, err := e.host.NL.LinkByName(hostIface)
	if err != nil {
		e.t.Fatalf("host end %s: %v", hostIface, err)
	}
	if hl.Attrs().HardwareAddr.String() != names.HostVethMAC || hl.Attrs().MTU != 1450 {
		e.t.Fatalf("host end %s: MAC %s MTU %d", hostIface, hl.Attrs().HardwareAddr, hl.Attrs().MTU)
	}
	in, err := c.NL.LinkByName("eth0")
	if err != nil || in.Attrs().MTU != 1450 {
		e.t.Fatalf("eth0 inside: %v", err)
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

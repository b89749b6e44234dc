package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/roostnet/roost/node/ipam"
)

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		conf     string
		code     uint
		contains []string
	}{
		{`{"type":"roost",`, types.ErrDecodingFailure, []string{"malformed"}},
		{`{"type":"roost","mtu":"x"}`, types.ErrDecodingFailure, []string{"mtu", `"x"`}},
		{`{"type":"roost","ipam":{"ipv4_pools":"p"}}`, types.ErrDecodingFailure, []string{"ipam.ipv4_pools", `"p"`}},
		{`{"type":"roost","mtu":70000}`, types.ErrInvalidNetworkConfig, []string{"mtu", "70000"}},
		{`{"type":"roost","datastore_type":"kubernetes"}`, types.ErrInvalidNetworkConfig, []string{"datastore_type", "kubernetes"}},
		{`{"type":"roost","datastore_timeout_seconds":-1}`, types.ErrInvalidNetworkConfig, []string{"datastore_timeout_seconds", "-1"}},
		{`{"type":"roost","ipam":{"assign_ipv6":"sure"}}`, types.ErrInvalidNetworkConfig, []string{"ipam.assign_ipv6", "sure"}},
		{`{"type":"roost","ipam":{"ipv6_pools":[" "]}}`, types.ErrInvalidNetworkConfig, []string{"ipam.ipv6_pools"}},
		{`{"type":"roost","runtimeConfig":{"ips":["10.0.0.300"]}}`, types.ErrInvalidNetworkConfig, []string{"runtimeConfig.ips", "10.0.0.300"}},
	} {
		_, err := Parse([]byte(tc.conf))
		var te *types.Error
		if !errors.As(err, &te) || te.Code != tc.code {
			t.Errorf("%s: want code %d, got %v", tc.conf, tc.code, err)
			continue
		}
		for _, s := range tc.contains {
			if !strings.Contains(te.Msg+" "+te.Details, s) {
				t.Errorf("%s: %q (%q) lacks %q", tc.conf, te.Msg, te.Details, s)
			}
		}
	}
}

func TestParseCalicoConfig(t *testing.T) {
	c, err := Parse([]byte(`{"cniVersion":"0.3.1","name":"k8s-pod-network","type":"roost","etcd_endpoints":"http://e:2379",
		"policy":{"type":"k8s"},"kubernetes":{"kubeconfig":"/x"},"ipam":{"type":"roost-ipam","assign_ipv4":true,"assign_ipv6":"True"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if d := c.Datastore(); d.Type != "etcdv3" || d.EtcdEndpoints != "http://e:2379" {
		t.Fatalf("datastore %+v", d)
	}
	if c.IPAM.AssignIPv4.Mode(ipam.FamilyOff) != ipam.FamilyOn || c.IPAM.AssignIPv6.Mode(ipam.FamilyOff) != ipam.FamilyOn {
		t.Fatalf("families %q %q", c.IPAM.AssignIPv4, c.IPAM.AssignIPv6)
	}
	if c.Timeout().Seconds() != 10 {
		t.Fatal(c.Timeout())
	}
}

func TestIdentify(t *testing.T) {
	id, _, err := Identify("abcdef0123456789", "eth0", "IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web-1;K8S_POD_INFRA_CONTAINER_ID=abcdef0123456789")
	if err != nil || id.Orchestrator != "k8s" || id.Namespace != "prod" || id.Pod != "web-1" || id.Handle != "k8s-pod-network.abcdef0123456789" || !strings.HasPrefix(id.HostIface, "cali") || len(id.HostIface) != 15 {
		t.Fatalf("%+v %v", id, err)
	}
	id, _, err = Identify("abcdef0123456789", "net1", "")
	if err != nil || id.Orchestrator != "cni" || id.Namespace != "default" || id.HostIface != "caliabcdef01234" || id.IfName != "net1" {
		t.Fatalf("%+v %v", id, err)
	}
	for _, bad := range []struct{ id, ifname, args string }{{"", "eth0", ""}, {"x", "", ""}, {"x", "eth0", "novalue"}, {"x", "eth0", "IP=1.2.3"}} {
		if _, _, err := Identify(bad.id, bad.ifname, bad.args); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// CNI_ARGS wins over args.cni, which wins over the configuration; the
// addresses of all three add up.
func TestAddressRequestPrecedence(t *testing.T) {
	c, err := Parse([]byte(`{"type":"roost","ipam":{"type":"roost-ipam","ipv4_pools":["conf"],"ipv6_pools":["conf6"]},
		"args":{"cni":{"cni.projectcalico.org/ipv4pools":"[\"args\"]","cni.projectcalico.org/ipv6pools":["args6"],"ips":["10.0.0.1"]}},
		"runtimeConfig":{"ips":["fd00::1"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	a, err := ParseArgs(`cni.projectcalico.org/ipv4pools=["env"];IP=10.0.0.1`)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.AddressRequest(a)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.IPv4Pools, []string{"env"}) || r.IPv4PoolsField != "CNI_ARGS cni.projectcalico.org/ipv4pools" ||
		!slices.Equal(r.IPv6Pools, []string{"args6"}) || r.IPv6PoolsField != "args.cni.cni.projectcalico.org/ipv6pools" {
		t.Fatalf("pools %+v", r)
	}
	if !slices.Equal(r.IPs, []netip.Addr{netip.MustParseAddr("fd00::1"), netip.MustParseAddr("10.0.0.1")}) {
		t.Fatalf("ips %v", r.IPs)
	}
	if r.IPv4 != ipam.FamilyOn || r.IPv6 != ipam.FamilyOff {
		t.Fatalf("families %v %v", r.IPv4, r.IPv6)
	}
}

func TestNode(t *testing.T) {
	file := filepath.Join(t.TempDir(), "nodename")
	if err := os.WriteFile(file, []byte("Host-7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		c    NetConf
		want string
		err  string
	}{
		{NetConf{NodeName: "n1", NodenameFile: file}, "n1", ""},
		{NetConf{NodenameFile: file}, "host-7", ""},
		{NetConf{NodenameFile: file + ".missing"}, "", "nodename_file"},
		{NetConf{NodeName: "bad_name"}, "", "nodename"},
	} {
		got, err := tc.c.Node()
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%+v: %q %v", tc.c, got, err)
		}
	}
	if got, err := (&NetConf{NodenameFile: file + ".missing", NodenameFileOptional: true}).Node(); err != nil || got == "" {
		t.Errorf("optional file: %q %v", got, err)
	}
}

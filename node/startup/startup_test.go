package startup

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/internal/dstest"
)

func quiet() logrus.FieldLogger {
	l := logrus.New()
	l.SetLevel(logrus.WarnLevel)
	return l
}

func TestNodeName(t *testing.T) {
	if n, err := NodeName("Host-A.example"); err != nil || n != "host-a.example" {
		t.Fatalf("%q %v", n, err)
	}
	if _, err := NodeName("bad_name"); err == nil {
		t.Fatal("bad_name accepted")
	}
	if n, err := NodeName(""); err != nil || n == "" {
		t.Fatalf("hostname: %q %v", n, err)
	}
}

func TestRegister(t *testing.T) {
	ctx := context.Background()
	ds := dstest.NewFile(t)
	as := api.ASNumber(65001)
	addrs := Addrs{V4: netip.MustParsePrefix("10.0.0.5/24"), V6: netip.MustParsePrefix("2001:db8::5/64")}
	n, err := Register(ctx, ds, "n1", addrs, &as, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if n.Spec.BGP.IPv4Address != "10.0.0.5/24" || n.Spec.BGP.IPv6Address != "2001:db8::5/64" || *n.Spec.BGP.ASNumber != 65001 {
		t.Fatalf("%+v", n.Spec.BGP)
	}
	// Labels and tunnel addresses set by others survive an update; a nil
	// AS keeps the node's.
	kv, _ := ds.Get(ctx, datastore.ResourceKey(api.KindNode, "", "n1"))
	nn := kv.Value.(*api.Node)
	nn.Metadata.Labels = map[string]string{"rack": "r1"}
	nn.Spec.BGP.IPv4IPIPTunnelAddr = "10.244.0.1"
	nn.Metadata.ResourceVersion = ""
	if _, err := ds.Update(ctx, &datastore.KV{Key: kv.Key, Value: nn, Revision: kv.Revision}); err != nil {
		t.Fatal(err)
	}
	addrs.V4 = netip.MustParsePrefix("10.0.0.6/24")
	addrs.V6 = netip.Prefix{}
	if _, err := Register(ctx, ds, "n1", addrs, nil, quiet()); err != nil {
		t.Fatal(err)
	}
	kv, _ = ds.Get(ctx, datastore.ResourceKey(api.KindNode, "", "n1"))
	nn = kv.Value.(*api.Node)
	if nn.Metadata.Labels["rack"] != "r1" || nn.Spec.BGP.IPv4IPIPTunnelAddr != "10.244.0.1" || *nn.Spec.BGP.ASNumber != 65001 ||
		nn.Spec.BGP.IPv4Address != "10.0.0.6/24" || nn.Spec.BGP.IPv6Address != "" {
		t.Fatalf("after update: %+v %+v", nn.Metadata, nn.Spec.BGP)
	}
	// Unchanged: no write.
	rev := kv.Revision
	if _, err := Register(ctx, ds, "n1", addrs, nil, quiet()); err != nil {
		t.Fatal(err)
	}
	if kv, _ = ds.Get(ctx, kv.Key); kv.Revision != rev {
		t.Fatal("no-op registration wrote the node")
	}
	// Another node with the same address is refused, with a clear error.
	_, err = Register(ctx, ds, "n2", Addrs{V4: netip.MustParsePrefix("10.0.0.6/16")}, nil, quiet())
	if !errors.Is(err, ErrDuplicateAddress) {
		t.Fatalf("duplicate: %v", err)
	}
	t.Logf("duplicate error: %v", err)
	if _, err := ds.Get(ctx, datastore.ResourceKey(api.KindNode, "", "n2")); !errors.Is(err, datastore.ErrNotFound) {
		t.Fatal("n2 was written")
	}
	if _, err := Register(ctx, ds, "n2", Addrs{V4: netip.MustParsePrefix("10.0.0.7/24")}, nil, quiet()); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultPool(t *testing.T) {
	ctx := context.Background()
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	pc, err := PoolFromEnv(getenv)
	if err != nil || pc.CIDR != "192.168.0.0/16" || pc.IPIP != api.EncapAlways || pc.VXLAN != api.EncapNever || pc.BlockSize != 26 || !pc.NATOutgoing {
		t.Fatalf("defaults: %+v %v", pc, err)
	}
	env = map[string]string{"CALICO_IPV4POOL_CIDR": "10.244.0.0/16", "CALICO_IPV4POOL_VXLAN": "crosssubnet",
		"CALICO_IPV4POOL_BLOCK_SIZE": "24", "CALICO_IPV4POOL_NAT_OUTGOING": "false"}
	pc, err = PoolFromEnv(getenv)
	if err != nil || pc.IPIP != api.EncapNever || pc.VXLAN != api.EncapCrossSubnet || pc.BlockSize != 24 || pc.NATOutgoing {
		t.Fatalf("env: %+v %v", pc, err)
	}
	if _, err := PoolFromEnv(func(k string) string { return map[string]string{"CALICO_IPV4POOL_IPIP": "sometimes"}[k] }); err == nil {
		t.Fatal("bad mode accepted")
	}
	bad := pc
	bad.BlockSize = 8
	if _, err := bad.DefaultPool(); err == nil {
		t.Fatal("block size 8 accepted")
	}

	// Several nodes starting together: exactly one pool.
	ds := dstest.NewFile(t)
	var wg sync.WaitGroup
	created := make(chan bool, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := EnsureDefaultPools(ctx, ds, pc, false, quiet())
			if err != nil {
				t.Error(err)
			}
			created <- len(c) == 1
		}()
	}
	wg.Wait()
	close(created)
	n := 0
	for c := range created {
		if c {
			n++
		}
	}
	res, _ := ds.List(ctx, datastore.KindPrefix(api.KindIPPool))
	if n != 1 || len(res.KVs) != 1 {
		t.Fatalf("created %d times, %d pools", n, len(res.KVs))
	}
	p := res.KVs[0].Value.(*api.IPPool)
	if p.Metadata.Name != DefaultPoolName || p.Spec.CIDR != "10.244.0.0/16" || p.Spec.VXLANMode != api.EncapCrossSubnet {
		t.Fatalf("pool %+v", p.Spec)
	}
	// An existing IPv4 pool (any name) means no default pool.
	ds2 := dstest.NewFile(t)
	other := &api.IPPool{}
	other.Metadata.Name = "mine"
	other.Spec.CIDR = "10.1.0.0/16"
	api.Default(other)
	if _, err := ds2.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	if c, err := EnsureDefaultPools(ctx, ds2, pc, false, quiet()); err != nil || len(c) != 0 {
		t.Fatalf("with a pool: %v %v", c, err)
	}
	pc.Disabled = true
	if c, err := EnsureDefaultPools(ctx, dstest.NewFile(t), pc, true, quiet()); err != nil || len(c) != 0 {
		t.Fatalf("NO_DEFAULT_POOLS: %v %v", c, err)
	}
}

// TestDefaultPoolV6: the default IPv6 pool (Calico's name, block size 122,
// no NAT, VXLAN from CALICO_IPV6POOL_VXLAN) is created when IPv6 is in
// use: a given CIDR, or a node with an IPv6 address (then on a random
// ULA /48); never with "none" or FELIX_IPV6SUPPORT=false.
func TestDefaultPoolV6(t *testing.T) {
	ctx := context.Background()
	pcOf := func(env map[string]string) PoolConfig {
		t.Helper()
		pc, err := PoolFromEnv(func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		return pc
	}
	pools := func(ds datastore.Datastore) map[string]*api.IPPool {
		res, _ := ds.List(ctx, datastore.KindPrefix(api.KindIPPool))
		m := map[string]*api.IPPool{}
		for _, kv := range res.KVs {
			p := kv.Value.(*api.IPPool)
			m[p.Metadata.Name] = p
		}
		return m
	}
	cases := []struct {
		name    string
		env     map[string]string
		hasIPv6 bool
		check   func(p *api.IPPool) bool // nil: no IPv6 pool
	}{
		{"IPv4-only node, no CIDR", nil, false, nil},
		{"given CIDR", map[string]string{"CALICO_IPV6POOL_CIDR": "fd00:10::/64", "CALICO_IPV6POOL_VXLAN": "Always", "CALICO_IPV6POOL_BLOCK_SIZE": "120"}, false,
			func(p *api.IPPool) bool {
				return p.Spec.CIDR == "fd00:10::/64" && p.Spec.VXLANMode == api.EncapAlways && p.Spec.BlockSize == 120 && !p.Spec.NATOutgoing && p.Spec.IPIPMode == api.EncapNever
			}},
		{"node with IPv6: random ULA", nil, true, func(p *api.IPPool) bool {
			pfx := netip.MustParsePrefix(p.Spec.CIDR)
			return pfx.Bits() == 48 && pfx.Addr().As16()[0] == 0xfd && p.Spec.BlockSize == 122 && p.Spec.VXLANMode == api.EncapNever
		}},
		{"none", map[string]string{"CALICO_IPV6POOL_CIDR": "none"}, true, nil},
		{"FELIX_IPV6SUPPORT=false", map[string]string{"FELIX_IPV6SUPPORT": "false"}, true, nil},
		{"IPv6 only", map[string]string{"CALICO_IPV4POOL_CIDR": "none", "CALICO_IPV6POOL_CIDR": "fd00:11::/64", "CALICO_IPV6POOL_NAT_OUTGOING": "true"}, true,
			func(p *api.IPPool) bool { return p.Spec.NATOutgoing }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ds := dstest.NewFile(t)
			if _, err := EnsureDefaultPools(ctx, ds, pcOf(tc.env), tc.hasIPv6, quiet()); err != nil {
				t.Fatal(err)
			}
			got := pools(ds)
			if _, ok := got[DefaultPoolName]; ok == (tc.env["CALICO_IPV4POOL_CIDR"] == "none") {
				t.Errorf("IPv4 pool present: %v", ok)
			}
			p6 := got[DefaultPoolNameV6]
			if (p6 == nil) != (tc.check == nil) || (p6 != nil && !tc.check(p6)) {
				t.Fatalf("IPv6 pool %+v", p6)
			}
			// Again: nothing more is created.
			if c, err := EnsureDefaultPools(ctx, ds, pcOf(tc.env), tc.hasIPv6, quiet()); err != nil || len(c) != 0 {
				t.Fatalf("second run created %v %v", c, err)
			}
		})
	}
	if _, err := (PoolConfig{V6: PoolConfigV6{CIDR: "10.0.0.0/8", BlockSize: 122}}).DefaultPoolV6(); err == nil {
		t.Fatal("an IPv4 CIDR accepted for the IPv6 pool")
	}
}

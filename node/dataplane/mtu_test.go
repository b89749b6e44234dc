package dataplane

import (
	"net"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/node/dataplane/fakenl"
	"github.com/roostnet/roost/node/mtu"
)

// TestMTUPerMode: the tunnel devices and the workload MTU (Status and
// the MTU file) for each pool mode, through the fake kernel (the only
// place IPIP runs here).
func TestMTUPerMode(t *testing.T) {
	type want struct{ tunl0, vxlan, workload int } // 0: device absent
	for _, tc := range []struct {
		name      string
		hostMTU   int
		ipip      string
		vxlan     string
		cfg       Config
		want      want
		wantHost  int
		extraLink *netlink.Device // for the pattern case
	}{
		{name: "no encapsulation", hostMTU: 1500, ipip: api.EncapNever, vxlan: api.EncapNever, want: want{0, 0, 1500}},
		{name: "IPIP Always", hostMTU: 1500, ipip: api.EncapAlways, vxlan: api.EncapNever, want: want{1480, 0, 1480}},
		{name: "IPIP CrossSubnet", hostMTU: 1500, ipip: api.EncapCrossSubnet, vxlan: api.EncapNever, want: want{1480, 0, 1480}},
		{name: "VXLAN Always", hostMTU: 1500, ipip: api.EncapNever, vxlan: api.EncapAlways, want: want{0, 1450, 1450}},
		{name: "VXLAN CrossSubnet", hostMTU: 1500, ipip: api.EncapNever, vxlan: api.EncapCrossSubnet, want: want{0, 1450, 1450}},
		{name: "jumbo host interface", hostMTU: 9000, ipip: api.EncapNever, vxlan: api.EncapAlways, want: want{0, 8950, 8950}},
		{name: "FELIX_VXLANMTU", hostMTU: 1500, ipip: api.EncapNever, vxlan: api.EncapAlways, cfg: Config{VXLANMTU: 1400}, want: want{0, 1400, 1400}},
		{name: "FELIX_IPINIPMTU", hostMTU: 1500, ipip: api.EncapAlways, vxlan: api.EncapNever, cfg: Config{IPIPMTU: 1300}, want: want{1300, 0, 1300}},
		{name: "ROOST_WORKLOAD_MTU", hostMTU: 1500, ipip: api.EncapNever, vxlan: api.EncapAlways, cfg: Config{WorkloadMTU: 1200}, want: want{0, 1450, 1200}},
		{name: "FELIX_MTUIFACEPATTERN: smallest matching", hostMTU: 9000, ipip: api.EncapNever, vxlan: api.EncapAlways,
			cfg:       Config{MTUIfacePattern: regexp.MustCompile("^(eth|bond)")},
			extraLink: &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "bond0", MTU: 1500, Flags: net.FlagUp}},
			want:      want{0, 1450, 1450}, wantHost: 1500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := fakenl.New()
			eth := k.AddLink(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: tc.hostMTU, Flags: net.FlagUp}})
			if err := k.AddrAdd(eth, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("10.0.0.1").To4(), Mask: net.CIDRMask(24, 32)}}); err != nil {
				t.Fatal(err)
			}
			if tc.extraLink != nil {
				k.AddLink(tc.extraLink)
			}
			cfg := tc.cfg
			cfg.NodeName = "n1"
			cfg.MTUFile = filepath.Join(t.TempDir(), "mtu")
			d := New(cfg, k, quiet(), nil)
			d.SetNode(Node{Name: "n1", IPv4: pfx("10.0.0.1/24"), IPIPAddr: addr("10.244.0.1"), VXLANAddr: addr("10.244.0.2")})
			d.SetNode(Node{Name: "n2", IPv4: pfx("10.1.0.2/24"), IPIPAddr: addr("10.244.1.1"), VXLANAddr: addr("10.244.1.2")})
			d.SetPool(Pool{CIDR: pfx("10.244.0.0/16"), IPIPMode: tc.ipip, VXLANMode: tc.vxlan})
			if err := d.Resync(); err != nil {
				t.Fatal(err)
			}
			for _, dev := range []struct {
				name string
				want int
			}{{"tunl0", tc.want.tunl0}, {"vxlan.calico", tc.want.vxlan}} {
				l := k.Link(dev.name)
				switch {
				case dev.want == 0 && l != nil && len(k.Addrs(dev.name)) > 0:
					t.Errorf("%s configured, want none", dev.name)
				case dev.want != 0 && l == nil:
					t.Errorf("%s missing", dev.name)
				case dev.want != 0 && l.Attrs().MTU != dev.want:
					t.Errorf("%s MTU %d, want %d", dev.name, l.Attrs().MTU, dev.want)
				}
			}
			st := d.Status()
			host := tc.hostMTU
			if tc.wantHost != 0 {
				host = tc.wantHost
			}
			if st.MTU.Workload != tc.want.workload || st.MTU.Host != host {
				t.Errorf("status MTUs %+v, want workload %d host %d", st.MTU, tc.want.workload, host)
			}
			if v, err := mtu.ReadFile(cfg.MTUFile); err != nil || v != tc.want.workload {
				t.Errorf("MTU file: %d %v, want %d", v, err, tc.want.workload)
			}
		})
	}
}

// TestMTUFollowsPoolsAndHost: a change of pool mode changes the tunnel
// devices and the MTU file; so does a change of the host interface's
// MTU; a file changed behind the agent's back is put right by a resync.
func TestMTUFollowsPoolsAndHost(t *testing.T) {
	k := fakeHost(t)
	file := filepath.Join(t.TempDir(), "mtu")
	obs := newCounter()
	d := New(Config{NodeName: "n1", MTUFile: file}, k, quiet(), obs)
	d.SetNode(Node{Name: "n1", IPv4: pfx("10.0.0.1/24"), IPIPAddr: addr("10.244.0.1"), VXLANAddr: addr("10.244.0.2")})
	step := func(what string, ipip, vxlan string, wantFile int, check func()) {
		t.Helper()
		d.SetPool(Pool{CIDR: pfx("10.244.0.0/16"), IPIPMode: ipip, VXLANMode: vxlan})
		if err := d.Apply(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if v, err := mtu.ReadFile(file); err != nil || v != wantFile {
			t.Fatalf("%s: MTU file %d %v, want %d", what, v, err, wantFile)
		}
		check()
	}
	step("IPIP", api.EncapAlways, api.EncapNever, 1480, func() {
		if l := k.Link("tunl0"); l == nil || l.Attrs().MTU != 1480 {
			t.Fatalf("tunl0 %+v", l)
		}
	})
	step("VXLAN", api.EncapNever, api.EncapAlways, 1450, func() {
		if l := k.Link("vxlan.calico"); l == nil || l.Attrs().MTU != 1450 {
			t.Fatalf("vxlan.calico %+v", l)
		}
		if a := k.Addrs("tunl0"); len(a) != 0 {
			t.Fatalf("tunl0 keeps %v", a)
		}
	})
	step("no encapsulation", api.EncapNever, api.EncapNever, 1500, func() {
		if l := k.Link("vxlan.calico"); l != nil {
			t.Fatal("vxlan.calico left")
		}
	})
	step("VXLAN again", api.EncapNever, api.EncapAlways, 1450, func() {})

	// The host interface grows: tunnel and workload MTUs follow.
	eth, _ := k.LinkByName("eth0")
	if err := k.LinkSetMTU(eth, 9000); err != nil {
		t.Fatal(err)
	}
	eth, _ = k.LinkByName("eth0")
	d.HandleEvent(Event{Link: &netlink.LinkUpdate{Link: eth}})
	if err := d.Apply(); err != nil {
		t.Fatal(err)
	}
	if l := k.Link("vxlan.calico"); l.Attrs().MTU != 8950 {
		t.Fatalf("vxlan.calico MTU %d after the host's became 9000", l.Attrs().MTU)
	}
	if v, _ := mtu.ReadFile(file); v != 8950 {
		t.Fatalf("MTU file %d", v)
	}

	// Someone rewrites the file: the next resync restores it.
	if _, err := mtu.WriteFile(file, 1500); err != nil {
		t.Fatal(err)
	}
	if err := d.Resync(); err != nil {
		t.Fatal(err)
	}
	if v, _ := mtu.ReadFile(file); v != 8950 || obs.get(obs.drift, "mtu_file") != 1 {
		t.Fatalf("MTU file %d after resync, drift repairs %v", v, obs.drift)
	}
}

// TestEncapsPerFamily: VXLAN in an IPv6 pool counts as VXLAN over IPv6
// (70 bytes), IPIP only in IPv4 pools.
func TestEncapsPerFamily(t *testing.T) {
	d := New(Config{NodeName: "n1"}, fakenl.New(), quiet(), nil)
	d.SetPool(Pool{CIDR: pfx("fd00:244::/48"), IPIPMode: api.EncapAlways, VXLANMode: api.EncapAlways})
	if e := d.encapsLocked(); e != (mtu.Encaps{VXLANV6: true}) {
		t.Fatalf("IPv6 pool: %+v", e)
	}
	d.SetPool(Pool{CIDR: pfx("10.244.0.0/16"), IPIPMode: api.EncapNever, VXLANMode: api.EncapCrossSubnet})
	if e := d.encapsLocked(); e != (mtu.Encaps{VXLAN: true, VXLANV6: true}) {
		t.Fatalf("both families: %+v", e)
	}
	if m := mtu.Compute(1500, d.encapsLocked(), mtu.Overrides{}); m.Workload != 1430 {
		t.Fatalf("workload MTU %d with a VXLAN IPv6 pool, want 1430", m.Workload)
	}
}

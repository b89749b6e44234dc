package mtu

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

func TestCompute(t *testing.T) {
	for _, tc := range []struct {
		name string
		host int
		enc  Encaps
		o    Overrides
		want MTUs
	}{
		{"no encapsulation: workloads get the host MTU", 1500, Encaps{}, Overrides{},
			MTUs{Host: 1500, IPIP: 1480, VXLAN: 1450, VXLANV6: 1430, Workload: 1500}},
		{"VXLAN over IPv4", 1500, Encaps{VXLAN: true}, Overrides{},
			MTUs{Host: 1500, IPIP: 1480, VXLAN: 1450, VXLANV6: 1430, Workload: 1450}},
		{"IPIP", 1500, Encaps{IPIP: true}, Overrides{},
			MTUs{Host: 1500, IPIP: 1480, VXLAN: 1450, VXLANV6: 1430, Workload: 1480}},
		{"VXLAN over IPv6", 1500, Encaps{VXLANV6: true}, Overrides{},
			MTUs{Host: 1500, IPIP: 1480, VXLAN: 1450, VXLANV6: 1430, Workload: 1430}},
		{"IPIP and VXLAN pools: the smallest", 1500, Encaps{IPIP: true, VXLAN: true}, Overrides{},
			MTUs{Host: 1500, IPIP: 1480, VXLAN: 1450, VXLANV6: 1430, Workload: 1450}},
		{"jumbo frames", 9001, Encaps{VXLAN: true, VXLANV6: true}, Overrides{},
			MTUs{Host: 9001, IPIP: 8981, VXLAN: 8951, VXLANV6: 8931, Workload: 8931}},
		{"FELIX_VXLANMTU", 1500, Encaps{VXLAN: true}, Overrides{VXLAN: 1400},
			MTUs{Host: 1500, IPIP: 1480, VXLAN: 1400, VXLANV6: 1430, Workload: 1400}},
		{"an unused tunnel's override does not matter", 1500, Encaps{VXLAN: true}, Overrides{IPIP: 1200},
			MTUs{Host: 1500, IPIP: 1200, VXLAN: 1450, VXLANV6: 1430, Workload: 1450}},
		{"ROOST_WORKLOAD_MTU wins", 1500, Encaps{VXLAN: true}, Overrides{Workload: 1300},
			MTUs{Host: 1500, IPIP: 1480, VXLAN: 1450, VXLANV6: 1430, Workload: 1300}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Compute(tc.host, tc.enc, tc.o); got != tc.want {
				t.Fatalf("Compute(%d, %+v, %+v) = %+v, want %+v", tc.host, tc.enc, tc.o, got, tc.want)
			}
		})
	}
}

func TestSmallest(t *testing.T) {
	links := []Link{
		{Name: "lo", MTU: 65536, Up: true},
		{Name: "eth0", MTU: 9000, Up: true},
		{Name: "eth1", MTU: 1500, Up: true},
		{Name: "eth2", MTU: 1400, Up: false}, // down: ignored
		{Name: "ens3", MTU: 8000, Up: true},
		{Name: "cali0123456789a", MTU: 1000, Up: true},
	}
	for _, tc := range []struct {
		pattern string
		want    int
		ok      bool
	}{
		{DefaultIfacePattern.String(), 1500, true},
		{"^eth0$", 9000, true},
		{"^ens", 8000, true},
		{"^wlan", 0, false},
	} {
		got, ok := Smallest(links, regexp.MustCompile(tc.pattern))
		if got != tc.want || ok != tc.ok {
			t.Errorf("Smallest(%s) = %d, %v; want %d, %v", tc.pattern, got, ok, tc.want, tc.ok)
		}
	}
}

func TestFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "mtu")
	if _, err := ReadFile(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if wrote, err := WriteFile(path, 1450); err != nil || !wrote {
		t.Fatalf("first write: %v %v", wrote, err)
	}
	b, _ := os.ReadFile(path)
	if string(b) != "1450" {
		t.Fatalf("file holds %q", b)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v", st.Mode())
	}
	if wrote, err := WriteFile(path, 1450); err != nil || wrote {
		t.Fatalf("same value written again: %v %v", wrote, err)
	}
	if v, err := ReadFile(path); err != nil || v != 1450 {
		t.Fatalf("read %d %v", v, err)
	}
	if err := os.WriteFile(path, []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(path); err == nil {
		t.Fatal("garbage accepted")
	}
	if wrote, err := WriteFile(path, 1500); err != nil || !wrote {
		t.Fatalf("repair: %v %v", wrote, err)
	}
	if v, _ := ReadFile(path); v != 1500 {
		t.Fatalf("read %d", v)
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
}

func TestValid(t *testing.T) {
	for v, ok := range map[int]bool{0: true, 68: true, 1500: true, 65535: true, 67: false, 65536: false, -1: false} {
		if (Valid(v) == nil) != ok {
			t.Errorf("Valid(%d) = %v", v, Valid(v))
		}
	}
}

package natoutgoing

import (
	"net/netip"
	"strings"
	"testing"
)

func TestMerge(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // ranges; the elements follow
		el   string
	}{
		{"10.244.0.0/16", "10.244.0.0-10.244.255.255", "10.244.0.0 10.245.0.0/end"},
		{"10.244.0.0/16 10.244.8.0/24", "10.244.0.0-10.244.255.255", "10.244.0.0 10.245.0.0/end"},
		{"10.244.8.0/24 10.244.0.0/16", "10.244.0.0-10.244.255.255", "10.244.0.0 10.245.0.0/end"},
		{"10.244.0.0/16 10.245.0.0/16", "10.244.0.0-10.245.255.255", "10.244.0.0 10.246.0.0/end"},
		{"192.168.0.0/24 10.0.0.0/8", "10.0.0.0-10.255.255.255 192.168.0.0-192.168.0.255", "10.0.0.0 11.0.0.0/end 192.168.0.0 192.168.1.0/end"},
		{"10.1.2.3/32", "10.1.2.3-10.1.2.3", "10.1.2.3 10.1.2.4/end"},
		{"0.0.0.0/0 10.0.0.0/8", "0.0.0.0-255.255.255.255", "0.0.0.0"},
		{"255.255.255.0/24", "255.255.255.0-255.255.255.255", "255.255.255.0"},
		{"fd00:244::/48 fd00:244:0:1::/64", "fd00:244::-fd00:244:0:ffff:ffff:ffff:ffff:ffff", "fd00:244:: fd00:244:1::/end"},
		{"", "", ""},
	} {
		var ps []netip.Prefix
		for _, s := range strings.Fields(tc.in) {
			ps = append(ps, netip.MustParsePrefix(s))
		}
		rs := merge(ps)
		var got []string
		for _, r := range rs {
			got = append(got, r.first.String()+"-"+r.last.String())
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("merge(%s) = %v, want %s", tc.in, got, tc.want)
		}
		var el []string
		for _, e := range intervalElements(rs) {
			a, _ := netip.AddrFromSlice(e.Key)
			s := a.String()
			if e.IntervalEnd {
				s += "/end"
			}
			el = append(el, s)
		}
		if strings.Join(el, " ") != tc.el {
			t.Errorf("elements of %s = %v, want %s", tc.in, el, tc.el)
		}
	}
}

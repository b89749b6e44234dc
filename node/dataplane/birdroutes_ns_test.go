package dataplane_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/roostnet/roost/node/dataplane"
	"github.com/roostnet/roost/node/internal/nstest"
)

// TestPruneStaleBirdRoutes: a resync removes, of several BIRD (proto 12)
// routes to one destination, those whose metric is not the one BIRD says
// it wants (a priority change), and without BIRD's answer a metric-32 one
// (BIRD's old default, left by the upgrade) next to a route of another
// metric; a metric-32 route alone (BIRD still on an older configuration)
// and duplicates BIRD says nothing about stay.
func TestPruneStaleBirdRoutes(t *testing.T) {
	ns := nstest.New(t, "bj")
	ns.Dummy(t, "eth0")
	ns.Addr(t, "eth0", "10.250.0.1/24")
	link, err := ns.NL.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	add := func(dst string, metric int) {
		_, n, _ := net.ParseCIDR(dst)
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: n, Gw: net.ParseIP("10.250.0.2"), Protocol: 12, Priority: metric, Table: unix.RT_TABLE_MAIN}
		if err := ns.NL.RouteAdd(r); err != nil {
			t.Fatalf("add %s metric %d: %v", dst, metric, err)
		}
	}
	add("10.251.0.0/26", 32) // stale twin of the next one
	add("10.251.0.0/26", 1024)
	add("10.251.1.0/26", 32)  // alone: BIRD on its old configuration
	add("10.251.2.7/32", 512) // BIRD wants 1024: a priority change left the 512
	add("10.251.2.7/32", 1024)
	add("10.251.4.0/26", 512) // BIRD does not say: both stay
	add("10.251.4.0/26", 1024)
	add("10.251.3.0/26", 32) // twin with metric 300: the 32 goes
	add("10.251.3.0/26", 300)

	birdMetric := func(_ context.Context, dst netip.Prefix) (int, bool) {
		if dst == netip.MustParsePrefix("10.251.2.7/32") {
			return 1024, true
		}
		return 0, false
	}
	dp := dataplane.New(dataplane.Config{NodeName: "bj", ResyncInterval: time.Hour, RetryInterval: 50 * time.Millisecond, BirdMetric: birdMetric},
		dataplane.Kernel(ns.NL), quiet(), &counter{drift: map[string]int{}, errs: map[string]int{}})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); dp.Run(ctx, dataplane.NetlinkSubscriber{NS: ns.Handle}) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	want := []string{"10.251.0.0/26 metric 1024", "10.251.1.0/26 metric 32", "10.251.2.7/32 metric 1024", "10.251.3.0/26 metric 300", "10.251.4.0/26 metric 1024", "10.251.4.0/26 metric 512"}
	eventually(t, 5*time.Second, "stale metric-32 twins removed", func() error {
		if !dp.Synced() {
			return errors.New("not synced")
		}
		rs, err := ns.NL.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: 12, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
		if err != nil {
			return err
		}
		var got []string
		for _, r := range rs {
			got = append(got, fmt.Sprintf("%s metric %d", r.Dst, r.Priority))
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("BIRD routes %v, want %v", got, want)
		}
		return nil
	})
}

package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/node/names"
)

// Tunnel is an encapsulation that needs a tunnel address on every node.
type Tunnel int

const (
	IPIP Tunnel = iota
	VXLAN
	// VXLANV6 is vxlan-v6.calico's, for IPv6 pools.
	VXLANV6
)

func (t Tunnel) String() string {
	switch t {
	case IPIP:
		return "IPIP"
	case VXLANV6:
		return "VXLAN (IPv6)"
	}
	return "VXLAN"
}

// Family is the address family of the tunnel's address and pools.
func (t Tunnel) Family() int {
	if t == VXLANV6 {
		return 6
	}
	return 4
}

func (t Tunnel) handle(node string) string {
	switch t {
	case IPIP:
		return names.IPIPTunnelHandle(node)
	case VXLANV6:
		return names.VXLANV6TunnelHandle(node)
	}
	return names.VXLANTunnelHandle(node)
}

func (t Tunnel) attrType() string {
	switch t {
	case IPIP:
		return TypeIPIPTunnel
	case VXLANV6:
		return TypeVXLANV6Tunnel
	}
	return TypeVXLANTunnel
}

// Mode returns the pool's mode for the tunnel.
func (t Tunnel) Mode(p *api.IPPool) string {
	m := p.Spec.VXLANMode
	if t == IPIP {
		m = p.Spec.IPIPMode
	}
	if m == "" {
		return api.EncapNever
	}
	return m
}

// field gives access to the Node field holding the tunnel address.
func (t Tunnel) get(n *api.Node) string {
	switch t {
	case VXLAN:
		return n.Spec.IPv4VXLANTunnelAddr
	case VXLANV6:
		return n.Spec.IPv6VXLANTunnelAddr
	}
	if n.Spec.BGP == nil {
		return ""
	}
	return n.Spec.BGP.IPv4IPIPTunnelAddr
}

func (t Tunnel) set(n *api.Node, v string) {
	if t == VXLAN {
		n.Spec.IPv4VXLANTunnelAddr = v
		mac := names.VXLANMAC(n.Metadata.Name).String()
		switch {
		case v != "" && n.Spec.VXLANTunnelMACAddr == "":
			n.Spec.VXLANTunnelMACAddr = mac
		case v == "" && strings.EqualFold(n.Spec.VXLANTunnelMACAddr, mac):
			n.Spec.VXLANTunnelMACAddr = ""
		}
		return
	}
	if t == VXLANV6 {
		n.Spec.IPv6VXLANTunnelAddr = v
		mac := names.VXLANMACV6(n.Metadata.Name).String()
		switch {
		case v != "" && n.Spec.VXLANTunnelMACAddrV6 == "":
			n.Spec.VXLANTunnelMACAddrV6 = mac
		case v == "" && strings.EqualFold(n.Spec.VXLANTunnelMACAddrV6, mac):
			n.Spec.VXLANTunnelMACAddrV6 = ""
		}
		return
	}
	if n.Spec.BGP == nil {
		if v == "" {
			return
		}
		n.Spec.BGP = &api.NodeBGPSpec{}
	}
	n.Spec.BGP.IPv4IPIPTunnelAddr = v
}

// TunnelAddrs are a node's tunnel addresses (zero when none).
type TunnelAddrs struct {
	IPIP, VXLAN, VXLANV6 netip.Addr
}

// macMissing reports whether the Node lacks the MAC a VXLAN tunnel
// address comes with.
func (t Tunnel) macMissing(n *api.Node) bool {
	switch t {
	case VXLAN:
		return n.Spec.VXLANTunnelMACAddr == ""
	case VXLANV6:
		return n.Spec.VXLANTunnelMACAddrV6 == ""
	}
	return false
}

// ReconcileTunnels gives this node an IPIP tunnel address when an enabled
// IPv4 pool that applies to it has ipipMode Always or CrossSubnet, a
// VXLAN address (plus vxlanTunnelMACAddr) likewise for vxlanMode, and an
// IPv6 VXLAN address (plus vxlanTunnelMACAddrV6) for IPv6 pools with
// vxlanMode; it releases them when no pool needs them any more. The
// addresses are recorded in the Node (spec.bgp.ipv4IPIPTunnelAddr,
// spec.ipv4VXLANTunnelAddr, spec.ipv6VXLANTunnelAddr) and held in IPAM
// under Calico's handles (ipip-tunnel-addr-<node>,
// vxlan-tunnel-addr-<node>, vxlan-v6-tunnel-addr-<node>). An address already recorded is kept when it
// is still valid, so restarts do not renumber tunnels. pools nil: list
// them from the datastore.
func (c *Client) ReconcileTunnels(ctx context.Context, pools []*api.IPPool) (TunnelAddrs, error) {
	if pools == nil {
		var err error
		if pools, err = ListPools(ctx, c.ds); err != nil {
			return TunnelAddrs{}, err
		}
	}
	var out TunnelAddrs
	var errs []error
	for _, t := range []Tunnel{IPIP, VXLAN, VXLANV6} {
		a, err := c.reconcileTunnel(ctx, t, pools)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s tunnel address: %w", t, err))
		}
		switch t {
		case IPIP:
			out.IPIP = a
		case VXLAN:
			out.VXLAN = a
		default:
			out.VXLANV6 = a
		}
	}
	return out, errors.Join(errs...)
}

func (c *Client) getNode(ctx context.Context) (*datastore.KV, *api.Node, error) {
	kv, err := c.ds.Get(ctx, datastore.ResourceKey(api.KindNode, "", c.node))
	if err != nil {
		return nil, nil, err
	}
	n, ok := kv.Value.(*api.Node)
	if !ok {
		return nil, nil, fmt.Errorf("%s: not a Node", kv.Key)
	}
	return kv, n, nil
}

func (c *Client) reconcileTunnel(ctx context.Context, t Tunnel, pools []*api.IPPool) (netip.Addr, error) {
	log := c.log.WithField("tunnel", t.String())
	_, node, err := c.getNode(ctx)
	if err != nil {
		return netip.Addr{}, err
	}
	var need []*api.IPPool
	for _, p := range pools {
		if t.Mode(p) != api.EncapNever && PoolUsable(p, t.Family(), api.UseTunnel, node.Metadata.Labels, false) {
			need = append(need, p)
		}
	}
	handle := t.handle(c.node)
	cur, _ := netip.ParseAddr(t.get(node))
	if len(need) == 0 {
		if _, err := c.ReleaseByHandle(ctx, handle); err != nil {
			return netip.Addr{}, err
		}
		if t.get(node) != "" {
			if err := c.setNodeTunnel(ctx, t, ""); err != nil {
				return netip.Addr{}, err
			}
			log.WithField("ip", cur).Info("ipam: released tunnel address (no pool needs it)")
		}
		return netip.Addr{}, nil
	}
	held, err := c.AddrsByHandle(ctx, handle)
	if err != nil {
		return netip.Addr{}, err
	}
	inNeed := func(a netip.Addr) bool {
		return a.IsValid() && family(a) == t.Family() && inPools(netip.PrefixFrom(a, a.BitLen()), need) != nil
	}
	req := Request{
		Handle: handle, Family: t.Family(), Use: api.UseTunnel, NodeLabels: node.Metadata.Labels, Pools: need,
		Attrs: map[string]string{AttrNode: c.node, AttrType: t.attrType()},
	}
	var want netip.Addr
	switch {
	case inNeed(cur) && contains(held, cur):
		want = cur
	case inNeed(cur):
		// Recorded but not held (e.g. the IPAM data was restored): take
		// the same address again if it is free.
		if err := c.AssignIP(ctx, cur, req); err == nil {
			want = cur
		} else {
			log.WithError(err).WithField("ip", cur).Warn("ipam: recorded tunnel address cannot be kept; allocating another")
		}
	}
	if !want.IsValid() {
		for _, a := range held {
			if inNeed(a) {
				want = a // allocated before a crash, not yet recorded
				break
			}
		}
	}
	if !want.IsValid() {
		if want, err = c.AutoAssign(ctx, req); err != nil {
			return netip.Addr{}, err
		}
		log.WithField("ip", want).Info("ipam: allocated tunnel address")
	}
	for _, a := range held {
		if a != want {
			if _, err := c.ReleaseIP(ctx, a, handle); err != nil {
				return want, err
			}
		}
	}
	if t.get(node) != want.String() || t.macMissing(node) {
		if err := c.setNodeTunnel(ctx, t, want.String()); err != nil {
			return want, err
		}
	}
	return want, nil
}

// setNodeTunnel writes the tunnel address into the Node (CAS, retried).
func (c *Client) setNodeTunnel(ctx context.Context, t Tunnel, v string) error {
	b := newBackoff()
	for attempt := 0; attempt < c.attempts; attempt++ {
		kv, node, err := c.getNode(ctx)
		if err != nil {
			return err
		}
		t.set(node, v)
		node.Metadata.ResourceVersion = ""
		_, err = c.ds.Update(ctx, &datastore.KV{Key: kv.Key, Value: node, Revision: kv.Revision})
		if err == nil {
			c.log.WithFields(logrus.Fields{"tunnel": t.String(), "ip": v}).Debug("ipam: node tunnel address updated")
			return nil
		}
		if !isConflict(err) {
			return err
		}
		if err := b.Wait(ctx); err != nil {
			return err
		}
	}
	return ErrTooManyConflicts
}

func contains(list []netip.Addr, a netip.Addr) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}

// Timestamp is the value of the timestamp attribute Calico records.
func Timestamp() string { return time.Now().UTC().Format("2006-01-02 15:04:05.999999999 -0700 MST") }

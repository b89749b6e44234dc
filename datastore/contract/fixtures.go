package contract

import (
	"fmt"
	"net/netip"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

// Fixture is one valid object of a kind plus a valid change to it.
type Fixture struct {
	Name   string
	Object func() api.Resource  // a fresh copy each call
	Mutate func(r api.Resource) // changes the spec (IPAM values keep no metadata)
}

func ptr[T any](v T) *T { return &v }

// NodeFixture builds a Node with BGP settings and labels.
func NodeFixture(name, ip string) *api.Node {
	n := &api.Node{}
	n.Metadata.Name = name
	n.Metadata.Labels = map[string]string{"rack": "r1", "kubernetes.io/hostname": name}
	as := api.ASNumber(64512)
	n.Spec.BGP = &api.NodeBGPSpec{ASNumber: &as, IPv4Address: ip + "/24"}
	n.Spec.OrchRefs = []api.OrchRef{{NodeName: name, Orchestrator: "k8s"}}
	return n
}

// PeerFixture builds a global BGPPeer.
func PeerFixture(name, ip string, as uint32) *api.BGPPeer {
	p := &api.BGPPeer{}
	p.Metadata.Name = name
	p.Spec.PeerIP = ip
	p.Spec.ASNumber = api.ASNumber(as)
	p.Spec.KeepaliveTime = &api.Duration{Duration: 10e9}
	p.Spec.Filters = []string{"filter1"}
	return p
}

// PoolFixture builds an IPPool with every default spelled out.
func PoolFixture(name, cidr string) *api.IPPool {
	p := &api.IPPool{}
	p.Metadata.Name = name
	p.Spec = api.IPPoolSpec{
		CIDR: cidr, BlockSize: 26, IPIPMode: api.EncapNever, VXLANMode: api.EncapAlways,
		NATOutgoing: true, NodeSelector: "all()", AllowedUses: []string{api.UseWorkload, api.UseTunnel},
		AssignmentMode: api.DefaultAssignmentMode,
	}
	return p
}

// BGPConfigFixture builds the default BGPConfiguration.
func BGPConfigFixture() *api.BGPConfiguration {
	c := &api.BGPConfiguration{}
	c.Metadata.Name = api.DefaultBGPConfigName
	as := api.ASNumber(64512)
	c.Spec = api.BGPConfigurationSpec{
		LogSeverityScreen: "Info", NodeToNodeMeshEnabled: ptr(true), ASNumber: &as,
		Communities:          []api.Community{{Name: "mine", Value: "64512:100"}},
		PrefixAdvertisements: []api.PrefixAdvertisement{{CIDR: "192.168.0.0/16", Communities: []string{"mine"}}},
		ServiceClusterIPs:    []api.ServiceIPBlock{{CIDR: "10.96.0.0/12"}},
	}
	return c
}

// FilterFixture builds a BGPFilter with one export rule.
func FilterFixture(name string) *api.BGPFilter {
	f := &api.BGPFilter{}
	f.Metadata.Name = name
	f.Spec.ExportV4 = []api.BGPFilterRule{{CIDR: "10.0.0.0/8", MatchOperator: api.MatchIn, Action: api.FilterAccept}}
	return f
}

// BFDProfileFixture builds a Roost BFDProfile (roost.io/v1) with every
// default spelled out.
func BFDProfileFixture(name string) *api.BFDProfile {
	p := &api.BFDProfile{}
	p.Metadata.Name = name
	p.Spec = api.BFDProfileSpec{ReceiveInterval: ptr(uint32(100)), TransmitInterval: ptr(uint32(100)),
		DetectMultiplier: ptr(uint32(3)), PassiveMode: ptr(false)}
	return p
}

// NodeStatusFixture builds a CalicoNodeStatus request for node with an
// answer in its status.
func NodeStatusFixture(name, node string) *api.CalicoNodeStatus {
	s := &api.CalicoNodeStatus{}
	s.Metadata.Name = name
	s.Spec = api.CalicoNodeStatusSpec{Node: node, Classes: []string{api.NodeStatusClassAgent, api.NodeStatusClassBGP},
		UpdatePeriodSeconds: ptr(uint32(10))}
	s.Status.Agent.BIRDV4 = api.BGPDaemonStatus{State: api.BGPDaemonStateReady, Version: "2.0.12", RouterID: "10.0.0.1"}
	s.Status.BGP.NumberEstablishedV4 = 1
	s.Status.BGP.PeersV4 = []api.CalicoNodePeer{{PeerIP: "10.0.0.2", Type: api.BGPPeerTypeNodeMesh,
		State: api.BGPSessionStateEstablished, Since: "10:00:01.000"}}
	return s
}

// WorkloadFixture builds a WorkloadEndpoint in namespace ns.
func WorkloadFixture(ns, name, node, ip string) *api.WorkloadEndpoint {
	w := &api.WorkloadEndpoint{}
	w.Metadata.Name = name
	w.Metadata.Namespace = ns
	w.Metadata.Labels = map[string]string{"app": "web"}
	w.Spec = api.WorkloadEndpointSpec{
		Orchestrator: "k8s", Node: node, Pod: "pod1", Endpoint: "eth0", ContainerID: "abc123",
		IPNetworks: []string{ip + "/32"}, InterfaceName: "cali0123456789a", MAC: "ee:ee:ee:ee:ee:ee",
		Profiles: []string{"kns.default"},
	}
	return w
}

// AffinityFixture builds a BlockAffinity of node to cidr.
func AffinityFixture(node, cidr, state string) *api.BlockAffinity {
	a := &api.BlockAffinity{Spec: api.BlockAffinitySpec{Node: node, CIDR: cidr, State: state}}
	a.Metadata.Name = api.BlockAffinityName(node, cidr)
	return a
}

// BlockFixture builds an allocation block of cidr affine to node with the
// first `used` addresses allocated to handle h1.
func BlockFixture(cidr, node string, used int) *api.IPAMBlock {
	p := netip.MustParsePrefix(cidr)
	size := 1 << (p.Addr().BitLen() - p.Bits())
	b := &api.IPAMBlock{}
	b.Metadata.Name = api.BlockName(cidr)
	b.Spec.CIDR = cidr
	b.Spec.Affinity = ptr("host:" + node)
	b.Spec.Allocations = make([]*int, size)
	b.Spec.Attributes = []api.AllocationAttribute{{HandleID: ptr("h1"), Secondary: map[string]string{"node": node}}}
	for i := 0; i < size; i++ {
		if i < used {
			b.Spec.Allocations[i] = ptr(0)
		} else {
			b.Spec.Unallocated = append(b.Spec.Unallocated, i)
		}
	}
	b.Spec.SequenceNumber = 1
	return b
}

// HandleFixture builds an IPAM handle holding n addresses of cidr.
func HandleFixture(id, cidr string, n int) *api.IPAMHandle {
	h := &api.IPAMHandle{Spec: api.IPAMHandleSpec{Block: map[string]int{cidr: n}}}
	h.Metadata.Name = id
	return h
}

// Fixtures has one entry per kind.
func Fixtures() []Fixture {
	return []Fixture{
		{"Node", func() api.Resource { return NodeFixture("node1", "10.0.0.1") }, func(r api.Resource) {
			r.(*api.Node).Spec.BGP.IPv4Address = "10.0.0.11/24"
		}},
		{"BGPPeer", func() api.Resource { return PeerFixture("peer1", "10.0.0.254", 64513) }, func(r api.Resource) {
			r.(*api.BGPPeer).Spec.ASNumber = 64514
		}},
		{"IPPool", func() api.Resource { return PoolFixture("pool1", "192.168.0.0/16") }, func(r api.Resource) {
			r.(*api.IPPool).Spec.Disabled = true
		}},
		{"BGPConfiguration", func() api.Resource { return BGPConfigFixture() }, func(r api.Resource) {
			r.(*api.BGPConfiguration).Spec.NodeToNodeMeshEnabled = ptr(false)
		}},
		{"BGPFilter", func() api.Resource { return FilterFixture("filter1") }, func(r api.Resource) {
			f := r.(*api.BGPFilter)
			f.Spec.ImportV4 = append(f.Spec.ImportV4, api.BGPFilterRule{Action: api.FilterReject})
		}},
		{"BFDProfile", func() api.Resource { return BFDProfileFixture("fast") }, func(r api.Resource) {
			r.(*api.BFDProfile).Spec.DetectMultiplier = ptr(uint32(5))
		}},
		{"CalicoNodeStatus", func() api.Resource { return NodeStatusFixture("node1-status", "node1") }, func(r api.Resource) {
			s := r.(*api.CalicoNodeStatus)
			s.Status.BGP.NumberEstablishedV4, s.Status.BGP.NumberNotEstablishedV4 = 0, 1
			s.Status.BGP.PeersV4[0].State = api.BGPSessionStateActive
		}},
		{"WorkloadEndpoint", func() api.Resource {
			return WorkloadFixture("default", "node1-k8s-pod1-eth0", "node1", "192.168.166.130")
		}, func(r api.Resource) {
			r.(*api.WorkloadEndpoint).Spec.IPNetworks = []string{"192.168.166.131/32"}
		}},
		{"BlockAffinity", func() api.Resource {
			return AffinityFixture("node1", "192.168.166.128/26", api.AffinityPending)
		}, func(r api.Resource) {
			r.(*api.BlockAffinity).Spec.State = api.AffinityConfirmed
		}},
		{"IPAMBlock", func() api.Resource { return BlockFixture("192.168.166.128/26", "node1", 2) }, func(r api.Resource) {
			b := r.(*api.IPAMBlock)
			b.Spec.Allocations[2] = ptr(0)
			b.Spec.Unallocated = b.Spec.Unallocated[1:]
			b.Spec.SequenceNumber++
		}},
		{"IPAMHandle", func() api.Resource { return HandleFixture("h1", "192.168.166.128/26", 2) }, func(r api.Resource) {
			r.(*api.IPAMHandle).Spec.Block["192.168.166.128/26"] = 3
		}},
	}
}

// keyOf derives the key or fails loudly (fixtures are always keyable).
func keyOf(r api.Resource) string {
	k, err := datastore.KeyFor(r)
	if err != nil {
		panic(fmt.Sprintf("contract fixture: %v", err))
	}
	return k
}

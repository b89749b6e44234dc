package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

// The benchmark cluster: node-0 (the node confd renders for) plus n-1
// others in a full node-to-node mesh, AS 64512, one IPIP pool, a few
// global peers, and `affinities` confirmed block affinities spread over
// the nodes (4 of them on node-0 when there are enough). Node addresses
// are 127.16.0.0/12 loopback addresses: BIRD's sessions to them go
// nowhere (and BIRD runs in its own network namespace anyway).
const (
	thisNode = "node-0"
	meshAS   = 64512
)

func nodeName(i int) string { return fmt.Sprintf("node-%d", i) }

func nodeIP(i int) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(127)<<24|uint32(16)<<16+uint32(i)+1)
	return netip.AddrFrom4(b)
}

// blockCIDR is the i-th /26 of the pool 10.64.0.0/10.
func blockCIDR(i int) netip.Prefix {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(10)<<24|uint32(64)<<16+uint32(i)*64)
	return netip.PrefixFrom(netip.AddrFrom4(b), 26)
}

// extraBlock is a block outside the ones blockCIDR hands out (for block
// affinity changes): 10.112.0.0/12 onwards.
func extraBlock(j int) netip.Prefix {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(10)<<24|uint32(112)<<16+uint32(j)*64)
	return netip.PrefixFrom(netip.AddrFrom4(b), 26)
}

// peerIP of the j-th extra global BGPPeer (added/removed by changes).
func peerIP(j int) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(127)<<24|uint32(200)<<16+uint32(j)+1)
	return netip.AddrFrom4(b)
}

// newNode is a Node as Calico's node agent writes it.
func newNode(i int, as int) *api.Node {
	ip := nodeIP(i)
	n := &api.Node{
		Metadata: api.ObjectMeta{Name: nodeName(i), Labels: map[string]string{
			"kubernetes.io/hostname": nodeName(i), "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
			"topology.kubernetes.io/zone": fmt.Sprintf("zone-%d", i%3),
		}},
		Spec: api.NodeSpec{
			BGP: &api.NodeBGPSpec{
				IPv4Address:        ip.String() + "/12",
				IPv4IPIPTunnelAddr: blockCIDR(4 * i).Addr().Next().String(),
			},
			OrchRefs:  []api.OrchRef{{NodeName: nodeName(i), Orchestrator: "k8s"}},
			Addresses: []api.NodeAddress{{Address: ip.String() + "/12", Type: "CalicoNodeIP"}, {Address: ip.String(), Type: "InternalIP"}},
		},
	}
	if as != 0 {
		a := api.ASNumber(as)
		n.Spec.BGP.ASNumber = &a
	}
	return n
}

func newPeer(j int) *api.BGPPeer {
	return &api.BGPPeer{Metadata: api.ObjectMeta{Name: fmt.Sprintf("bench-peer-%d", j)},
		Spec: api.BGPPeerSpec{PeerIP: peerIP(j).String(), ASNumber: api.ASNumber(65001 + j%100)}}
}

func newAffinity(node string, cidr netip.Prefix) *api.BlockAffinity {
	return &api.BlockAffinity{
		Metadata: api.ObjectMeta{Name: api.BlockAffinityName(node, cidr.String())},
		Spec:     api.BlockAffinitySpec{Node: node, CIDR: cidr.String(), State: api.AffinityConfirmed},
	}
}

// kv is one key and its stored bytes.
type kv struct{ key, val string }

func encode(obj api.Resource) (kv, error) {
	key, err := datastore.KeyFor(obj)
	if err != nil {
		return kv{}, err
	}
	b, err := datastore.EncodeValue(obj)
	if err != nil {
		return kv{}, err
	}
	return kv{key, string(b)}, nil
}

func mustEncode(obj api.Resource) kv {
	e, err := encode(obj)
	if err != nil {
		panic(err)
	}
	return e
}

// clusterKVs is the whole benchmark datastore.
func clusterKVs(nodes, affinities int) []kv {
	as := api.ASNumber(meshAS)
	yes := true
	out := []kv{
		mustEncode(&api.BGPConfiguration{Metadata: api.ObjectMeta{Name: "default"}, Spec: api.BGPConfigurationSpec{
			ASNumber: &as, NodeToNodeMeshEnabled: &yes, LogSeverityScreen: "Info",
			ServiceClusterIPs: []api.ServiceIPBlock{{CIDR: "10.96.0.0/12"}},
		}}),
		mustEncode(&api.IPPool{Metadata: api.ObjectMeta{Name: "default-ipv4-ippool"}, Spec: api.IPPoolSpec{
			CIDR: "10.64.0.0/10", IPIPMode: api.EncapAlways, VXLANMode: api.EncapNever, NATOutgoing: true, BlockSize: 26,
		}}),
		mustEncode(&api.BGPPeer{Metadata: api.ObjectMeta{Name: "tor-a"}, Spec: api.BGPPeerSpec{PeerIP: "127.250.0.1", ASNumber: 65000}}),
		mustEncode(&api.BGPPeer{Metadata: api.ObjectMeta{Name: "tor-b"}, Spec: api.BGPPeerSpec{PeerIP: "127.250.0.2", ASNumber: 65000}}),
	}
	for i := 0; i < nodes; i++ {
		out = append(out, mustEncode(newNode(i, 0)))
	}
	for b := 0; b < affinities; b++ {
		// Four consecutive blocks per node, node-0 first.
		node := (b / 4) % max(nodes, 1)
		out = append(out, mustEncode(newAffinity(nodeName(node), blockCIDR(b))))
	}
	return out
}

// load writes kvs in transactions of 100 puts (etcd allows 128 per txn).
func load(ctx context.Context, cli *clientv3.Client, kvs []kv) error {
	const batch = 100
	for i := 0; i < len(kvs); i += batch {
		var ops []clientv3.Op
		for _, e := range kvs[i:min(i+batch, len(kvs))] {
			ops = append(ops, clientv3.OpPut(e.key, e.val))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("loading the cluster: %w", err)
		}
	}
	return nil
}

// sessionName is the BIRD protocol name confd gives a mesh or global peer.
func sessionName(prefix string, ip netip.Addr) string {
	return prefix + "_" + strings.ReplaceAll(ip.String(), ".", "_")
}

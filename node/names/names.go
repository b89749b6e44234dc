// Package names derives the identifiers the node agent shares between
// its parts (and with Calico): interface names, MAC addresses and IPAM
// handle ids.
package names

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
)

// Device names and the route protocol of routes the agent owns.
const (
	IPIPDevice  = "tunl0"
	VXLANDevice = "vxlan.calico"
	// VXLANV6Device carries IPv6 pools' VXLAN traffic (Calico's name).
	VXLANV6Device = "vxlan-v6.calico"
	// RouteProtocol marks routes the agent programs (Calico uses 80 too;
	// BIRD uses 12, "proto bird"). Routes with another protocol are never
	// modified or removed.
	RouteProtocol = 80
	// WorkloadPrefix starts every host-side workload interface name.
	WorkloadPrefix = "cali"
	// HostVethMAC is the MAC of every host-side workload interface.
	HostVethMAC = "ee:ee:ee:ee:ee:ee"
	// WorkloadGateway is the workload's next hop, answered by proxy ARP.
	WorkloadGateway = "169.254.1.1"
	// WorkloadGatewayV6 is the workload's IPv6 next hop: the link-local
	// address of the host end (EUI-64 of HostVethMAC), as with Calico.
	WorkloadGatewayV6 = "fe80::ecee:eeff:feee:eeee"
)

// WorkloadInterface is the host-side veth name of a workload: "cali" and
// 11 hex characters of SHA-1("<namespace>.<name>"), as Calico does for
// pods.
func WorkloadInterface(namespace, name string) string {
	sum := sha1.Sum([]byte(namespace + "." + name))
	return WorkloadPrefix + hex.EncodeToString(sum[:])[:11]
}

// WorkloadHandle is the IPAM handle of a workload's addresses.
func WorkloadHandle(namespace, name string) string {
	return "roost-workload." + namespace + "." + name
}

// IPIPTunnelHandle and VXLANTunnelHandle are Calico's handle ids of a
// node's tunnel addresses.
func IPIPTunnelHandle(node string) string    { return "ipip-tunnel-addr-" + node }
func VXLANTunnelHandle(node string) string   { return "vxlan-tunnel-addr-" + node }
func VXLANV6TunnelHandle(node string) string { return "vxlan-v6-tunnel-addr-" + node }

// VXLANMAC is the vxlan.calico MAC of a node: 66: followed by the first
// five bytes of SHA-1(node name). Locally administered, unicast.
func VXLANMAC(node string) net.HardwareAddr {
	sum := sha1.Sum([]byte(node))
	return net.HardwareAddr{0x66, sum[0], sum[1], sum[2], sum[3], sum[4]}
}

// VXLANMACV6 is the vxlan-v6.calico MAC of a node: like VXLANMAC, of
// "<node>-v6" (Felix's derivation).
func VXLANMACV6(node string) net.HardwareAddr { return VXLANMAC(node + "-v6") }

// Orchestrators of WorkloadEndpoints, as in their spec.orchestrator.
const (
	OrchestratorK8s   = "k8s"
	OrchestratorCNI   = "cni"
	OrchestratorRoost = "roost"
)

// EndpointIDs are the fields a WorkloadEndpoint's name is built from.
type EndpointIDs struct {
	Node, Orchestrator, Workload, Pod, ContainerID, Endpoint string
}

// WorkloadEndpointName is Calico's name of a WorkloadEndpoint: the node,
// the orchestrator, the workload (the pod for k8s, the container id for
// cni, the workload otherwise) and the endpoint joined by "-", each with
// its dashes doubled. A part that is empty or starts or ends with a dash
// is refused, as Calico refuses it.
func WorkloadEndpointName(ids EndpointIDs) (string, error) {
	type seg struct{ field, value string }
	third := seg{"workload", ids.Workload}
	switch ids.Orchestrator {
	case OrchestratorK8s:
		third = seg{"pod", ids.Pod}
	case OrchestratorCNI:
		third = seg{"containerID", ids.ContainerID}
	}
	segs := []seg{{"node", ids.Node}, {"orchestrator", ids.Orchestrator}, third, {"endpoint", ids.Endpoint}}
	parts := make([]string, 0, len(segs))
	for _, s := range segs {
		switch {
		case s.value == "":
			return "", fmt.Errorf("workload endpoint name: %s is empty", s.field)
		case strings.HasPrefix(s.value, "-") || strings.HasSuffix(s.value, "-"):
			return "", fmt.Errorf("workload endpoint name: %s %q must not begin or end with '-'", s.field, s.value)
		}
		parts = append(parts, strings.ReplaceAll(s.value, "-", "--"))
	}
	return strings.Join(parts, "-"), nil
}

// ContainerInterface is the host-side veth name Calico's CNI plugin gives
// a container outside Kubernetes: "cali" and the first 11 characters of
// the container id.
func ContainerInterface(containerID string) string {
	return WorkloadPrefix + containerID[:min(11, len(containerID))]
}

// PodHandle is Calico's IPAM handle of a container's addresses.
func PodHandle(containerID string) string { return "k8s-pod-network." + containerID }

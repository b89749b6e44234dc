package names

import "testing"

// Calico's names (libcalico-go's WorkloadEndpointIdentifiers): dashes in
// every part doubled, the third part chosen by the orchestrator.
func TestWorkloadEndpointName(t *testing.T) {
	for _, tc := range []struct {
		ids  EndpointIDs
		want string
		err  bool
	}{
		{EndpointIDs{Node: "host1", Orchestrator: "roost", Workload: "host1-w1", Endpoint: "eth0"}, "host1-roost-host1--w1-eth0", false},
		{EndpointIDs{Node: "node-a", Orchestrator: "k8s", Pod: "web-5d8f", Endpoint: "eth0", Workload: "ignored"}, "node--a-k8s-web--5d8f-eth0", false},
		{EndpointIDs{Node: "n1", Orchestrator: "cni", ContainerID: "abc123", Endpoint: "net1"}, "n1-cni-abc123-net1", false},
		{EndpointIDs{Node: "n1", Orchestrator: "k8s", Endpoint: "eth0"}, "", true},
		{EndpointIDs{Node: "n1-", Orchestrator: "roost", Workload: "w", Endpoint: "eth0"}, "", true},
		{EndpointIDs{Orchestrator: "roost", Workload: "w", Endpoint: "eth0"}, "", true},
	} {
		got, err := WorkloadEndpointName(tc.ids)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("%+v: got %q, %v; want %q (error %v)", tc.ids, got, err, tc.want, tc.err)
		}
	}
}

func TestContainerInterface(t *testing.T) {
	if got := ContainerInterface("0123456789abcdef"); got != "cali0123456789a" {
		t.Fatal(got)
	}
	if got := ContainerInterface("ab"); got != "caliab" {
		t.Fatal(got)
	}
}

package datastore

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/roostnet/roost/api"
)

// TestCalicoRoundTrip: a value Calico wrote, read by Roost, changed in
// one field and written back, equals the original (as JSON) but for that
// field: fields Roost does not model (a newer Calico's, or Calico's own
// that Roost ignores) are carried through.
func TestCalicoRoundTrip(t *testing.T) {
	cases := []struct {
		name, key, in string
		change        func(api.Resource)
		want          func(m map[string]any) // the same change, on the JSON
		unknown       []string
	}{
		{
			name: "BGPConfiguration with newer fields",
			key:  "/calico/resources/v3/projectcalico.org/bgpconfigurations/default",
			in: `{"kind":"BGPConfiguration","apiVersion":"projectcalico.org/v3","metadata":{"name":"default","uid":"9f3c2c55-1b7e-4c0e-a0f7-3e6b1d2c4a11","creationTimestamp":"2024-01-02T03:04:05Z"},` +
				`"spec":{"logSeverityScreen":"Info","nodeToNodeMeshEnabled":true,"asNumber":64512,"serviceLoadBalancerAggregation":"Disabled",` +
				`"programClusterRoutes":"Disabled","futureKnob":{"mode":"x","list":[1,2.5,"y"]}}}`,
			change:  func(r api.Resource) { as := api.ASNumber(65000); r.(*api.BGPConfiguration).Spec.ASNumber = &as },
			want:    func(m map[string]any) { m["spec"].(map[string]any)["asNumber"] = float64(65000) },
			unknown: []string{"spec.futureKnob"},
		},
		{
			name: "Node with interfaces and newer fields",
			key:  "/calico/resources/v3/projectcalico.org/nodes/host1",
			in: `{"kind":"Node","apiVersion":"projectcalico.org/v3","metadata":{"name":"host1","uid":"0b6f6c1e-9d0a-4c55-8d1e-2f4a5b6c7d8e","creationTimestamp":"2024-01-02T03:04:05Z","labels":{"kubernetes.io/hostname":"host1"}},` +
				`"spec":{"bgp":{"ipv4Address":"10.0.0.1/24","futureBGP":true},"interfaces":[{"name":"eth0","addresses":["10.0.0.1"]}],"futureSpec":"s"},` +
				`"status":{"podCIDRs":["10.244.0.0/24"],"futureStatus":1}}`,
			change: func(r api.Resource) { r.Meta().Labels["rack"] = "a" },
			want: func(m map[string]any) {
				m["metadata"].(map[string]any)["labels"].(map[string]any)["rack"] = "a"
			},
			unknown: []string{"spec.bgp.futureBGP", "spec.futureSpec", "status.futureStatus"},
		},
		{
			name: "IPAM block with affinity_claim_time and hostAffinity",
			key:  "/calico/ipam/v2/assignment/ipv4/block/10.244.0.0-30",
			in: `{"cidr":"10.244.0.0/30","affinity":"host:host1","affinity_claim_time":"2024-01-02T03:04:05Z","allocations":[0,null,null,null],"unallocated":[1,2,3],` +
				`"attributes":[{"handle_id":"k8s-pod-network.abc","secondary":{"node":"host1"},"alternateOwnerAttrs":{"pod":"old"},"releasedAt":"2024-01-02T03:04:06Z"}],` +
				`"sequenceNumber":7,"sequenceNumberForAllocation":{"0":6},"deleted":false,"hostAffinity":"host1"}`,
			change:  func(r api.Resource) { r.(*api.IPAMBlock).Spec.SequenceNumber++ },
			want:    func(m map[string]any) { m["sequenceNumber"] = float64(8) },
			unknown: []string{"spec.hostAffinity"},
		},
		{
			name:   "IPAM handle with a newer field",
			key:    "/calico/ipam/v2/handle/k8s-pod-network.abc",
			in:     `{"block":{"10.244.0.0/30":1},"deleted":false,"future":[1]}`,
			change: func(r api.Resource) { r.(*api.IPAMHandle).Spec.Block["10.244.0.4/30"] = 2 },
			want: func(m map[string]any) {
				m["block"].(map[string]any)["10.244.0.4/30"] = float64(2)
			},
			unknown: []string{"spec.future"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			obj, err := DecodeValue(c.key, []byte(c.in), 5)
			if err != nil {
				t.Fatal(err)
			}
			if got := api.UnknownFields(obj); !reflect.DeepEqual(got, c.unknown) {
				t.Errorf("unknown fields %v, want %v", got, c.unknown)
			}
			c.change(obj)
			out, err := EncodeValue(obj)
			if err != nil {
				t.Fatal(err)
			}
			var got, want map[string]any
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(c.in), &want); err != nil {
				t.Fatal(err)
			}
			c.want(want)
			if !reflect.DeepEqual(got, want) {
				a, _ := json.Marshal(want)
				t.Errorf("written back:\n%s\nwant:\n%s", out, a)
			}
		})
	}
}

package datastore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/internal/clip"
)

// Calico's etcd v3 key layout.
const (
	ResourcePrefix = "/calico/resources/v3/projectcalico.org/"
	// RoostResourcePrefix holds Roost's own kinds (roost.io/v1), outside
	// Calico's tree so that Calico's tools never see them.
	RoostResourcePrefix = "/roost/resources/v1/"
	IPAMPrefix          = "/calico/ipam/v2/"
	BlockPrefix         = "/calico/ipam/v2/assignment/"
	HostPrefix          = "/calico/ipam/v2/host/"
	HandlePrefix        = "/calico/ipam/v2/handle/"
	// IPAMConfigKey holds the one IPAMConfiguration, as Calico's etcd
	// IPAM code reads it.
	IPAMConfigKey = "/calico/ipam/v2/config"
	// StatusPrefix holds Felix's status reports; Roost's node agent writes
	// the one of its node (StatusReportKey) as its heartbeat.
	StatusPrefix = "/calico/felix/v2/"
)

// statusRegion is Felix's region part of status keys when no OpenStack
// region is set.
const statusRegion = "no-region"

var plurals = map[string]string{
	api.KindBGPConfiguration: "bgpconfigurations",
	api.KindBGPPeer:          "bgppeers",
	api.KindNode:             "nodes",
	api.KindIPPool:           "ippools",
	api.KindBGPFilter:        "bgpfilters",
	api.KindWorkloadEndpoint: "workloadendpoints",
	api.KindCalicoNodeStatus: "caliconodestatuses",
	// The key Calico uses: /calico/resources/v3/projectcalico.org/clusterinformations/default.
	api.KindClusterInformation: "clusterinformations",
	api.KindProfile:            "profiles",
}

// roostPlurals are the plurals of Roost's kinds, under RoostResourcePrefix.
var roostPlurals = map[string]string{
	api.KindBFDProfile: "bfdprofiles",
}

var kindsByPlural, roostKindsByPlural = invert(plurals), invert(roostPlurals)

func invert(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[v] = k
	}
	return out
}

// KindPrefix is the key prefix holding every resource of a v3 or Roost
// kind. IPAM kinds return their whole subtree.
func KindPrefix(kind string) string {
	if p, ok := plurals[kind]; ok {
		return ResourcePrefix + p + "/"
	}
	if p, ok := roostPlurals[kind]; ok {
		return RoostResourcePrefix + p + "/"
	}
	switch kind {
	case api.KindIPAMBlock:
		return BlockPrefix
	case api.KindBlockAffinity:
		return HostPrefix
	case api.KindIPAMHandle:
		return HandlePrefix
	case api.KindIPAMConfiguration:
		return IPAMConfigKey
	case api.KindStatusReport:
		return StatusPrefix
	}
	return ""
}

// HostAffinityPrefix holds one node's block affinities.
func HostAffinityPrefix(node string) string { return HostPrefix + node + "/" }

// ResourceKey is the key of a named resource of kind (namespace only for
// namespaced kinds). For IPAM kinds use KeyFor.
func ResourceKey(kind, namespace, name string) string {
	if p, ok := roostPlurals[kind]; ok {
		return RoostResourcePrefix + p + "/" + name
	}
	p := plurals[kind]
	if api.Namespaced(kind) {
		return ResourcePrefix + p + "/" + namespace + "/" + name
	}
	return ResourcePrefix + p + "/" + name
}

// BlockKey is the key of the allocation block with the given CIDR.
func BlockKey(cidr netip.Prefix) string {
	return BlockPrefix + famDir(cidr.Addr()) + "/block/" + api.CIDRToKey(cidr.String())
}

// AffinityKey is the key of node's affinity to the block cidr.
func AffinityKey(node string, cidr netip.Prefix) string {
	return HostPrefix + node + "/" + famDir(cidr.Addr()) + "/block/" + api.CIDRToKey(cidr.String())
}

// HandleKey is the key of an IPAM handle.
func HandleKey(id string) string { return HandlePrefix + id }

// StatusReportKey is the key of node's status report (its agent's
// heartbeat), as Felix writes it.
func StatusReportKey(node string) string {
	return StatusPrefix + statusRegion + "/host/" + node + "/status"
}

func famDir(a netip.Addr) string {
	if a.Is6() {
		return "ipv6"
	}
	return "ipv4"
}

// KeyFor derives the key an object is stored under.
func KeyFor(obj api.Resource) (string, error) {
	md := obj.Meta()
	switch o := obj.(type) {
	case *api.BlockAffinity:
		p, err := api.ParseCIDR(o.Spec.CIDR)
		if err != nil || o.Spec.Node == "" {
			return "", fmt.Errorf("BlockAffinity %q: spec.node and spec.cidr are needed for a key", md.Name)
		}
		return AffinityKey(o.Spec.Node, p), nil
	case *api.IPAMBlock:
		p, err := api.ParseCIDR(o.Spec.CIDR)
		if err != nil {
			return "", fmt.Errorf("IPAMBlock %q: spec.cidr=%q is not a CIDR", md.Name, o.Spec.CIDR)
		}
		return BlockKey(p), nil
	case *api.IPAMHandle:
		if md.Name == "" {
			return "", fmt.Errorf("IPAMHandle: metadata.name (the handle id) is required")
		}
		return HandleKey(md.Name), nil
	case *api.IPAMConfiguration:
		if md.Name != api.DefaultIPAMConfigName {
			return "", fmt.Errorf("IPAMConfiguration %q: the only one is named %q", md.Name, api.DefaultIPAMConfigName)
		}
		return IPAMConfigKey, nil
	case *api.StatusReport:
		if md.Name == "" {
			return "", fmt.Errorf("StatusReport: metadata.name (the node) is required")
		}
		return StatusReportKey(md.Name), nil
	}
	kind := obj.ResourceKind()
	if md.Name == "" {
		return "", fmt.Errorf("%s: metadata.name is required", kind)
	}
	if api.Namespaced(kind) && md.Namespace == "" {
		return "", fmt.Errorf("%s %q: metadata.namespace is required", kind, md.Name)
	}
	return ResourceKey(kind, md.Namespace, md.Name), nil
}

// KeyInfo is what a key says about its object.
type KeyInfo struct {
	Kind      string
	Namespace string
	Name      string // resource name; handle id; api.BlockName for blocks
	Node      string // BlockAffinity
	CIDR      string // BlockAffinity, IPAMBlock
}

// ParseKey classifies a key of the Calico layout.
func ParseKey(key string) (KeyInfo, error) {
	bad := func() (KeyInfo, error) {
		return KeyInfo{}, fmt.Errorf("key %q is not in the Calico v3/IPAM or Roost layout", key)
	}
	switch {
	case key == IPAMConfigKey:
		return KeyInfo{Kind: api.KindIPAMConfiguration, Name: api.DefaultIPAMConfigName}, nil
	case strings.HasPrefix(key, RoostResourcePrefix):
		parts := strings.Split(strings.TrimPrefix(key, RoostResourcePrefix), "/")
		kind, ok := roostKindsByPlural[parts[0]]
		if !ok || len(parts) != 2 || parts[1] == "" {
			return bad()
		}
		return KeyInfo{Kind: kind, Name: parts[1]}, nil
	case strings.HasPrefix(key, ResourcePrefix):
		parts := strings.Split(strings.TrimPrefix(key, ResourcePrefix), "/")
		kind, ok := kindsByPlural[parts[0]]
		if !ok {
			return bad()
		}
		if api.Namespaced(kind) {
			if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
				return bad()
			}
			return KeyInfo{Kind: kind, Namespace: parts[1], Name: parts[2]}, nil
		}
		if len(parts) != 2 || parts[1] == "" {
			return bad()
		}
		return KeyInfo{Kind: kind, Name: parts[1]}, nil
	case strings.HasPrefix(key, BlockPrefix):
		// assignment/ipv4/block/<cidr>
		parts := strings.Split(strings.TrimPrefix(key, BlockPrefix), "/")
		if len(parts) != 3 || parts[1] != "block" {
			return bad()
		}
		cidr, err := api.CIDRFromKey(parts[2])
		if err != nil {
			return bad()
		}
		return KeyInfo{Kind: api.KindIPAMBlock, Name: api.BlockName(cidr), CIDR: cidr}, nil
	case strings.HasPrefix(key, HostPrefix):
		// host/<node>/ipv4/block/<cidr>
		parts := strings.Split(strings.TrimPrefix(key, HostPrefix), "/")
		if len(parts) != 4 || parts[0] == "" || parts[2] != "block" {
			return bad()
		}
		cidr, err := api.CIDRFromKey(parts[3])
		if err != nil {
			return bad()
		}
		return KeyInfo{Kind: api.KindBlockAffinity, Name: api.BlockAffinityName(parts[0], cidr), Node: parts[0], CIDR: cidr}, nil
	case strings.HasPrefix(key, StatusPrefix):
		// <region>/host/<node>/status
		parts := strings.Split(strings.TrimPrefix(key, StatusPrefix), "/")
		if len(parts) != 4 || parts[0] == "" || parts[1] != "host" || parts[2] == "" || parts[3] != "status" {
			return bad()
		}
		return KeyInfo{Kind: api.KindStatusReport, Name: parts[2]}, nil
	case strings.HasPrefix(key, HandlePrefix):
		id := strings.TrimPrefix(key, HandlePrefix)
		if id == "" || strings.Contains(id, "/") {
			return bad()
		}
		return KeyInfo{Kind: api.KindIPAMHandle, Name: id}, nil
	}
	return bad()
}

// affinityValue is the JSON of an affinity key.
type affinityValue struct {
	State   string `json:"state"`
	Deleted bool   `json:"deleted"`
}

// EncodeValue gives the bytes stored at an object's key: full v3 JSON for
// resources, Calico's bare IPAM JSON for IPAM records. obj is not modified.
func EncodeValue(obj api.Resource) ([]byte, error) {
	switch o := obj.(type) {
	case *api.BlockAffinity:
		state := o.Spec.State
		if state == "" {
			state = api.AffinityConfirmed
		}
		return json.Marshal(affinityValue{State: state, Deleted: o.Spec.Deleted})
	case *api.IPAMBlock, *api.IPAMHandle:
		return api.MarshalSpec(o) // with fields a newer Calico wrote
	case *api.IPAMConfiguration:
		return json.Marshal(o.Spec.Backend())
	case *api.StatusReport:
		return json.Marshal(&o.Spec)
	}
	// Metadata that etcd itself tracks is not stored, as in Calico.
	return api.MarshalStored(obj)
}

// DecodeValue decodes the bytes at key. Minimal JSON (no kind, apiVersion
// or metadata) is accepted: kind, name and namespace come from the key.
// Unknown fields are tolerated (other tools may be newer than Roost), but
// the result is validated.
func DecodeValue(key string, data []byte, revision int64) (api.Resource, error) {
	info, err := ParseKey(key)
	if err != nil {
		return nil, err
	}
	opts := api.DecodeOptions{AllowUnknownFields: true}
	var obj api.Resource
	switch info.Kind {
	case api.KindBlockAffinity:
		var v affinityValue
		if len(strings.TrimSpace(string(data))) > 0 {
			if err := json.Unmarshal(data, &v); err != nil {
				return nil, fmt.Errorf("affinity: invalid JSON: %w", err)
			}
		}
		a := &api.BlockAffinity{Spec: api.BlockAffinitySpec{Node: info.Node, CIDR: info.CIDR, State: v.State, Deleted: v.Deleted}}
		a.Metadata.Name = info.Name
		api.Default(a)
		obj = a
	case api.KindIPAMConfiguration:
		var b api.IPAMConfigBackend
		if err := json.Unmarshal(data, &b); err != nil {
			return nil, fmt.Errorf("IPAM config: invalid JSON: %w", err)
		}
		c := &api.IPAMConfiguration{Spec: b.Spec()}
		c.Metadata.Name = info.Name
		obj = c
	case api.KindIPAMBlock, api.KindIPAMHandle, api.KindStatusReport:
		if t := bytes.TrimSpace(data); len(t) == 0 || t[0] != '{' {
			return nil, &api.FieldError{Kind: info.Kind, Name: info.Name,
				Msg: fmt.Sprintf("the value is not a JSON object (%s)", clip.Value(string(t)))}
		}
		wrapped := fmt.Sprintf(`{"metadata":{"name":%q},"spec":%s}`, info.Name, data)
		obj, err = api.DecodeJSON(info.Kind, []byte(wrapped), api.DecodeOptions{AllowUnknownFields: true, NoValidate: true})
		if err != nil {
			return nil, err
		}
	default:
		opts.NoValidate = true // validated below, after the name is filled in
		obj, err = api.DecodeJSON(info.Kind, data, opts)
		if err != nil {
			return nil, err
		}
		md := obj.Meta()
		md.Name, md.Namespace = info.Name, info.Namespace
	}
	if err := api.Validate(obj); err != nil {
		return nil, err
	}
	ReportUnknown(nil, key, obj)
	if revision > 0 {
		obj.Meta().ResourceVersion = fmt.Sprint(revision)
	}
	return obj, nil
}

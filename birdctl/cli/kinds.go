package cli

import (
	"fmt"
	"slices"
	"strings"

	"github.com/roostnet/roost/api"
)

// kindAliases maps the lower-cased names users type to kinds, like
// calicoctl: singular, plural and short forms.
var kindAliases = map[string][]string{
	api.KindBGPConfiguration:   {"bgpconfiguration", "bgpconfigurations", "bgpconfig", "bgpconfigs"},
	api.KindBGPPeer:            {"bgppeer", "bgppeers", "bgpp", "bgpps", "bp", "bps"},
	api.KindNode:               {"node", "nodes", "no", "nos"},
	api.KindIPPool:             {"ippool", "ippools", "ipp", "ipps", "pool", "pools"},
	api.KindBGPFilter:          {"bgpfilter", "bgpfilters"},
	api.KindWorkloadEndpoint:   {"workloadendpoint", "workloadendpoints", "wep", "weps"},
	api.KindCalicoNodeStatus:   {"caliconodestatus", "caliconodestatuses", "nodestatus", "nodestatuses"},
	api.KindClusterInformation: {"clusterinformation", "clusterinformations", "clusterinfo", "clusterinfos"},
	api.KindProfile:            {"profile", "profiles", "pro", "pros"},
	api.KindBFDProfile:         {"bfdprofile", "bfdprofiles", "bfd", "bfds"},
	api.KindBlockAffinity:      {"blockaffinity", "blockaffinities", "affinity", "affinities"},
	api.KindIPAMBlock:          {"ipamblock", "ipamblocks", "block", "blocks"},
	api.KindIPAMHandle:         {"ipamhandle", "ipamhandles", "handle", "handles"},
	api.KindIPAMConfiguration:  {"ipamconfiguration", "ipamconfigurations", "ipamconfig", "ipamconfigs"},
}

var aliasToKind = func() map[string]string {
	m := map[string]string{}
	for kind, names := range kindAliases {
		for _, n := range names {
			m[n] = kind
		}
		m[strings.ToLower(kind)] = kind
	}
	return m
}()

// kindFromAlias resolves a user-typed kind, case-insensitively; the error
// lists the valid names.
func kindFromAlias(s string) (string, error) {
	if k, ok := aliasToKind[strings.ToLower(strings.TrimSpace(s))]; ok {
		return k, nil
	}
	return "", fmt.Errorf("unknown resource kind %q; valid kinds: %s", s, validKinds())
}

func validKinds() string {
	var parts []string
	for _, k := range api.Kinds {
		names := kindAliases[k]
		parts = append(parts, fmt.Sprintf("%s (%s)", k, strings.Join(names, ", ")))
	}
	return strings.Join(parts, "; ")
}

// kindNames lists every alias for shell completion.
func kindNames() []string {
	var out []string
	for _, k := range api.Kinds {
		out = append(out, kindAliases[k][1]) // the plural
	}
	slices.Sort(out)
	return out
}

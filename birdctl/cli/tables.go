package cli

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

type table struct {
	header []string
	rows   [][]string
}

// table builds calicoctl's `get` table for resources of one kind.
// withNamespace adds a NAMESPACE column (namespaced kinds across every
// namespace).
func (a *app) table(ctx context.Context, ds datastore.Datastore, kind string, withNamespace, wide bool, objs []api.Resource) (table, error) {
	var t table
	switch kind {
	case api.KindNode:
		t.header = []string{"NAME"}
		globalAS := ""
		if wide {
			t.header = []string{"NAME", "ASN", "IPV4", "IPV6"}
			as, err := globalASNumber(ctx, ds)
			if err != nil {
				return t, err
			}
			globalAS = "(" + as + ")"
		}
		for _, o := range objs {
			n := o.(*api.Node)
			if !wide {
				t.rows = append(t.rows, []string{n.Metadata.Name})
				continue
			}
			asn, v4, v6 := globalAS, "", ""
			if b := n.Spec.BGP; b != nil {
				if b.ASNumber != nil {
					asn = b.ASNumber.String()
				}
				v4, v6 = b.IPv4Address, b.IPv6Address
			}
			t.rows = append(t.rows, []string{n.Metadata.Name, asn, v4, v6})
		}
	case api.KindIPPool:
		t.header = []string{"NAME", "CIDR", "SELECTOR"}
		if wide {
			t.header = []string{"NAME", "CIDR", "NAT", "IPIPMODE", "VXLANMODE", "DISABLED", "DISABLEBGPEXPORT", "SELECTOR"}
		}
		for _, o := range objs {
			p := o.(*api.IPPool)
			s := p.Spec
			if wide {
				t.rows = append(t.rows, []string{p.Metadata.Name, s.CIDR, strconv.FormatBool(s.NATOutgoing),
					orDefault(s.IPIPMode, api.EncapNever), orDefault(s.VXLANMode, api.EncapNever),
					strconv.FormatBool(s.Disabled), strconv.FormatBool(s.DisableBGPExport), s.NodeSelector})
			} else {
				t.rows = append(t.rows, []string{p.Metadata.Name, s.CIDR, s.NodeSelector})
			}
		}
	case api.KindWorkloadEndpoint:
		t.header = []string{"WORKLOAD", "NODE", "NETWORKS", "INTERFACE"}
		if wide {
			t.header = []string{"NAME", "WORKLOAD", "NODE", "NETWORKS", "INTERFACE", "PROFILES", "NATS"}
		}
		for _, o := range objs {
			w := o.(*api.WorkloadEndpoint)
			s := w.Spec
			workload := s.Workload
			if workload == "" {
				workload = s.Pod
			}
			var row []string
			if wide {
				var nats []string
				for _, n := range s.IPNATs {
					nats = append(nats, n.InternalIP+"<>"+n.ExternalIP)
				}
				row = []string{w.Metadata.Name, workload, s.Node, strings.Join(s.IPNetworks, ","), s.InterfaceName,
					strings.Join(s.Profiles, ","), strings.Join(nats, ",")}
			} else {
				row = []string{workload, s.Node, strings.Join(s.IPNetworks, ","), s.InterfaceName}
			}
			if withNamespace {
				row = append([]string{w.Metadata.Namespace}, row...)
			}
			t.rows = append(t.rows, row)
		}
		if withNamespace {
			t.header = append([]string{"NAMESPACE"}, t.header...)
		}
	case api.KindBGPPeer:
		t.header = []string{"NAME", "PEERIP", "NODE", "ASN"}
		if wide {
			t.header = append(t.header, "FILTERS", "REVERSEPEERING")
		}
		for _, o := range objs {
			p := o.(*api.BGPPeer)
			s := p.Spec
			peer, node, asn := s.PeerIP, s.Node, ""
			if s.PeerSelector != "" {
				peer = s.PeerSelector
			} else {
				asn = s.ASNumber.String()
			}
			switch {
			case s.NodeSelector != "":
				node = s.NodeSelector
			case node == "":
				node = "(global)"
			}
			row := []string{p.Metadata.Name, peer, node, asn}
			if wide {
				rp := api.ReversePeeringAuto
				if s.ReversePeering != nil && *s.ReversePeering != "" {
					rp = *s.ReversePeering
				}
				row = append(row, strings.Join(s.Filters, ","), rp)
			}
			t.rows = append(t.rows, row)
		}
	case api.KindBGPConfiguration:
		t.header = []string{"NAME", "LOGSEVERITY", "MESHENABLED", "ASNUMBER"}
		if wide {
			t.header = append(t.header, "LISTENPORT", "BINDMODE")
		}
		for _, o := range objs {
			c := o.(*api.BGPConfiguration)
			s := c.Spec
			mesh, asn := "", ""
			if s.NodeToNodeMeshEnabled != nil {
				mesh = strconv.FormatBool(*s.NodeToNodeMeshEnabled)
			}
			if s.ASNumber != nil {
				asn = s.ASNumber.String()
			}
			row := []string{c.Metadata.Name, s.LogSeverityScreen, mesh, asn}
			if wide {
				port, bind := "", ""
				if s.ListenPort != 0 {
					port = strconv.Itoa(int(s.ListenPort))
				}
				if s.BindMode != nil {
					bind = *s.BindMode
				}
				row = append(row, port, bind)
			}
			t.rows = append(t.rows, row)
		}
	case api.KindBGPFilter:
		t.header = []string{"NAME"}
		if wide {
			t.header = []string{"NAME", "EXPORTV4", "IMPORTV4", "EXPORTV6", "IMPORTV6"}
		}
		for _, o := range objs {
			f := o.(*api.BGPFilter)
			if !wide {
				t.rows = append(t.rows, []string{f.Metadata.Name})
				continue
			}
			s := f.Spec
			t.rows = append(t.rows, []string{f.Metadata.Name, rules(len(s.ExportV4)), rules(len(s.ImportV4)), rules(len(s.ExportV6)), rules(len(s.ImportV6))})
		}
	case api.KindCalicoNodeStatus:
		// calicoctl's columns; wide adds the period and the last answer.
		t.header = []string{"NAME", "NODE"}
		if wide {
			t.header = append(t.header, "CLASSES", "UPDATEPERIOD", "LASTUPDATED")
		}
		for _, o := range objs {
			s := o.(*api.CalicoNodeStatus)
			row := []string{s.Metadata.Name, s.Spec.Node}
			if wide {
				period, last := "", "never"
				if s.Spec.UpdatePeriodSeconds != nil {
					period = s.Spec.UpdatePeriod().String()
				}
				if !s.Status.LastUpdated.IsZero() {
					last = s.Status.LastUpdated.UTC().Format(time.RFC3339)
				}
				row = append(row, strings.Join(s.Spec.Classes, ","), period, last)
			}
			t.rows = append(t.rows, row)
		}
	case api.KindClusterInformation:
		t.header = []string{"NAME", "CLUSTERGUID", "CLUSTERTYPE", "DATASTOREREADY"}
		if wide {
			t.header = append(t.header, "CALICOVERSION")
		}
		for _, o := range objs {
			c := o.(*api.ClusterInformation)
			row := []string{c.Metadata.Name, c.Spec.ClusterGUID, c.Spec.ClusterType, strconv.FormatBool(c.Spec.Ready())}
			if wide {
				row = append(row, c.Spec.CalicoVersion)
			}
			t.rows = append(t.rows, row)
		}
	case api.KindProfile:
		t.header = []string{"NAME"}
		if wide {
			t.header = append(t.header, "LABELSTOAPPLY")
		}
		for _, o := range objs {
			row := []string{o.Meta().Name}
			if wide {
				row = append(row, labelString(o.(*api.Profile).Spec.LabelsToApply))
			}
			t.rows = append(t.rows, row)
		}
	case api.KindBFDProfile:
		t.header = []string{"NAME", "RECEIVEINTERVAL", "TRANSMITINTERVAL", "MULTIPLIER", "PASSIVE"}
		if wide {
			t.header = append(t.header, "MINIMUMTTL")
		}
		for _, o := range objs {
			s := o.(*api.BFDProfile).Spec
			ms := func(v *uint32) string {
				if v == nil {
					return ""
				}
				return strconv.FormatUint(uint64(*v), 10) + "ms"
			}
			mult, passive := "", "false"
			if s.DetectMultiplier != nil {
				mult = strconv.FormatUint(uint64(*s.DetectMultiplier), 10)
			}
			if s.PassiveMode != nil {
				passive = strconv.FormatBool(*s.PassiveMode)
			}
			row := []string{o.Meta().Name, ms(s.ReceiveInterval), ms(s.TransmitInterval), mult, passive}
			if wide {
				ttl := ""
				if s.MinimumTTL != nil {
					ttl = strconv.FormatUint(uint64(*s.MinimumTTL), 10)
				}
				row = append(row, ttl)
			}
			t.rows = append(t.rows, row)
		}
	case api.KindBlockAffinity:
		t.header = []string{"NAME", "NODE", "CIDR", "STATE"}
		if wide {
			t.header = append(t.header, "DELETED")
		}
		for _, o := range objs {
			b := o.(*api.BlockAffinity)
			row := []string{b.Metadata.Name, b.Spec.Node, b.Spec.CIDR, orDefault(b.Spec.State, api.AffinityConfirmed)}
			if wide {
				row = append(row, strconv.FormatBool(b.Spec.Deleted))
			}
			t.rows = append(t.rows, row)
		}
	case api.KindIPAMBlock:
		t.header = []string{"CIDR", "AFFINITY", "ALLOCATED", "FREE"}
		if wide {
			t.header = append(t.header, "HANDLES", "DELETED")
		}
		for _, o := range objs {
			b := o.(*api.IPAMBlock)
			used := b.Spec.InUse()
			aff := ""
			if b.Spec.Affinity != nil {
				aff = *b.Spec.Affinity
			}
			row := []string{b.Spec.CIDR, aff, strconv.Itoa(used), strconv.Itoa(len(b.Spec.Allocations) - used)}
			if wide {
				row = append(row, strings.Join(blockHandles(&b.Spec), ","), strconv.FormatBool(b.Spec.Deleted))
			}
			t.rows = append(t.rows, row)
		}
	case api.KindIPAMHandle:
		t.header = []string{"NAME", "BLOCKS"}
		for _, o := range objs {
			h := o.(*api.IPAMHandle)
			cidrs := make([]string, 0, len(h.Spec.Block))
			for c := range h.Spec.Block {
				cidrs = append(cidrs, c)
			}
			sort.Slice(cidrs, func(i, j int) bool { return cidrSortKey(cidrs[i]) < cidrSortKey(cidrs[j]) })
			var parts []string
			for _, c := range cidrs {
				parts = append(parts, fmt.Sprintf("%s:%d", c, h.Spec.Block[c]))
			}
			t.rows = append(t.rows, []string{h.Metadata.Name, strings.Join(parts, ",")})
		}
	case api.KindIPAMConfiguration:
		t.header = []string{"NAME", "STRICTAFFINITY", "AUTOALLOCATEBLOCKS", "MAXBLOCKSPERHOST"}
		for _, o := range objs {
			c := o.(*api.IPAMConfiguration)
			t.rows = append(t.rows, []string{c.Metadata.Name, strconv.FormatBool(c.Spec.StrictAffinity),
				strconv.FormatBool(c.Spec.AutoAllocate()), strconv.Itoa(c.Spec.MaxBlocksPerHost)})
		}
	default:
		return t, fmt.Errorf("no table for kind %s", kind)
	}
	return t, nil
}

func rules(n int) string { return fmt.Sprintf("%d rule(s)", n) }

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// globalASNumber is the AS of nodes that set none: the default
// BGPConfiguration's, else Calico's 64512.
func globalASNumber(ctx context.Context, ds datastore.Datastore) (string, error) {
	kv, err := ds.Get(ctx, datastore.ResourceKey(api.KindBGPConfiguration, "", api.DefaultBGPConfigName))
	if errors.Is(err, datastore.ErrNotFound) {
		return api.DefaultASNumber.String(), nil
	}
	if err != nil {
		return "", err
	}
	if c, ok := kv.Value.(*api.BGPConfiguration); ok && c.Spec.ASNumber != nil {
		return c.Spec.ASNumber.String(), nil
	}
	return api.DefaultASNumber.String(), nil
}

// blockHandles lists the handles holding addresses of a block.
func blockHandles(b *api.AllocationBlock) []string {
	seen := map[string]bool{}
	var out []string
	for _, a := range b.Allocations {
		if a == nil || *a < 0 || *a >= len(b.Attributes) {
			continue
		}
		if h := b.Attributes[*a].HandleID; h != nil && !seen[*h] {
			seen[*h] = true
			out = append(out, *h)
		}
	}
	return out
}

// labelString prints a label map as k=v pairs, sorted by key.
func labelString(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

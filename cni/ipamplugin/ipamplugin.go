// Package ipamplugin is the IPAM plugin "roost-ipam": addresses from
// Roost's IPAM (node/ipam: the same blocks, affinities and handles as
// roost-node), under Calico's handle "k8s-pod-network.<container id>".
package ipamplugin

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/cni/config"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/node/ipam"
	"github.com/roostnet/roost/node/names"
	"github.com/roostnet/roost/node/workload"
)

// Call is one invocation: its configuration, identity, logger and
// datastore (Close releases them).
type Call struct {
	Conf *config.NetConf
	ID   *config.Identity
	Args *config.Args
	Node string
	Log  *logrus.Logger
	DS   datastore.Datastore
	Ctx  context.Context

	cancel, closeLog func()
}

// Begin parses the call and, with connect, opens the datastore within
// the configured timeout.
func Begin(args *skel.CmdArgs, connect bool) (*Call, error) {
	return begin(args, true, connect)
}

// BeginNode is Begin for a call about the node rather than one container
// (GC): no container identity (ID and Args stay nil), always connected.
func BeginNode(args *skel.CmdArgs) (*Call, error) {
	return begin(args, false, true)
}

func begin(args *skel.CmdArgs, identify, connect bool) (*Call, error) {
	conf, err := config.Parse(args.StdinData)
	if err != nil {
		return nil, err
	}
	log, closeLog, err := conf.Logger("")
	if err != nil {
		return nil, err
	}
	c := &Call{Conf: conf, Log: log, closeLog: closeLog}
	if identify {
		if c.ID, c.Args, err = config.Identify(args.ContainerID, args.IfName, args.Args); err != nil {
			c.Close()
			return nil, err
		}
	}
	if c.Node, err = conf.Node(); err != nil {
		c.Close()
		return nil, err
	}
	c.Ctx, c.cancel = context.WithTimeout(context.Background(), conf.Timeout())
	if connect {
		if c.DS, err = conf.OpenDatastore(c.Ctx, log); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Close releases the call's resources.
func (c *Call) Close() {
	if c.DS != nil {
		c.DS.Close()
	}
	if c.cancel != nil {
		c.cancel()
	}
	c.closeLog()
}

// Fields are the call's log fields.
func (c *Call) Fields() logrus.Fields {
	if c.ID == nil {
		return logrus.Fields{"node": c.Node}
	}
	f := logrus.Fields{"container": c.ID.ContainerID, "node": c.Node, "iface": c.ID.IfName, "handle": c.ID.Handle}
	if c.ID.Pod != "" {
		f["pod"] = c.ID.Namespace + "/" + c.ID.Pod
	}
	return f
}

// Add allocates the container's addresses (or returns those its handle
// already holds).
func Add(args *skel.CmdArgs) error {
	c, err := Begin(args, true)
	if err != nil {
		return err
	}
	defer c.Close()
	res, err := c.AddResult()
	if err != nil {
		return err
	}
	return types.PrintResult(res, c.Conf.CNIVersion)
}

// AddResult is ADD's work: the handle's addresses as a result.
func (c *Call) AddResult() (*current.Result, error) {
	addrs, err := c.Assign()
	if err != nil {
		c.Log.WithFields(c.Fields()).WithError(err).Error("roost-ipam ADD failed")
		return nil, err
	}
	res := &current.Result{CNIVersion: current.ImplementedSpecVersion}
	for _, ip := range addrs {
		res.IPs = append(res.IPs, &current.IPConfig{Address: net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(ip.BitLen(), ip.BitLen())}})
	}
	c.Log.WithFields(c.Fields()).WithField("ips", addrs).Info("roost-ipam: assigned")
	return res, nil
}

// Assign takes the addresses of the call's handle.
func (c *Call) Assign() ([]netip.Addr, error) {
	req, err := c.Conf.AddressRequest(c.Args)
	if err != nil {
		return nil, err
	}
	pools, err := ResolvePools(c.Ctx, c.DS, req)
	if err != nil {
		return nil, err
	}
	attrs := map[string]string{ipam.AttrNode: c.Node, ipam.AttrNamespace: c.ID.Namespace, ipam.AttrTimestamp: ipam.Timestamp()}
	if c.ID.Pod != "" {
		attrs[ipam.AttrPod] = c.ID.Pod
	} else {
		attrs[AttrContainerID] = c.ID.ContainerID
	}
	cl := ipam.New(c.DS, c.Node, ipam.WithLogger(c.Log))
	a, err := cl.Assign(c.Ctx, ipam.AssignArgs{
		Handle: c.ID.Handle, Attrs: attrs, NodeLabels: workload.NodeLabels(c.Ctx, c.DS, c.Node), Namespace: c.ID.Namespace,
		IPv4: req.IPv4, IPv6: req.IPv6, IPs: req.IPs, Pools: pools,
	})
	if err != nil {
		return nil, c.Conf.DatastoreError("no address for container "+c.ID.ContainerID, err)
	}
	return a.Addrs(), nil
}

// AttrContainerID is the allocation attribute naming a non-Kubernetes
// container.
const AttrContainerID = "containerID"

// ResolvePools turns the requested pool names or CIDRs into pools: nil
// when neither list is given (every pool), else the given ones of a
// listed family and every pool of the other.
func ResolvePools(ctx context.Context, ds datastore.Datastore, r *config.Request) ([]*api.IPPool, error) {
	if len(r.IPv4Pools) == 0 && len(r.IPv6Pools) == 0 {
		return nil, nil
	}
	all, err := ipam.ListPools(ctx, ds)
	if err != nil {
		return nil, types.NewError(types.ErrTryAgainLater, "reading IPPools: "+err.Error(), "")
	}
	var out []*api.IPPool
	for _, fam := range []struct {
		bits  int
		field string
		want  []string
	}{{32, r.IPv4PoolsField, r.IPv4Pools}, {128, r.IPv6PoolsField, r.IPv6Pools}} {
		var ofFamily []*api.IPPool
		var known []string
		for _, p := range all {
			if cidr, err := netip.ParsePrefix(p.Spec.CIDR); err == nil && cidr.Addr().BitLen() == fam.bits {
				ofFamily = append(ofFamily, p)
				known = append(known, p.Metadata.Name+" ("+p.Spec.CIDR+")")
			}
		}
		if len(fam.want) == 0 {
			out = append(out, ofFamily...)
			continue
		}
		for _, w := range fam.want {
			w = strings.TrimSpace(w)
			i := slices.IndexFunc(ofFamily, func(p *api.IPPool) bool {
				if p.Metadata.Name == w {
					return true
				}
				a, err1 := netip.ParsePrefix(p.Spec.CIDR)
				b, err2 := netip.ParsePrefix(w)
				return err1 == nil && err2 == nil && a.Masked() == b.Masked()
			})
			if i < 0 {
				return nil, config.Invalid(fam.field, w, fmt.Sprintf("no IPv%d IPPool of that name or CIDR (pools: %s)", map[int]int{32: 4, 128: 6}[fam.bits], orNone(known)))
			}
			if !slices.Contains(out, ofFamily[i]) {
				out = append(out, ofFamily[i])
			}
		}
	}
	return out, nil
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// Del releases the handle's addresses; nothing to release is fine.
func Del(args *skel.CmdArgs) error {
	c, err := Begin(args, true)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Release()
}

// Release is DEL's work: the handle's addresses go back to IPAM.
func (c *Call) Release() error {
	cl := ipam.New(c.DS, c.Node, ipam.WithLogger(c.Log))
	released, err := cl.ReleaseByHandle(c.Ctx, c.ID.Handle)
	if err != nil {
		return c.Conf.DatastoreError("releasing "+c.ID.Handle, err)
	}
	c.Log.WithFields(c.Fields()).WithField("released", released).Info("roost-ipam: released")
	return nil
}

// Check verifies that the handle holds the previous result's addresses.
func Check(args *skel.CmdArgs) error {
	c, err := Begin(args, true)
	if err != nil {
		return err
	}
	defer c.Close()
	want, err := PrevAddrs(&c.Conf.PluginConf)
	if err != nil {
		return err
	}
	cl := ipam.New(c.DS, c.Node, ipam.WithLogger(c.Log))
	held, err := cl.AddrsByHandle(c.Ctx, c.ID.Handle)
	if err != nil {
		return c.Conf.DatastoreError("reading "+c.ID.Handle, err)
	}
	for _, ip := range want {
		if !slices.Contains(held, ip) {
			return types.NewError(types.ErrInternal, fmt.Sprintf("IPAM handle %s does not hold %s (it holds %v)", c.ID.Handle, ip, held), "")
		}
	}
	return nil
}

// PrevAddrs are the addresses of the configuration's prevResult (none
// without one).
func PrevAddrs(pc *types.PluginConf) ([]netip.Addr, error) {
	if pc.RawPrevResult == nil {
		return nil, nil
	}
	if err := version.ParsePrevResult(pc); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "prevResult: "+err.Error(), "")
	}
	res, err := current.NewResultFromResult(pc.PrevResult)
	if err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "prevResult: "+err.Error(), "")
	}
	var out []netip.Addr
	for _, ipc := range res.IPs {
		if a, ok := netip.AddrFromSlice(ipc.Address.IP); ok {
			out = append(out, a.Unmap())
		}
	}
	return out, nil
}

// Status answers whether the datastore is reachable and holds a pool.
func Status(args *skel.CmdArgs) error {
	conf, err := config.Parse(args.StdinData)
	if err != nil {
		return err
	}
	log, done, err := conf.Logger("")
	if err != nil {
		return err
	}
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), conf.Timeout())
	defer cancel()
	ds, err := conf.OpenDatastore(ctx, log)
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, err.Error(), "")
	}
	defer ds.Close()
	pools, err := ipam.ListPools(ctx, ds)
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "reading IPPools: "+err.Error(), "")
	}
	if len(pools) == 0 {
		return types.NewError(types.ErrPluginNotAvailable, "no IPPool in the datastore: no address can be assigned", "")
	}
	return nil
}

// GC releases this node's container addresses (handles
// "k8s-pod-network.<id>") whose attachment the runtime no longer lists.
func GC(args *skel.CmdArgs) error {
	c, err := BeginNode(args)
	if err != nil {
		return err
	}
	defer c.Close()
	conf, log, node, ctx, ds := c.Conf, c.Log, c.Node, c.Ctx, c.DS
	valid := map[string]bool{}
	for _, a := range conf.ValidAttachments {
		valid[names.PodHandle(a.ContainerID)] = true
	}
	lr, err := ds.List(ctx, datastore.KindPrefix(api.KindIPAMHandle))
	if err != nil {
		return conf.DatastoreError("listing IPAM handles", err)
	}
	cl := ipam.New(ds, node, ipam.WithLogger(log))
	for _, kv := range lr.KVs {
		h, ok := kv.Value.(*api.IPAMHandle)
		if !ok || !strings.HasPrefix(h.Metadata.Name, names.PodHandle("")) || valid[h.Metadata.Name] {
			continue
		}
		if !heldBy(ctx, ds, h, node) {
			continue
		}
		released, err := cl.ReleaseByHandle(ctx, h.Metadata.Name)
		if err != nil {
			return conf.DatastoreError("releasing "+h.Metadata.Name, err)
		}
		log.WithFields(logrus.Fields{"handle": h.Metadata.Name, "released": released}).Info("roost-ipam GC: released a stale allocation")
	}
	return nil
}

// heldBy reports whether every allocation of handle h carries node as
// its node attribute (a handle of another node's container is never
// released here, even if its address is from this node's block).
func heldBy(ctx context.Context, ds datastore.Datastore, h *api.IPAMHandle, node string) bool {
	found := false
	for cidr := range h.Spec.Block {
		p, err := netip.ParsePrefix(cidr)
		if err != nil {
			return false
		}
		kv, err := ds.Get(ctx, datastore.BlockKey(p))
		if err != nil {
			return false
		}
		b, ok := kv.Value.(*api.IPAMBlock)
		if !ok {
			return false
		}
		for _, a := range b.Spec.Attributes {
			if a.HandleID == nil || *a.HandleID != h.Metadata.Name {
				continue
			}
			if a.Secondary[ipam.AttrNode] != node {
				return false
			}
			found = true
		}
	}
	return found
}

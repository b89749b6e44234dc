// Package plugin is the network plugin "roost": it delegates addresses
// to the IPAM plugin of the configuration ("roost-ipam"), attaches the
// container with the same dataplane as `roost-node workload add`
// (node/workload) and records it as a WorkloadEndpoint under Calico's
// name (docs/cni.md).
package plugin

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	cniipam "github.com/containernetworking/plugins/pkg/ipam"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/cni/config"
	"github.com/roostnet/roost/cni/ipamplugin"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/node/ipam"
	"github.com/roostnet/roost/node/mtu"
	"github.com/roostnet/roost/node/names"
	"github.com/roostnet/roost/node/workload"
)

// EnvHostNetNS names the network namespace the plugin treats as the
// host's (default: its own). For tests and nested labs, where the
// plugin process must stay where the datastore is reachable.
const EnvHostNetNS = "ROOST_CNI_HOST_NETNS"

// hostNetlink is the netlink handle of the host namespace and that
// namespace (zero: the current one).
func hostNetlink() (*netlink.Handle, netns.NsHandle, error) {
	path := os.Getenv(EnvHostNetNS)
	if path == "" {
		h, err := netlink.NewHandle()
		return h, netns.None(), err
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, netns.None(), fmt.Errorf("%s=%s: %w", EnvHostNetNS, path, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, netns.None(), err
	}
	return h, ns, nil
}

// EnvMTUFile overrides where "mtu": 0 reads the workload MTU (default
// /var/lib/calico/mtu): roost-node's own variable for that file.
const EnvMTUFile = "ROOST_MTU_FILE"

type call struct {
	*ipamplugin.Call
	args *skel.CmdArgs
	nl   *netlink.Handle
	ns   netns.NsHandle
	host *workload.Host
}

func begin(args *skel.CmdArgs) (*call, error) {
	c, err := ipamplugin.Begin(args, true)
	if err != nil {
		return nil, err
	}
	if c.Conf.IPAM.Type == "" {
		c.Close()
		return nil, config.Invalid("ipam.type", `""`, "an IPAM plugin is required (roost-ipam)")
	}
	nl, ns, err := hostNetlink()
	if err != nil {
		c.Close()
		return nil, types.NewError(types.ErrInternal, "netlink: "+err.Error(), "")
	}
	host := &workload.Host{NodeName: c.Node, DS: c.DS, IPAM: ipam.New(c.DS, c.Node, ipam.WithLogger(c.Log)), NL: nl, NS: ns, Log: c.Log.WithFields(c.Fields())}
	return &call{Call: c, args: args, nl: nl, ns: ns, host: host}, nil
}

func (c *call) close() {
	c.nl.Close()
	if c.ns.IsOpen() {
		c.ns.Close()
	}
	c.Close()
}

// request is the node/workload request of the call.
func (c *call) request() workload.Request {
	id := c.ID
	name := id.Pod
	if name == "" {
		name = id.ContainerID
	}
	return workload.Request{
		Name: name, Namespace: id.Namespace, NetNS: c.args.Netns,
		Orchestrator: id.Orchestrator, Pod: id.Pod, ContainerID: id.ContainerID,
		IfName: id.IfName, HostIface: id.HostIface, Handle: id.Handle,
	}
}

// mtu is the veth MTU: "mtu", else the node's MTU file, else the
// kernel's default (1500).
func (c *call) mtu() int {
	if c.Conf.MTU > 0 {
		return c.Conf.MTU
	}
	// "mtu_file" (install-cni writes it when ROOST_MTU_FILE is not the
	// default), else $ROOST_MTU_FILE, else the default.
	file := c.Conf.MTUFile
	if file == "" {
		file = os.Getenv(EnvMTUFile)
	}
	if file == "" {
		file = mtu.DefaultFile
	}
	v, err := mtu.ReadFile(file)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			c.Log.WithError(err).WithField("file", file).Warn("unreadable MTU file: the container gets MTU 1500")
		}
		return 0
	}
	return v
}

func asCNIError(err error, code uint, what string) error {
	var te *types.Error
	if errors.As(err, &te) {
		return te
	}
	return types.NewError(code, what+": "+err.Error(), "")
}

func checkNetNS(path string) error {
	if path == "" {
		return types.NewError(types.ErrInvalidNetNS, "CNI_NETNS is empty", "")
	}
	if _, err := os.Stat(path); err != nil {
		return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("network namespace %s does not exist", path), "CNI_NETNS="+path+": "+err.Error())
	}
	return nil
}

// Add attaches the container.
func Add(args *skel.CmdArgs) error {
	c, err := begin(args)
	if err != nil {
		return err
	}
	defer c.close()
	log := c.Log.WithFields(c.Fields())
	if err := checkNetNS(args.Netns); err != nil {
		return err
	}
	r := c.request()
	// Another container holding this pod's endpoint: the pod's sandbox
	// is being replaced (its DEL may come later or never). As Calico, the
	// new one takes the endpoint and the host veth over; the old one's
	// DEL then releases only its addresses.
	switch err := c.owned(r); {
	case errors.Is(err, errOtherContainer):
		log.Warn("the pod's WorkloadEndpoint belongs to another container id: taking it over")
	case err != nil:
		return err
	}
	c.host.MTU = c.mtu()
	ipamRes, err := c.ipamAdd()
	if err != nil {
		log.WithError(err).Error("IPAM ADD failed")
		return asCNIError(err, types.ErrInternal, "IPAM plugin "+c.Conf.IPAM.Type)
	}
	undoIPAM := func(cause error) error {
		if err := c.ipamDel(); err != nil {
			log.WithError(err).Error("releasing the addresses of a failed ADD")
		}
		return cause
	}
	res, err := current.NewResultFromResult(ipamRes)
	if err != nil {
		return undoIPAM(types.NewError(types.ErrDecodingFailure, "IPAM plugin result: "+err.Error(), ""))
	}
	for _, ipc := range res.IPs {
		if a, ok := netip.AddrFromSlice(ipc.Address.IP); ok {
			r.Assigned = append(r.Assigned, a.Unmap())
		}
	}
	if len(r.Assigned) == 0 {
		return undoIPAM(types.NewError(ErrNoAddressFromIPAM, "the IPAM plugin returned no address", c.Conf.IPAM.Type))
	}
	wres, err := c.host.Attach(c.Ctx, r)
	if err != nil {
		log.WithError(err).Error("ADD failed")
		if c.Ctx.Err() != nil {
			return undoIPAM(config.Unreachable(c.Conf.Datastore(), c.Conf.Timeout().String(), err))
		}
		return undoIPAM(types.NewError(types.ErrInternal, err.Error(), ""))
	}
	res.CNIVersion = current.ImplementedSpecVersion
	res.Interfaces = []*current.Interface{
		{Name: wres.Iface, Mac: names.HostVethMAC},
		{Name: r.IfName, Mac: wres.MAC, Sandbox: args.Netns},
	}
	res.Routes = nil
	for i, ipc := range res.IPs {
		ipc.Interface = current.Int(1)
		ipc.Gateway = nil
		res.IPs[i] = ipc
	}
	if len(wres.IPs) > 0 && wres.IPs[0].Is4() {
		res.Routes = append(res.Routes, &types.Route{Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}})
	}
	for _, ip := range wres.IPs {
		if ip.Is6() {
			res.Routes = append(res.Routes, &types.Route{Dst: net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}})
			break
		}
	}
	res.DNS = c.Conf.DNS
	log.WithFields(logrus.Fields{"ips": wres.IPs, "host_iface": wres.Iface, "endpoint": wres.Endpoint}).Info("container attached")
	return types.PrintResult(res, c.Conf.CNIVersion)
}

// ownIPAM: the configured IPAM plugin is this binary's roost-ipam, so the
// network plugin does its work in-process, on the call's datastore
// connection, instead of starting the binary again (a process start and a
// datastore connection less per ADD and DEL; the CNI specification leaves
// to a plugin how it gets its addresses). Any other IPAM type is exec'd.
func (c *call) ownIPAM() bool { return c.Conf.IPAM.Type == config.IPAMType }

func (c *call) ipamAdd() (types.Result, error) {
	if c.ownIPAM() {
		return c.AddResult()
	}
	return cniipam.ExecAdd(c.Conf.IPAM.Type, c.args.StdinData)
}

func (c *call) ipamDel() error {
	if c.ownIPAM() {
		return c.Release()
	}
	return cniipam.ExecDel(c.Conf.IPAM.Type, c.args.StdinData)
}

// ErrNoAddressFromIPAM: the IPAM plugin succeeded without an address.
const ErrNoAddressFromIPAM = 101

// owned checks that the endpoint of the call's name is this container's
// (a Kubernetes pod's endpoint name does not include the container id:
// a replaced sandbox's late DEL must not remove the new one's); it
// returns errOtherContainer when it is not.
func (c *call) owned(r workload.Request) error {
	if r.Orchestrator != names.OrchestratorK8s {
		return nil
	}
	name, err := names.WorkloadEndpointName(names.EndpointIDs{Node: c.Node, Orchestrator: r.Orchestrator, Pod: r.Pod, Endpoint: r.IfName})
	if err != nil {
		return config.Invalid("K8S_POD_NAME", r.Pod, err.Error())
	}
	kv, err := c.DS.Get(c.Ctx, datastore.ResourceKey(api.KindWorkloadEndpoint, r.Namespace, name))
	if errors.Is(err, datastore.ErrNotFound) {
		return nil
	}
	if err != nil {
		return c.Conf.DatastoreError("reading WorkloadEndpoint "+name, err)
	}
	w, ok := kv.Value.(*api.WorkloadEndpoint)
	if !ok || w.Spec.ContainerID == "" || w.Spec.ContainerID == r.ContainerID {
		return nil
	}
	return errOtherContainer
}

var errOtherContainer = errors.New("the endpoint belongs to another container")

// Del detaches the container and releases its addresses; whatever is
// already gone (netns, veth, endpoint, allocation) is fine.
func Del(args *skel.CmdArgs) error {
	c, err := begin(args)
	if err != nil {
		return err
	}
	defer c.close()
	log := c.Log.WithFields(c.Fields())
	r := c.request()
	r.External = true
	// The release runs while the veth goes (the kernel takes tens of
	// milliseconds to delete one): they do not depend on each other.
	ipamDone := make(chan error, 1)
	go func() { ipamDone <- c.ipamDel() }()
	var detachErr error
	switch err := c.owned(r); {
	case errors.Is(err, errOtherContainer):
		log.Info("DEL of a replaced container: its pod's endpoint belongs to the new one; only its addresses are released")
	case err != nil:
		detachErr = err
	default:
		if _, err := c.host.Detach(c.Ctx, r); err != nil {
			detachErr = asCNIError(err, types.ErrInternal, "DEL")
		}
	}
	if err := <-ipamDone; err != nil {
		return asCNIError(err, types.ErrInternal, "IPAM plugin "+c.Conf.IPAM.Type)
	}
	if detachErr != nil {
		return detachErr
	}
	log.Info("container detached")
	return nil
}

// Check verifies the attachment against its WorkloadEndpoint and the
// previous result.
func Check(args *skel.CmdArgs) error {
	c, err := begin(args)
	if err != nil {
		return err
	}
	defer c.close()
	if c.Conf.RawPrevResult == nil {
		return types.NewError(types.ErrInvalidNetworkConfig, "CHECK needs prevResult", "field prevResult is missing")
	}
	want, err := ipamplugin.PrevAddrs(&c.Conf.PluginConf)
	if err != nil {
		return err
	}
	if err := checkNetNS(args.Netns); err != nil {
		return err
	}
	if err := cniipam.ExecCheck(c.Conf.IPAM.Type, args.StdinData); err != nil {
		return asCNIError(err, types.ErrInternal, "IPAM plugin "+c.Conf.IPAM.Type)
	}
	if err := c.host.Check(c.Ctx, c.request(), want); err != nil {
		return types.NewError(types.ErrInternal, "CHECK: "+err.Error(), "")
	}
	return nil
}

// Status delegates to the IPAM plugin (the datastore and its pools).
func Status(args *skel.CmdArgs) error {
	conf, err := config.Parse(args.StdinData)
	if err != nil {
		return err
	}
	if conf.IPAM.Type == "" {
		return config.Invalid("ipam.type", `""`, "an IPAM plugin is required (roost-ipam)")
	}
	if err := cniipam.ExecStatus(conf.IPAM.Type, args.StdinData); err != nil {
		return asCNIError(err, types.ErrPluginNotAvailable, "IPAM plugin "+conf.IPAM.Type)
	}
	return nil
}

// GC removes this node's container endpoints (and their veths) that the
// runtime no longer lists, then lets the IPAM plugin release their
// addresses.
func GC(args *skel.CmdArgs) error {
	c, err := ipamplugin.BeginNode(args)
	if err != nil {
		return err
	}
	defer c.Close()
	conf, log, node, ctx, ds := c.Conf, c.Log, c.Node, c.Ctx, c.DS
	valid := map[types.GCAttachment]bool{}
	for _, a := range conf.ValidAttachments {
		valid[a] = true
	}
	lr, err := ds.List(ctx, datastore.KindPrefix(api.KindWorkloadEndpoint))
	if err != nil {
		return conf.DatastoreError("listing WorkloadEndpoints", err)
	}
	nl, ns, err := hostNetlink()
	if err != nil {
		return types.NewError(types.ErrInternal, "netlink: "+err.Error(), "")
	}
	defer nl.Close()
	if ns.IsOpen() {
		defer ns.Close()
	}
	for _, kv := range lr.KVs {
		w, ok := kv.Value.(*api.WorkloadEndpoint)
		if !ok || w.Spec.Node != node || w.Spec.ContainerID == "" ||
			(w.Spec.Orchestrator != names.OrchestratorK8s && w.Spec.Orchestrator != names.OrchestratorCNI) ||
			valid[types.GCAttachment{ContainerID: w.Spec.ContainerID, IfName: w.Spec.Endpoint}] {
			continue
		}
		if w.Spec.InterfaceName != "" {
			if l, err := nl.LinkByName(w.Spec.InterfaceName); err == nil {
				if err := nl.LinkDel(l); err != nil {
					return types.NewError(types.ErrInternal, fmt.Sprintf("GC: removing %s: %v", w.Spec.InterfaceName, err), "")
				}
			}
		}
		if err := ds.Delete(ctx, kv.Key, kv.Revision); err != nil && !errors.Is(err, datastore.ErrNotFound) && !errors.Is(err, datastore.ErrConflict) {
			return conf.DatastoreError("GC: deleting WorkloadEndpoint "+w.Metadata.Name, err)
		}
		log.WithFields(logrus.Fields{"endpoint": w.Metadata.Name, "container": w.Spec.ContainerID}).Info("GC: removed a stale container endpoint")
	}
	if err := invoke.DelegateGC(ctx, conf.IPAM.Type, args.StdinData, nil); err != nil {
		return asCNIError(err, types.ErrInternal, "IPAM plugin "+conf.IPAM.Type)
	}
	return nil
}

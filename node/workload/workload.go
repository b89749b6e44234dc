// Package workload attaches a workload (a network namespace) to the host
// the way Calico's CNI plugin does (docs/roost-node.md, "Workloads"): a veth pair whose host
// end is "cali" + 11 hex characters with MAC ee:ee:ee:ee:ee:ee, proxy ARP
// and forwarding on; inside, eth0 with a /32 address, a link route to
// 169.254.1.1 and the default route through it; on the host, a /32 route
// to the workload (protocol 80) and a permanent neighbour entry. With an
// IPv6 address too: a /128 inside (no duplicate address detection), the
// IPv6 default route via the host end's link-local address
// fe80::ecee:eeff:feee:eeee, and on the host a /128 route, proxy NDP and
// IPv6 forwarding on the host end. The addresses come from IPAM (one per
// family the pools offer) and the workload is recorded as a
// WorkloadEndpoint.
//
// Attach and Detach converge: running either again, or after a crash
// half-way, finishes the job without duplicating anything.
package workload

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/internal/backoff"
	"github.com/roostnet/roost/internal/nsutil"
	"github.com/roostnet/roost/node/internal/nldump"
	"github.com/roostnet/roost/node/ipam"
	"github.com/roostnet/roost/node/names"
)

// InsideInterface is the workload's interface name.
const InsideInterface = "eth0"

// Orchestrator is written into the WorkloadEndpoints Roost creates.
const Orchestrator = names.OrchestratorRoost

// Host is where workloads are attached: the host's network namespace.
type Host struct {
	NodeName string
	DS       datastore.Datastore
	IPAM     *ipam.Client
	// NL talks to the host namespace; NS is that namespace (zero: the
	// current one), needed to write per-interface sysctls.
	NL  *netlink.Handle
	NS  netns.NsHandle
	Log logrus.FieldLogger
	// MTU of both ends of the workload veth (0: the kernel's default,
	// 1500); `roost-node workload add` takes it from the MTU file the
	// agent writes (node/mtu).
	MTU int
	// Protocol of the host route (default 80).
	Protocol int
}

// Request names a workload.
type Request struct {
	Name      string
	Namespace string // default "default"
	NetNS     string // path of the workload's network namespace (Attach)
	// IPs are specific addresses, at most one per family (optional).
	IPs []string
	// IPv4 and IPv6 say which families get an address: by default
	// (ipam.FamilyAuto) each family a usable pool of the node offers.
	IPv4, IPv6 ipam.FamilyMode

	// The CNI plugin sets these; zero values are `roost-node workload
	// add`'s (orchestrator roost, eth0, the veth and handle derived from
	// namespace and name).
	Orchestrator string // names.OrchestratorRoost, OrchestratorK8s or OrchestratorCNI
	Pod          string // k8s: the pod (Name is the pod too)
	ContainerID  string
	IfName       string            // the interface inside (default eth0)
	HostIface    string            // the host end of the veth
	Handle       string            // the IPAM handle
	Attrs        map[string]string // more IPAM attributes
	Labels       map[string]string // more WorkloadEndpoint labels
	Pools        []*api.IPPool     // candidate pools (nil: all)
	// Assigned are addresses an IPAM plugin already allocated: Attach
	// uses them as they are (and gives back none on failure), Detach
	// leaves the release to that plugin.
	Assigned []netip.Addr
	External bool // Detach: addresses are released by someone else

	wepName string // Calico's name of its WorkloadEndpoint (normalize)
}

// Result describes an attached workload.
type Result struct {
	IP    netip.Addr   // the first of IPs
	IPs   []netip.Addr // IPv4 first
	Iface string
	MAC   string // of the workload's eth0
	// Endpoint is the name of its WorkloadEndpoint (Calico's).
	Endpoint string
}

func (r *Request) normalize(node string) error {
	if r.Namespace == "" {
		r.Namespace = "default"
	}
	if r.Orchestrator == "" {
		r.Orchestrator = names.OrchestratorRoost
	}
	if r.IfName == "" {
		r.IfName = InsideInterface
	}
	if r.HostIface == "" {
		r.HostIface = names.WorkloadInterface(r.Namespace, r.Name)
	}
	if r.Handle == "" {
		r.Handle = names.WorkloadHandle(r.Namespace, r.Name)
	}
	if r.Orchestrator == names.OrchestratorRoost {
		// The old name (before Calico's names) must stay a valid one too:
		// it is looked up to migrate.
		w := &api.WorkloadEndpoint{}
		w.Metadata.Name, w.Metadata.Namespace = r.Name, r.Namespace
		if err := api.Validate(w); err != nil {
			return fmt.Errorf("workload %s/%s: %w", r.Namespace, r.Name, err)
		}
	}
	name, err := names.WorkloadEndpointName(r.ids(node))
	if err != nil {
		return fmt.Errorf("workload %s/%s: %w", r.Namespace, r.Name, err)
	}
	w := &api.WorkloadEndpoint{}
	w.Metadata.Name, w.Metadata.Namespace = name, r.Namespace
	if err := api.Validate(w); err != nil {
		return fmt.Errorf("workload %s/%s: %w", r.Namespace, r.Name, err)
	}
	r.wepName = name
	return nil
}

func (r *Request) ids(node string) names.EndpointIDs {
	ids := names.EndpointIDs{Node: node, Orchestrator: r.Orchestrator, Pod: r.Pod, ContainerID: r.ContainerID, Endpoint: r.IfName}
	if r.Orchestrator == names.OrchestratorRoost {
		ids.Workload = r.Name
	}
	return ids
}

// legacyKey is where `workload add` kept the workload's WorkloadEndpoint
// before it used Calico's names ("" for other orchestrators).
func (r *Request) legacyKey() string {
	if r.Orchestrator != names.OrchestratorRoost || r.Name == r.wepName {
		return ""
	}
	return datastore.ResourceKey(api.KindWorkloadEndpoint, r.Namespace, r.Name)
}

func (r *Request) key() string {
	return datastore.ResourceKey(api.KindWorkloadEndpoint, r.Namespace, r.wepName)
}

func (h *Host) log() logrus.FieldLogger {
	if h.Log == nil {
		return logrus.StandardLogger()
	}
	return h.Log
}

func (h *Host) protocol() netlink.RouteProtocol {
	if h.Protocol == 0 {
		return names.RouteProtocol
	}
	return netlink.RouteProtocol(h.Protocol)
}

func (h *Host) nodeLabels(ctx context.Context) map[string]string {
	return NodeLabels(ctx, h.DS, h.NodeName)
}

// NodeLabels are the labels of node's Node (for the pools' nodeSelector;
// none when it cannot be read).
func NodeLabels(ctx context.Context, ds datastore.Datastore, node string) map[string]string {
	kv, err := ds.Get(ctx, datastore.ResourceKey(api.KindNode, "", node))
	if err != nil {
		return nil
	}
	if n, ok := kv.Value.(*api.Node); ok {
		return n.Metadata.Labels
	}
	return nil
}

// addresses returns the workload's addresses: those its handle holds,
// else new ones (one per wanted family).
func (h *Host) addresses(ctx context.Context, r *Request) ([]netip.Addr, error) {
	attrs := map[string]string{ipam.AttrNode: h.NodeName, ipam.AttrNamespace: r.Namespace, ipam.AttrPod: r.Name, ipam.AttrTimestamp: ipam.Timestamp()}
	if r.Orchestrator == names.OrchestratorCNI {
		delete(attrs, ipam.AttrPod)
	}
	for k, v := range r.Attrs {
		attrs[k] = v
	}
	args := ipam.AssignArgs{
		Handle: r.Handle, NodeLabels: h.nodeLabels(ctx), Namespace: r.Namespace, IPv4: r.IPv4, IPv6: r.IPv6,
		Attrs: attrs, Pools: r.Pools,
	}
	for _, s := range r.IPs {
		ip, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil || ip.Zone() != "" {
			return nil, fmt.Errorf("IP %q: not an IPv4 or IPv6 address", s)
		}
		args.IPs = append(args.IPs, ip.Unmap())
	}
	if err := h.checkEndpointsFree(ctx, r, args.IPs); err != nil {
		return nil, err
	}
	a, err := h.IPAM.Assign(ctx, args)
	if err != nil {
		return nil, err
	}
	return a.Addrs(), nil
}

// checkEndpointsFree refuses a specific address that another
// WorkloadEndpoint still lists, even when IPAM shows it free (a record
// left by a crash, another tool, or an IPAM release that raced): taking
// it would give two workloads one address. The endpoint is named so it
// can be looked at and removed.
func (h *Host) checkEndpointsFree(ctx context.Context, r *Request, ips []netip.Addr) error {
	if len(ips) == 0 {
		return nil
	}
	res, err := h.DS.List(ctx, datastore.KindPrefix(api.KindWorkloadEndpoint))
	if err != nil {
		return fmt.Errorf("reading WorkloadEndpoints to check --ip: %w", err)
	}
	for _, kv := range res.KVs {
		w, ok := kv.Value.(*api.WorkloadEndpoint)
		if !ok || h.ownEndpoint(w, r) {
			continue
		}
		for _, n := range w.Spec.IPNetworks {
			p, err := api.ParseCIDR(n)
			if err != nil || p.Bits() != p.Addr().BitLen() {
				continue
			}
			if a := p.Addr().Unmap(); slices.Contains(ips, a) {
				return fmt.Errorf("--ip %s: WorkloadEndpoint %s/%s (node %s) still lists it: remove that endpoint (or detach its workload) first", a, w.Metadata.Namespace, w.Metadata.Name, w.Spec.Node)
			}
		}
	}
	return nil
}

// ownEndpoint reports whether w is the endpoint of workload r on this
// node, under Calico's name or the one `workload add` used before
// (re-attaching keeps its address).
func (h *Host) ownEndpoint(w *api.WorkloadEndpoint, r *Request) bool {
	if w.Metadata.Namespace != r.Namespace {
		return false
	}
	if w.Metadata.Name == r.wepName || (r.legacyKey() != "" && w.Metadata.Name == r.Name) {
		return true
	}
	ids := r.ids(h.NodeName)
	return w.Spec.Node == h.NodeName && w.Spec.Orchestrator == ids.Orchestrator &&
		w.Spec.Workload == ids.Workload && w.Spec.Pod == ids.Pod && w.Spec.ContainerID == ids.ContainerID
}

// undo takes back what a failed Attach did before it failed: the veth it
// created (its routes and neighbours go with it), the addresses it
// allocated (fresh), and blocks it claimed for them, so that IPAM and the
// host are as they were. What an earlier Attach of the same workload set
// up stays. It runs even when ctx was cancelled (Ctrl-C mid-attach).
func (h *Host) undo(ctx context.Context, r *Request, cause error, veth string, fresh []netip.Addr, blocksBefore []netip.Prefix) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var errs []error
	if veth != "" {
		if l, err := h.NL.LinkByName(veth); err == nil {
			if err := h.NL.LinkDel(l); err != nil && !errors.Is(err, syscall.ENODEV) {
				errs = append(errs, fmt.Errorf("removing %s: %w", veth, err))
			}
		}
	}
	released := true
	for _, ip := range fresh {
		if _, err := h.IPAM.ReleaseIP(ctx, ip, r.Handle); err != nil {
			errs = append(errs, fmt.Errorf("releasing %s: %w", ip, err))
			released = false
		}
	}
	if len(fresh) > 0 && released {
		if err := h.releaseNewBlocks(ctx, blocksBefore); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		h.log().WithError(errors.Join(errs...)).WithField("workload", r.Namespace+"/"+r.Name).Error("workload attach failed and could not be undone completely")
		return fmt.Errorf("%w (undoing it failed too: %w)", cause, errors.Join(errs...))
	}
	return cause
}

// affineBlocks lists this node's blocks of both families.
func (h *Host) affineBlocks(ctx context.Context) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range []int{4, 6} {
		bs, err := h.IPAM.AffineBlocks(ctx, f)
		if err != nil {
			return nil, err
		}
		out = append(out, bs...)
	}
	return out, nil
}

// releaseNewBlocks gives up the blocks this node claimed since before
// (an allocation that needed a new block), if they are empty again.
func (h *Host) releaseNewBlocks(ctx context.Context, before []netip.Prefix) error {
	now, err := h.affineBlocks(ctx)
	if err != nil {
		return fmt.Errorf("listing its blocks: %w", err)
	}
	added := map[netip.Prefix]bool{}
	for _, p := range now {
		if !slices.Contains(before, p) {
			added[p] = true
		}
	}
	if len(added) == 0 {
		return nil
	}
	if _, err := h.IPAM.ReleaseEmptyBlocks(ctx, func(p netip.Prefix) bool { return !added[p] }); err != nil {
		return fmt.Errorf("releasing a block claimed for it: %w", err)
	}
	return nil
}

// Attach creates or completes the workload's networking.
func (h *Host) Attach(ctx context.Context, r Request) (*Result, error) {
	if err := r.normalize(h.NodeName); err != nil {
		return nil, err
	}
	if r.NetNS == "" {
		return nil, errors.New("workload: --netns is required")
	}
	target, err := netns.GetFromPath(r.NetNS)
	if err != nil {
		return nil, fmt.Errorf("workload: opening network namespace %s: %w", r.NetNS, err)
	}
	defer target.Close()
	inNL, err := netlink.NewHandleAt(target)
	if err != nil {
		return nil, fmt.Errorf("workload: netlink in %s: %w", r.NetNS, err)
	}
	defer inNL.Close()
	log := h.log().WithFields(logrus.Fields{"workload": r.Namespace + "/" + r.Name})

	if r.Orchestrator == names.OrchestratorRoost {
		if err := h.checkElsewhere(ctx, &r); err != nil {
			return nil, err
		}
	}

	// Check the namespace before taking an address for it.
	iface := r.HostIface
	if err := h.checkInside(iface, r.IfName, inNL); err != nil {
		return nil, fmt.Errorf("workload %s/%s: %w", r.Namespace, r.Name, err)
	}
	var ips, fresh []netip.Addr
	var blocksBefore []netip.Prefix
	if len(r.Assigned) > 0 {
		ips = slices.Clone(r.Assigned)
		slices.SortStableFunc(ips, func(a, b netip.Addr) int { return boolInt(a.Is6()) - boolInt(b.Is6()) })
	} else {
		// What IPAM held before, to give back only what this call takes.
		held, err := h.IPAM.AddrsByHandle(ctx, r.Handle)
		if err != nil {
			return nil, fmt.Errorf("workload %s/%s: IPAM: %w", r.Namespace, r.Name, err)
		}
		if blocksBefore, err = h.affineBlocks(ctx); err != nil {
			return nil, fmt.Errorf("workload %s/%s: IPAM: %w", r.Namespace, r.Name, err)
		}
		if ips, err = h.addresses(ctx, &r); err != nil {
			return nil, fmt.Errorf("workload %s/%s: IPAM: %w", r.Namespace, r.Name, err)
		}
		for _, ip := range ips {
			if !slices.Contains(held, ip) {
				fresh = append(fresh, ip)
			}
		}
	}
	// From here on, a failure takes back what this call did.
	createdVeth := ""
	fail := func(what string, err error) (*Result, error) {
		err = fmt.Errorf("workload %s/%s: %s%w", r.Namespace, r.Name, what, err)
		return nil, h.undo(ctx, &r, err, createdVeth, fresh, blocksBefore)
	}
	host, inside, created, err := h.veth(iface, r.IfName, target, inNL)
	if created {
		createdVeth = iface
	}
	if err != nil {
		return fail("", err)
	}
	if err := h.setMTU(host, inside, inNL); err != nil {
		return nil, fmt.Errorf("workload %s/%s: %w", r.Namespace, r.Name, err)
	}
	v6 := slices.ContainsFunc(ips, netip.Addr.Is6)
	if err := h.configureHostSide(host, v6); err != nil {
		return fail("host side: ", err)
	}
	if err := configureInside(inNL, target, inside, ips); err != nil {
		return fail("inside: ", err)
	}
	mac := inside.Attrs().HardwareAddr
	for _, ip := range ips {
		if err := h.hostRoute(host, ip, mac); err != nil {
			return fail(fmt.Sprintf("host route to %s: ", ip), err)
		}
	}
	if err := h.record(ctx, &r, iface, ips, mac); err != nil {
		return fail("WorkloadEndpoint: ", err)
	}
	log.WithFields(logrus.Fields{"ips": ips, "iface": iface}).Info("workload attached")
	return &Result{IP: ips[0], IPs: ips, Iface: iface, MAC: mac.String(), Endpoint: r.wepName}, nil
}

// ours reports whether host and inside are the two ends of one veth.
func ours(host, inside netlink.Link) bool {
	return inside.Type() == "veth" && host.Type() == "veth" &&
		inside.Attrs().ParentIndex == host.Attrs().Index && host.Attrs().ParentIndex == inside.Attrs().Index
}

// checkInside refuses a namespace whose eth0 is not this workload's veth
// (before any address is taken for it).
func (h *Host) checkInside(iface, ifName string, inNL *netlink.Handle) error {
	inside, err := inNL.LinkByName(ifName)
	if err != nil {
		return nil // none: Attach creates it
	}
	if host, err := h.NL.LinkByName(iface); err == nil && ours(host, inside) {
		return nil
	}
	return fmt.Errorf("the namespace already has an %s (%s) that is not this workload's", ifName, inside.Type())
}

// veth returns the host end and the inside end of the workload's veth,
// creating the pair (or replacing a stale host end) as needed; created
// says whether this call made the pair.
func (h *Host) veth(iface, ifName string, target netns.NsHandle, inNL *netlink.Handle) (host, inside netlink.Link, created bool, err error) {
	host, err = h.NL.LinkByName(iface)
	if err == nil {
		inside, ierr := inNL.LinkByName(ifName)
		if ierr == nil && ours(host, inside) {
			return host, inside, false, nil
		}
		// A host end whose peer is not this namespace's eth0 (an earlier
		// attempt into another namespace): start again.
		if derr := h.NL.LinkDel(host); derr != nil && !errors.Is(derr, syscall.ENODEV) {
			return nil, nil, false, fmt.Errorf("removing stale %s: %w", iface, derr)
		}
	} else {
		var lnf netlink.LinkNotFoundError
		if !errors.As(err, &lnf) {
			return nil, nil, false, fmt.Errorf("looking up %s: %w", iface, err)
		}
	}
	if l, err := inNL.LinkByName(ifName); err == nil {
		return nil, nil, false, fmt.Errorf("the namespace already has an %s (%s) that is not this workload's", ifName, l.Type())
	}
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: iface, MTU: h.MTU}, PeerName: ifName, PeerNamespace: netlink.NsFd(int(target))}
	if h.MTU > 0 {
		v.PeerMTU = uint32(h.MTU)
	}
	if err := h.NL.LinkAdd(v); err != nil {
		return nil, nil, false, fmt.Errorf("creating veth %s: %w", iface, err)
	}
	host, err = h.NL.LinkByName(iface)
	if err != nil {
		return nil, nil, true, err
	}
	inside, err = inNL.LinkByName(ifName)
	if err != nil {
		return nil, nil, true, err
	}
	return host, inside, true, nil
}

// setMTU gives both ends of an existing pair the MTU asked for (a new
// pair is created with it): attaching again applies a changed MTU.
func (h *Host) setMTU(host, inside netlink.Link, inNL *netlink.Handle) error {
	if h.MTU <= 0 {
		return nil
	}
	if host.Attrs().MTU != h.MTU {
		if err := h.NL.LinkSetMTU(host, h.MTU); err != nil {
			return fmt.Errorf("MTU %d on %s: %w", h.MTU, host.Attrs().Name, err)
		}
	}
	if inside.Attrs().MTU != h.MTU {
		if err := inNL.LinkSetMTU(inside, h.MTU); err != nil {
			return fmt.Errorf("MTU %d on %s in the workload: %w", h.MTU, inside.Attrs().Name, err)
		}
	}
	return nil
}

// sysctl is one /proc/sys setting.
type sysctl struct{ path, value string }

func writeSysctls(ss []sysctl) error {
	for _, s := range ss {
		if err := os.WriteFile("/proc/sys/"+s.path, []byte(s.value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s: %w", s.path, err)
		}
	}
	return nil
}

func (h *Host) configureHostSide(host netlink.Link, v6 bool) error {
	mac, _ := net.ParseMAC(names.HostVethMAC)
	if host.Attrs().HardwareAddr.String() != mac.String() {
		if err := h.NL.LinkSetHardwareAddr(host, mac); err != nil {
			return fmt.Errorf("MAC: %w", err)
		}
	}
	name := host.Attrs().Name
	ss := []sysctl{
		{"net/ipv4/conf/" + name + "/proxy_arp", "1"},
		{"net/ipv4/neigh/" + name + "/proxy_delay", "0"},
		{"net/ipv4/conf/" + name + "/forwarding", "1"},
	}
	if v6 {
		// Before the link is up: no duplicate address detection on a
		// point-to-point link, IPv6 on, the host end answers neighbour
		// solicitations for the workload's next hop, forwards, and
		// ignores router advertisements.
		ss = append(ss,
			sysctl{"net/ipv6/conf/" + name + "/accept_dad", "0"},
			sysctl{"net/ipv6/conf/" + name + "/disable_ipv6", "0"},
			sysctl{"net/ipv6/conf/" + name + "/proxy_ndp", "1"},
			sysctl{"net/ipv6/conf/" + name + "/forwarding", "1"},
			sysctl{"net/ipv6/conf/" + name + "/accept_ra", "0"},
		)
	}
	if err := h.inHost(func() error { return writeSysctls(ss) }); err != nil {
		return err
	}
	if v6 {
		// The workload's IPv6 next hop: the link-local address the kernel
		// derives from the host end's MAC. Added here rather than waited
		// for, so it is there whatever the host's addr_gen_mode.
		gw := netip.MustParseAddr(names.WorkloadGatewayV6)
		err := h.NL.AddrAdd(host, &netlink.Addr{IPNet: &net.IPNet{IP: gw.AsSlice(), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD})
		if err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("link-local address %s: %w", gw, err)
		}
	}
	if host.Attrs().Flags&net.FlagUp == 0 {
		if err := h.NL.LinkSetUp(host); err != nil {
			return fmt.Errorf("up: %w", err)
		}
	}
	return nil
}

// inHost runs fn in the host namespace (a locked OS thread when the host
// namespace is not the current one).
func (h *Host) inHost(fn func() error) error {
	if !nsutil.Given(h.NS) {
		return fn()
	}
	return nsutil.Do(h.NS, fn)
}

func configureInside(nl *netlink.Handle, target netns.NsHandle, inside netlink.Link, ips []netip.Addr) error {
	if lo, err := nl.LinkByName("lo"); err == nil && lo.Attrs().Flags&net.FlagUp == 0 {
		if err := nl.LinkSetUp(lo); err != nil {
			return fmt.Errorf("lo up: %w", err)
		}
	}
	if slices.ContainsFunc(ips, netip.Addr.Is6) {
		// IPv6 on, and no duplicate address detection: it would hold the
		// address back for a second on a link where it cannot clash.
		name := inside.Attrs().Name
		err := nsutil.Do(target, func() error {
			return writeSysctls([]sysctl{
				{"net/ipv6/conf/all/disable_ipv6", "0"},
				{"net/ipv6/conf/default/disable_ipv6", "0"},
				{"net/ipv6/conf/lo/disable_ipv6", "0"},
				{"net/ipv6/conf/" + name + "/disable_ipv6", "0"},
				{"net/ipv6/conf/" + name + "/accept_dad", "0"},
			})
		})
		if err != nil {
			return err
		}
	}
	addrs, err := nldump.List(func() ([]netlink.Addr, error) { return nl.AddrList(inside, netlink.FAMILY_ALL) })
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, ip := range ips {
		want[netip.PrefixFrom(ip, ip.BitLen()).String()] = true
	}
	for _, a := range addrs {
		p, ok := netipPrefix(a.IPNet)
		if !ok || p.Addr().IsLinkLocalUnicast() {
			continue
		}
		if want[p.String()] {
			delete(want, p.String())
			continue
		}
		if err := nl.AddrDel(inside, &a); err != nil {
			return fmt.Errorf("removing %s: %w", a.IPNet, err)
		}
	}
	for _, ip := range ips {
		if !want[netip.PrefixFrom(ip, ip.BitLen()).String()] {
			continue
		}
		na := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(ip.BitLen(), ip.BitLen())}}
		if ip.Is6() {
			na.Flags = unix.IFA_F_NODAD
		}
		if err := nl.AddrAdd(inside, na); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("address %s: %w", ip, err)
		}
	}
	if inside.Attrs().Flags&net.FlagUp == 0 {
		if err := nl.LinkSetUp(inside); err != nil {
			return fmt.Errorf("up: %w", err)
		}
	}
	hostMAC, err := net.ParseMAC(names.HostVethMAC)
	if err != nil {
		return err
	}
	idx := inside.Attrs().Index
	if slices.ContainsFunc(ips, netip.Addr.Is4) {
		gw := net.ParseIP(names.WorkloadGateway).To4()
		if err := nl.RouteReplace(&netlink.Route{LinkIndex: idx, Dst: &net.IPNet{IP: gw, Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK}); err != nil {
			return fmt.Errorf("route to %s: %w", gw, err)
		}
		if err := nl.RouteReplace(&netlink.Route{LinkIndex: idx, Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, Gw: gw}); err != nil {
			return fmt.Errorf("default route: %w", err)
		}
		// The gateway is the host end of the veth. A permanent neighbour
		// means the workload does not depend on proxy ARP, which only
		// answers when the host itself has a route to 169.254.1.1 (a
		// default route).
		if err := nl.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: gw, HardwareAddr: hostMAC}); err != nil {
			return fmt.Errorf("neighbour %s: %w", gw, err)
		}
	}
	if slices.ContainsFunc(ips, netip.Addr.Is6) {
		// A link-local next hop needs no route of its own: the device
		// given with it is the link.
		gw := net.ParseIP(names.WorkloadGatewayV6)
		if err := nl.RouteReplace(&netlink.Route{LinkIndex: idx, Dst: &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, Gw: gw}); err != nil {
			return fmt.Errorf("IPv6 default route: %w", err)
		}
		if err := nl.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V6, State: netlink.NUD_PERMANENT, IP: gw, HardwareAddr: hostMAC}); err != nil {
			return fmt.Errorf("neighbour %s: %w", gw, err)
		}
	}
	return nil
}

func netipPrefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	a = a.Unmap()
	return netip.PrefixFrom(a, ones), true
}

// hostRoute is the host's route to one workload address (a /32 or /128
// on the host end, protocol 80, as the agent programs it) and a permanent
// neighbour entry for it.
func (h *Host) hostRoute(host netlink.Link, ip netip.Addr, mac net.HardwareAddr) error {
	idx := host.Attrs().Index
	dst := &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(ip.BitLen(), ip.BitLen())}
	r := &netlink.Route{LinkIndex: idx, Dst: dst, Scope: netlink.SCOPE_LINK, Protocol: h.protocol(), Table: unix.RT_TABLE_MAIN}
	fam := netlink.FAMILY_V4
	if ip.Is6() {
		fam = netlink.FAMILY_V6
		r.Scope = netlink.SCOPE_UNIVERSE
		r.Priority = 1024 // the kernel's default metric, which the agent writes too
	}
	if err := h.NL.RouteReplace(r); err != nil {
		return err
	}
	return h.NL.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: fam, State: netlink.NUD_PERMANENT, IP: ip.AsSlice(), HardwareAddr: mac})
}

func (h *Host) record(ctx context.Context, r *Request, iface string, ips []netip.Addr, mac net.HardwareAddr) error {
	nets := make([]string, len(ips))
	for i, ip := range ips {
		nets[i] = netip.PrefixFrom(ip, ip.BitLen()).String()
	}
	w := &api.WorkloadEndpoint{}
	w.Metadata.Name, w.Metadata.Namespace = r.wepName, r.Namespace
	w.Metadata.Labels = map[string]string{"projectcalico.org/namespace": r.Namespace, "projectcalico.org/orchestrator": r.Orchestrator}
	for k, v := range r.Labels {
		w.Metadata.Labels[k] = v
	}
	ids := r.ids(h.NodeName)
	w.Spec = api.WorkloadEndpointSpec{
		Orchestrator: r.Orchestrator, Workload: ids.Workload, Pod: r.Pod, ContainerID: r.ContainerID, Node: h.NodeName, Endpoint: r.IfName,
		InterfaceName: iface, MAC: mac.String(), IPNetworks: nets,
		Profiles: []string{"kns." + r.Namespace},
	}
	key := r.key()
	if err := h.writeEndpoint(ctx, key, w); err != nil {
		return err
	}
	// Migrate: the endpoint's old name goes once the new one is written.
	if old := r.legacyKey(); old != "" {
		if err := h.deleteLegacy(ctx, r, old); err != nil {
			return err
		}
	}
	return nil
}

func (h *Host) writeEndpoint(ctx context.Context, key string, w *api.WorkloadEndpoint) error {
	// A concurrent writer won the compare-and-swap: read again after a
	// short jittered delay.
	bo := backoff.New(backoff.Policy{Min: 5 * time.Millisecond, Max: 200 * time.Millisecond})
	for range 20 {
		kv, err := h.DS.Get(ctx, key)
		switch {
		case errors.Is(err, datastore.ErrNotFound):
			_, err = h.DS.Create(ctx, w)
		case err != nil:
			return err
		default:
			old, _ := kv.Value.(*api.WorkloadEndpoint)
			if old != nil && sameEndpoint(old, w) {
				return nil
			}
			if old != nil {
				w.Metadata.Labels = mergeLabels(old.Metadata.Labels, w.Metadata.Labels)
			}
			_, err = h.DS.Update(ctx, &datastore.KV{Key: key, Value: w, Revision: kv.Revision})
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, datastore.ErrConflict) && !errors.Is(err, datastore.ErrExists) && !errors.Is(err, datastore.ErrNotFound) {
			return err
		}
		if err := bo.Wait(ctx); err != nil {
			return err
		}
	}
	return errors.New("too many concurrent modifications")
}

func mergeLabels(old, add map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range old {
		out[k] = v
	}
	for k, v := range add {
		out[k] = v
	}
	return out
}

func sameEndpoint(a, b *api.WorkloadEndpoint) bool {
	x, y := a.Spec, b.Spec
	if x.Node != y.Node || x.InterfaceName != y.InterfaceName || x.MAC != y.MAC || len(x.IPNetworks) != len(y.IPNetworks) || x.Orchestrator != y.Orchestrator {
		return false
	}
	for i := range x.IPNetworks {
		if x.IPNetworks[i] != y.IPNetworks[i] {
			return false
		}
	}
	for k, v := range b.Metadata.Labels {
		if a.Metadata.Labels[k] != v {
			return false
		}
	}
	return true
}

// Detach removes the workload's veth (and with it its routes), releases
// its addresses and deletes its WorkloadEndpoint. Missing pieces are fine.
func (h *Host) Detach(ctx context.Context, r Request) ([]netip.Addr, error) {
	if err := r.normalize(h.NodeName); err != nil {
		return nil, err
	}
	iface := r.HostIface
	if l, err := h.NL.LinkByName(iface); err == nil {
		if err := h.NL.LinkDel(l); err != nil && !errors.Is(err, syscall.ENODEV) {
			return nil, fmt.Errorf("workload %s/%s: removing %s: %w", r.Namespace, r.Name, iface, err)
		}
	} else {
		var lnf netlink.LinkNotFoundError
		if !errors.As(err, &lnf) {
			return nil, fmt.Errorf("workload %s/%s: looking up %s: %w", r.Namespace, r.Name, iface, err)
		}
	}
	var released []netip.Addr
	if !r.External {
		var err error
		released, err = h.IPAM.ReleaseByHandle(ctx, r.Handle)
		if err != nil {
			return released, fmt.Errorf("workload %s/%s: releasing addresses: %w", r.Namespace, r.Name, err)
		}
	}
	if err := h.DS.Delete(ctx, r.key(), 0); err != nil && !errors.Is(err, datastore.ErrNotFound) {
		return released, fmt.Errorf("workload %s/%s: deleting the WorkloadEndpoint %s: %w", r.Namespace, r.Name, r.wepName, err)
	}
	if old := r.legacyKey(); old != "" {
		if err := h.deleteLegacy(ctx, &r, old); err != nil {
			return released, fmt.Errorf("workload %s/%s: %w", r.Namespace, r.Name, err)
		}
	}
	h.log().WithFields(logrus.Fields{"workload": r.Namespace + "/" + r.Name, "released": released}).Info("workload detached")
	return released, nil
}

// checkElsewhere refuses to take over a `workload add` workload (names
// are cluster-wide per namespace) attached to another node, whose address
// and handle it would otherwise share: its WorkloadEndpoint under the old
// name or under Calico's name of another node.
func (h *Host) checkElsewhere(ctx context.Context, r *Request) error {
	elsewhere := func(w *api.WorkloadEndpoint) bool {
		return w.Spec.Node != "" && w.Spec.Node != h.NodeName &&
			(w.Spec.Orchestrator == "" || w.Spec.Orchestrator == names.OrchestratorRoost) &&
			(w.Spec.Workload == r.Name || w.Metadata.Name == r.Name)
	}
	lr, err := h.DS.List(ctx, datastore.KindPrefix(api.KindWorkloadEndpoint)+r.Namespace+"/")
	if err != nil {
		return fmt.Errorf("workload %s/%s: reading WorkloadEndpoints: %w", r.Namespace, r.Name, err)
	}
	for _, kv := range lr.KVs {
		if w, ok := kv.Value.(*api.WorkloadEndpoint); ok && elsewhere(w) {
			return fmt.Errorf("workload %s/%s is already attached on node %s: detach it there first or choose another name", r.Namespace, r.Name, w.Spec.Node)
		}
	}
	return nil
}

// deleteLegacy removes the workload's WorkloadEndpoint under its old
// name, if it is this node's.
func (h *Host) deleteLegacy(ctx context.Context, r *Request, key string) error {
	kv, err := h.DS.Get(ctx, key)
	if errors.Is(err, datastore.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the WorkloadEndpoint's old name %s: %w", r.Name, err)
	}
	if w, ok := kv.Value.(*api.WorkloadEndpoint); ok && w.Spec.Node != "" && w.Spec.Node != h.NodeName {
		return nil
	}
	if err := h.DS.Delete(ctx, key, kv.Revision); err != nil && !errors.Is(err, datastore.ErrNotFound) {
		return fmt.Errorf("deleting the WorkloadEndpoint's old name %s: %w", r.Name, err)
	}
	h.log().WithFields(logrus.Fields{"old": r.Name, "new": r.wepName, "namespace": r.Namespace}).Info("WorkloadEndpoint renamed to Calico's name")
	return nil
}

// MigrateNames renames this node's `workload add` WorkloadEndpoints
// stored under their old names (the workload's name, "w1") to Calico's
// ("<node>-roost-w1-eth0"), so calicoctl and Felix accept them. roost-node
// runs it at start; Attach and Detach also migrate the one they touch.
// It returns how many it renamed.
func MigrateNames(ctx context.Context, ds datastore.Datastore, node string) (int, error) {
	lr, err := ds.List(ctx, datastore.KindPrefix(api.KindWorkloadEndpoint))
	if err != nil {
		return 0, fmt.Errorf("listing WorkloadEndpoints: %w", err)
	}
	n := 0
	for _, kv := range lr.KVs {
		w, ok := kv.Value.(*api.WorkloadEndpoint)
		if !ok || w.Spec.Node != node || (w.Spec.Orchestrator != "" && w.Spec.Orchestrator != names.OrchestratorRoost) {
			continue
		}
		r := Request{Name: w.Spec.Workload, Namespace: w.Metadata.Namespace, IfName: w.Spec.Endpoint}
		if r.Name == "" {
			r.Name = w.Metadata.Name
		}
		if err := r.normalize(node); err != nil || r.wepName == w.Metadata.Name {
			continue
		}
		nw := *w
		nw.Metadata = w.Metadata
		nw.Metadata.Name = r.wepName
		nw.Metadata.ResourceVersion = ""
		nw.Spec.Orchestrator, nw.Spec.Workload, nw.Spec.Endpoint = names.OrchestratorRoost, r.Name, r.IfName
		_, err := ds.Txn(ctx,
			datastore.Op{Type: datastore.OpCreate, Value: &nw},
			datastore.Op{Type: datastore.OpDelete, Key: kv.Key, Revision: kv.Revision})
		if errors.Is(err, datastore.ErrExists) {
			// Already written under the new name (a crash between the
			// two): the old one only goes.
			err = ds.Delete(ctx, kv.Key, kv.Revision)
		}
		if err != nil && !errors.Is(err, datastore.ErrNotFound) && !errors.Is(err, datastore.ErrConflict) {
			return n, fmt.Errorf("renaming WorkloadEndpoint %s/%s to %s: %w", w.Metadata.Namespace, w.Metadata.Name, r.wepName, err)
		}
		if err == nil {
			n++
		}
	}
	return n, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Check verifies an attached workload against its WorkloadEndpoint: the
// endpoint exists on this node (with the addresses in want, when given),
// the host end and the interface inside are the two ends of one veth,
// the inside carries every address, and the host routes each of them to
// the host end. The error names the first thing that differs.
func (h *Host) Check(ctx context.Context, r Request, want []netip.Addr) error {
	if err := r.normalize(h.NodeName); err != nil {
		return err
	}
	kv, err := h.DS.Get(ctx, r.key())
	if err != nil {
		return fmt.Errorf("WorkloadEndpoint %s/%s: %w", r.Namespace, r.wepName, err)
	}
	w, ok := kv.Value.(*api.WorkloadEndpoint)
	if !ok {
		return fmt.Errorf("WorkloadEndpoint %s/%s: not a WorkloadEndpoint", r.Namespace, r.wepName)
	}
	if w.Spec.Node != h.NodeName || w.Spec.InterfaceName != r.HostIface {
		return fmt.Errorf("WorkloadEndpoint %s/%s: node %q interface %q, want %q and %q", r.Namespace, r.wepName, w.Spec.Node, w.Spec.InterfaceName, h.NodeName, r.HostIface)
	}
	var ips []netip.Addr
	for _, n := range w.Spec.IPNetworks {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			return fmt.Errorf("WorkloadEndpoint %s/%s: ipNetworks %q: %w", r.Namespace, r.wepName, n, err)
		}
		ips = append(ips, p.Addr())
	}
	if want != nil {
		for _, ip := range want {
			if !slices.Contains(ips, ip) {
				return fmt.Errorf("WorkloadEndpoint %s/%s lists %v, not %s", r.Namespace, r.wepName, w.Spec.IPNetworks, ip)
			}
		}
		if len(want) != len(ips) {
			return fmt.Errorf("WorkloadEndpoint %s/%s lists %v, want %v", r.Namespace, r.wepName, w.Spec.IPNetworks, want)
		}
	}
	host, err := h.NL.LinkByName(r.HostIface)
	if err != nil {
		return fmt.Errorf("host interface %s: %w", r.HostIface, err)
	}
	target, err := netns.GetFromPath(r.NetNS)
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", r.NetNS, err)
	}
	defer target.Close()
	inNL, err := netlink.NewHandleAt(target)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", r.NetNS, err)
	}
	defer inNL.Close()
	inside, err := inNL.LinkByName(r.IfName)
	if err != nil {
		return fmt.Errorf("interface %s in %s: %w", r.IfName, r.NetNS, err)
	}
	if !ours(host, inside) {
		return fmt.Errorf("%s in %s is not the peer of %s", r.IfName, r.NetNS, r.HostIface)
	}
	if w.Spec.MAC != "" && !strings.EqualFold(w.Spec.MAC, inside.Attrs().HardwareAddr.String()) {
		return fmt.Errorf("%s has MAC %s, the WorkloadEndpoint says %s", r.IfName, inside.Attrs().HardwareAddr, w.Spec.MAC)
	}
	addrs, err := nldump.List(func() ([]netlink.Addr, error) { return inNL.AddrList(inside, netlink.FAMILY_ALL) })
	if err != nil {
		return err
	}
	routes, err := nldump.List(func() ([]netlink.Route, error) {
		return h.NL.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: host.Attrs().Index}, netlink.RT_FILTER_OIF)
	})
	if err != nil {
		return err
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(addrs, func(a netlink.Addr) bool { p, ok := netipPrefix(a.IPNet); return ok && p.Addr() == ip }) {
			return fmt.Errorf("%s in %s lacks the address %s", r.IfName, r.NetNS, ip)
		}
		if !slices.ContainsFunc(routes, func(rt netlink.Route) bool {
			p, ok := netipPrefix(rt.Dst)
			return ok && p == netip.PrefixFrom(ip, ip.BitLen())
		}) {
			return fmt.Errorf("no host route to %s via %s", ip, r.HostIface)
		}
	}
	return nil
}

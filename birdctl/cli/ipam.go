package cli

import (
	"cmp"
	"fmt"
	"maps"
	"math/big"
	"net/netip"
	"slices"
	"sort"

	"github.com/spf13/cobra"

	"github.com/roostnet/roost/api"
)

func (a *app) ipamCmd() *cobra.Command {
	ipam := &cobra.Command{
		Use:     "ipam",
		Short:   "Inspect IP address management",
		GroupID: "ds",
	}
	var (
		output       string
		showBlocks   bool
		showBorrowed bool
		showIP       string
	)
	show := &cobra.Command{
		Use:   "show [--show-blocks | --show-borrowed | --ip ADDR]",
		Short: "Show IP pools and their usage, like calicoctl ipam show",
		Long: `Show each IP pool with its number of addresses, how many are in use
(allocated in the pool's blocks) and how many are free. --show-blocks adds a
row per allocation block; blocks that lie in no pool come last.
--show-borrowed lists instead the addresses borrowed from another node's block
(the node holding the address, the block, its owner, and what holds it).
--ip ADDR shows one address, like calicoctl ipam show --ip: whether it is
allocated, its handle and the attributes of its owner, and its block.`,
		Example: "  birdctl ipam show\n  birdctl ipam show --show-blocks -o yaml\n  birdctl ipam show --show-borrowed\n  birdctl ipam show --ip 10.65.0.5",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(output, fmtTable, fmtJSON, fmtYAML); err != nil {
				return err
			}
			if showIP != "" {
				if showBlocks || showBorrowed {
					return fmt.Errorf("--ip excludes --show-blocks and --show-borrowed")
				}
				return a.ipamShowIP(cmd, output, showIP)
			}
			if showBorrowed {
				if showBlocks {
					return fmt.Errorf("--show-blocks and --show-borrowed exclude each other")
				}
				return a.ipamShowBorrowed(cmd, output)
			}
			return a.ipamShow(cmd, output, showBlocks)
		},
	}
	addOutputFlag(show, &output, fmtTable, fmtJSON, fmtYAML)
	show.Flags().BoolVar(&showBlocks, "show-blocks", false, "show each block")
	show.Flags().BoolVar(&showBorrowed, "show-borrowed", false, "show the addresses borrowed from other nodes' blocks")
	show.Flags().StringVar(&showIP, "ip", "", "show one address: its allocation, handle and attributes")
	a.addDatastoreFlags(show)
	ipam.AddCommand(show)
	return ipam
}

type ipamBlockOut struct {
	CIDR     string   `json:"cidr"`
	Affinity string   `json:"affinity,omitempty"`
	Total    *big.Int `json:"ipsTotal"`
	InUse    *big.Int `json:"ipsInUse"`
	Free     *big.Int `json:"ipsFree"`
}

type ipamPoolOut struct {
	Name   string         `json:"name"`
	CIDR   string         `json:"cidr"`
	Total  *big.Int       `json:"ipsTotal"`
	InUse  *big.Int       `json:"ipsInUse"`
	Free   *big.Int       `json:"ipsFree"`
	Blocks []ipamBlockOut `json:"blocks,omitempty"`
}

type ipamOut struct {
	Pools []ipamPoolOut `json:"pools"`
	// OrphanBlocks lie in no pool (e.g. of a deleted pool).
	OrphanBlocks []ipamBlockOut `json:"blocksOutsidePools,omitempty"`
}

func (a *app) ipamShow(cmd *cobra.Command, output string, showBlocks bool) error {
	ctx, ds, done, err := a.openDatastore(cmd)
	if err != nil {
		return err
	}
	defer done()
	poolObjs, err := a.list(ctx, ds, api.KindIPPool, "")
	if err != nil {
		return err
	}
	blockObjs, err := a.list(ctx, ds, api.KindIPAMBlock, "")
	if err != nil {
		return err
	}
	res := ipamUsage(poolObjs, blockObjs)
	w := cmd.OutOrStdout()
	if output != fmtTable {
		if !showBlocks {
			for i := range res.Pools {
				res.Pools[i].Blocks = nil
			}
			res.OrphanBlocks = nil
		}
		return writeData(w, output, res)
	}
	var rows [][]string
	blockRow := func(grouping string, b ipamBlockOut) []string {
		return []string{grouping, b.CIDR, count(b.Total), usage(b.InUse, b.Total), usage(b.Free, b.Total)}
	}
	for _, p := range res.Pools {
		rows = append(rows, []string{"IP Pool", p.CIDR, count(p.Total), usage(p.InUse, p.Total), usage(p.Free, p.Total)})
		if showBlocks {
			for _, b := range p.Blocks {
				rows = append(rows, blockRow("Block", b))
			}
		}
	}
	if showBlocks {
		for _, b := range res.OrphanBlocks {
			rows = append(rows, blockRow("Block (no pool)", b))
		}
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "No IP pools found.")
		return err
	}
	return boxTable(w, []string{"Grouping", "CIDR", "IPs total", "IPs in use", "IPs free"}, rows)
}

// ipamUsage sums block allocations per pool. Blocks marked deleted are
// left out; a block belongs to the smallest pool containing it.
func ipamUsage(poolObjs, blockObjs []api.Resource) ipamOut {
	type pool struct {
		out    ipamPoolOut
		prefix netip.Prefix
	}
	var pools []*pool
	for _, o := range poolObjs {
		p := o.(*api.IPPool)
		pfx, err := api.ParseCIDR(p.Spec.CIDR)
		if err != nil {
			continue
		}
		pfx = pfx.Masked()
		total := size(pfx)
		pools = append(pools, &pool{prefix: pfx, out: ipamPoolOut{
			Name: p.Metadata.Name, CIDR: pfx.String(), Total: total, InUse: new(big.Int), Free: new(big.Int).Set(total),
		}})
	}
	sort.SliceStable(pools, func(i, j int) bool { return cidrSortKey(pools[i].out.CIDR) < cidrSortKey(pools[j].out.CIDR) })
	out := ipamOut{Pools: []ipamPoolOut{}}
	for _, o := range blockObjs {
		b := o.(*api.IPAMBlock)
		if b.Spec.Deleted {
			continue
		}
		pfx, err := api.ParseCIDR(b.Spec.CIDR)
		if err != nil {
			continue
		}
		pfx = pfx.Masked()
		total := size(pfx)
		used := big.NewInt(int64(b.Spec.InUse()))
		bo := ipamBlockOut{CIDR: pfx.String(), Affinity: b.Spec.AffinityNode(), Total: total, InUse: used, Free: new(big.Int).Sub(total, used)}
		if bo.Affinity == "" && b.Spec.Affinity != nil {
			bo.Affinity = *b.Spec.Affinity
		}
		var owner *pool
		for _, p := range pools {
			if p.prefix.Bits() <= pfx.Bits() && p.prefix.Contains(pfx.Addr()) && (owner == nil || p.prefix.Bits() > owner.prefix.Bits()) {
				owner = p
			}
		}
		if owner == nil {
			out.OrphanBlocks = append(out.OrphanBlocks, bo)
			continue
		}
		owner.out.InUse.Add(owner.out.InUse, used)
		owner.out.Free.Sub(owner.out.Free, used)
		owner.out.Blocks = append(owner.out.Blocks, bo)
	}
	for _, p := range pools {
		sort.SliceStable(p.out.Blocks, func(i, j int) bool { return cidrSortKey(p.out.Blocks[i].CIDR) < cidrSortKey(p.out.Blocks[j].CIDR) })
		out.Pools = append(out.Pools, p.out)
	}
	sort.SliceStable(out.OrphanBlocks, func(i, j int) bool {
		return cidrSortKey(out.OrphanBlocks[i].CIDR) < cidrSortKey(out.OrphanBlocks[j].CIDR)
	})
	return out
}

// borrowedOut is one borrowed address (calicoctl ipam show --show-borrowed).
type borrowedOut struct {
	IP            string `json:"ip"`
	BorrowingNode string `json:"borrowingNode"`
	Block         string `json:"block"`
	BlockOwner    string `json:"blockOwner"`
	Type          string `json:"type,omitempty"`
	AllocatedTo   string `json:"allocatedTo,omitempty"`
}

type borrowedList struct {
	Borrowed []borrowedOut `json:"borrowed"`
	// Unclassified counts allocations without a node attribute: whether
	// they are borrowed cannot be told.
	Unclassified int `json:"unclassified,omitempty"`
}

func (a *app) ipamShowBorrowed(cmd *cobra.Command, output string) error {
	ctx, ds, done, err := a.openDatastore(cmd)
	if err != nil {
		return err
	}
	defer done()
	blockObjs, err := a.list(ctx, ds, api.KindIPAMBlock, "")
	if err != nil {
		return err
	}
	res := borrowedAddrs(blockObjs)
	w := cmd.OutOrStdout()
	if output != fmtTable {
		return writeData(w, output, res)
	}
	rows := [][]string{}
	for _, b := range res.Borrowed {
		rows = append(rows, []string{b.IP, b.BorrowingNode, b.Block, b.BlockOwner, b.Type, b.AllocatedTo})
	}
	if err := boxTable(w, []string{"IP", "Borrowing-node", "Block", "Block owner", "Type", "Allocated-to"}, rows); err != nil {
		return err
	}
	if res.Unclassified > 0 {
		_, err = fmt.Fprintf(w, "\nNote: found %d IP allocations without an explicit node association. Unable to determine if they are borrowed.\n", res.Unclassified)
	}
	return err
}

// borrowedAddrs lists the allocations held for another node than their
// block's (api.AllocationBlock.Borrowed), by address.
func borrowedAddrs(blockObjs []api.Resource) borrowedList {
	out := borrowedList{Borrowed: []borrowedOut{}}
	for _, o := range blockObjs {
		b := &o.(*api.IPAMBlock).Spec
		cidr, err := b.Prefix()
		if err != nil || b.Deleted {
			continue
		}
		for ord := range b.Allocations {
			if attr, used := b.Allocation(ord); used && attr.Secondary[api.AttrNodeKey] == "" {
				out.Unclassified++
			}
		}
		for _, x := range b.Borrowed() {
			attr, _ := b.Allocation(x.Ordinal)
			bo := borrowedOut{IP: api.AddrAt(cidr, x.Ordinal).String(), BorrowingNode: x.Node, Block: cidr.String(), BlockOwner: b.AffinityNode()}
			sec := attr.Secondary
			switch {
			case sec["pod"] != "":
				bo.Type, bo.AllocatedTo = "pod", sec["namespace"]+"/"+sec["pod"]
			case sec["type"] != "":
				bo.Type = sec["type"]
			}
			out.Borrowed = append(out.Borrowed, bo)
		}
	}
	sort.SliceStable(out.Borrowed, func(i, j int) bool {
		return netip.MustParseAddr(out.Borrowed[i].IP).Less(netip.MustParseAddr(out.Borrowed[j].IP))
	})
	return out
}

// ipOut is one address (calicoctl ipam show --ip).
type ipOut struct {
	IP    string `json:"ip"`
	InUse bool   `json:"inUse"`
	// Block is the block holding the address ("" when none does), and
	// BlockAffinity its affinity ("host:<node>").
	Block         string            `json:"block,omitempty"`
	BlockAffinity string            `json:"blockAffinity,omitempty"`
	HandleID      string            `json:"handleID,omitempty"`
	Attributes    map[string]string `json:"activeOwnerAttributes,omitempty"`
}

func (a *app) ipamShowIP(cmd *cobra.Command, output, addr string) error {
	ip, err := netip.ParseAddr(addr)
	if err != nil || ip.Zone() != "" {
		return fmt.Errorf("--ip %q: not an IPv4 or IPv6 address", addr)
	}
	ip = ip.Unmap()
	ctx, ds, done, err := a.openDatastore(cmd)
	if err != nil {
		return err
	}
	defer done()
	blockObjs, err := a.list(ctx, ds, api.KindIPAMBlock, "")
	if err != nil {
		return err
	}
	res := addrInfo(blockObjs, ip)
	w := cmd.OutOrStdout()
	if output != fmtTable {
		return writeData(w, output, res)
	}
	if !res.InUse {
		_, err := fmt.Fprintf(w, "%s is not assigned\n", ip)
		return err
	}
	// calicoctl's lines, then the block.
	fmt.Fprintf(w, "IP %s is in use\n", ip)
	fmt.Fprintf(w, "Handle ID: %s\n", cmp.Or(res.HandleID, "<none>"))
	if len(res.Attributes) == 0 {
		fmt.Fprintln(w, "No Active Owner attributes defined")
	} else {
		fmt.Fprintln(w, "Active Owner Attributes:")
		for _, k := range slices.Sorted(maps.Keys(res.Attributes)) {
			fmt.Fprintf(w, "  %s: %s\n", k, res.Attributes[k])
		}
	}
	_, err = fmt.Fprintf(w, "Block: %s (affinity %s)\n", res.Block, cmp.Or(res.BlockAffinity, "none"))
	return err
}

// addrInfo finds ip's allocation: the most specific live block holding it.
func addrInfo(blockObjs []api.Resource, ip netip.Addr) ipOut {
	out := ipOut{IP: ip.String()}
	var best *api.AllocationBlock
	var bestPfx netip.Prefix
	for _, o := range blockObjs {
		b := &o.(*api.IPAMBlock).Spec
		pfx, err := b.Prefix()
		if err != nil || b.Deleted || !pfx.Contains(ip) {
			continue
		}
		if best == nil || pfx.Bits() > bestPfx.Bits() {
			best, bestPfx = b, pfx
		}
	}
	if best == nil {
		return out
	}
	out.Block = bestPfx.String()
	if best.Affinity != nil {
		out.BlockAffinity = *best.Affinity
	}
	ord, ok := api.Ordinal(bestPfx, ip)
	if !ok {
		return out
	}
	attr, used := best.Allocation(ord)
	if !used {
		return out
	}
	out.InUse = true
	if attr.HandleID != nil {
		out.HandleID = *attr.HandleID
	}
	out.Attributes = attr.Secondary
	return out
}

// size is the number of addresses of a prefix.
func size(p netip.Prefix) *big.Int {
	return new(big.Int).Lsh(big.NewInt(1), uint(p.Addr().BitLen()-p.Bits()))
}

// maxExact is the largest count printed as an integer; larger ones (IPv6
// pools) are printed like calicoctl does, with five significant digits.
var maxExact = big.NewInt(1 << 53)

func count(n *big.Int) string {
	if n.CmpAbs(maxExact) <= 0 {
		return n.String()
	}
	f, _ := new(big.Float).SetInt(n).Float64()
	return fmt.Sprintf("%.5g", f)
}

// usage prints "5 (8%)" with the share of total rounded as calicoctl does.
func usage(n, total *big.Int) string {
	pct := 0.0
	if total.Sign() > 0 {
		q := new(big.Float).Quo(new(big.Float).SetInt(n), new(big.Float).SetInt(total))
		pct, _ = q.Float64()
		pct *= 100
	}
	return fmt.Sprintf("%s (%.0f%%)", count(n), pct)
}

// cidrSortKey orders CIDRs by family, address and prefix length; strings
// that are not CIDRs sort last, by their text.
func cidrSortKey(s string) string {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return "9" + s
	}
	fam := "4"
	if p.Addr().Is6() {
		fam = "6"
	}
	b := p.Addr().As16()
	return fmt.Sprintf("%s%x/%03d", fam, b, p.Bits())
}

package natoutgoing

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// The table's parts (see the package comment).
const (
	chainName = "nat-outgoing"
	setPools4 = "pools4"
	setMasq4  = "masq4"
	setPools6 = "pools6"
	setMasq6  = "masq6"
)

var setNames = []string{setPools4, setMasq4, setPools6, setMasq6}

// ruleset is the intended content: whether the table exists, and the
// elements of each set.
type ruleset struct {
	table bool
	elems map[string][]nftables.SetElement
}

// sameElements compares interval set elements as sets of (key, end).
func sameElements(a, b []nftables.SetElement) bool {
	if len(a) != len(b) {
		return false
	}
	key := func(e nftables.SetElement) string { return fmt.Sprintf("%x/%v", e.Key, e.IntervalEnd) }
	ka, kb := make([]string, len(a)), make([]string, len(b))
	for i := range a {
		ka[i], kb[i] = key(a[i]), key(b[i])
	}
	slices.Sort(ka)
	slices.Sort(kb)
	return slices.Equal(ka, kb)
}

func (m *Manager) table() *nftables.Table {
	return &nftables.Table{Name: m.cfg.Table, Family: nftables.TableFamilyINet}
}

func (m *Manager) chain(t *nftables.Table) *nftables.Chain {
	accept := nftables.ChainPolicyAccept
	typ := nftables.ChainTypeNAT
	if m.chainType != "" {
		typ = m.chainType
	}
	return &nftables.Chain{Name: chainName, Table: t, Type: typ,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept}
}

// set describes one of the four sets (by name, for element updates).
func (m *Manager) set(name string) *nftables.Set {
	kt := nftables.TypeIPAddr
	if name == setPools6 || name == setMasq6 {
		kt = nftables.TypeIP6Addr
	}
	return &nftables.Set{Table: m.table(), Name: name, KeyType: kt, Interval: true}
}

// ruleSpec is one masquerade rule: its comment and expressions.
type ruleSpec struct {
	comment string
	exprs   []expr.Any
}

// rules are the chain's two rules, looking up the given sets.
func rules(sets map[string]*nftables.Set) []ruleSpec {
	one := func(family byte, saddrOff, addrLen uint32, masq, pools *nftables.Set, comment string) ruleSpec {
		return ruleSpec{comment: comment, exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{family}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: saddrOff, Len: addrLen},
			&expr.Lookup{SourceRegister: 1, SetName: masq.Name, SetID: masq.ID},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: saddrOff + addrLen, Len: addrLen},
			&expr.Lookup{SourceRegister: 1, SetName: pools.Name, SetID: pools.ID, Invert: true},
			&expr.Counter{},
			&expr.Masq{},
		}}
	}
	return []ruleSpec{
		one(unix.NFPROTO_IPV4, 12, 4, sets[setMasq4], sets[setPools4], "roost: natOutgoing pools (IPv4) to outside every pool"),
		one(unix.NFPROTO_IPV6, 8, 16, sets[setMasq6], sets[setPools6], "roost: natOutgoing pools (IPv6) to outside every pool"),
	}
}

// build queues the whole table (replacing an existing one) in c's batch:
// one transaction, so the kernel never holds half of it.
func (m *Manager) build(c *nftables.Conn, want ruleset, replace bool) {
	t := m.table()
	if replace {
		c.DelTable(t)
	}
	c.AddTable(t)
	sets := map[string]*nftables.Set{}
	for _, name := range setNames {
		s := m.set(name)
		s.Table = t
		_ = c.AddSet(s, want.elems[name]) // errors only for anonymous or concatenated sets
		sets[name] = s
	}
	ch := c.AddChain(m.chain(t))
	for _, r := range rules(sets) {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: r.exprs, UserData: userdata.AppendString(nil, userdata.TypeComment, r.comment)})
	}
}

// kernelState is Roost's table as the kernel holds it.
type kernelState struct {
	exists bool
	shape  string // what differs from the shape Roost writes ("": nothing)
	elems  map[string][]nftables.SetElement
}

// read lists the table, its chains, sets (with elements) and rules.
func (m *Manager) read(c *nftables.Conn) (kernelState, error) {
	var st kernelState
	t, err := c.ListTableOfFamily(m.cfg.Table, nftables.TableFamilyINet)
	if errors.Is(err, syscall.ENOENT) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	st.exists = true
	st.elems = map[string][]nftables.SetElement{}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return st, fmt.Errorf("listing chains: %w", err)
	}
	var ours []*nftables.Chain
	for _, ch := range chains {
		if ch.Table != nil && ch.Table.Name == t.Name {
			ours = append(ours, ch)
		}
	}
	want := m.chain(t)
	switch {
	case len(ours) != 1 || ours[0].Name != want.Name:
		st.shape = fmt.Sprintf("%d chains, want only %s", len(ours), want.Name)
		return st, nil
	case ours[0].Type != want.Type || ours[0].Hooknum == nil || *ours[0].Hooknum != *want.Hooknum ||
		ours[0].Priority == nil || *ours[0].Priority != *want.Priority || ours[0].Policy == nil || *ours[0].Policy != *want.Policy:
		st.shape = "chain " + want.Name + " has another type, hook, priority or policy"
		return st, nil
	}
	sets, err := c.GetSets(t)
	if err != nil {
		return st, fmt.Errorf("listing sets: %w", err)
	}
	byName := map[string]*nftables.Set{}
	for _, s := range sets {
		byName[s.Name] = s
	}
	if len(sets) != len(setNames) {
		st.shape = fmt.Sprintf("%d sets, want %d", len(sets), len(setNames))
		return st, nil
	}
	for _, name := range setNames {
		s, wantSet := byName[name], m.set(name)
		if s == nil || !s.Interval || s.KeyType.Name != wantSet.KeyType.Name || s.IsMap || s.Timeout != 0 {
			st.shape = "set " + name + " missing or of another kind"
			return st, nil
		}
		el, err := c.GetSetElements(s)
		if err != nil {
			return st, fmt.Errorf("listing set %s: %w", name, err)
		}
		st.elems[name] = el
	}
	rs, err := c.GetRules(t, ours[0])
	if err != nil {
		return st, fmt.Errorf("listing rules: %w", err)
	}
	specs := rules(byName)
	if len(rs) != len(specs) {
		st.shape = fmt.Sprintf("%d rules, want %d", len(rs), len(specs))
		return st, nil
	}
	for i, r := range rs {
		if !sameExprs(r.Exprs, specs[i].exprs) {
			st.shape = fmt.Sprintf("rule %d differs", i+1)
			return st, nil
		}
	}
	return st, nil
}

// sameExprs compares rule expressions as the kernel returns them with
// the ones Roost writes, ignoring what the kernel fills in (counter
// values, set ids).
func sameExprs(have, want []expr.Any) bool {
	if len(have) != len(want) {
		return false
	}
	for i := range have {
		if exprString(have[i]) != exprString(want[i]) {
			return false
		}
	}
	return true
}

func exprString(e expr.Any) string {
	switch v := e.(type) {
	case *expr.Counter:
		return "counter"
	case *expr.Lookup:
		return fmt.Sprintf("lookup @%s sreg %d dreg %d/%v invert %v", v.SetName, v.SourceRegister, v.DestRegister, v.IsDestRegSet, v.Invert)
	case *expr.Cmp:
		return fmt.Sprintf("cmp %d reg %d %x", v.Op, v.Register, v.Data)
	default:
		var b bytes.Buffer
		fmt.Fprintf(&b, "%T%+v", e, e)
		return strings.ReplaceAll(b.String(), "*expr.", "")
	}
}

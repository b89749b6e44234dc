package bgp

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/confd/birdfmt"
)

// BGPFilter compilation.
//
// Each BGPFilter becomes up to four BIRD functions, one per direction and
// family that has rules:
//
//	function <Ident("BGPFilter_<name>_<import|export>_<v4|v6>")>(bool is_ibgp) {
//	  if (<cond>) && (<cond>) then { <operations> accept; }
//	  ...
//	}
//
// Sessions call them in the BGPPeer's order, passing whether the session
// is iBGP (for peerType). The first rule that matches ends the whole
// filter (BIRD's accept/reject end the filter even inside a function); a
// route no rule matches falls through to the next BGPFilter and finally to
// Roost's default policy (import: accept; export: pools, blocks, services).
//
// Match fields:
//
//	cidr + matchOperator  Equal: net = P; NotEqual: net != P;
//	                      In: net ~ [ P{min,max} ]; NotIn: net !~ [ P{min,max} ]
//	prefixLength          the {min,max} above (defaults: P's length and 32/128);
//	                      with Equal/NotEqual: net.len >= min && net.len <= max
//	source: RemotePeers   source = RTS_BGP
//	interface             ifname ~ "<glob>"
//	peerType              is_ibgp / !is_ibgp
//	communities           any of: (a,b) ~ bgp_community, (a,b,c) ~ bgp_large_community
//	asPathPrefix          bgp_path ~ [= a b * =]
//	priority              defined(bgp_local_pref) && bgp_local_pref = 2147483647 - N
//
// Operations (Accept only): addCommunity -> bgp_community.add((a,b)) or
// bgp_large_community.add((a,b,c)); prependASPath [a, b] ->
// bgp_path.prepend(b); bgp_path.prepend(a) (the path then starts "a b");
// setPriority -> bgp_local_pref = 2147483647 - N.
//
// Route priority is Calico's: it travels in BGP as bgp_local_pref =
// 2147483647 - priority (so a higher priority, a lower number, is a higher
// local preference and wins BIRD's route selection across iBGP and route
// reflectors); every session's export filter first converts between the
// kernel metric and bgp_local_pref (roost_export_priority_*), and the
// kernel export turns bgp_local_pref back into the metric. An import
// Accept rule ends with roost_import_priority_*(), which gives a route of
// higher than normal priority BIRD preference 200, as the sessions' own
// import filter does for routes no rule accepted.

const (
	famV4     = 0
	famV6     = 1
	dirImport = 0
	dirExport = 1
)

type compiledFilter struct {
	name  string
	funcs [2][2]*FilterFunc // [family][direction]
	err   error             // set when a rule cannot be compiled
}

func compileFilter(name string, f *api.BGPFilter) *compiledFilter {
	cf := &compiledFilter{name: name}
	sets := [2][2][]api.BGPFilterRule{
		{f.Spec.ImportV4, f.Spec.ExportV4},
		{f.Spec.ImportV6, f.Spec.ExportV6},
	}
	fields := [2][2]string{{"spec.importV4", "spec.exportV4"}, {"spec.importV6", "spec.exportV6"}}
	for fam := range sets {
		for dir := range sets[fam] {
			rules := sets[fam][dir]
			if len(rules) == 0 {
				continue
			}
			fn := &FilterFunc{Name: filterFuncName(name, dir, fam)}
			for i := range rules {
				st, err := compileRule(&rules[i], fam == famV6, dir)
				if err != nil {
					cf.err = fmt.Errorf("%s[%d]: %v", fields[fam][dir], i, err)
					return cf
				}
				fn.Statements = append(fn.Statements, st)
			}
			cf.funcs[fam][dir] = fn
		}
	}
	return cf
}

func filterFuncName(name string, dir, fam int) string {
	d := "import"
	if dir == dirExport {
		d = "export"
	}
	v := "v4"
	if fam == famV6 {
		v = "v6"
	}
	return birdfmt.Ident("BGPFilter_" + name + "_" + d + "_" + v)
}

func (cf *compiledFilter) model() *Filter {
	return &Filter{
		Name:     cf.name,
		ImportV4: cf.funcs[famV4][dirImport],
		ExportV4: cf.funcs[famV4][dirExport],
		ImportV6: cf.funcs[famV6][dirImport],
		ExportV6: cf.funcs[famV6][dirExport],
	}
}

// call returns the statement calling the function for fam/dir, or "".
func (cf *compiledFilter) call(fam, dir int, ibgp bool) string {
	fn := cf.funcs[fam][dir]
	if fn == nil {
		return ""
	}
	return fn.Name + "(" + strconv.FormatBool(ibgp) + ");"
}

// importPriorityFunc is the function an import Accept rule calls before
// accepting (defined in filters.cfg).
func importPriorityFunc(is6 bool) string {
	if is6 {
		return "roost_import_priority_v6();"
	}
	return "roost_import_priority_v4();"
}

func compileRule(r *api.BGPFilterRule, is6 bool, dir int) (string, error) {
	var conds []string
	maxLen := 32
	if is6 {
		maxLen = 128
	}
	if r.CIDR != "" {
		p, err := api.ParseCIDR(r.CIDR)
		if err != nil || p.Addr().Is6() != is6 {
			return "", fmt.Errorf("cidr %q is not an IPv%d CIDR", r.CIDR, map[bool]int{false: 4, true: 6}[is6])
		}
		lo, hi := p.Bits(), maxLen
		hasLen := false
		if pl := r.PrefixLength; pl != nil {
			if pl.Min != nil {
				lo, hasLen = max(lo, int(*pl.Min)), true
			}
			if pl.Max != nil {
				hi, hasLen = min(hi, int(*pl.Max)), true
			}
		}
		set := "[ " + p.String() + "+ ]"
		if hasLen {
			set = fmt.Sprintf("[ %s{%d,%d} ]", p, lo, hi)
		}
		switch r.MatchOperator {
		case api.MatchEqual, api.MatchNotEqual:
			op := "="
			if r.MatchOperator == api.MatchNotEqual {
				op = "!="
			}
			conds = append(conds, "net "+op+" "+p.String())
			if hasLen {
				conds = append(conds, fmt.Sprintf("net.len >= %d && net.len <= %d", lo, hi))
			}
		case api.MatchIn:
			conds = append(conds, "net ~ "+set)
		case api.MatchNotIn:
			conds = append(conds, "net !~ "+set)
		default:
			return "", fmt.Errorf("matchOperator %q is not Equal, NotEqual, In or NotIn", r.MatchOperator)
		}
	}
	switch r.Source {
	case "":
	case api.FilterSourceRemotePeers:
		conds = append(conds, "source = RTS_BGP")
	default:
		return "", fmt.Errorf("source %q is not RemotePeers", r.Source)
	}
	if r.Interface != "" {
		q, err := birdfmt.String(r.Interface)
		if err != nil {
			return "", fmt.Errorf("interface: %v", err)
		}
		conds = append(conds, "ifname ~ "+q)
	}
	switch r.PeerType {
	case "":
	case api.PeerTypeIBGP:
		conds = append(conds, "is_ibgp")
	case api.PeerTypeEBGP:
		conds = append(conds, "!is_ibgp")
	default:
		return "", fmt.Errorf("peerType %q is not eBGP or iBGP", r.PeerType)
	}
	if r.Communities != nil && len(r.Communities.Values) > 0 {
		var any []string
		for _, v := range r.Communities.Values {
			m, err := birdfmt.MatchCommunity(v)
			if err != nil {
				return "", fmt.Errorf("communities: %v", err)
			}
			any = append(any, m)
		}
		conds = append(conds, strings.Join(any, " || "))
	}
	if len(r.ASPathPrefix) > 0 {
		var b strings.Builder
		b.WriteString("bgp_path ~ [= ")
		for _, as := range r.ASPathPrefix {
			b.WriteString(as.String())
			b.WriteByte(' ')
		}
		b.WriteString("* =]")
		conds = append(conds, b.String())
	}
	if r.Priority != nil {
		conds = append(conds, fmt.Sprintf("defined(bgp_local_pref) && bgp_local_pref = %d", MaxPriority-*r.Priority))
	}

	var body []string
	switch r.Action {
	case api.FilterAccept:
		for i, op := range r.Operations {
			switch {
			case op.AddCommunity != nil:
				s, err := birdfmt.AddCommunity(op.AddCommunity.Value)
				if err != nil {
					return "", fmt.Errorf("operations[%d].addCommunity: %v", i, err)
				}
				body = append(body, s)
			case op.PrependASPath != nil:
				for j := len(op.PrependASPath.Prefix) - 1; j >= 0; j-- {
					body = append(body, "bgp_path.prepend("+op.PrependASPath.Prefix[j].String()+");")
				}
			case op.SetPriority != nil:
				body = append(body, fmt.Sprintf("bgp_local_pref = %d;", MaxPriority-op.SetPriority.Value))
			default:
				return "", fmt.Errorf("operations[%d]: no operation set", i)
			}
		}
		if dir == dirImport {
			body = append(body, importPriorityFunc(is6))
		}
		body = append(body, "accept;")
	case api.FilterReject:
		if len(r.Operations) > 0 {
			return "", fmt.Errorf("operations only apply to Accept rules")
		}
		body = append(body, "reject;")
	default:
		return "", fmt.Errorf("action %q is not Accept or Reject", r.Action)
	}
	stmt := strings.Join(body, " ")
	if len(conds) == 0 {
		if len(body) > 1 {
			return "{ " + stmt + " }", nil
		}
		return stmt, nil
	}
	for i, c := range conds {
		conds[i] = "(" + c + ")"
	}
	return "if " + strings.Join(conds, " && ") + " then { " + stmt + " }", nil
}

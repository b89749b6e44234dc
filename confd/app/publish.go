package app

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/confd/bgp"
	"github.com/roostnet/roost/confd/kvstore"
	"github.com/roostnet/roost/datastore"
)

// peerJSON is a peer in Calico confd's key-store shape.
type peerJSON struct {
	IP               string   `json:"ip"`
	ASNum            string   `json:"as_num"`
	LocalASNum       string   `json:"local_as_num,omitempty"`
	Port             int      `json:"port,omitempty"`
	RRClusterID      string   `json:"rr_cluster_id"`
	Password         *string  `json:"password"`
	SourceAddr       string   `json:"source_addr"`
	RestartTime      string   `json:"restart_time"`
	KeepaliveTime    string   `json:"keepalive_time"`
	KeepNextHop      bool     `json:"keep_next_hop"`
	NextHopMode      string   `json:"next_hop_mode"`
	CalicoNode       bool     `json:"calico_node"`
	NumAllowLocalAS  int32    `json:"num_allow_local_as"`
	TTLSecurity      uint8    `json:"ttl_security"`
	Filters          []string `json:"filters"`
	ReachableBy      string   `json:"reachable_by"`
	PassiveMode      bool     `json:"passive_mode"`
	RouteReflectorID string   `json:"-"`
}

// publishModel mirrors the computed peers of this node into the key store
// under Calico's names: global BGPPeers under /calico/bgp/v1/global/peer_v*,
// node-specific, selector and reverse peerings under the node's host dir.
// Mesh sessions are derived from the host keys, as in Calico.
func (a *App) publishModel(m *bgp.Model) {
	want := map[string]string{}
	for _, fam := range []*bgp.Family{m.V4, m.V6} {
		if fam == nil {
			continue
		}
		dir := fmt.Sprintf("peer_v%d", fam.Version)
		for _, p := range fam.Peers {
			if p.Disabled {
				// Calico-style templates know no disabled sessions: one
				// without its password is left out rather than rendered
				// without it.
				continue
			}
			var base string
			switch p.Type {
			case "global":
				base = "/calico/bgp/v1/global/" + dir + "/"
			case "mesh":
				continue
			default:
				base = "/calico/bgp/v1/host/" + m.NodeName + "/" + dir + "/"
			}
			id := p.IP
			if p.PortSet {
				id = fmt.Sprintf("%s-%d", p.IP, p.Port)
			}
			b, err := json.Marshal(toPeerJSON(p))
			if err != nil {
				continue
			}
			want[base+id] = string(b)
		}
	}
	a.kv.Apply(func(w *kvstore.Writer) {
		for k := range a.published {
			if _, ok := want[k]; !ok {
				w.Delete(k)
			}
		}
		for k, v := range want {
			if a.published[k] != v {
				w.Set(k, v)
			}
		}
	})
	a.published = want
}

func toPeerJSON(p *bgp.Peer) peerJSON {
	j := peerJSON{IP: p.IP, ASNum: fmt.Sprint(p.AS), CalicoNode: p.PeerNode != "", ReachableBy: p.ReachableBy, Filters: []string{}}
	if p.PortSet {
		j.Port = p.Port
	}
	if o := p.SessionOptions; o != nil {
		if o.LocalAS != 0 {
			j.LocalASNum = fmt.Sprint(o.LocalAS)
		}
		j.RRClusterID = o.RRClusterID
		if o.Password.IsSet() {
			pw := o.Password.Reveal()
			j.Password = &pw
		}
		j.SourceAddr = o.SourceAddress
		if o.GracefulRestartTime > 0 {
			j.RestartTime = fmt.Sprintf("%ds", o.GracefulRestartTime)
		}
		if o.KeepaliveTime > 0 {
			j.KeepaliveTime = fmt.Sprintf("%ds", o.KeepaliveTime)
		}
		j.NextHopMode = o.NextHop
		j.KeepNextHop = o.NextHop == "keep"
		j.NumAllowLocalAS = int32(o.NumAllowLocalAS)
		if o.TTLSecurity {
			j.TTLSecurity = uint8(o.Multihop)
		}
		for _, f := range o.Filters {
			j.Filters = append(j.Filters, f.Name)
		}
	}
	j.PassiveMode = p.Passive
	return j
}

// preflight makes --onetime strict: input a long-running confd would skip
// with a warning (an invalid document or value) fails the run instead,
// naming the resource and field.
func (a *App) preflight(ctx context.Context) error {
	var problems []string
	if a.cfg.Datastore.Type == datastore.TypeFile {
		files, err := yamlFiles(a.cfg.Datastore.File)
		if err != nil {
			return err
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			for _, d := range api.Decode(data, f, api.DecodeOptions{}) {
				if d.Err != nil {
					problems = append(problems, d.Err.Error())
				}
			}
		}
	}
	for _, p := range Prefixes(a.cfg.NodeName) {
		res, err := a.store.List(ctx, p)
		if err != nil {
			return fmt.Errorf("listing %s: %w", p, err)
		}
		for _, inv := range res.Invalid {
			if a.cfg.Datastore.Type != datastore.TypeFile { // files were reported above
				problems = append(problems, inv.Error())
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("invalid input:\n  %s", strings.Join(problems, "\n  "))
	}
	return nil
}

func yamlFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("datastore file: %w", err)
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	var out []string
	for _, pat := range []string{"*.yaml", "*.yml", "*.json"} {
		m, _ := filepath.Glob(filepath.Join(path, pat))
		for _, f := range m {
			if !strings.HasPrefix(filepath.Base(f), ".") {
				out = append(out, f)
			}
		}
	}
	return out, nil
}

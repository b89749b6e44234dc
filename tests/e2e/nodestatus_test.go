package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roostnet/roost/tests/lab"
)

var tagStatus = tag("nst")

// statusPeriod is the updatePeriodSeconds of the test's requests.
const statusPeriod = 2 * time.Second

// nodeStatus is the part of a CalicoNodeStatus the test reads.
type nodeStatus struct {
	Spec struct {
		Node string `json:"node"`
	} `json:"spec"`
	Status struct {
		LastUpdated *time.Time `json:"lastUpdated"`
		Agent       struct {
			BIRDV4 struct {
				State   string `json:"state"`
				Version string `json:"version"`
			} `json:"birdV4"`
		} `json:"agent"`
		BGP struct {
			NumberEstablishedV4    int `json:"numberEstablishedV4"`
			NumberNotEstablishedV4 int `json:"numberNotEstablishedV4"`
			PeersV4                []struct {
				PeerIP string `json:"peerIP"`
				Type   string `json:"type"`
				State  string `json:"state"`
				Since  string `json:"since"`
			} `json:"peersV4"`
		} `json:"bgp"`
		Routes struct {
			RoutesV4 []struct {
				Type        string `json:"type"`
				Destination string `json:"destination"`
				Gateway     string `json:"gateway"`
				Interface   string `json:"interface"`
				LearnedFrom struct {
					SourceType string `json:"sourceType"`
					PeerIP     string `json:"peerIP"`
				} `json:"learnedFrom"`
			} `json:"routesV4"`
		} `json:"routes"`
	} `json:"status"`
}

// TestNodeStatusResource: three hosts in a mesh with BGP-programmed
// routes.
//
//  1. birdctl node status --all lists every host as not reporting.
//  2. A CalicoNodeStatus for host1 (Agent, BGP, Routes, every 2 s) is
//     answered within two periods: both mesh peers Established, the other
//     hosts' blocks as BGP routes learned from them.
//  3. roost-node's /metrics carries the sessions (bird_exporter's names)
//     with non-zero import counts.
//  4. node status --all --request asks host2 and host3 too and lists every
//     host's sessions, all Established.
//  5. host2 stops: host1's status shows it not established within two
//     periods.
func TestNodeStatusResource(t *testing.T) {
	c := newLab(t, tagStatus, lab.Options{Hosts: 3})
	h1, h2, h3 := c.Hosts[0], c.Hosts[1], c.Hosts[2]
	c.apply(poolYAML(true, "Never"))
	c.start(c.Hosts)
	c.addWorkloads(c.Hosts, 1) // each host claims a block
	c.waitSessions(mesh(c.Hosts))
	c.waitBlockRoutes(c.Hosts, noEncap)
	blocks, err := c.blocks()
	if err != nil {
		t.Fatal(err)
	}

	// 1. Nobody asked yet: every host is listed, none reports.
	out := c.birdctl(nil, "node", "status", "--all")
	for _, h := range c.Hosts {
		if !regexp.MustCompile(`\| ` + h.Name + ` +\| - .*not reporting`).MatchString(out) {
			t.Errorf("node status --all before any request lacks %s as not reporting:\n%s", h.Name, out)
		}
	}

	// 2. Ask host1.
	asked := time.Now()
	c.apply(fmt.Sprintf(`apiVersion: projectcalico.org/v3
kind: CalicoNodeStatus
metadata: {name: %s-status}
spec: {node: %s, classes: [Agent, BGP, Routes], updatePeriodSeconds: %d}
`, h1.Name, h1.Name, int(statusPeriod/time.Second)))
	var st nodeStatus
	took := c.eventually(2*statusPeriod, "host1's CalicoNodeStatus answered", func() error {
		st = c.nodeStatus(h1.Name + "-status")
		return checkAnswer(st, h1, []*lab.Host{h2, h3}, blocks)
	})
	record(t, "CalicoNodeStatus answered %s after the request (period %s)", took.Round(time.Millisecond), statusPeriod)
	if st.Status.Agent.BIRDV4.State != "Ready" || !strings.HasPrefix(st.Status.Agent.BIRDV4.Version, "2.") || st.Status.LastUpdated.Before(asked.Add(-time.Second)) {
		t.Errorf("agent %+v, lastUpdated %v", st.Status.Agent, st.Status.LastUpdated)
	}

	// 3. The same sessions on /metrics, with routes imported.
	c.eventually(10*time.Second, "bird_protocol metrics of host1's sessions", func() error {
		code, body, err := c.HTTPGet(c.ctx, h1, nodePort, "/metrics")
		if err != nil {
			return err
		}
		if code != 200 || !strings.Contains(body, "bird_socket_query_success 1") {
			return fmt.Errorf("/metrics: %d, bird_socket_query_success not 1", code)
		}
		for _, o := range []*lab.Host{h2, h3} {
			name := "Mesh_" + strings.ReplaceAll(o.IP.String(), ".", "_")
			labels := fmt.Sprintf(`export_filter="(unnamed)",import_filter="(unnamed)",ip_version="4",name="%s",peer_type="NodeMesh",proto="BGP"`, name)
			if !strings.Contains(body, "bird_protocol_up{"+labels+`,state="Established"} 1`) {
				return fmt.Errorf("no bird_protocol_up{%s,state=\"Established\"} 1 in:\n%s", labels, grepLines(body, name))
			}
			m := regexp.MustCompile(`bird_protocol_prefix_import_count\{` + regexp.QuoteMeta(labels) + `\} (\d+)`).FindStringSubmatch(body)
			if m == nil {
				return fmt.Errorf("no import count for %s in:\n%s", name, grepLines(body, name))
			}
			if n, _ := strconv.Atoi(m[1]); n == 0 {
				return fmt.Errorf("%s imported 0 routes", name)
			}
		}
		return nil
	})

	// 4. Every host, asking the others.
	out = c.birdctl(nil, "node", "status", "--all", "--request", "--request-period", statusPeriod.String(), "--wait", "30s")
	for _, h := range c.Hosts {
		for _, o := range c.Hosts {
			if o == h {
				continue
			}
			row := regexp.MustCompile(`\| ` + h.Name + ` +\| ` + regexp.QuoteMeta(o.IP.String()) + ` +\| node-to-node mesh \| Established +\|`)
			if !row.MatchString(out) {
				t.Errorf("node status --all --request: no Established row %s -> %s:\n%s", h.Name, o.Name, out)
			}
		}
	}
	if !strings.Contains(out, "3 node(s), 3 reporting; 6 of 6 BGP session(s) Established") {
		t.Errorf("node status --all --request summary:\n%s", out)
	}

	// 5. host2 stops: host1 reports it within two periods.
	h2.StopAgents()
	stopped := time.Now()
	took = c.eventually(2*statusPeriod+time.Second, "host1 reporting host2 not established", func() error {
		st = c.nodeStatus(h1.Name + "-status")
		for _, p := range st.Status.BGP.PeersV4 {
			if p.PeerIP == h2.IP.String() && p.State != "Established" && st.Status.BGP.NumberNotEstablishedV4 == 1 {
				return nil
			}
		}
		return fmt.Errorf("peers %+v", st.Status.BGP.PeersV4)
	})
	record(t, "CalicoNodeStatus: peer down reported %s after the peer stopped", time.Since(stopped).Round(time.Millisecond))
	_ = took
	out = c.birdctl(nil, "node", "status", "--all")
	if !regexp.MustCompile(`\| ` + h1.Name + ` +\| ` + regexp.QuoteMeta(h2.IP.String()) + ` +\| node-to-node mesh \| (Active|Connect|Idle) `).MatchString(out) {
		t.Errorf("node status --all after host2 stopped:\n%s", out)
	}
}

// nodeStatus reads a CalicoNodeStatus.
func (c *cluster) nodeStatus(name string) nodeStatus {
	c.t.Helper()
	var st nodeStatus
	out := c.birdctl(nil, "get", "caliconodestatus", name, "-o", "json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		c.t.Fatalf("get caliconodestatus %s: %v: %s", name, err, out)
	}
	return st
}

// checkAnswer wants h's status to list its mesh peers Established and
// their blocks as BGP routes (FIB) via them, learned from the mesh.
func checkAnswer(st nodeStatus, h *lab.Host, peers []*lab.Host, blocks map[string][]netip.Prefix) error {
	if st.Status.LastUpdated == nil {
		return fmt.Errorf("no answer yet")
	}
	b := st.Status.BGP
	if b.NumberEstablishedV4 != len(peers) || b.NumberNotEstablishedV4 != 0 || len(b.PeersV4) != len(peers) {
		return fmt.Errorf("bgp %+v", b)
	}
	for _, o := range peers {
		i := slices.IndexFunc(b.PeersV4, func(p struct {
			PeerIP string `json:"peerIP"`
			Type   string `json:"type"`
			State  string `json:"state"`
			Since  string `json:"since"`
		}) bool {
			return p.PeerIP == o.IP.String()
		})
		if i < 0 || b.PeersV4[i].Type != "NodeMesh" || b.PeersV4[i].State != "Established" || b.PeersV4[i].Since == "" {
			return fmt.Errorf("peer %s: %+v", o.IP, b.PeersV4)
		}
		for _, blk := range blocks[o.Name] {
			found := false
			for _, r := range st.Status.Routes.RoutesV4 {
				if r.Destination == blk.String() && r.Type == "FIB" && r.Gateway == o.IP.String() && r.Interface == "eth0" &&
					r.LearnedFrom.SourceType == "NodeMesh" && r.LearnedFrom.PeerIP == o.IP.String() {
					found = true
				}
			}
			if !found {
				return fmt.Errorf("no FIB route %s via %s learned from the mesh in %+v", blk, o.IP, st.Status.Routes.RoutesV4)
			}
		}
	}
	return nil
}

func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

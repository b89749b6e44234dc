package birdsock

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// recorded returns the birdc-style text of a recorded reply.
func recorded(t testing.TB, file, cmd string) string {
	t.Helper()
	return reply(t, loadTranscript(t, file), cmd).Text()
}

func TestParseStatus(t *testing.T) {
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04:05.000", s, time.Local)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	tests := []struct {
		file string
		want Status
	}{
		{"bird2-active.txt", Status{
			Version: "2.0.12", RouterID: "10.0.0.1", Hostname: "vm",
			ServerTime: at("2026-11-21 05:46:19.235"), LastReboot: at("2026-11-21 05:46:15.230"),
			LastReconfig: at("2026-11-21 05:46:15.230"), Message: "Daemon is up and running", Up: true,
			LastRebootText: "2026-11-21 05:46:15.230", LastReconfigText: "2026-11-21 05:46:15.230",
		}},
		{"bird16.txt", Status{
			Version: "1.6.8", RouterID: "10.0.0.1",
			ServerTime: at("2024-01-01 10:05:00.000"), LastReboot: at("2024-01-01 09:00:00.000"),
			LastReconfig: at("2024-01-01 10:00:00.000"), Message: "Daemon is up and running", Up: true,
			LastRebootText: "2024-01-01 09:00:00", LastReconfigText: "2024-01-01 10:00:00",
		}},
	}
	for _, tt := range tests {
		got, err := ParseStatus(recorded(t, tt.file, "show status"))
		if err != nil {
			t.Fatalf("%s: %v", tt.file, err)
		}
		if !reflect.DeepEqual(*got, tt.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.file, *got, tt.want)
		}
	}
	st, err := ParseStatus("BIRD 2.0.12\nRouter ID is 10.0.0.1\nDaemon is shutting down")
	if err != nil || st.Up || st.Message != "Daemon is shutting down" {
		t.Errorf("shutting down: %+v %v", st, err)
	}
	if _, err := ParseStatus("Network not found"); err == nil {
		t.Error("ParseStatus accepted garbage")
	}
}

func TestParseProtocols(t *testing.T) {
	tests := []struct {
		name, text string
		want       []Protocol
	}{
		{"bird2", recorded(t, "bird2-mesh.txt", "show protocols"), []Protocol{
			{"device1", "Device", "---", "up", "05:43:41.128", ""},
			{"static1", "Static", "master4", "up", "05:43:41.128", ""},
			{"static6", "Static", "master6", "up", "05:43:41.128", ""},
			{"Mesh_10_0_0_2", "BGP", "---", "up", "05:44:22.863", "Established"},
			{"Peer_down", "BGP", "---", "down", "05:44:03.016", "Error: Invalid next hop"},
			{"Ebgp_c", "BGP", "---", "up", "05:44:07.189", "Established"},
		}},
		{"bird2 active", recorded(t, "bird2-active.txt", "show protocols"), []Protocol{
			{"device1", "Device", "---", "up", "05:46:15.230", ""},
			{"Mesh_10_0_0_2", "BGP", "---", "start", "05:46:15.230", "Idle          Socket: Connection refused"},
		}},
		{"bird1.6", recorded(t, "bird16.txt", "show protocols"), []Protocol{
			{"static1", "Static", "master", "up", "2024-01-01", ""},
			{"kernel1", "Kernel", "master", "up", "2024-01-01", ""},
			{"device1", "Device", "master", "up", "2024-01-01", ""},
			{"Mesh_10_0_0_2", "BGP", "master", "up", "10:01:02", "Established"},
			{"Peer1", "BGP", "master", "start", "10:00:01", "Active        Socket: Connection refused"},
			{"Peer2", "BGP", "master", "down", "2023-12-31", ""},
		}},
		{"wire format with hello", loadTranscript(t, "bird16.txt").Hello + loadTranscript(t, "bird16.txt").Replies["show protocols"], nil},
		{"birdc output, iso long times", "BIRD 1.6.8 ready.\n" +
			"name     proto    table    state  since       info\n" +
			"kernel1  Kernel   master   up     2024-01-01 09:00:00  \n" +
			"bgp1     BGP      master   start  2024-01-01 10:00:01.5  Connect       \n", []Protocol{
			{"kernel1", "Kernel", "master", "up", "2024-01-01 09:00:00", ""},
			{"bgp1", "BGP", "master", "start", "2024-01-01 10:00:01.5", "Connect"},
		}},
		{"show protocols all", recorded(t, "bird2-mesh.txt", "show protocols all Mesh_10_0_0_2"), []Protocol{
			{"Mesh_10_0_0_2", "BGP", "---", "up", "05:44:22.863", "Established"},
		}},
	}
	tests[3].want = tests[2].want
	for _, tt := range tests {
		got, err := ParseProtocols(tt.text)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.name, got, tt.want)
		}
	}
	for _, bad := range []string{"", "No protocols match", "Name Proto Table\nonly two"} {
		if _, err := ParseProtocols(bad); err == nil {
			t.Errorf("ParseProtocols(%q) accepted", bad)
		}
	}
}

func TestParseProtocolDetails(t *testing.T) {
	one := func(file, cmd string) ProtocolDetail {
		t.Helper()
		ds, err := ParseProtocolDetails(recorded(t, file, cmd))
		if err != nil || len(ds) != 1 {
			t.Fatalf("%s %s: %d details, %v", file, cmd, len(ds), err)
		}
		return ds[0]
	}
	type bgp struct {
		State, Addr     string
		NeighborAS, AS  uint32
		ID, Session     string
		Source, LastErr string
		Hold, Keepalive string
	}
	bgpOf := func(d ProtocolDetail) bgp {
		return bgp{d.BGPState, d.NeighborAddress, d.NeighborAS, d.LocalAS, d.NeighborID, d.Session,
			d.SourceAddress, d.LastError, d.HoldTimer, d.KeepaliveTimer}
	}
	chanOf := func(c Channel) Channel { c.Fields = nil; return c }

	// BIRD 2, established iBGP with two channels.
	d := one("bird2-mesh.txt", "show protocols all Mesh_10_0_0_2")
	if want := (bgp{"Established", "127.0.0.2", 64512, 64512, "10.0.0.2", "internal multihop AS4",
		"127.0.0.1", "", "180.221/240", "45.517/80"}); bgpOf(d) != want {
		t.Errorf("mesh BGP:\n got %+v\nwant %+v", bgpOf(d), want)
	}
	if d.Name != "Mesh_10_0_0_2" || d.Proto != "BGP" || d.Info != "Established" || len(d.Channels) != 2 {
		t.Fatalf("mesh: %+v", d)
	}
	if want := (Channel{Name: "ipv4", State: "UP", Table: "master4", Preference: 100, InputFilter: "ACCEPT",
		OutputFilter: "ACCEPT", Imported: 3, Exported: 8, Preferred: 2}); !reflect.DeepEqual(chanOf(d.Channels[0]), want) {
		t.Errorf("ipv4 channel:\n got %+v\nwant %+v", chanOf(d.Channels[0]), want)
	}
	if c := d.Channels[1]; c.Name != "ipv6" || c.Table != "master6" || c.Exported != 1 || c.Fields["BGP Next hop"] != "::" ||
		c.Fields["Import withdraws"] != "1          0        ---          1          0" {
		t.Errorf("ipv6 channel: %+v", c)
	}
	// Capability lists are not protocol fields.
	if _, ok := d.Fields["AF announced"]; ok || d.Fields["Neighbor ID"] != "10.0.0.2" {
		t.Errorf("fields: %v", d.Fields)
	}

	d = one("bird2-mesh.txt", "show protocols all Ebgp_c")
	if d.NeighborAS != 64513 || d.Session != "external multihop AS4" || d.Fields["Neighbor port"] != "1793" {
		t.Errorf("ebgp: %+v", d)
	}
	d = one("bird2-mesh.txt", "show protocols all Peer_down")
	if want := (bgp{State: "Down", Addr: "127.0.0.3", NeighborAS: 64513, AS: 64512, LastErr: "Error: Invalid next hop"}); bgpOf(d) != want {
		t.Errorf("down BGP:\n got %+v\nwant %+v", bgpOf(d), want)
	}
	d = one("bird2-active.txt", "show protocols all Mesh_10_0_0_2")
	if d.BGPState != "Active" || d.LastError != "Socket: Connection refused" || d.Fields["Connect delay"] != "4.033/5" ||
		len(d.Channels) != 1 || d.Channels[0].State != "DOWN" {
		t.Errorf("active: %+v", d)
	}
	d = one("bird2-mesh.txt", "show protocols all device1")
	if d.Proto != "Device" || len(d.Channels) != 0 || len(d.Fields) != 0 {
		t.Errorf("device: %+v", d)
	}

	// BIRD 1.6: no channels, no Local AS, integer timers.
	d = one("bird16.txt", "show protocols all Mesh_10_0_0_2")
	if want := (bgp{"Established", "10.0.0.2", 64512, 0, "10.0.0.2", "internal multihop AS4",
		"10.0.0.1", "", "187/240", "27/80"}); bgpOf(d) != want {
		t.Errorf("1.6 BGP:\n got %+v\nwant %+v", bgpOf(d), want)
	}
	if len(d.Channels) != 1 {
		t.Fatalf("1.6 channels: %+v", d.Channels)
	}
	if want := (Channel{Table: "master", Preference: 100, InputFilter: "ACCEPT", OutputFilter: "ACCEPT",
		Imported: 1, Exported: 2, Preferred: 1}); !reflect.DeepEqual(chanOf(d.Channels[0]), want) {
		t.Errorf("1.6 channel:\n got %+v\nwant %+v", chanOf(d.Channels[0]), want)
	}
	if d.Fields["Description"] != "Mesh to 10.0.0.2" || d.Fields["Neighbor caps"] == "" {
		t.Errorf("1.6 fields: %v", d.Fields)
	}
	d = one("bird16.txt", "show protocols all Peer1")
	if d.BGPState != "Active" || d.LastError != "Socket: Connection refused" || d.Channels[0].OutputFilter != "REJECT" {
		t.Errorf("1.6 Peer1: %+v", d)
	}

	// Several protocols in one reply (`show protocols all`).
	tr := loadTranscript(t, "bird2-mesh.txt")
	all := tr.Replies["show protocols all Mesh_10_0_0_2"] +
		strings.Replace(tr.Replies["show protocols all Peer_down"], "2002-Name       Proto      Table      State  Since         Info\n", "", 1)
	all = strings.Replace(all, " \n0000 \n1002-", " \n1002-", 1)
	ds, err := ParseProtocolDetails(all)
	if err != nil || len(ds) != 2 || ds[0].BGPState != "Established" || ds[1].BGPState != "Down" || len(ds[1].Channels) != 1 {
		t.Errorf("two protocols: %+v %v", ds, err)
	}
}

func TestParseRoutes(t *testing.T) {
	eth0 := func(gw string, w int) NextHop { return NextHop{Gateway: gw, Interface: "eth0", Weight: w} }
	tests := []struct {
		name, text string
		want       []Route
	}{
		{"bird2 alternatives", recorded(t, "bird2-mesh.txt", "show route for 10.10.0.5"), []Route{
			{Table: "master4", Prefix: "10.10.0.0/24", Type: "blackhole", Protocol: "static1", Since: "05:43:41.128",
				Primary: true, Preference: 200, Metric: -1},
			{Table: "master4", Prefix: "10.10.0.0/24", Type: "unreachable", Protocol: "Mesh_10_0_0_2", Since: "05:44:22.907",
				From: "127.0.0.2", Preference: 100, Metric: -1, Info: "i"},
		}},
		{"bird2 multipath all", recorded(t, "bird2-static.txt", "show route for 10.80.0.1 all"), []Route{
			{Table: "master4", Prefix: "10.80.0.0/24", Type: "unicast", NextHops: []NextHop{eth0("192.0.2.6", 2), eth0("192.0.2.5", 1)},
				Protocol: "s3", Since: "05:43:57.350", Primary: true, Preference: 200, Metric: -1,
				Attributes: map[string]string{"Type": "static univ"}},
		}},
		{"bird1.6", recorded(t, "bird16.txt", "show route"), []Route{
			{Prefix: "10.10.0.0/24", Type: "blackhole", Protocol: "static1", Since: "2024-01-01", Primary: true, Preference: 200, Metric: -1},
			{Prefix: "10.0.0.0/24", Type: "unicast", NextHops: []NextHop{eth0("10.1.1.1", 0)}, Protocol: "Mesh_10_0_0_2",
				Since: "10:01:02", From: "10.0.0.2", Primary: true, Preference: 100, Metric: 0, Info: "i"},
			{Prefix: "10.1.0.0/16", Type: "unicast", NextHops: []NextHop{eth0("", 0)}, Protocol: "direct1", Since: "2024-01-01",
				Primary: true, Preference: 240, Metric: -1},
			{Prefix: "10.2.0.0/24", Type: "unicast", NextHops: []NextHop{eth0("10.1.1.1", 1), eth0("10.1.1.2", 3)}, Protocol: "static1",
				Since: "2024-01-01", Primary: true, Preference: 200, Metric: -1},
			{Prefix: "10.3.0.0/24", Type: "unicast", NextHops: []NextHop{eth0("10.0.0.3", 0)}, Protocol: "Peer1",
				Since: "10:01:02", From: "10.0.0.3", Primary: true, Preference: 100, Metric: 0, Info: "AS64513i"},
			{Prefix: "10.3.0.0/24", Type: "unicast", NextHops: []NextHop{eth0("10.0.0.2", 0)}, Protocol: "Mesh_10_0_0_2",
				Since: "10:01:02", From: "10.0.0.2", Preference: 100, Metric: 0, Info: "AS64513i"},
			{Prefix: "10.4.0.0/24", Type: "unreachable", Protocol: "static1", Since: "2024-01-01", Primary: true, Preference: 200, Metric: -1},
			{Prefix: "10.5.0.0/24", Type: "prohibited", Protocol: "static1", Since: "2024-01-01", Primary: true, Preference: 200, Metric: -1},
		}},
		{"synthetic", "Table t1:\n" +
			"1:2 10.0.0.0/8      unicast [bgp1 2024-01-01 10:00:00 from fe80::1%eth0] * (100/20) [AS65000?]\n" +
			"\tvia fe80::1 on eth0 mpls 100/200 onlink\n" +
			"\tBGP.community: (1,2) (3,4)\n" +
			"\t\t(5,6) (7,8)\n" +
			"\tBGP.as_path: 65000 65001\n" +
			"                    unreachable [bgp2 10:00:01] (100/?)\n", []Route{
			{Table: "t1", Prefix: "1:2 10.0.0.0/8", Type: "unicast", NextHops: []NextHop{{Gateway: "fe80::1", Interface: "eth0"}},
				Protocol: "bgp1", Since: "2024-01-01 10:00:00", From: "fe80::1%eth0", Primary: true, Preference: 100, Metric: 20,
				Info: "AS65000?", Attributes: map[string]string{"BGP.community": "(1,2) (3,4) (5,6) (7,8)", "BGP.as_path": "65000 65001"}},
			{Table: "t1", Prefix: "1:2 10.0.0.0/8", Type: "unreachable", Protocol: "bgp2", Since: "10:00:01", Preference: 100, Metric: -1},
		}},
		{"empty", "", nil},
	}
	for _, tt := range tests {
		got, err := ParseRoutes(tt.text)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.name, got, tt.want)
		}
	}

	// Full `show route all` transcripts: every route gets its attributes.
	for _, file := range []string{"bird2-mesh.txt", "bird16.txt"} {
		plain, err := ParseRoutes(recorded(t, file, "show route"))
		if err != nil {
			t.Fatal(err)
		}
		all, err := ParseRoutes(recorded(t, file, "show route all"))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range all {
			if r.Attributes["Type"] == "" {
				t.Errorf("%s: %s via %s has no Type attribute", file, r.Prefix, r.Protocol)
			}
			if strings.HasPrefix(r.Attributes["Type"], "BGP") && r.Attributes["BGP.next_hop"] == "" {
				t.Errorf("%s: %s via %s: attributes %v", file, r.Prefix, r.Protocol, r.Attributes)
			}
		}
		if file == "bird2-mesh.txt" && len(all) != len(plain) {
			t.Errorf("%s: %d routes with all, %d without", file, len(all), len(plain))
		}
	}
	all, _ := ParseRoutes(recorded(t, "bird2-mesh.txt", "show route all"))
	if r := all[len(all)-1]; r.Table != "master6" || r.Prefix != "2001:db8::/48" {
		t.Errorf("last route %+v", r)
	}
	if r := all[0]; r.Attributes["BGP.as_path"] != "64513" || r.Attributes["BGP.local_pref"] != "100" || r.Attributes["BGP.origin"] != "IGP" {
		t.Errorf("first route attributes %v", r.Attributes)
	}

	for _, bad := range []string{
		"Network not found",
		"10.0.0.0/24 unicast [static1",
		"   unreachable [bgp2 10:00:01] (100)",
		"\tBGP.origin: IGP",
	} {
		if rs, err := ParseRoutes(bad); err == nil {
			t.Errorf("ParseRoutes(%q) = %+v, want an error", bad, rs)
		}
	}
}

// TestParseBirdcText checks that birdc-style text (no codes) and wire format
// parse the same.
func TestParseBirdcText(t *testing.T) {
	tr := loadTranscript(t, "bird2-mesh.txt")
	raw := tr.Hello + tr.Replies["show route all"]
	fromRaw, err := ParseRoutes(raw)
	if err != nil {
		t.Fatal(err)
	}
	fromText, err := ParseRoutes(reply(t, tr, "show route all").Text())
	if err != nil || !reflect.DeepEqual(fromRaw, fromText) {
		t.Errorf("wire and text differ: %v", err)
	}
}

func BenchmarkParseProtocols(b *testing.B) {
	rep, err := ParseReply(bigProtocols(5000))
	if err != nil {
		b.Fatal(err)
	}
	text := rep.Text()
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		ps, err := ParseProtocols(text)
		if err != nil || len(ps) != 5000 {
			b.Fatal(len(ps), err)
		}
	}
}

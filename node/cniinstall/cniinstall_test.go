package cniinstall

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roostnet/roost/datastore"
)

// fixture is a fake plugin binary and a node's options.
func fixture(t *testing.T) Options {
	t.Helper()
	dir := t.TempDir()
	plugin := filepath.Join(dir, "roost-cni")
	if err := os.WriteFile(plugin, []byte("#!/bin/sh\necho plugin v1\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	return Options{
		Plugin: plugin, BinDir: filepath.Join(dir, "bin"), ConfDir: filepath.Join(dir, "net.d"), NodeName: "host1",
		Datastore: datastore.Config{Type: "etcdv3", EtcdEndpoints: "https://10.0.0.9:2379",
			EtcdCACert: "/etc/roost/pki/ca.pem", EtcdCert: "/etc/roost/pki/node.pem", EtcdKey: "/etc/roost/pki/node-key.pem"},
	}
}

// snapshot is each installed file's mode and inode (a rewrite by rename
// changes the inode).
type fileState struct {
	mode os.FileMode
	ino  uint64
	data string
}

func state(t *testing.T, o Options) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	for _, p := range []string{filepath.Join(o.BinDir, PluginType), filepath.Join(o.BinDir, IPAMType), filepath.Join(o.ConfDir, ConfName)} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = fileState{mode: st.Mode(), ino: inode(st), data: string(b)}
	}
	return out
}

func TestInstall(t *testing.T) {
	o := fixture(t)
	res, err := Install(o)
	if err != nil {
		t.Fatal(err)
	}
	if !res.ConfWritten || len(res.Written) != 2 || !res.Changed() {
		t.Fatalf("first install wrote %+v", res)
	}
	first := state(t, o)
	for name, want := range map[string]os.FileMode{PluginType: 0o755, IPAMType: 0o755, ConfName: 0o644} {
		if got := first[name].mode; got != want {
			t.Errorf("%s: mode %v, want %v", name, got, want)
		}
	}
	if first[PluginType].data != "#!/bin/sh\necho plugin v1\n" || first[IPAMType].data != first[PluginType].data {
		t.Errorf("binaries are not copies of the plugin: %q %q", first[PluginType].data, first[IPAMType].data)
	}

	// The conflist is the shared contract: network roost, plugin roost
	// with the node's name and datastore, IPAM roost-ipam.
	var conf struct {
		Name       string `json:"name"`
		CNIVersion string `json:"cniVersion"`
		Plugins    []map[string]any
	}
	if err := json.Unmarshal([]byte(first[ConfName].data), &conf); err != nil {
		t.Fatal(err)
	}
	if conf.Name != "roost" || conf.CNIVersion != "1.0.0" || len(conf.Plugins) != 1 {
		t.Fatalf("conflist: %s", first[ConfName].data)
	}
	p := conf.Plugins[0]
	for k, want := range map[string]any{
		"type": "roost", "nodename": "host1", "datastore_type": "etcdv3", "etcd_endpoints": "https://10.0.0.9:2379",
		"etcd_ca_cert_file": "/etc/roost/pki/ca.pem", "etcd_cert_file": "/etc/roost/pki/node.pem", "etcd_key_file": "/etc/roost/pki/node-key.pem",
		"mtu": float64(0), "log_level": "info", "log_file_path": DefaultLogFile,
	} {
		if p[k] != want {
			t.Errorf("%s = %v, want %v", k, p[k], want)
		}
	}
	ipam, _ := p["ipam"].(map[string]any)
	if ipam["type"] != "roost-ipam" || ipam["assign_ipv4"] != "true" || ipam["assign_ipv6"] != "false" {
		t.Errorf("ipam: %v", ipam)
	}
	if _, ok := p["datastore_file"]; ok {
		t.Errorf("datastore_file with etcd: %v", p)
	}
	if _, ok := p["mtu_file"]; ok {
		t.Errorf("mtu_file without a non-default MTU file: %v", p)
	}

	// Idempotent: a second run writes nothing and keeps every inode.
	res, err = Install(o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed() {
		t.Fatalf("second install wrote %+v", res)
	}
	if again := state(t, o); !equalStates(again, first) {
		t.Fatalf("second install touched files: %v -> %v", first, again)
	}
	assertNoTemp(t, o)

	// A new node setting rewrites only the conflist; a new plugin only
	// the binaries.
	o.Datastore.EtcdEndpoints = "https://10.0.0.10:2379"
	if res, err = Install(o); err != nil || !res.ConfWritten || len(res.Written) != 0 {
		t.Fatalf("endpoint change: %+v %v", res, err)
	}
	second := state(t, o)
	if second[ConfName].ino == first[ConfName].ino || !strings.Contains(second[ConfName].data, "10.0.0.10") {
		t.Errorf("conflist not replaced by rename: %+v", second[ConfName])
	}
	if second[PluginType].ino != first[PluginType].ino {
		t.Errorf("binary rewritten although unchanged")
	}
	if err := os.WriteFile(o.Plugin, []byte("#!/bin/sh\necho plugin v2\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	if res, err = Install(o); err != nil || res.ConfWritten || len(res.Written) != 2 {
		t.Fatalf("plugin change: %+v %v", res, err)
	}
	third := state(t, o)
	if third[IPAMType].data != "#!/bin/sh\necho plugin v2\n" || third[IPAMType].ino == second[IPAMType].ino || third[IPAMType].mode != 0o755 {
		t.Errorf("plugin update: %+v", third[IPAMType])
	}

	// A wrong mode alone is repaired.
	if err := os.Chmod(filepath.Join(o.ConfDir, ConfName), 0o600); err != nil {
		t.Fatal(err)
	}
	if res, err = Install(o); err != nil || !res.ConfWritten {
		t.Fatalf("mode repair: %+v %v", res, err)
	}
	if st := state(t, o); st[ConfName].mode != 0o644 {
		t.Errorf("mode %v after repair", st[ConfName].mode)
	}
	assertNoTemp(t, o)
}

func equalStates(a, b map[string]fileState) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// assertNoTemp checks that no temporary file is left in either directory.
func assertNoTemp(t *testing.T, o Options) {
	t.Helper()
	for _, d := range []string{o.BinDir, o.ConfDir} {
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if strings.Contains(e.Name(), ".tmp-") {
				t.Errorf("temporary file left: %s", filepath.Join(d, e.Name()))
			}
		}
	}
}

func TestConflist(t *testing.T) {
	wd, _ := os.Getwd()
	for _, tc := range []struct {
		name    string
		mod     func(*Options)
		want    map[string]any // keys of the plugin entry
		absent  []string
		wantErr string
	}{
		{name: "file datastore, relative path made absolute", mod: func(o *Options) {
			o.Datastore = datastore.Config{Type: "file", File: "res"}
		}, want: map[string]any{"datastore_type": "file", "datastore_file": filepath.Join(wd, "res")},
			absent: []string{"etcd_endpoints", "etcd_ca_cert_file", "etcd_cert_file", "etcd_key_file"}},
		{name: "default datastore is the file one", mod: func(o *Options) { o.Datastore = datastore.Config{} },
			want: map[string]any{"datastore_type": "file", "datastore_file": datastore.DefaultFile}},
		{name: "plain etcd", mod: func(o *Options) { o.Datastore = datastore.Config{EtcdEndpoints: "http://127.0.0.1:2379"} },
			want: map[string]any{"datastore_type": "etcdv3", "etcd_endpoints": "http://127.0.0.1:2379"}, absent: []string{"etcd_key_file", "datastore_file"}},
		{name: "MTU, MTU file, IPv6, logging", mod: func(o *Options) {
			o.MTU, o.MTUFile, o.IPv6, o.LogLevel, o.LogFile = 1400, "/run/x/mtu", true, "debug", "/tmp/cni.log"
		}, want: map[string]any{"mtu": float64(1400), "mtu_file": "/run/x/mtu", "log_level": "debug", "log_file_path": "/tmp/cni.log"}},
		{name: "default MTU file is not written", mod: func(o *Options) { o.MTUFile = "/var/lib/calico/mtu" }, absent: []string{"mtu_file"}},
		{name: "password refused", mod: func(o *Options) { o.Datastore.EtcdUsername, o.Datastore.EtcdPassword = "roost", "s3cret-pw" }, wantErr: "ETCD_PASSWORD"},
		{name: "username alone refused", mod: func(o *Options) { o.Datastore.EtcdUsername = "roost" }, wantErr: "ETCD_USERNAME"},
		{name: "no node name", mod: func(o *Options) { o.NodeName = "" }, wantErr: "node name"},
		{name: "bad MTU", mod: func(o *Options) { o.MTU = 10 }, wantErr: "MTU"},
		{name: "cert without key", mod: func(o *Options) { o.Datastore.EtcdKey = "" }, wantErr: "ETCD_KEY_FILE"},
		{name: "unknown datastore", mod: func(o *Options) { o.Datastore.Type = "kubernetes" }, wantErr: "kubernetes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := fixture(t)
			tc.mod(&o)
			b, err := Conflist(o)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one naming %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret-pw") {
					t.Fatalf("the error shows the password: %v", err)
				}
				if errors.Is(err, ErrPassword) != strings.Contains(tc.name, "refused") {
					t.Fatalf("ErrPassword: %v", err)
				}
				// Install refuses too and writes nothing.
				if _, err := Install(o); err == nil {
					t.Fatal("Install accepted it")
				}
				if _, err := os.Stat(o.ConfDir); !os.IsNotExist(err) {
					t.Fatalf("Install created %s: %v", o.ConfDir, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var conf struct{ Plugins []map[string]any }
			if err := json.Unmarshal(b, &conf); err != nil {
				t.Fatal(err)
			}
			p := conf.Plugins[0]
			for k, v := range tc.want {
				if p[k] != v {
					t.Errorf("%s = %v, want %v", k, p[k], v)
				}
			}
			for _, k := range tc.absent {
				if _, ok := p[k]; ok {
					t.Errorf("%s present: %v", k, p[k])
				}
			}
			if o.IPv6 {
				if ipam := p["ipam"].(map[string]any); ipam["assign_ipv6"] != "true" {
					t.Errorf("ipam %v", ipam)
				}
			}
		})
	}
}

func TestInstallErrors(t *testing.T) {
	o := fixture(t)
	o.Plugin = filepath.Join(t.TempDir(), "missing")
	if _, err := Install(o); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing plugin: %v", err)
	}
	o = fixture(t)
	// The binary directory is a file: nothing can be installed.
	if err := os.WriteFile(filepath.Join(filepath.Dir(o.BinDir), "bin"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Install(o); err == nil {
		t.Fatal("installed into a file")
	}
}

// TestTLSCopy: with a TLS directory the files are copied there (the key
// 0600) and the conflist names them as the host sees them; unchanged
// files are not rewritten.
func TestTLSCopy(t *testing.T) {
	o := fixture(t)
	src := t.TempDir()
	for name, content := range map[string]string{"ca.pem": "CA", "node.pem": "CERT", "node-key.pem": "KEY"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	o.Datastore.EtcdCACert, o.Datastore.EtcdCert, o.Datastore.EtcdKey = filepath.Join(src, "ca.pem"), filepath.Join(src, "node.pem"), filepath.Join(src, "node-key.pem")
	o.TLSDir = filepath.Join(o.ConfDir, "roost-tls")
	o.HostTLSDir = "/etc/cni/net.d/roost-tls"
	res, err := Install(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Written) != 5 {
		t.Fatalf("written %v, want 2 binaries and 3 TLS files", res.Written)
	}
	for name, want := range map[string]struct {
		data string
		mode os.FileMode
	}{TLSCAName: {"CA", 0o644}, TLSCertName: {"CERT", 0o644}, TLSKeyName: {"KEY", 0o600}} {
		p := filepath.Join(o.TLSDir, name)
		b, err := os.ReadFile(p)
		st, serr := os.Stat(p)
		if err != nil || serr != nil || string(b) != want.data || st.Mode().Perm() != want.mode {
			t.Errorf("%s: %q %v (%v %v), want %q %v", name, b, st.Mode(), err, serr, want.data, want.mode)
		}
	}
	b, err := os.ReadFile(res.Conf)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"etcd_ca_cert_file": "/etc/cni/net.d/roost-tls/etcd-ca"`, `"etcd_cert_file": "/etc/cni/net.d/roost-tls/etcd-cert"`, `"etcd_key_file": "/etc/cni/net.d/roost-tls/etcd-key"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("conflist lacks %s:\n%s", want, b)
		}
	}
	if strings.Contains(string(b), "KEY") {
		t.Errorf("the key's content is in the conflist:\n%s", b)
	}
	if res, err = Install(o); err != nil || res.Changed() {
		t.Fatalf("second install: %+v %v", res, err)
	}
	// A rotated certificate is copied again.
	if err := os.WriteFile(o.Datastore.EtcdCert, []byte("CERT2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if res, err = Install(o); err != nil || len(res.Written) != 1 || res.ConfWritten {
		t.Fatalf("rotation: %+v %v", res, err)
	}
	// A missing TLS file fails the installation.
	o.Datastore.EtcdCACert = filepath.Join(src, "missing.pem")
	if _, err := Install(o); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Fatalf("missing CA: %v", err)
	}
}

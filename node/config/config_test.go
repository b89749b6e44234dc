package config

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/roostnet/roost/internal/settings"
)

func TestPrecedence(t *testing.T) {
	var r Run
	s := r.Settings()
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	settings.Register(fs, s)
	if err := fs.Parse([]string{"--ip=10.0.0.5/24", "--listen="}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"IP": "autodetect", "IP_AUTODETECTION_METHOD": "interface=eth.*", "NODENAME": "h1",
		"ETCD_ENDPOINTS": "http://10.0.0.9:2379", "FELIX_VXLANMTU": "1400", "FELIX_ROUTEREFRESHINTERVAL": "45",
	}
	if err := settings.Resolve(fs, s, func(k string) string { return env[k] }, nil); err != nil {
		t.Fatal(err)
	}
	switch {
	case r.Startup.IP != "10.0.0.5/24": // flag beats env
		t.Fatalf("IP %q", r.Startup.IP)
	case r.Startup.IPMethod != "interface=eth.*": // env beats default
		t.Fatalf("method %q", r.Startup.IPMethod)
	case r.Startup.IP6 != "none" || r.Dataplane.VXLANVNI != 4096 || r.AutodetectInterval != 30*time.Second || !r.IPForward: // defaults
		t.Fatalf("defaults: %+v %+v", r.Startup, r.Dataplane)
	case r.Listen != "": // explicitly emptied
		t.Fatalf("listen %q", r.Listen)
	case r.NodeName != "h1" || r.Datastore.EtcdEndpoints != "http://10.0.0.9:2379" || r.Dataplane.VXLANMTU != 1400:
		t.Fatalf("env: %+v", r)
	case r.Dataplane.ResyncInterval != 45*time.Second: // Felix's plain seconds
		t.Fatalf("refresh %v", r.Dataplane.ResyncInterval)
	case r.Dataplane.MTUFile != "/var/lib/calico/mtu" || r.Dataplane.WorkloadMTU != 0 || r.Dataplane.MTUIfacePattern != nil:
		t.Fatalf("MTU defaults: %+v", r.Dataplane)
	}
}

func TestInvalid(t *testing.T) {
	var r Run
	s := r.Settings()
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	settings.Register(fs, s)
	env := map[string]string{"FELIX_VXLANMTU": "big", "ROOST_IP_FORWARD": "maybe", "AUTODETECT_POLL_INTERVAL": "-1s",
		"FELIX_IPINIPMTU": "40", "ROOST_WORKLOAD_MTU": "70000", "FELIX_MTUIFACEPATTERN": "eth(["}
	err := settings.Resolve(fs, s, func(k string) string { return env[k] }, nil)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, name := range []string{"FELIX_VXLANMTU", "ROOST_IP_FORWARD", "AUTODETECT_POLL_INTERVAL", "FELIX_IPINIPMTU", "ROOST_WORKLOAD_MTU", "FELIX_MTUIFACEPATTERN"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

func TestSuperviseSettings(t *testing.T) {
	var r Run
	s := r.RunSettings()
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	settings.Register(fs, s)
	if err := fs.Parse([]string{"--with-bird", "--bird-graceful-restart=false", "--stop-timeout=3s"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"ROOST_WITH_CONFD": "true", "BIRD_SOCKET": "/run/x/bird.ctl", "ROOST_RESTART_BACKOFF_MAX": "5"}
	if err := settings.Resolve(fs, s, func(k string) string { return env[k] }, nil); err != nil {
		t.Fatal(err)
	}
	sv := r.Supervise
	switch {
	case !sv.WithBird || !sv.WithConfd: // bare flag; variable
		t.Fatalf("with: %+v", sv)
	case sv.BirdGracefulRestart || sv.StopTimeout != 3*time.Second:
		t.Fatalf("flags: %+v", sv)
	case sv.BirdSocket != "/run/x/bird.ctl" || sv.BackoffMax != 5*time.Second:
		t.Fatalf("env: %+v", sv)
	case sv.BirdConfig != DefaultBirdConfig || !sv.BirdLogStderr || !sv.ReadyRequireEstablished ||
		sv.BackoffMin != time.Second || sv.StableAfter != time.Minute || sv.ConfdHealthAddr != DefaultConfdHealthAddr:
		t.Fatalf("defaults: %+v", sv)
	}
	if f := fs.Lookup("with-bird"); f.Value.Type() != "bool" || f.NoOptDefVal != "true" {
		t.Errorf("--with-bird is not shown as a bool flag: %s %q", f.Value.Type(), f.NoOptDefVal)
	}

	var r2 Run
	s2 := r2.RunSettings()
	fs2 := pflag.NewFlagSet("run", pflag.ContinueOnError)
	settings.Register(fs2, s2)
	bad := map[string]string{"ROOST_WITH_BIRD": "maybe", "ROOST_RESTART_STABLE_AFTER": "soon"}
	err := settings.Resolve(fs2, s2, func(k string) string { return bad[k] }, nil)
	if err == nil || !strings.Contains(err.Error(), "ROOST_WITH_BIRD") || !strings.Contains(err.Error(), "ROOST_RESTART_STABLE_AFTER") {
		t.Fatalf("invalid values: %v", err)
	}

	var h Health
	hs := h.Settings()
	fs3 := pflag.NewFlagSet("health", pflag.ContinueOnError)
	settings.Register(fs3, hs)
	if err := settings.Resolve(fs3, hs, func(string) string { return "" }, nil); err != nil {
		t.Fatal(err)
	}
	if h.BirdSocket != DefaultBirdSocket || h.Listen != DefaultNodeListen || h.Timeout != 5*time.Second || !h.ReadyRequireEstablished {
		t.Fatalf("health defaults: %+v", h)
	}
}

func TestCNISettings(t *testing.T) {
	for _, tc := range []struct {
		name    string
		run     bool
		args    []string
		env     map[string]string
		install bool
		bin     string
		conf    string
	}{
		{name: "install-cni defaults", bin: "/opt/cni/bin", conf: "/etc/cni/net.d"},
		{name: "install-cni flags beat env", args: []string{"--bin-dir=/x/bin", "--conf-dir=/x/net.d"}, env: map[string]string{"CNI_BIN_DIR": "/y", "CNI_NET_DIR": "/y"}, bin: "/x/bin", conf: "/x/net.d"},
		{name: "install-cni env", env: map[string]string{"CNI_BIN_DIR": "/y/bin", "CNI_NET_DIR": "/y/net.d"}, bin: "/y/bin", conf: "/y/net.d"},
		{name: "run off by default", run: true, bin: "/opt/cni/bin", conf: "/etc/cni/net.d"},
		{name: "run env", run: true, env: map[string]string{"ROOST_INSTALL_CNI": "true", "CNI_BIN_DIR": "/y/bin", "CNI_NET_DIR": "/y/net.d"}, install: true, bin: "/y/bin", conf: "/y/net.d"},
		{name: "run flags", run: true, args: []string{"--install-cni", "--cni-bin-dir=/x/bin", "--cni-conf-dir=/x/net.d"}, install: true, bin: "/x/bin", conf: "/x/net.d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r Run
			s := r.InstallCNISettings()
			if tc.run {
				s = r.RunSettings()
			}
			fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
			settings.Register(fs, s)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if err := settings.Resolve(fs, s, func(k string) string { return tc.env[k] }, nil); err != nil {
				t.Fatal(err)
			}
			if r.CNI.Install != tc.install || r.CNI.BinDir != tc.bin || r.CNI.ConfDir != tc.conf || r.CNI.LogLevel != "info" || r.CNI.LogFile != "/var/log/roost/cni.log" {
				t.Fatalf("%+v", r.CNI)
			}
		})
	}
}

package settings

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/roostnet/roost/datastore"
)

type values struct {
	name  string
	port  int
	on    bool
	every time.Duration
}

func (v *values) list() []*Setting {
	return []*Setting{
		{Flag: "name", Env: "T_NAME", File: "name", Default: "dflt", Parse: String(&v.name)},
		{Flag: "port", Env: "T_PORT", File: "port", Default: "179", Parse: Int(&v.port)},
		{Flag: "on", Env: "T_ON", File: "on", Bool: true, Parse: Bool(&v.on)},
		{Flag: "every", Env: "T_EVERY", File: "every", Default: "30s", Parse: Duration(&v.every)},
	}
}

// Each source wins over the ones after it: flag, environment, file,
// default; an empty variable counts as unset, an empty flag as set.
func TestPrecedence(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		file map[string]string
		want values
	}{
		{"defaults", nil, nil, nil, values{name: "dflt", port: 179, every: 30 * time.Second}},
		{"file over default", nil, nil, map[string]string{"name": "f", "on": "true", "every": "90"},
			values{name: "f", port: 179, on: true, every: 90 * time.Second}},
		{"env over file", nil, map[string]string{"T_NAME": "e", "T_PORT": "1790"}, map[string]string{"name": "f", "port": "1"},
			values{name: "e", port: 1790, every: 30 * time.Second}},
		{"empty env is unset", nil, map[string]string{"T_NAME": ""}, map[string]string{"name": "f"},
			values{name: "f", port: 179, every: 30 * time.Second}},
		{"flag over env", []string{"--name=a", "--on", "--every=1m"}, map[string]string{"T_NAME": "e", "T_ON": "false"}, map[string]string{"name": "f"},
			values{name: "a", port: 179, on: true, every: time.Minute}},
		{"empty flag is set", []string{"--name="}, map[string]string{"T_NAME": "e"}, nil,
			values{name: "", port: 179, every: 30 * time.Second}},
		{"bool flag false", []string{"--on=false"}, map[string]string{"T_ON": "true"}, nil,
			values{name: "dflt", port: 179, every: 30 * time.Second}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var v values
			list := v.list()
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			Register(fs, list)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if err := Resolve(fs, list, func(k string) string { return tc.env[k] }, tc.file); err != nil {
				t.Fatal(err)
			}
			if v != tc.want {
				t.Errorf("got %+v, want %+v", v, tc.want)
			}
		})
	}
}

// Invalid values are all reported, each with where it came from.
func TestInvalidNamesTheSource(t *testing.T) {
	var v values
	list := v.list()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	Register(fs, list)
	if err := fs.Parse([]string{"--every=soon"}); err != nil {
		t.Fatal(err)
	}
	err := Resolve(fs, list, func(k string) string { return map[string]string{"T_PORT": "-1"}[k] }, map[string]string{"on": "maybe"})
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{`--every: "soon" is not a positive duration`, `$T_PORT: "-1" is not a non-negative integer`, `config file: on: "maybe" is not a boolean`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

// The datastore settings: Calico's variables, file keys from flag names,
// no defaults (Normalize applies them), help naming the variable.
func TestDatastoreSettings(t *testing.T) {
	var c datastore.Config
	list := Datastore(&c)
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	Register(fs, list)
	env := map[string]string{datastore.EnvEtcdEndpoints: "http://10.0.0.1:2379", datastore.EnvEtcdPassword: "pw"}
	file := map[string]string{"etcd_ca_cert_file": "/ca.pem", "etcd_endpoints": "http://file:2379"}
	if err := fs.Parse([]string{"--etcd-username=u"}); err != nil {
		t.Fatal(err)
	}
	if err := Resolve(fs, list, func(k string) string { return env[k] }, file); err != nil {
		t.Fatal(err)
	}
	want := datastore.Config{EtcdEndpoints: "http://10.0.0.1:2379", EtcdCACert: "/ca.pem", EtcdUsername: "u", EtcdPassword: "pw"}
	if c != want {
		t.Errorf("got %+v, want %+v", c, want)
	}
	if len(list) != 8 {
		t.Errorf("%d datastore settings, want 8", len(list))
	}
	for _, s := range list {
		if s.Default != "" || s.Env == "" || s.File != strings.ReplaceAll(s.Flag, "-", "_") {
			t.Errorf("%+v", s)
		}
		if f := fs.Lookup(s.Flag); f == nil || !strings.HasSuffix(f.Usage, "[$"+s.Env+"]") {
			t.Errorf("--%s: usage %q", s.Flag, f.Usage)
		}
	}
}

package settings_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/internal/settings"
)

// program is one of Roost's binaries and how to reach its datastore
// settings: args runs a command that opens the datastore, help prints
// the flags of that command.
type program struct {
	name  string
	pkg   string
	args  []string
	help  []string
	reads bool // reads a config file (confd: --config)
}

var programs = []program{
	{name: "confd", pkg: "github.com/roostnet/roost/confd", args: []string{"--onetime", "--sync-only"}, help: []string{"--help"}, reads: true},
	{name: "roost-node", pkg: "github.com/roostnet/roost/node", args: []string{"run"}, help: []string{"run", "--help"}},
	{name: "birdctl", pkg: "github.com/roostnet/roost/birdctl", args: []string{"get", "nodes"}, help: []string{"get", "--help"}},
}

var binDir string

// TestMain builds the three binaries once for the tests of this file.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "roost-settings-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := 1
	if err := buildPrograms(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

func buildPrograms(dir string) error {
	gobin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		if gobin, err = exec.LookPath("go"); err != nil {
			return fmt.Errorf("cannot build the programs: go is not in PATH")
		}
	}
	for _, p := range programs {
		if out, err := exec.Command(gobin, "build", "-o", filepath.Join(dir, p.name), p.pkg).CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", p.pkg, err, out)
		}
	}
	return nil
}

// Every binary resolves its datastore settings the same way: a flag wins
// over the environment variable, which wins over the config file (confd,
// the one that reads one), which wins over the default. The resolved
// DATASTORE_TYPE is made invalid on purpose, so each program stops at
// once with an error that names the value it chose.
func TestProgramsResolveAlike(t *testing.T) {
	bins := binDir
	dir := t.TempDir()
	conf := filepath.Join(dir, "confd.toml")
	if err := os.WriteFile(conf, []byte("datastore_type = \"from-file\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		flag     bool
		env      string
		file     bool
		want     string
		fileOnly bool // a case only a program with a config file has
	}{
		{name: "flag over env and file", flag: true, env: "from-env", file: true, want: "from-flag"},
		{name: "env over file", env: "from-env", file: true, want: "from-env"},
		{name: "empty env is unset", env: "", file: true, want: "from-file", fileOnly: true},
		{name: "file over default", file: true, want: "from-file", fileOnly: true},
	}
	for _, p := range programs {
		for _, tc := range cases {
			if tc.fileOnly && !p.reads {
				continue
			}
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				args := append([]string(nil), p.args...)
				if tc.flag {
					args = append(args, "--datastore-type", "from-flag")
				}
				if tc.file && p.reads {
					args = append(args, "--config", conf)
				}
				cmd := exec.Command(filepath.Join(bins, p.name), args...)
				cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, datastore.EnvType + "=" + tc.env, "NODENAME=n1"}
				out, err := cmd.CombinedOutput()
				want := datastore.EnvType + `="` + tc.want + `" is not supported`
				if err == nil || !strings.Contains(string(out), want) {
					t.Errorf("%s %q: %v\n%s\nwant an error with %s", p.name, args, err, out, want)
				}
			})
		}
	}
}

// The datastore flags have the same names and help in every binary.
func TestProgramsShareDatastoreFlags(t *testing.T) {
	bins := binDir
	want := settings.Datastore(&datastore.Config{})
	for _, p := range programs {
		out, err := exec.Command(filepath.Join(bins, p.name), p.help...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %q: %v\n%s", p.name, p.help, err, out)
		}
		for _, s := range want {
			line := flagLine(out, "--"+s.Flag)
			if !strings.HasSuffix(line, s.Help+" [$"+s.Env+"]") {
				t.Errorf("%s: --%s is %q, want the help %q [$%s]", p.name, s.Flag, line, s.Help, s.Env)
			}
		}
	}
}

// flagLine returns the usage line that documents flag, spaces collapsed.
func flagLine(usage []byte, flag string) string {
	for _, l := range strings.Split(string(usage), "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && f[0] == flag {
			return strings.Join(f, " ")
		}
	}
	return ""
}

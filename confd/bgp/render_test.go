package bgp

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/template"

	"github.com/Masterminds/sprig/v3"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/confd/birdfmt"
)

// templatesDir holds Roost's default templates.
const templatesDir = "../../templates"

// renderer executes the default templates the way confd does: each file a
// separate template with sprig, birdfmt and `model`.
type renderer struct {
	files []string // output names: bird.cfg, ...
	tmpls map[string]*template.Template
	model *Model
}

func newRenderer(tb testing.TB) *renderer {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join(templatesDir, "*.template"))
	if err != nil || len(paths) == 0 {
		tb.Fatalf("no templates in %s: %v", templatesDir, err)
	}
	r := &renderer{tmpls: map[string]*template.Template{}}
	funcs := template.FuncMap{}
	for k, v := range sprig.TxtFuncMap() {
		funcs[k] = v
	}
	for k, v := range birdfmt.Funcs() {
		funcs[k] = v
	}
	funcs["model"] = func() (*Model, error) {
		if r.model == nil {
			return nil, fmt.Errorf("no model")
		}
		return r.model, nil
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		name := filepath.Base(p)
		t, err := template.New(name).Option("missingkey=error").Funcs(funcs).Parse(string(b))
		if err != nil {
			tb.Fatalf("parse %s: %v", name, err)
		}
		out := strings.TrimSuffix(name, ".template")
		r.files = append(r.files, out)
		r.tmpls[out] = t
	}
	slices.Sort(r.files)
	return r
}

// render executes every template for m.
func (r *renderer) render(m *Model) (map[string][]byte, error) {
	r.model = m
	out := map[string][]byte{}
	for _, f := range r.files {
		var buf bytes.Buffer
		if err := r.tmpls[f].Execute(&buf, nil); err != nil {
			return nil, err
		}
		out[f] = buf.Bytes()
	}
	return out, nil
}

// birdCheck writes the set into a fresh directory and runs bird -p on the
// main file. It skips when bird is missing, unless CI=true.
func birdCheck(t *testing.T, files map[string][]byte) {
	t.Helper()
	bird, err := exec.LookPath("bird")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("bird not found and CI=true: %v", err)
		}
		t.Skip("bird not installed; skipping bird -p")
	}
	dir := t.TempDir()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Run from another directory: includes must resolve against the
	// main file's directory, not the working directory.
	cmd := exec.Command(bird, "-p", "-c", filepath.Join(dir, "bird.cfg"))
	cmd.Dir = os.TempDir()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bird -p -c %s/bird.cfg: %v\n%s", dir, err, out)
	}
}

// loadYAML decodes calicoctl-style YAML into a new cache.
func loadYAML(tb testing.TB, data []byte, source string) (*Cache, []error) {
	tb.Helper()
	c := NewCache()
	var errs []error
	for _, d := range api.Decode(data, source, api.DecodeOptions{}) {
		if d.Err != nil {
			errs = append(errs, d.Err)
			continue
		}
		if err := c.Set(d.Object); err != nil {
			errs = append(errs, err)
		}
	}
	return c, errs
}

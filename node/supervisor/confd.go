package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// ConfdBinary resolves confd: path if set, else confd in the directory of
// the running roost-node, else confd in PATH.
func ConfdBinary(path string) (string, error) {
	if path != "" {
		return exec.LookPath(path)
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "confd")
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := exec.LookPath("confd"); err == nil {
		return p, nil
	}
	return "", errors.New("confd not found next to roost-node or in PATH (set ROOST_CONFD_PATH)")
}

// ConfdOptions configure the supervised confd.
type ConfdOptions struct {
	Path       string // resolved executable
	BirdConfig string // confd renders into its directory
	BirdSocket string
	HealthAddr string // "" : no health server; readiness = the file exists
}

func (o ConfdOptions) args(bool) ([]string, error) {
	dir := filepath.Dir(o.BirdConfig)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	args := []string{"--output-dir", dir, "--bird-socket", o.BirdSocket}
	if o.HealthAddr != "" {
		args = append(args, "--health-addr", o.HealthAddr)
	}
	return args, nil
}

// rendered waits for confd's first render: the render finished (confd's
// /readyz answers 200, or says the last render failed — confd keeps the
// checked files and retries the reload while BIRD is not running yet — or
// that it rendered with some sessions disabled, or that rendering is held
// by a broken object, when the last good files stay) and the BIRD
// configuration exists.
func (o ConfdOptions) rendered(log logrus.FieldLogger) func(ctx context.Context, pid int) error {
	return func(ctx context.Context, _ int) error {
		url := ""
		if o.HealthAddr != "" {
			u, err := LocalURL(o.HealthAddr, "/readyz")
			if err != nil {
				return err
			}
			url = u
		}
		start := time.Now()
		lastLog := start
		for {
			reason := o.renderState(ctx, url)
			if reason == "" {
				return nil
			}
			if time.Since(lastLog) >= 10*time.Second {
				lastLog = time.Now()
				log.WithField("waited", time.Since(start).Round(time.Second).String()).Info("waiting for the first render: " + reason)
			}
			select {
			case <-ctx.Done():
				return context.Cause(ctx)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// renderState returns "" once rendered, else what is missing.
func (o ConfdOptions) renderState(ctx context.Context, url string) string {
	if url != "" {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "confd's /readyz: " + unwrapURL(err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		text := strings.TrimSpace(string(body))
		// Rendered, though not ready: the last render failed (BIRD is not
		// running yet), some sessions are disabled (a secret is missing),
		// or rendering is held by a broken object (the last good files
		// stay); confd's metrics.HealthHandler words them so.
		if resp.StatusCode != http.StatusOK && !strings.HasPrefix(text, "last render failed") && !strings.HasPrefix(text, "rendered with") &&
			!strings.HasPrefix(text, "rendering held") {
			return "confd: " + oneLine(text)
		}
	}
	if _, err := os.Stat(o.BirdConfig); err != nil {
		return fmt.Sprintf("%s does not exist yet", o.BirdConfig)
	}
	return ""
}

// childEnv is base with the given variables set (replacing any there).
func childEnv(base []string, set map[string]string) []string {
	out := make([]string, 0, len(base)+len(set))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := set[k]; ok {
			continue
		}
		out = append(out, kv)
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if set[k] != "" {
			out = append(out, k+"="+set[k])
		}
	}
	return out
}

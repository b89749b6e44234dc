package bgp

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/roostnet/roost/api"
)

// maxSecretSize bounds what is read from a secret file. TCP-MD5 keys are
// at most 80 bytes (TCP_MD5SIG_MAXKEYLEN); anything much larger is a
// mistake.
const (
	maxSecretSize  = 4096
	maxMD5KeyBytes = 80
)

// missingSecret is a secret that does not exist (or cannot: no secrets
// directory), as opposed to one that exists but is unusable.
type missingSecret struct{ error }

func isMissing(err error) bool {
	var m *missingSecret
	return errors.As(err, &m)
}

// secretReader resolves BGP passwords from files: <dir>/<secret name>/<key>,
// content trimmed of one trailing newline. Lookups are cached for one
// Compute so that a mesh of N nodes sharing nodeMeshPassword reads the
// file once.
type secretReader struct {
	dir   string
	cache map[string]secretResult
}

type secretResult struct {
	value string
	err   error
}

func newSecretReader(dir string) *secretReader {
	return &secretReader{dir: dir, cache: map[string]secretResult{}}
}

// read returns the password of ref, or an error saying why there is none.
// The error never contains the value.
func (r *secretReader) read(ref *api.SecretKeySelector) (string, error) {
	id := ref.Name + "/" + ref.Key
	if res, ok := r.cache[id]; ok {
		return res.value, res.err
	}
	v, err := r.load(ref)
	r.cache[id] = secretResult{v, err}
	return v, err
}

func (r *secretReader) load(ref *api.SecretKeySelector) (string, error) {
	if r.dir == "" {
		return "", &missingSecret{fmt.Errorf("no secrets directory is configured (confd --secrets-dir); expected the password in <dir>/%s/%s", ref.Name, ref.Key)}
	}
	for _, part := range []string{ref.Name, ref.Key} {
		if part == "" || part == "." || part == ".." || strings.ContainsAny(part, "/\\\x00") {
			return "", fmt.Errorf("secret name %q / key %q cannot name a file", ref.Name, ref.Key)
		}
	}
	// OpenInRoot keeps symlinks (Kubernetes secret volumes use them)
	// inside the secrets directory.
	f, err := os.OpenInRoot(r.dir, ref.Name+"/"+ref.Key)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", &missingSecret{fmt.Errorf("secret %s/%s not found in %s", ref.Name, ref.Key, r.dir)}
		}
		return "", fmt.Errorf("secret %s/%s: %v", ref.Name, ref.Key, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretSize+1))
	if err != nil {
		return "", fmt.Errorf("secret %s/%s: %v", ref.Name, ref.Key, err)
	}
	if len(b) > maxSecretSize {
		return "", fmt.Errorf("secret %s/%s is larger than %d bytes", ref.Name, ref.Key, maxSecretSize)
	}
	s := string(b)
	if t, ok := strings.CutSuffix(s, "\n"); ok {
		s = strings.TrimSuffix(t, "\r")
	}
	return s, nil
}

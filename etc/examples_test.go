package etc

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/roostnet/roost/api"
)

// The shipped examples must stay valid as the API evolves.
func TestExamplesAreValid(t *testing.T) {
	files, err := filepath.Glob("examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	kinds := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := api.DecodeAll(data, f, api.DecodeOptions{})
		if err != nil {
			t.Errorf("%v", err)
		}
		for _, o := range objs {
			kinds[o.ResourceKind()] = true
		}
	}
	for _, k := range []string{api.KindBGPConfiguration, api.KindBGPPeer, api.KindIPPool, api.KindBGPFilter, api.KindNode, api.KindBlockAffinity, api.KindBFDProfile, api.KindCalicoNodeStatus} {
		if !kinds[k] {
			t.Errorf("no example of %s", k)
		}
	}
}

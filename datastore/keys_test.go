package datastore

import (
	"testing"

	"github.com/roostnet/roost/api"
)

func TestRoostKeys(t *testing.T) {
	p := &api.BFDProfile{}
	p.Metadata.Name = "fast"
	key, err := KeyFor(p)
	if err != nil || key != "/roost/resources/v1/bfdprofiles/fast" {
		t.Fatalf("KeyFor = %q, %v", key, err)
	}
	if got := KindPrefix(api.KindBFDProfile); got != "/roost/resources/v1/bfdprofiles/" {
		t.Errorf("KindPrefix = %q", got)
	}
	info, err := ParseKey(key)
	if err != nil || info.Kind != api.KindBFDProfile || info.Name != "fast" {
		t.Errorf("ParseKey = %+v, %v", info, err)
	}
	for _, bad := range []string{"/roost/resources/v1/bfdprofiles/", "/roost/resources/v1/bfdprofiles/a/b", "/roost/resources/v1/nodes/x", "/roost/other"} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
	// Stored JSON carries roost.io/v1 and decodes back from the key alone.
	data, err := EncodeValue(p)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := DecodeValue(key, []byte(`{"spec":{"detectMultiplier":4}}`), 7)
	if err != nil {
		t.Fatal(err)
	}
	bp := obj.(*api.BFDProfile)
	if bp.Metadata.Name != "fast" || *bp.Spec.DetectMultiplier != 4 || bp.Metadata.ResourceVersion != "7" {
		t.Errorf("decoded %+v", bp)
	}
	if want := `{"kind":"BFDProfile","apiVersion":"roost.io/v1","metadata":{"name":"fast"},"spec":{}}`; string(data) != want {
		t.Errorf("stored %s, want %s", data, want)
	}
}

func TestCalicoNodeStatusKey(t *testing.T) {
	s := &api.CalicoNodeStatus{}
	s.Metadata.Name = "node1-status"
	key, err := KeyFor(s)
	if err != nil || key != "/calico/resources/v3/projectcalico.org/caliconodestatuses/node1-status" {
		t.Fatalf("KeyFor = %q, %v", key, err)
	}
	if got := KindPrefix(api.KindCalicoNodeStatus); got != "/calico/resources/v3/projectcalico.org/caliconodestatuses/" {
		t.Errorf("KindPrefix = %q", got)
	}
	info, err := ParseKey(key)
	if err != nil || info.Kind != api.KindCalicoNodeStatus || info.Name != "node1-status" {
		t.Errorf("ParseKey = %+v, %v", info, err)
	}
}

// TestProfileKey: Profiles live where Calico keeps them, so the kns.<ns>
// profiles Calico's controllers write are found.
func TestProfileKey(t *testing.T) {
	p := &api.Profile{}
	p.Metadata.Name = "kns.prod"
	key, err := KeyFor(p)
	if err != nil || key != "/calico/resources/v3/projectcalico.org/profiles/kns.prod" {
		t.Fatalf("KeyFor = %q, %v", key, err)
	}
	if info, err := ParseKey(key); err != nil || info.Kind != api.KindProfile || info.Name != "kns.prod" {
		t.Errorf("ParseKey = %+v, %v", info, err)
	}
}

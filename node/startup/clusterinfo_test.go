package startup

import (
	"context"
	"regexp"
	"testing"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/internal/dstest"
)

// TestEnsureClusterInformation: created as calico-node creates it, then
// kept: an existing GUID, an explicit datastoreReady false, a Calico
// version and fields Roost does not know survive; clusterType entries
// are merged.
func TestEnsureClusterInformation(t *testing.T) {
	ctx := context.Background()
	ds := dstest.NewFile(t)
	ci, err := EnsureClusterInformation(ctx, ds, "", quiet())
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(ci.Spec.ClusterGUID) || ci.Spec.ClusterType != DefaultClusterType ||
		!ci.Spec.Ready() || ci.Spec.DatastoreReady == nil || ci.Spec.CalicoVersion != "" {
		t.Fatalf("created %+v", ci.Spec)
	}
	key := datastore.ResourceKey(api.KindClusterInformation, "", "default")
	kv, err := ds.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if md := kv.Value.Meta(); md.UID == "" || md.CreationTimestamp == nil {
		t.Errorf("not stamped: %+v", md)
	}
	rev := kv.Revision
	// Again: nothing to write.
	if _, err := EnsureClusterInformation(ctx, ds, "", quiet()); err != nil {
		t.Fatal(err)
	}
	if kv, _ := ds.Get(ctx, key); kv.Revision != rev {
		t.Errorf("rewritten without a change")
	}

	// One Calico wrote.
	ds2 := dstest.NewFile(t)
	obj, err := datastore.DecodeValue(key, []byte(`{"kind":"ClusterInformation","apiVersion":"projectcalico.org/v3","metadata":{"name":"default","uid":"u1","creationTimestamp":"2024-01-02T03:04:05Z"},`+
		`"spec":{"clusterGUID":"abc","clusterType":"k8s,bgp","calicoVersion":"v3.31.0","datastoreReady":false,"future":1}}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ds2.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}
	ci, err = EnsureClusterInformation(ctx, ds2, "k8s,roost", quiet())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := ds2.Get(ctx, key)
	c := got.Value.(*api.ClusterInformation)
	if c.Spec.ClusterGUID != "abc" || c.Spec.ClusterType != "k8s,bgp,roost" || c.Spec.CalicoVersion != "v3.31.0" || c.Spec.Ready() ||
		c.Metadata.UID != "u1" || len(api.UnknownFields(c)) != 1 || ci.Spec.Ready() {
		t.Errorf("after ensure: %+v %+v unknown %v", c.Metadata, c.Spec, api.UnknownFields(c))
	}
}

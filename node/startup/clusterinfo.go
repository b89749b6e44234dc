package startup

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/internal/backoff"
)

// DefaultClusterType is the clusterType roost-node records when
// CLUSTER_TYPE is not set.
const DefaultClusterType = "roost,bgp"

// EnsureClusterInformation makes sure ClusterInformation "default"
// exists, as calico-node does at start (calicoctl version and ipam check
// need it): a new one gets a cluster GUID (32 hex digits), clusterType and
// datastoreReady true. An existing one keeps its values; what is missing
// is filled in (GUID; datastoreReady when unset, never overriding false)
// and the entries of clusterType (comma-separated) not there yet are
// appended, as Calico merges them. calicoVersion is never written:
// calicoctl refuses to run when it differs from its own version.
func EnsureClusterInformation(ctx context.Context, ds datastore.Datastore, clusterType string, log logrus.FieldLogger) (*api.ClusterInformation, error) {
	if clusterType == "" {
		clusterType = DefaultClusterType
	}
	key := datastore.ResourceKey(api.KindClusterInformation, "", api.DefaultClusterInformationName)
	bo := backoff.New(backoff.Policy{Min: 5 * time.Millisecond, Max: 250 * time.Millisecond})
	for range 50 {
		kv, err := ds.Get(ctx, key)
		var ci *api.ClusterInformation
		var rev int64
		switch {
		case errors.Is(err, datastore.ErrNotFound):
			ci = &api.ClusterInformation{}
			ci.Metadata.Name = api.DefaultClusterInformationName
		case err != nil:
			return nil, fmt.Errorf("reading ClusterInformation: %w", err)
		default:
			var ok bool
			if ci, ok = kv.Value.(*api.ClusterInformation); !ok {
				return nil, fmt.Errorf("%s is not a ClusterInformation", key)
			}
			rev = kv.Revision
		}
		changed := rev == 0
		if ci.Spec.ClusterGUID == "" {
			ci.Spec.ClusterGUID = strings.ReplaceAll(datastore.NewUID(), "-", "")
			changed = true
		}
		if ci.Spec.DatastoreReady == nil {
			ready := true
			ci.Spec.DatastoreReady = &ready
			changed = true
		}
		if merged := mergeClusterType(ci.Spec.ClusterType, clusterType); merged != ci.Spec.ClusterType {
			ci.Spec.ClusterType = merged
			changed = true
		}
		if !changed {
			return ci, nil
		}
		ci.Metadata.ResourceVersion = ""
		if rev == 0 {
			_, err = ds.Create(ctx, ci)
		} else {
			_, err = ds.Update(ctx, &datastore.KV{Key: key, Value: ci, Revision: rev})
		}
		if err == nil {
			log.WithFields(logrus.Fields{"clusterGUID": ci.Spec.ClusterGUID, "clusterType": ci.Spec.ClusterType, "created": rev == 0}).
				Info("startup: ClusterInformation default written")
			return ci, nil
		}
		if !errors.Is(err, datastore.ErrConflict) && !errors.Is(err, datastore.ErrExists) && !errors.Is(err, datastore.ErrNotFound) {
			return nil, fmt.Errorf("writing ClusterInformation: %w", err)
		}
		if err := backoff.Sleep(ctx, bo.Next()); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("writing ClusterInformation: other writers kept changing it")
}

// mergeClusterType appends the entries of add missing from have.
func mergeClusterType(have, add string) string {
	var out []string
	seen := map[string]bool{}
	for _, list := range []string{have, add} {
		for _, t := range strings.Split(list, ",") {
			if t = strings.TrimSpace(t); t != "" && !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		}
	}
	if len(out) == 0 {
		return have
	}
	if strings.Join(out, ",") == have {
		return have
	}
	return strings.Join(out, ",")
}

package ipam

import (
	"context"
	"errors"
	"fmt"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

// DefaultMaxBlocksPerHost is Calico's safeguard against runaway block
// claims when the IPAMConfiguration sets no maxBlocksPerHost.
const DefaultMaxBlocksPerHost = 20

// Config returns the cluster's IPAM settings: the IPAMConfiguration at
// /calico/ipam/v2/config (what `calicoctl ipam configure` writes), else
// Calico's defaults (no strict affinity, blocks claimed automatically).
// A value that cannot be decoded is an error, not the defaults: strict
// affinity must never be lost to a typo.
func (c *Client) Config(ctx context.Context) (api.IPAMConfigurationSpec, error) {
	kv, err := c.ds.Get(ctx, datastore.IPAMConfigKey)
	if errors.Is(err, datastore.ErrNotFound) {
		return api.IPAMConfigurationSpec{}, nil
	}
	if err != nil {
		return api.IPAMConfigurationSpec{}, fmt.Errorf("ipam: reading the IPAM configuration: %w", err)
	}
	cfg, ok := kv.Value.(*api.IPAMConfiguration)
	if !ok {
		return api.IPAMConfigurationSpec{}, fmt.Errorf("%s: not an IPAMConfiguration", kv.Key)
	}
	return cfg.Spec, nil
}

// maxBlocks is the number of blocks of a family and pool set a node may
// hold.
func maxBlocks(cfg api.IPAMConfigurationSpec) int {
	if cfg.MaxBlocksPerHost > 0 {
		return cfg.MaxBlocksPerHost
	}
	return DefaultMaxBlocksPerHost
}

// Package connect opens the datastore backend a Config selects. It lives
// apart from package datastore so that the interface does not import its
// implementations.
package connect

import (
	"context"
	"fmt"

	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/etcd"
	"github.com/roostnet/roost/datastore/file"
)

// Open normalizes cfg and opens its backend.
func Open(ctx context.Context, cfg datastore.Config) (datastore.Datastore, error) {
	if err := cfg.Normalize(); err != nil {
		return nil, err
	}
	switch cfg.Type {
	case datastore.TypeEtcd:
		s, err := etcd.New(ctx, cfg)
		if err != nil {
			return nil, err
		}
		return s, nil
	case datastore.TypeFile:
		s, err := file.New(ctx, cfg.File)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("datastore: unsupported type %q", cfg.Type)
}

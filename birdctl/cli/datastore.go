package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/connect"
	"github.com/roostnet/roost/internal/settings"
)

// addDatastoreFlags registers the datastore flags on a command: the
// settings confd and roost-node take too, with the same names and help.
func (a *app) addDatastoreFlags(cmd *cobra.Command) {
	settings.Register(cmd.Flags(), settings.Datastore(&datastore.Config{}))
	cmd.RegisterFlagCompletionFunc("datastore-type", cobra.FixedCompletions([]string{datastore.TypeEtcd, datastore.TypeFile}, cobra.ShellCompDirectiveNoFileComp))
}

// dsConfig resolves the datastore flags over Calico's environment
// variables.
func (a *app) dsConfig(cmd *cobra.Command) (datastore.Config, error) {
	var cfg datastore.Config
	err := settings.Resolve(cmd.Flags(), settings.Datastore(&cfg), a.env.Getenv, nil)
	return cfg, err
}

// openDatastore is every datastore command's preamble: it connects to
// the configured backend and returns a context bounded by --timeout for
// the whole command. done closes the datastore and ends the context.
func (a *app) openDatastore(cmd *cobra.Command) (ctx context.Context, ds datastore.Datastore, done func(), err error) {
	return a.openDatastoreFor(cmd, a.timeout)
}

// openDatastoreFor is openDatastore for a command that may take longer
// than --timeout (it waits for something), bounded by limit.
func (a *app) openDatastoreFor(cmd *cobra.Command, limit time.Duration) (ctx context.Context, ds datastore.Datastore, done func(), err error) {
	cfg, err := a.dsConfig(cmd)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := cfg.Normalize(); err != nil {
		return nil, nil, nil, err
	}
	a.dsType = cfg.Type
	ctx, cancel := context.WithTimeout(cmd.Context(), limit)
	// A CLI says only what matters: backend warnings, not connection chatter.
	log := logrus.New()
	log.SetOutput(a.env.Stderr)
	log.SetLevel(logrus.WarnLevel)
	ds, err = connect.Open(ctx, cfg, connect.WithLogger(log))
	if err != nil {
		cancel()
		return nil, nil, nil, fmt.Errorf("open datastore (%s): %w", cfg, err)
	}
	return ctx, ds, func() { ds.Close(); cancel() }, nil
}

// current reads key for a write: a broken value (present, but it cannot
// be decoded) counts as existing, with its revision and no value, so
// that apply, replace and delete can fix it; a missing key gives an
// error wrapping datastore.ErrNotFound.
func current(ctx context.Context, ds datastore.Datastore, key string) (*datastore.KV, error) {
	kv, err := ds.Get(ctx, key)
	var broken *datastore.DecodeError
	if errors.As(err, &broken) {
		return &datastore.KV{Key: key, Revision: broken.Revision}, nil
	}
	return kv, err
}

// placeholder stands for the object at key when its value is broken, so
// that messages can name it.
func placeholder(kind, key string) api.Resource {
	obj := api.New(kind)
	if info, err := datastore.ParseKey(key); err == nil && obj != nil {
		obj.Meta().Name, obj.Meta().Namespace = info.Name, info.Namespace
	}
	return obj
}

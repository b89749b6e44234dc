// Package connect opens the datastore backend a Config selects. It lives
// apart from package datastore so that the interface does not import its
// implementations.
package connect

import (
	"context"
	"fmt"

	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/etcd"
	"github.com/roostnet/roost/datastore/file"
)

// Option tunes Open.
type Option func(*options)

type options struct{ log *logrus.Logger }

// WithLogger sends the backend's logs to l (default: logrus's standard
// logger), so they follow the program's level and format.
func WithLogger(l *logrus.Logger) Option { return func(o *options) { o.log = l } }

// Open normalizes cfg and opens its backend.
func Open(ctx context.Context, cfg datastore.Config, opts ...Option) (datastore.Datastore, error) {
	o := options{log: logrus.StandardLogger()}
	for _, opt := range opts {
		opt(&o)
	}
	if err := cfg.Normalize(); err != nil {
		return nil, err
	}
	switch cfg.Type {
	case datastore.TypeEtcd:
		s, err := etcd.New(ctx, cfg, etcd.WithLogger(logrus.NewEntry(o.log)))
		if err != nil {
			return nil, err
		}
		return s, nil
	case datastore.TypeFile:
		s, err := file.New(ctx, cfg.File, file.WithLogger(o.log.WithField("component", "datastore-file")))
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("datastore: unsupported type %q", cfg.Type)
}

// Probe opens cfg's backend afresh — a new connection, authenticated anew
// — checks that it answers (Open does) and closes it: whether the
// datastore answers apart from a program's long-lived connection.
func Probe(ctx context.Context, cfg datastore.Config, opts ...Option) error {
	ds, err := Open(ctx, cfg, opts...)
	if err != nil {
		return err
	}
	return ds.Close()
}

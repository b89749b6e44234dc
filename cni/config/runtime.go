package config

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/connect"
	"github.com/roostnet/roost/node/ipam"
)

// Logger is the plugin's logger: to log_file_path (appended, created
// 0600) or else stderr, which the runtime keeps; at log_level (default
// warning). Nothing goes to stdout, which carries the result.
func (c *NetConf) Logger(plugin string) (*logrus.Logger, func(), error) {
	l := logrus.New()
	l.SetOutput(os.Stderr)
	l.SetLevel(logrus.WarnLevel)
	done := func() {}
	if c.LogLevel != "" {
		lvl, err := logrus.ParseLevel(c.LogLevel)
		if err != nil {
			return nil, nil, Invalid("log_level", c.LogLevel, "use debug, info, warning or error")
		}
		l.SetLevel(lvl)
	}
	if c.LogFilePath != "" {
		if err := os.MkdirAll(filepath.Dir(c.LogFilePath), 0o755); err != nil {
			return nil, nil, Invalid("log_file_path", c.LogFilePath, err.Error())
		}
		f, err := os.OpenFile(c.LogFilePath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, nil, Invalid("log_file_path", c.LogFilePath, err.Error())
		}
		l.SetOutput(io.MultiWriter(f))
		done = func() { f.Close() }
	}
	return l, done, nil
}

// OpenDatastore connects within ctx's deadline; an unreachable datastore
// is a "try again later" error naming it.
func (c *NetConf) OpenDatastore(ctx context.Context, log *logrus.Logger) (datastore.Datastore, error) {
	cfg := c.Datastore()
	if err := cfg.Normalize(); err != nil {
		return nil, Invalid("datastore_type", cfg.Type, err.Error())
	}
	ds, err := connect.Open(ctx, cfg, connect.WithLogger(log))
	if err != nil {
		return nil, Unreachable(cfg, c.Timeout().String(), err)
	}
	return ds, nil
}

// Unreachable is the error of a datastore that does not answer.
func Unreachable(cfg datastore.Config, timeout string, err error) *types.Error {
	what := cfg.String()
	field, value := "etcd_endpoints", cfg.EtcdEndpoints
	if cfg.Type == datastore.TypeFile {
		field, value = "datastore_file", cfg.File
	}
	msg := fmt.Sprintf("datastore unreachable: %s", what)
	if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "deadline exceeded") {
		msg += " (no answer within " + timeout + ", datastore_timeout_seconds)"
	}
	return types.NewError(types.ErrTryAgainLater, msg, fmt.Sprintf("field %s, value %s: %v", field, value, err))
}

// DatastoreError turns an error of a datastore operation into a CNI
// error: a timeout or lost connection is "try again later".
func (c *NetConf) DatastoreError(what string, err error) *types.Error {
	var te *types.Error
	if errors.As(err, &te) {
		return te
	}
	switch {
	case errors.Is(err, ipam.ErrExhausted), errors.Is(err, ipam.ErrNoPool), errors.Is(err, ipam.ErrBlockLimit), errors.Is(err, ipam.ErrStrictAffinity):
		return types.NewError(ErrNoAddress, what+": "+err.Error(), fmt.Sprintf("ipv4_pools %v, ipv6_pools %v", c.IPAM.IPv4Pools, c.IPAM.IPv6Pools))
	case errors.Is(err, ipam.ErrInUse):
		return types.NewError(ErrNoAddress, what+": "+err.Error(), "")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return Unreachable(c.Datastore(), c.Timeout().String(), err)
	}
	return types.NewError(types.ErrInternal, what+": "+err.Error(), "")
}

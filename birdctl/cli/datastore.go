package cli

import (
	"github.com/sirupsen/logrus"

	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/connect"
)

// dsFlags are confd's datastore flags; unset ones fall back to Calico's
// environment variables.
type dsFlags struct {
	typ, file                string
	endpoints, ca, cert, key string
	username, password       string
}

var dsFlagDefs = []struct {
	name, env, help string
	field           func(*dsFlags) *string
}{
	{"datastore-type", datastore.EnvType, "datastore backend: etcdv3 or file", func(f *dsFlags) *string { return &f.typ }},
	{"datastore-file", datastore.EnvFile, "YAML file or directory of the file datastore (default " + datastore.DefaultFile + ")", func(f *dsFlags) *string { return &f.file }},
	{"etcd-endpoints", datastore.EnvEtcdEndpoints, "comma-separated etcd URLs", func(f *dsFlags) *string { return &f.endpoints }},
	{"etcd-ca-cert-file", datastore.EnvEtcdCACert, "CA certificate for etcd TLS", func(f *dsFlags) *string { return &f.ca }},
	{"etcd-cert-file", datastore.EnvEtcdCert, "client certificate for etcd TLS", func(f *dsFlags) *string { return &f.cert }},
	{"etcd-key-file", datastore.EnvEtcdKey, "client key for etcd TLS", func(f *dsFlags) *string { return &f.key }},
	{"etcd-username", datastore.EnvEtcdUsername, "etcd user", func(f *dsFlags) *string { return &f.username }},
	{"etcd-password", datastore.EnvEtcdPassword, "etcd password (prefer the environment)", func(f *dsFlags) *string { return &f.password }},
}

// addDatastoreFlags registers the datastore flags on a command.
func (a *app) addDatastoreFlags(cmd *cobra.Command) {
	fs := cmd.Flags()
	for _, d := range dsFlagDefs {
		fs.StringVar(d.field(&a.ds), d.name, "", fmt.Sprintf("%s [$%s]", d.help, d.env))
	}
	cmd.RegisterFlagCompletionFunc("datastore-type", cobra.FixedCompletions([]string{datastore.TypeEtcd, datastore.TypeFile}, cobra.ShellCompDirectiveNoFileComp))
}

// dsConfig resolves flags over environment variables.
func (a *app) dsConfig(cmd *cobra.Command) datastore.Config {
	env := datastore.FromEnv(a.env.Getenv)
	envVals := map[string]string{
		"datastore-type": env.Type, "datastore-file": env.File, "etcd-endpoints": env.EtcdEndpoints,
		"etcd-ca-cert-file": env.EtcdCACert, "etcd-cert-file": env.EtcdCert, "etcd-key-file": env.EtcdKey,
		"etcd-username": env.EtcdUsername, "etcd-password": env.EtcdPassword,
	}
	for _, d := range dsFlagDefs {
		if !cmd.Flags().Changed(d.name) {
			*d.field(&a.ds) = envVals[d.name]
		}
	}
	return datastore.Config{
		Type: a.ds.typ, File: a.ds.file,
		EtcdEndpoints: a.ds.endpoints, EtcdCACert: a.ds.ca, EtcdCert: a.ds.cert, EtcdKey: a.ds.key,
		EtcdUsername: a.ds.username, EtcdPassword: a.ds.password,
	}
}

// openDatastore is every datastore command's preamble: it connects to
// the configured backend and returns a context bounded by --timeout for
// the whole command. done closes the datastore and ends the context.
func (a *app) openDatastore(cmd *cobra.Command) (ctx context.Context, ds datastore.Datastore, done func(), err error) {
	cfg := a.dsConfig(cmd)
	if err := cfg.Normalize(); err != nil {
		return nil, nil, nil, err
	}
	a.dsType = cfg.Type
	ctx, cancel := context.WithTimeout(cmd.Context(), a.timeout)
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

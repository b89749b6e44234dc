package settings

import (
	"strings"

	"github.com/roostnet/roost/datastore"
)

// Datastore declares the datastore settings of every program, filling c:
// the same flags, variables (Calico's names), config file keys (the flag
// name with "_") and help texts in confd, roost-node and birdctl.
// Defaults are applied later by datastore.Config.Normalize.
func Datastore(c *datastore.Config) []*Setting {
	return []*Setting{
		ds("datastore-type", datastore.EnvType, "etcdv3 or file (default: etcdv3 when "+datastore.EnvEtcdEndpoints+" is set, else file)", &c.Type),
		ds("datastore-file", datastore.EnvFile, "YAML file or directory for the file datastore (default "+datastore.DefaultFile+")", &c.File),
		ds("etcd-endpoints", datastore.EnvEtcdEndpoints, "comma-separated etcd URLs (default http://127.0.0.1:2379)", &c.EtcdEndpoints),
		ds("etcd-ca-cert-file", datastore.EnvEtcdCACert, "CA certificate for etcd TLS", &c.EtcdCACert),
		ds("etcd-cert-file", datastore.EnvEtcdCert, "client certificate for etcd TLS", &c.EtcdCert),
		ds("etcd-key-file", datastore.EnvEtcdKey, "client key for etcd TLS", &c.EtcdKey),
		ds("etcd-username", datastore.EnvEtcdUsername, "etcd user", &c.EtcdUsername),
		{Flag: "etcd-password", Env: datastore.EnvEtcdPassword, File: "etcd_password", Secret: true,
			Help: "etcd password (prefer the environment: flags show in the process list)", Parse: String(&c.EtcdPassword)},
	}
}

func ds(flag, env, help string, p *string) *Setting {
	return &Setting{Flag: flag, Env: env, File: strings.ReplaceAll(flag, "-", "_"), Help: help, Parse: String(p)}
}

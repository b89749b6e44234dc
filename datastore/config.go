package datastore

import (
	"fmt"
	"strings"
)

// Backend names, as in DATASTORE_TYPE.
const (
	TypeEtcd = "etcdv3"
	TypeFile = "file"
)

// Config selects and configures a backend. The environment variable names
// are Calico's, so existing calico-node settings carry over.
type Config struct {
	Type string // DATASTORE_TYPE: etcdv3 | file (default file)
	File string // DATASTORE_FILE: a YAML file or a directory of them

	EtcdEndpoints string // ETCD_ENDPOINTS, comma separated URLs
	EtcdCACert    string // ETCD_CA_CERT_FILE
	EtcdCert      string // ETCD_CERT_FILE
	EtcdKey       string // ETCD_KEY_FILE
	EtcdUsername  string // ETCD_USERNAME
	EtcdPassword  string // ETCD_PASSWORD (never logged)
}

// Env variable names per field, for flags' help texts and for FromEnv.
const (
	EnvType          = "DATASTORE_TYPE"
	EnvFile          = "DATASTORE_FILE"
	EnvEtcdEndpoints = "ETCD_ENDPOINTS"
	EnvEtcdCACert    = "ETCD_CA_CERT_FILE"
	EnvEtcdCert      = "ETCD_CERT_FILE"
	EnvEtcdKey       = "ETCD_KEY_FILE"
	EnvEtcdUsername  = "ETCD_USERNAME"
	EnvEtcdPassword  = "ETCD_PASSWORD"
)

// DefaultFile is where the file backend looks when DATASTORE_FILE is unset.
const DefaultFile = "/etc/roost/resources"

// FromEnv fills a Config from environment variables (lookup is os.Getenv
// in programs; tests pass their own).
func FromEnv(lookup func(string) string) Config {
	return Config{
		Type:          lookup(EnvType),
		File:          lookup(EnvFile),
		EtcdEndpoints: lookup(EnvEtcdEndpoints),
		EtcdCACert:    lookup(EnvEtcdCACert),
		EtcdCert:      lookup(EnvEtcdCert),
		EtcdKey:       lookup(EnvEtcdKey),
		EtcdUsername:  lookup(EnvEtcdUsername),
		EtcdPassword:  lookup(EnvEtcdPassword),
	}
}

// Normalize applies defaults and checks the combination.
func (c *Config) Normalize() error {
	if c.Type == "" {
		c.Type = TypeFile
		if c.EtcdEndpoints != "" && c.File == "" {
			c.Type = TypeEtcd
		}
	}
	switch c.Type {
	case TypeFile:
		if c.File == "" {
			c.File = DefaultFile
		}
	case TypeEtcd, "etcd":
		c.Type = TypeEtcd
		if c.EtcdEndpoints == "" {
			c.EtcdEndpoints = "http://127.0.0.1:2379"
		}
		if (c.EtcdCert == "") != (c.EtcdKey == "") {
			return fmt.Errorf("datastore: %s and %s must be set together", EnvEtcdCert, EnvEtcdKey)
		}
	default:
		return fmt.Errorf("datastore: %s=%q is not supported (use %s or %s)", EnvType, c.Type, TypeEtcd, TypeFile)
	}
	return nil
}

// Endpoints splits EtcdEndpoints.
func (c *Config) Endpoints() []string {
	var out []string
	for _, e := range strings.Split(c.EtcdEndpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// String describes the backend without secrets, for logs.
func (c Config) String() string {
	if c.Type == TypeEtcd {
		return fmt.Sprintf("etcdv3 %s", c.EtcdEndpoints)
	}
	return fmt.Sprintf("file %s", c.File)
}

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/roostnet/roost/internal/settings"
	"github.com/roostnet/roost/node/cniinstall"
	"github.com/roostnet/roost/node/config"
	"github.com/roostnet/roost/node/startup"
)

func installCNICmd() *cobra.Command {
	var cfg config.Run
	list := cfg.InstallCNISettings()
	cmd := &cobra.Command{
		Use:   "install-cni [--bin-dir DIR] [--conf-dir DIR]",
		Short: "install the CNI plugin (roost, roost-ipam) and " + cniinstall.ConfName + " for this node",
		Long: "Copies roost-cni into the CNI binary directory as roost and roost-ipam and writes " + cniinstall.ConfName + "\n" +
			"(network \"roost\") with this node's name and datastore settings into the CNI configuration directory,\n" +
			"each atomically (temporary file, then rename) and only when its content changes. It reads the same\n" +
			"settings as `run` (NODENAME, DATASTORE_TYPE, ETCD_*, IP6, ROOST_MTU_FILE). The configuration is\n" +
			"world-readable and holds no secret: etcd TLS files are passed as paths, and etcd password\n" +
			"authentication is refused. `run --install-cni` (ROOST_INSTALL_CNI=true) does the same at start.\n" +
			"See docs/install.md.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := settings.Resolve(cmd.Flags(), list, os.Getenv, nil); err != nil {
				return err
			}
			log, err := newLogger(&cfg.Common)
			if err != nil {
				return err
			}
			res, err := installCNI(&cfg, log)
			if err != nil {
				return err
			}
			state := "unchanged"
			if res.ConfWritten {
				state = "written"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", res.Conf, state)
			written := map[string]bool{}
			for _, w := range res.Written {
				written[w] = true
			}
			for _, b := range res.Binaries {
				state := "unchanged"
				if written[b] {
					state = "written"
				}
				delete(written, b)
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", b, state)
			}
			for _, w := range res.Written { // copied TLS files
				if written[w] {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: written\n", w)
				}
			}
			return nil
		},
	}
	settings.Register(cmd.Flags(), list)
	return cmd
}

// installCNI installs the plugin and its configuration for the node cfg
// describes (install-cni, run --install-cni).
func installCNI(cfg *config.Run, log logrus.FieldLogger) (cniinstall.Result, error) {
	name, err := startup.NodeName(cfg.NodeName)
	if err != nil {
		return cniinstall.Result{}, err
	}
	plugin := cfg.CNI.Plugin
	if plugin == "" {
		exe, err := os.Executable()
		if err != nil {
			return cniinstall.Result{}, fmt.Errorf("cni: locating roost-cni next to roost-node: %w (set ROOST_CNI_PLUGIN)", err)
		}
		plugin = filepath.Join(filepath.Dir(exe), "roost-cni")
	}
	ip6 := strings.ToLower(strings.TrimSpace(cfg.Startup.IP6))
	res, err := cniinstall.Install(cniinstall.Options{
		Plugin: plugin, BinDir: cfg.CNI.BinDir, ConfDir: cfg.CNI.ConfDir,
		NodeName: name, Datastore: cfg.Datastore, MTUFile: cfg.Dataplane.MTUFile,
		LogLevel: cfg.CNI.LogLevel, LogFile: cfg.CNI.LogFile,
		IPv6:   ip6 != "" && ip6 != "none",
		TLSDir: cfg.CNI.TLSDir, HostTLSDir: cfg.CNI.HostTLSDir,
	})
	if err != nil {
		return res, err
	}
	log.WithFields(logrus.Fields{
		"conf": res.Conf, "confWritten": res.ConfWritten, "binaries": res.Binaries, "filesWritten": len(res.Written),
	}).Info("CNI plugin installed")
	return res, nil
}

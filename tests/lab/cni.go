package lab

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// CNI calls Roost's CNI plugin on a lab host through libcni, as a
// container runtime does (without the runtime): the plugin is installed
// by `roost-node install-cni` into BinDir and NetDir, and every call runs
// it from the host's network namespace.
type CNI struct {
	Host   *Host
	BinDir string
	NetDir string
	List   *libcni.NetworkConfigList
	Config *libcni.CNIConfig
}

// InstallCNI runs `roost-node install-cni` for h into dir/cni-bin and
// dir/net.d (extra environment: env) and returns the output (one line per
// file, written or unchanged).
func (l *Lab) InstallCNI(ctx context.Context, h *Host, binDir, netDir string, env ...string) (string, error) {
	e := append(l.NodeEnv(h), "ROOST_CNI_PLUGIN="+l.Bin("roost-cni"), "ROOST_CNI_LOG_FILE="+filepath.Join(h.Dir, "cni.log"), "ROOST_CNI_LOG_LEVEL=debug")
	if h.Prefix6.IsValid() {
		e = append(e, "IP6="+h.Prefix6.String())
	}
	return l.Exec(ctx, h.NS, append(e, env...), l.Bin("roost-node"), "install-cni", "--bin-dir", binDir, "--conf-dir", netDir)
}

// NewCNI installs the plugin on h (under h.Dir) and loads its
// configuration list.
func (l *Lab) NewCNI(ctx context.Context, h *Host, env ...string) (*CNI, error) {
	c := &CNI{Host: h, BinDir: filepath.Join(h.Dir, "cni-bin"), NetDir: filepath.Join(h.Dir, "net.d")}
	if out, err := l.InstallCNI(ctx, h, c.BinDir, c.NetDir, env...); err != nil {
		return nil, fmt.Errorf("install-cni: %w: %s", err, out)
	}
	list, err := libcni.ConfListFromFile(filepath.Join(c.NetDir, "10-roost.conflist"))
	if err != nil {
		return nil, err
	}
	c.List = list
	c.Config = libcni.NewCNIConfigWithCacheDir([]string{c.BinDir}, filepath.Join(h.Dir, "cni-cache"), nil)
	return c, nil
}

// Add runs ADD for rt and returns the first address of the result.
func (c *CNI) Add(ctx context.Context, rt *libcni.RuntimeConf) (string, error) {
	var ip string
	err := InNS(c.Host.NS, func() error {
		res, err := c.Config.AddNetworkList(ctx, c.List, rt)
		if err != nil {
			return err
		}
		ip, err = resultIP(res)
		return err
	})
	return ip, err
}

// Del runs DEL for rt.
func (c *CNI) Del(ctx context.Context, rt *libcni.RuntimeConf) error {
	return InNS(c.Host.NS, func() error { return c.Config.DelNetworkList(ctx, c.List, rt) })
}

// resultIP is the first address of an ADD result.
func resultIP(res types.Result) (string, error) {
	cur, err := types100.NewResultFromResult(res)
	if err != nil {
		return "", err
	}
	if len(cur.IPs) == 0 {
		return "", fmt.Errorf("ADD result without an address")
	}
	return cur.IPs[0].Address.IP.String(), nil
}

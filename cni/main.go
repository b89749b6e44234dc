// Command roost-cni is Roost's CNI plugin binary (docs/cni.md): run as
// "roost" it is the network plugin, as "roost-ipam" the IPAM plugin.
// `roost-node install-cni` installs it under both names.
package main

import (
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/roostnet/roost/cni/ipamplugin"
	"github.com/roostnet/roost/cni/plugin"
	rversion "github.com/roostnet/roost/internal/version"
)

// Supported lists the CNI specification versions both plugins speak.
var Supported = version.PluginSupports("0.3.1", "0.4.0", "1.0.0", "1.1.0")

func main() {
	name := filepath.Base(osArgs0())
	if strings.Contains(name, "ipam") {
		skel.PluginMainFuncs(skel.CNIFuncs{
			Add: ipamplugin.Add, Del: ipamplugin.Del, Check: ipamplugin.Check,
			Status: ipamplugin.Status, GC: ipamplugin.GC,
		}, Supported, "Roost IPAM plugin "+rversion.Version)
		return
	}
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add: plugin.Add, Del: plugin.Del, Check: plugin.Check,
		Status: plugin.Status, GC: plugin.GC,
	}, Supported, "Roost network plugin "+rversion.Version)
}

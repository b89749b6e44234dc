package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/roostnet/roost/node/names"
)

// VXLAN peers: one permanent neighbour (tunnel address -> MAC) and one
// FDB entry (MAC -> node address) on vxlan.calico per remote VTEP.

// syncVTEPLocked programs (or removes) one remote node's neighbour and
// FDB entry on vxlan.calico.
func (d *Dataplane) syncVTEPLocked(name string) error {
	var want *vtep
	if rn := d.nodes[name]; d.vxlanUp && rn != nil && rn.VXLANAddr.IsValid() && rn.IPv4.IsValid() {
		want = &vtep{tunnelIP: rn.VXLANAddr, mac: rn.mac().String(), nodeIP: rn.IPv4.Addr()}
	}
	old := d.vteps[name]
	idx, haveDev := d.linkIdx[names.VXLANDevice]
	if old != nil && (want == nil || *old != *want) {
		if haveDev {
			if want == nil || want.tunnelIP != old.tunnelIP || want.mac != old.mac {
				if d.neighs[old.tunnelIP] == old.mac {
					hw, _ := net.ParseMAC(old.mac)
					err := d.nl.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, IP: old.tunnelIP.AsSlice(), HardwareAddr: hw})
					if err != nil && !errors.Is(err, syscall.ENOENT) {
						return fmt.Errorf("removing neighbour %s: %w", old.tunnelIP, err)
					}
					delete(d.neighs, old.tunnelIP)
				}
			}
			if want == nil || want.mac != old.mac || want.nodeIP != old.nodeIP {
				if ip, ok := d.fdb[old.mac]; ok && ip == old.nodeIP {
					hw, _ := net.ParseMAC(old.mac)
					err := d.nl.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, IP: old.nodeIP.AsSlice(), HardwareAddr: hw})
					if err != nil && !errors.Is(err, syscall.ENOENT) {
						return fmt.Errorf("removing FDB entry %s: %w", old.mac, err)
					}
					delete(d.fdb, old.mac)
				}
			}
		}
		delete(d.vtepByIP, old.tunnelIP)
		delete(d.vtepByMAC, old.mac)
		delete(d.vteps, name)
	}
	if want == nil {
		return nil
	}
	if !haveDev {
		return nil
	}
	hw, _ := net.ParseMAC(want.mac)
	if d.neighs[want.tunnelIP] != want.mac {
		if err := d.nl.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
			IP: want.tunnelIP.AsSlice(), HardwareAddr: hw}); err != nil {
			d.obs.Error("neigh")
			return fmt.Errorf("neighbour %s -> %s: %w", want.tunnelIP, want.mac, err)
		}
		d.neighs[want.tunnelIP] = want.mac
		if d.repairVTEP[name] {
			d.drift("neigh", names.VXLANDevice, "neighbour "+want.tunnelIP.String()+" restored")
		}
	}
	if ip, ok := d.fdb[want.mac]; !ok || ip != want.nodeIP {
		if err := d.nl.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT,
			IP: want.nodeIP.AsSlice(), HardwareAddr: hw}); err != nil {
			d.obs.Error("fdb")
			return fmt.Errorf("FDB %s -> %s: %w", want.mac, want.nodeIP, err)
		}
		d.fdb[want.mac] = want.nodeIP
		if d.repairVTEP[name] {
			d.drift("fdb", names.VXLANDevice, "FDB entry "+want.mac+" restored")
		}
	}
	delete(d.repairVTEP, name)
	d.vteps[name] = want
	d.vtepByIP[want.tunnelIP] = name
	d.vtepByMAC[want.mac] = name
	return nil
}

func (d *Dataplane) loadNeighsLocked(idx int) error {
	ns, err := d.nl.NeighList(idx, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	for _, n := range ns {
		if n.LinkIndex != idx || n.State&netlink.NUD_PERMANENT == 0 {
			continue
		}
		if ip, ok := netip.AddrFromSlice(n.IP); ok {
			d.neighs[ip.Unmap()] = n.HardwareAddr.String()
		}
	}
	fdb, err := d.nl.NeighList(idx, unix.AF_BRIDGE)
	if err != nil {
		return err
	}
	for _, n := range fdb {
		if n.LinkIndex != idx || n.State&netlink.NUD_PERMANENT == 0 || len(n.IP) == 0 {
			continue
		}
		if ip, ok := netip.AddrFromSlice(n.IP); ok {
			d.fdb[n.HardwareAddr.String()] = ip.Unmap()
		}
	}
	return nil
}

// removeStaleNeighsLocked deletes permanent entries no VTEP wants.
func (d *Dataplane) removeStaleNeighsLocked() {
	idx, ok := d.linkIdx[names.VXLANDevice]
	if !ok {
		return
	}
	for ip, mac := range d.neighs {
		if _, wanted := d.vtepByIP[ip]; wanted {
			continue
		}
		hw, _ := net.ParseMAC(mac)
		if err := d.nl.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, IP: ip.AsSlice(), HardwareAddr: hw}); err != nil && !errors.Is(err, syscall.ENOENT) {
			d.log.WithError(err).WithField("ip", ip).Warn("removing stale neighbour")
			continue
		}
		delete(d.neighs, ip)
	}
	for mac, ip := range d.fdb {
		if _, wanted := d.vtepByMAC[mac]; wanted {
			continue
		}
		hw, _ := net.ParseMAC(mac)
		if err := d.nl.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, IP: ip.AsSlice(), HardwareAddr: hw}); err != nil && !errors.Is(err, syscall.ENOENT) {
			d.log.WithError(err).WithField("mac", mac).Warn("removing stale FDB entry")
			continue
		}
		delete(d.fdb, mac)
	}
}

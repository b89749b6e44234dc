package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// VXLAN peers: one permanent neighbour (tunnel address -> MAC) and one
// FDB entry (MAC -> node address) per remote VTEP, on vxlan.calico for
// IPv4 and on vxlan-v6.calico for IPv6.

// syncVTEPLocked programs (or removes) one remote node's neighbours and
// FDB entries on both VXLAN devices.
func (d *Dataplane) syncVTEPLocked(name string) error {
	var errs []error
	for _, v := range d.vx {
		if err := d.syncVTEPFamLocked(v, name); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		delete(d.repairVTEP, name)
	}
	return errors.Join(errs...)
}

func (d *Dataplane) syncVTEPFamLocked(v *vxlanFam, name string) error {
	fam := v.fam
	var want *vtep
	if rn := d.nodes[name]; v.up && rn != nil && rn.vxlanAddr(fam).IsValid() && rn.addr(fam).IsValid() {
		want = &vtep{tunnelIP: rn.vxlanAddr(fam), mac: rn.vxlanMAC(fam).String(), nodeIP: rn.addr(fam).Addr()}
	}
	old := v.vteps[name]
	if want == nil && d.hold {
		return nil // kept until the hold ends (a resync)
	}
	idx, haveDev := d.linkIdx[v.dev]
	if old != nil && (want == nil || *old != *want) {
		if haveDev {
			if want == nil || want.tunnelIP != old.tunnelIP || want.mac != old.mac {
				if v.neighs[old.tunnelIP] == old.mac {
					hw, _ := net.ParseMAC(old.mac)
					err := d.nl.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: nlFamily(fam), IP: old.tunnelIP.AsSlice(), HardwareAddr: hw})
					if err != nil && !errors.Is(err, syscall.ENOENT) {
						return fmt.Errorf("%s: removing neighbour %s: %w", v.dev, old.tunnelIP, err)
					}
					delete(v.neighs, old.tunnelIP)
				}
			}
			if want == nil || want.mac != old.mac || want.nodeIP != old.nodeIP {
				if ip, ok := v.fdb[old.mac]; ok && ip == old.nodeIP {
					hw, _ := net.ParseMAC(old.mac)
					err := d.nl.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, IP: old.nodeIP.AsSlice(), HardwareAddr: hw})
					if err != nil && !errors.Is(err, syscall.ENOENT) {
						return fmt.Errorf("%s: removing FDB entry %s: %w", v.dev, old.mac, err)
					}
					delete(v.fdb, old.mac)
				}
			}
		}
		delete(v.byIP, old.tunnelIP)
		delete(v.byMAC, old.mac)
		delete(v.vteps, name)
	}
	if want == nil || !haveDev {
		return nil
	}
	hw, _ := net.ParseMAC(want.mac)
	if v.neighs[want.tunnelIP] != want.mac {
		if err := d.nl.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: nlFamily(fam), State: netlink.NUD_PERMANENT,
			IP: want.tunnelIP.AsSlice(), HardwareAddr: hw}); err != nil {
			d.obs.Error("neigh")
			return fmt.Errorf("%s: neighbour %s -> %s: %w", v.dev, want.tunnelIP, want.mac, err)
		}
		v.neighs[want.tunnelIP] = want.mac
		if d.repairVTEP[name] {
			d.drift("neigh", v.dev, "neighbour "+want.tunnelIP.String()+" restored")
		}
	}
	if ip, ok := v.fdb[want.mac]; !ok || ip != want.nodeIP {
		if err := d.nl.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT,
			IP: want.nodeIP.AsSlice(), HardwareAddr: hw}); err != nil {
			d.obs.Error("fdb")
			return fmt.Errorf("%s: FDB %s -> %s: %w", v.dev, want.mac, want.nodeIP, err)
		}
		v.fdb[want.mac] = want.nodeIP
		if d.repairVTEP[name] {
			d.drift("fdb", v.dev, "FDB entry "+want.mac+" restored")
		}
	}
	v.vteps[name] = want
	v.byIP[want.tunnelIP] = name
	v.byMAC[want.mac] = name
	return nil
}

func (d *Dataplane) loadNeighsLocked(v *vxlanFam, idx int) error {
	ns, err := d.nl.NeighList(idx, nlFamily(v.fam))
	if err != nil {
		return err
	}
	for _, n := range ns {
		if n.LinkIndex != idx || n.State&netlink.NUD_PERMANENT == 0 {
			continue
		}
		if ip, ok := netip.AddrFromSlice(n.IP); ok {
			v.neighs[ip.Unmap()] = n.HardwareAddr.String()
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
			v.fdb[n.HardwareAddr.String()] = ip.Unmap()
		}
	}
	return nil
}

// removeStaleNeighsLocked deletes permanent entries no VTEP wants.
func (d *Dataplane) removeStaleNeighsLocked(v *vxlanFam) {
	idx, ok := d.linkIdx[v.dev]
	if !ok || d.hold {
		return
	}
	for ip, mac := range v.neighs {
		if _, wanted := v.byIP[ip]; wanted {
			continue
		}
		hw, _ := net.ParseMAC(mac)
		if err := d.nl.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: nlFamily(v.fam), IP: ip.AsSlice(), HardwareAddr: hw}); err != nil && !errors.Is(err, syscall.ENOENT) {
			d.log.WithError(err).WithFields(logrus.Fields{"ip": ip, "device": v.dev}).Warn("removing stale neighbour")
			continue
		}
		delete(v.neighs, ip)
	}
	for mac, ip := range v.fdb {
		if _, wanted := v.byMAC[mac]; wanted {
			continue
		}
		hw, _ := net.ParseMAC(mac)
		if err := d.nl.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, IP: ip.AsSlice(), HardwareAddr: hw}); err != nil && !errors.Is(err, syscall.ENOENT) {
			d.log.WithError(err).WithFields(logrus.Fields{"mac": mac, "device": v.dev}).Warn("removing stale FDB entry")
			continue
		}
		delete(v.fdb, mac)
	}
}

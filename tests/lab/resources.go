package lab

import "fmt"

// Pool is the IPv4 pool of a lab cluster's resources (see ClusterYAML).
type Pool struct {
	Name        string // "lab-pool" when empty
	CIDR        string // 10.244.0.0/16 when empty
	BlockSize   int    // 26 when 0
	VXLANMode   string // Never when empty; IPIP is always Never (no ipip module here)
	NATOutgoing bool
	NoMesh      bool // node-to-node mesh off
}

// ClusterYAML is what most lab clusters start from: the default
// BGPConfiguration (AS 64512, the mesh unless p.NoMesh) and pool p.
func ClusterYAML(p Pool) string {
	if p.Name == "" {
		p.Name = "lab-pool"
	}
	if p.CIDR == "" {
		p.CIDR = "10.244.0.0/16"
	}
	if p.BlockSize == 0 {
		p.BlockSize = 26
	}
	if p.VXLANMode == "" {
		p.VXLANMode = "Never"
	}
	return fmt.Sprintf(`apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 64512, nodeToNodeMeshEnabled: %t, logSeverityScreen: Info}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: %s}
spec: {cidr: %s, blockSize: %d, vxlanMode: %s, ipipMode: Never, natOutgoing: %t}
`, !p.NoMesh, p.Name, p.CIDR, p.BlockSize, p.VXLANMode, p.NATOutgoing)
}

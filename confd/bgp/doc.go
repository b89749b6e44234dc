// Package bgp computes a node's BGP model — its sessions, blocks, pools,
// services, communities and compiled BGPFilters — from the datastore's
// resources, for Roost's BIRD 2 templates.
//
// # Use
//
//	c := bgp.NewCache()
//	c.Apply(key, obj)        // per datastore event; obj == nil deletes key
//	m, errs := bgp.Compute(c, bgp.Options{NodeName: "node1", RouterID: os.Getenv("CALICO_ROUTER_ID"), SecretsDir: dir})
//	if err := bgp.Fatal(errs); err != nil { /* keep the last good config */ }
//	// other errs are warnings (*bgp.Problem): log them, render anyway
//
// Keys are Calico etcd keys (datastore.KeyFor / datastore.ParseKey). The
// Cache keeps indexes so that one change costs O(1) to O(log n) (plus
// O(#selectors) for a Node and O(#nodes) for a new selector) and Compute is
// linear in the sessions it produces.
//
// # Template contract
//
// The renderer registers, besides sprig and confd's functions,
// birdfmt.Funcs() and a function `model` returning this node's *Model.
// The default templates (templates/ in the repository) use only `model`,
// the birdfmt functions and text/template built-ins, so that a FuncMap in
// which confd's `join`/`split`/`replace` shadow sprig's does not matter.
//
// They render five files into one directory; bird.cfg includes the others
// by relative path, and BIRD resolves a relative include against the
// directory of the including file (checked with `bird -p` on 2.0.12, from
// another working directory), so `bird -p -c DIR/bird.cfg` reads the set:
//
//	bird.cfg        router id, debug, device/direct/kernel protocols; includes the rest
//	filters.cfg     BGPFilter functions (Model.Filters)
//	bird_aggr.cfg   blackhole statics for this node's blocks, roost_aggr_v4/v6()
//	bird_ipam.cfg   roost_communities_*, roost_export_*(bool is_ibgp), roost_kernel_* filter,
//	                service and reachableBy statics
//	peers.cfg       one BIRD `template bgp` per distinct session option set, then
//	                `protocol bgp <Name> from <Template> { neighbor ...; }` per session
//
// A renderer that stages files must stage the whole set in one directory
// under the final names before checking: an include in a staged bird.cfg
// reads peers.cfg beside it.
//
// # Behaviour
//
//   - Mesh (nodeToNodeMeshEnabled, default on): a session to every other node
//     with an address of the family, except route reflectors; none at all on
//     a reflector. Peer AS: the peer node's asNumber, else the global one
//     (the AS the peer itself uses).
//   - BGPPeers: global (no node, no nodeSelector), node-specific (node, or
//     nodeSelector matching this node), peerIP or peerSelector (every
//     matching node, with its address of the family, AS and listen port).
//   - Reverse peering (reversePeering Auto, the default): a BGPPeer that
//     selects this node (peerSelector) or names its address (peerIP) also
//     gives this node a session back to each node the BGPPeer applies to,
//     with the BGPPeer's options (not reachableBy); local AS = what the other
//     side expects. Manual turns it off.
//   - One session per ip:port; priority global > node-specific > reverse >
//     mesh. Never a session to this node's own address.
//   - Passive: between two nodes, the end with the smaller address as a
//     string (lexical: "10.0.0.10" < "10.0.0.9") waits (`passive on`).
//   - Route reflection: on a node with routeReflectorClusterID, iBGP
//     sessions to peers with a different or no cluster id are `rr client`.
//   - All sessions are `multihop` (Calico does the same); ttlSecurity N gives
//     `ttl security on; multihop N`.
//   - logSeverityScreen (node override first): Debug -> `debug protocols
//     all`, Info/unset -> `{ states }`, Warning/Error/Fatal/None -> `off`.
//   - Export to peers: prefixAdvertisements communities, then BGPFilters in
//     order, then: tunnel-device routes never to iBGP peers; disableBGPExport
//     pools rejected; own blocks exported, more-specifics inside them
//     rejected; service CIDRs and enabled pools exported; everything else
//     rejected. Import: BGPFilters, then accept.
//   - Kernel: reachableBy statics; then only BGP-learned routes, except
//     service CIDRs and IPIP/VXLAN pools (roost-node programs those).
//   - Errors are *Problem values naming resource and field; Fatal ones (no
//     node, no router id, a BGPFilter that cannot be compiled) mean: do not
//     render. A missing BGPFilter is a warning; the session renders without
//     it. A secret that is missing or unusable (empty, too long, not
//     quotable) is a warning and disables the sessions that need it
//     (Peer.Disabled, rendered `disabled;` with the reason); every other
//     session renders.
package bgp

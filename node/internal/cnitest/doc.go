// Package cnitest holds the tests of Roost's CNI plugins (cni/) driven
// through libcni as a container runtime drives them. They live under
// node/ to use node/internal/nstest's network namespaces.
package cnitest

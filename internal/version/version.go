// Package version carries the build version, set by the Makefile's -ldflags.
package version

// Version is overwritten at link time (-X .../internal/version.Version=...).
var Version = "dev"

// Package etc embeds the default confd template resources (conf.d/*.toml).
package etc

import (
	"embed"
	"io/fs"
)

//go:embed conf.d/*.toml
var confd embed.FS

// ConfD returns the embedded conf.d directory.
func ConfD() fs.FS {
	sub, err := fs.Sub(confd, "conf.d")
	if err != nil {
		panic(err) // the pattern above guarantees the directory
	}
	return sub
}

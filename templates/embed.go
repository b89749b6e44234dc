// Package templates embeds Roost's default BIRD 2 templates so bin/confd
// works from any directory; admins point --templatedir at edited copies.
package templates

import "embed"

// FS holds the *.template files.
//
//go:embed *.template
var FS embed.FS

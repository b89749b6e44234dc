// Command confd is part of Roost; the renderer (see issue 3).
package main

import (
	"fmt"
	"os"

	"github.com/roostnet/roost/internal/version"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "version" || os.Args[1] == "--version") {
		fmt.Println("confd", version.Version)
		return
	}
	fmt.Fprintln(os.Stderr, "confd: not implemented yet; only `version` works")
	os.Exit(2)
}

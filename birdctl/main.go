// Command birdctl is part of Roost; the BIRD and datastore CLI (see issue 5).
package main

import (
	"fmt"
	"os"

	"github.com/roostnet/roost/internal/version"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "version" || os.Args[1] == "--version") {
		fmt.Println("birdctl", version.Version)
		return
	}
	fmt.Fprintln(os.Stderr, "birdctl: not implemented yet; only `version` works")
	os.Exit(2)
}

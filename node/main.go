// Command roost-node is Roost's node agent: it registers the host, claims
// IPAM blocks, attaches workloads and programs workload and tunnel routes.
package main

import (
	"fmt"
	"os"

	"github.com/roostnet/roost/internal/version"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "version" || os.Args[1] == "--version") {
		fmt.Println("roost-node", version.Version)
		return
	}
	fmt.Fprintln(os.Stderr, "roost-node: the node agent is not implemented yet (see issue 6); only `version` works")
	os.Exit(2)
}

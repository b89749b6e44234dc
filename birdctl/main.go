// Command birdctl is Roost's operator tool: BIRD status and control over its
// control socket, and the calicoctl-like datastore commands. See
// docs/birdctl.md and package birdctl/cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/roostnet/roost/birdctl/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.OSEnv())
	stop()
	os.Exit(code)
}

// Command confd renders BIRD 2 configuration from Roost's datastore and
// keeps a running BIRD in step with it. See README.md and docs/confd.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"

	"github.com/roostnet/roost/confd/app"
	"github.com/roostnet/roost/confd/config"
	"github.com/roostnet/roost/internal/version"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cfg, err := config.Load(args, os.Getenv, os.Stderr)
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "confd:", err)
		return 2
	}
	if cfg.Version {
		fmt.Println("confd", version.Version)
		return 0
	}
	log := logrus.New()
	log.SetOutput(os.Stderr)
	lvl, err := logrus.ParseLevel(strings.ToLower(cfg.LogLevel))
	if err != nil {
		fmt.Fprintf(os.Stderr, "confd: --log-level %q: use debug, info, warning or error\n", cfg.LogLevel)
		return 2
	}
	log.SetLevel(lvl)
	log.WithFields(logrus.Fields{"version": version.Version, "node": cfg.NodeName, "datastore": cfg.Datastore.String()}).Info("Starting confd")

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		// Plain text: the message names file, resource and field, and
		// reads better unquoted than as a log field.
		fmt.Fprintln(os.Stderr, "confd: cannot start:", err)
		return 1
	}
	defer a.Close()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			log.Info("SIGHUP: re-rendering")
			a.Runner().Trigger()
		}
	}()

	if err := a.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "confd:", err)
		return 1
	}
	log.Info("confd stopped")
	return 0
}

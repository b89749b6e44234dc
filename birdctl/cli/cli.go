// Package cli implements the birdctl command line: BIRD status and control
// over its control socket (node status, show, configure, raw) and the
// calicoctl-like datastore commands (apply, create, replace, delete, get,
// ipam show). Run is the whole program; main only wires the process in.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/roostnet/roost/datastore"

	"github.com/roostnet/roost/internal/version"
)

// Defaults and environment variables of the global flags.
const (
	DefaultSocket  = "/var/run/roost/bird.ctl"
	EnvSocket      = "BIRD_SOCKET"
	DefaultTimeout = 10 * time.Second
)

// Env is what the program gets from its process. Tests fill it in.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Getenv reads the environment (os.Getenv in the program).
	Getenv func(string) string
	// Now and NewUID stamp the metadata of created resources.
	Now    func() time.Time
	NewUID func() string
}

// OSEnv is the environment of the running process.
func OSEnv() Env {
	return Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
}

func (e *Env) fill() {
	if e.Stdin == nil {
		e.Stdin = eofReader{}
	}
	if e.Stdout == nil {
		e.Stdout = io.Discard
	}
	if e.Stderr == nil {
		e.Stderr = io.Discard
	}
	if e.Getenv == nil {
		e.Getenv = func(string) string { return "" }
	}
	if e.Now == nil {
		e.Now = time.Now
	}
	if e.NewUID == nil {
		e.NewUID = datastore.NewUID
	}
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// exitError ends the program with a code; a nil err means the message was
// already printed.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// app holds the global settings shared by the subcommands.
type app struct {
	env     Env
	socket  string
	timeout time.Duration
	dsType  string // the backend opened, once known
}

// Run executes birdctl with args (without the program name) and returns
// the process exit code: 0 on success, 1 on failure.
func Run(ctx context.Context, args []string, env Env) int {
	env.fill()
	root := NewRoot(env)
	root.SetArgs(args)
	// The datastore stamps created objects' UID and creationTimestamp
	// (datastore.StampMetadata) from env.
	ctx = datastore.WithStamp(ctx, datastore.Stamp{Now: env.Now, NewUID: env.NewUID})
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(env.Stderr, "birdctl: %v\n", ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(env.Stderr, "birdctl: %v\n", err)
	return 1
}

// NewRoot builds the command tree.
func NewRoot(env Env) *cobra.Command {
	env.fill()
	a := &app{env: env}
	root := &cobra.Command{
		Use:   "birdctl",
		Short: "Roost's BIRD and datastore command line",
		Long: `birdctl talks to the BIRD daemon over its control socket (node status,
show, configure, raw) and manages the Calico-compatible resources of the
datastore, etcd or files (apply, create, replace, delete, get, ipam).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Version,
	}
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	root.SetVersionTemplate("birdctl {{.Version}}\n")
	pf := root.PersistentFlags()
	pf.StringVarP(&a.socket, "socket", "s", "", fmt.Sprintf("BIRD control socket [$%s] (default %q)", EnvSocket, DefaultSocket))
	pf.DurationVar(&a.timeout, "timeout", DefaultTimeout, "time limit of one BIRD command or datastore operation")
	root.PersistentPreRun = func(cmd *cobra.Command, _ []string) {
		if !cmd.Flags().Changed("socket") {
			a.socket = env.Getenv(EnvSocket)
		}
		if a.socket == "" {
			a.socket = DefaultSocket
		}
		if a.timeout <= 0 {
			a.timeout = DefaultTimeout
		}
	}
	root.AddGroup(
		&cobra.Group{ID: "bird", Title: "BIRD commands:"},
		&cobra.Group{ID: "ds", Title: "Datastore commands:"},
	)
	root.AddCommand(
		a.nodeCmd(), a.bfdCmd(), a.showCmd(), a.configureCmd(), a.rawCmd(),
		a.applyCmd(), a.createCmd(), a.replaceCmd(), a.deleteCmd(), a.getCmd(), a.ipamCmd(),
		a.versionCmd(),
	)
	return root
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print birdctl's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "birdctl %s\n", version.Version)
			return err
		},
	}
}

// Command roost-node is Roost's node agent: it registers the host, claims
// IPAM blocks, attaches workloads and programs workload and tunnel routes.
//
//	roost-node run                        the agent (as root, host network namespace)
//	roost-node run --with-bird --with-confd  the agent, supervising confd and BIRD (the image's entrypoint)
//	roost-node health --bird-ready|--bird-live|--confd-live|--node-ready|--node-live
//	roost-node workload add --name N --netns PATH [--namespace NS] [--ip IP]... [--ipv4 auto|true|false] [--ipv6 auto|true|false]
//	roost-node workload del --name N [--namespace NS]
//	roost-node install-cni [--bin-dir DIR] [--conf-dir DIR]   install the CNI plugin and 10-roost.conflist
//	roost-node cleanup                    remove every route, device, file and table the agent owns
//	roost-node version
//
// See docs/roost-node.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"github.com/vishvananda/netlink"

	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/connect"
	"github.com/roostnet/roost/internal/health"
	"github.com/roostnet/roost/internal/settings"
	"github.com/roostnet/roost/internal/version"
	"github.com/roostnet/roost/node/agent"
	"github.com/roostnet/roost/node/birdmetrics"
	"github.com/roostnet/roost/node/config"
	"github.com/roostnet/roost/node/dataplane"
	"github.com/roostnet/roost/node/ipam"
	"github.com/roostnet/roost/node/mtu"
	"github.com/roostnet/roost/node/natoutgoing"
	"github.com/roostnet/roost/node/startup"
	"github.com/roostnet/roost/node/supervisor"
	"github.com/roostnet/roost/node/workload"
)

func main() {
	if err := root().Execute(); err != nil {
		if errors.Is(err, errHealth) { // the reason is printed already
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "roost-node:", err)
		os.Exit(1)
	}
}

func root() *cobra.Command {
	cmd := &cobra.Command{
		Use:           "roost-node",
		Short:         "Roost node agent: node registration, IPAM, workloads and the routing dataplane",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Version,
	}
	cmd.AddCommand(runCmd(), healthCmd(), workloadCmd(), cleanupCmd(), installCNICmd(), &cobra.Command{
		Use: "version", Short: "print the version",
		Run: func(*cobra.Command, []string) { fmt.Println("roost-node", version.Version) },
	})
	return cmd
}

func newLogger(c *config.Common) (*logrus.Logger, error) {
	l := logrus.New()
	l.SetOutput(os.Stderr)
	lvl, err := logrus.ParseLevel(c.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warning or error", c.LogLevel)
	}
	l.SetLevel(lvl)
	switch strings.ToLower(c.LogFormat) {
	case "json":
		l.SetFormatter(&logrus.JSONFormatter{})
	case "text", "":
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	default:
		return nil, fmt.Errorf("log format %q: use text or json", c.LogFormat)
	}
	// Libraries logging through logrus' standard logger look the same.
	logrus.SetOutput(l.Out)
	logrus.SetLevel(l.Level)
	logrus.SetFormatter(l.Formatter)
	return l, nil
}

// openDatastore opens the configured backend.
func openDatastore(ctx context.Context, cfg *datastore.Config, log *logrus.Logger) (datastore.Datastore, error) {
	if err := cfg.Normalize(); err != nil {
		return nil, err
	}
	log.WithField("datastore", cfg.String()).Debug("opening the datastore")
	return connect.Open(ctx, *cfg)
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func runCmd() *cobra.Command {
	var cfg config.Run
	list := cfg.RunSettings()
	cmd := &cobra.Command{
		Use:   "run [--with-bird] [--with-confd]",
		Short: "run the node agent (and supervise confd and BIRD)",
		Long: "Registers this host as a Node (name, addresses, AS), creates the default IPv4 pool when none exists,\n" +
			"keeps the IPIP/VXLAN tunnel addresses in step with the pools and programs routes, tunnel devices and\n" +
			"VXLAN neighbours from the datastore. Needs root in the host's network namespace.\n\n" +
			"With --with-confd and --with-bird it also starts and supervises confd and BIRD 2, in order: the node\n" +
			"registers, confd renders, BIRD starts on the rendered configuration. A child that dies is restarted\n" +
			"with backoff; SIGTERM stops BIRD, then confd, then the agent. See docs/install.md.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := settings.Resolve(cmd.Flags(), list, os.Getenv, nil); err != nil {
				return err
			}
			pool, err := startup.PoolFromEnv(os.Getenv)
			if err != nil {
				return err
			}
			cfg.Startup.Pool = pool
			cfg.Startup.ClusterType = os.Getenv("CLUSTER_TYPE") // as calico-node
			cfg.Startup.NodeName = cfg.NodeName
			log, err := newLogger(&cfg.Common)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			ds, err := openDatastore(ctx, &cfg.Datastore, log)
			if err != nil {
				return err
			}
			defer ds.Close()
			h, err := netlink.NewHandle()
			if err != nil {
				return fmt.Errorf("netlink: %w", err)
			}
			defer h.Close()
			opts := agent.Options{
				Startup: cfg.Startup, Dataplane: cfg.Dataplane, AutodetectInterval: cfg.AutodetectInterval,
				Listen: cfg.Listen, IPForward: cfg.IPForward, BlockReleaseGrace: cfg.BlockReleaseGrace,
				DS: ds, NL: dataplane.Kernel(h), Sub: dataplane.NetlinkSubscriber{}, Detector: &startup.Detector{NL: h},
				Log: log, BirdSocket: cfg.Supervise.BirdSocket,
				SyncLiveness: syncLiveness(cfg.Datastore, cfg.SyncTimeout, log),
			}
			log.WithFields(logrus.Fields{"version": version.Version, "datastore": cfg.Datastore.String()}).Info("roost-node starting")
			if cfg.CNI.Install {
				if _, err := installCNI(&cfg, log); err != nil {
					return fmt.Errorf("--install-cni: %w", err)
				}
			}
			if cfg.Supervise.WithBird || cfg.Supervise.WithConfd {
				return runSupervised(ctx, &cfg, opts, log)
			}
			a := agent.New(opts)
			if err := a.Run(ctx); err != nil {
				return err
			}
			log.Info("roost-node stopped")
			return nil
		},
	}
	settings.Register(cmd.Flags(), list)
	return cmd
}

func workloadCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "workload", Short: "attach and detach workloads (network namespaces)"}
	var cfg config.Workload
	list := cfg.Settings()
	var req workload.Request

	prepare := func(cmd *cobra.Command) (*workload.Host, func(), context.Context, error) {
		if err := settings.Resolve(cmd.Flags(), list, os.Getenv, nil); err != nil {
			return nil, nil, nil, err
		}
		log, err := newLogger(&cfg.Common)
		if err != nil {
			return nil, nil, nil, err
		}
		name, err := startup.NodeName(cfg.NodeName)
		if err != nil {
			return nil, nil, nil, err
		}
		ctx, cancel := signalContext()
		ds, err := openDatastore(ctx, &cfg.Datastore, log)
		if err != nil {
			cancel()
			return nil, nil, nil, err
		}
		h, err := netlink.NewHandle()
		if err != nil {
			cancel()
			ds.Close()
			return nil, nil, nil, err
		}
		host := &workload.Host{NodeName: name, DS: ds, IPAM: ipam.New(ds, name, ipam.WithLogger(log)), NL: h, Log: log, MTU: cfg.MTU}
		req.IPv4, req.IPv6 = cfg.IPv4, cfg.IPv6
		return host, func() { h.Close(); ds.Close(); cancel() }, ctx, nil
	}
	// The veth MTU: --mtu, else what `roost-node run` worked out.
	workloadMTU := func(log logrus.FieldLogger) (int, error) {
		if cfg.MTU > 0 {
			return cfg.MTU, nil
		}
		v, err := mtu.ReadFile(cfg.MTUFile)
		if errors.Is(err, os.ErrNotExist) {
			log.WithField("file", cfg.MTUFile).Warn("no MTU file (roost-node run writes it once it has programmed the dataplane); the workload gets the kernel's default MTU, 1500")
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("workload MTU: %w (fix or remove the file, or pass --mtu)", err)
		}
		return v, nil
	}

	add := &cobra.Command{
		Use:   "add --name NAME --netns PATH [--namespace NS] [--ip IP]... [--ipv4 auto|true|false] [--ipv6 auto|true|false]",
		Short: "attach a network namespace as a workload and print its addresses, one per line (IPv4 first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			host, done, ctx, err := prepare(cmd)
			if err != nil {
				return err
			}
			defer done()
			if host.MTU, err = workloadMTU(host.Log); err != nil {
				return err
			}
			res, err := host.Attach(ctx, req)
			if err != nil {
				return err
			}
			for _, ip := range res.IPs {
				fmt.Println(ip)
			}
			return nil
		},
	}
	del := &cobra.Command{
		Use:   "del --name NAME [--namespace NS]",
		Short: "detach a workload and release its addresses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			host, done, ctx, err := prepare(cmd)
			if err != nil {
				return err
			}
			defer done()
			_, err = host.Detach(ctx, req)
			return err
		},
	}
	for _, c := range []*cobra.Command{add, del} {
		c.Flags().StringVar(&req.Name, "name", "", "workload name (required)")
		c.Flags().StringVar(&req.Namespace, "namespace", "default", "workload namespace")
		_ = c.MarkFlagRequired("name")
		settings.Register(c.Flags(), list)
	}
	add.Flags().StringVar(&req.NetNS, "netns", "", "path of the workload's network namespace, e.g. /var/run/netns/web (required)")
	add.Flags().StringSliceVar(&req.IPs, "ip", nil, "a specific address from a pool, at most one IPv4 and one IPv6 (repeat the flag or separate with commas; default: the next free ones)")
	_ = add.MarkFlagRequired("netns")
	cmd.AddCommand(add, del)
	return cmd
}

func cleanupCmd() *cobra.Command {
	var common config.Common
	var run config.Run
	list := run.Settings()
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "remove every route (protocol 80), vxlan.calico, the tunl0 address, the MTU and node name files and the NAT table the agent programmed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := settings.Resolve(cmd.Flags(), list, os.Getenv, nil); err != nil {
				return err
			}
			common = run.Common
			log, err := newLogger(&common)
			if err != nil {
				return err
			}
			h, err := netlink.NewHandle()
			if err != nil {
				return err
			}
			defer h.Close()
			dp := dataplane.New(run.Dataplane, dataplane.Kernel(h), log, nil)
			err = errors.Join(dp.Cleanup(), natoutgoing.New(natoutgoing.Config{}, log, nil).Cleanup())
			if f := run.Startup.NodenameFile; f != "" {
				if rerr := os.Remove(f); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
					err = errors.Join(err, fmt.Errorf("removing the node name file: %w", rerr))
				}
			}
			if err != nil {
				return errors.New("cleanup incomplete: " + err.Error())
			}
			return nil
		},
	}
	settings.Register(cmd.Flags(), list)
	return cmd
}

// runSupervised is `run --with-bird --with-confd`: the agent registers the
// node, then confd renders and BIRD starts; on SIGTERM BIRD stops first,
// then confd, then the agent. The HTTP server's /readyz includes BIRD.
func runSupervised(ctx context.Context, cfg *config.Run, opts agent.Options, log *logrus.Logger) error {
	opts.Metrics = agent.NewMetrics() // one registry for the agent's and the supervisor's metrics
	if cfg.Supervise.WithBird {
		// BIRD's own state under bird_exporter's names (protocols, BFD sessions).
		opts.Metrics.Registry.MustRegister(birdmetrics.New(birdmetrics.Options{Socket: cfg.Supervise.BirdSocket, Log: log}))
	}
	sup, err := supervisor.New(supervisor.Options{
		Config: cfg.Supervise, Datastore: cfg.Datastore, BaseEnv: os.Environ(), Log: log,
		Registerer: opts.Metrics.Registry,
	})
	if err != nil {
		return err
	}
	opts.Listen = "" // served below, with the supervisor's state
	a := agent.New(opts)
	agentCtx, stopAgent := context.WithCancel(context.Background())
	defer func() {
		stopAgent()
		a.Wait()
	}()
	if err := a.Start(agentCtx); err != nil {
		return err
	}

	var srv *http.Server
	if cfg.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return fmt.Errorf("listening on %s: %w", cfg.Listen, err)
		}
		view := supervisor.AgentView{
			Alive:  func() bool { return a.Status().Alive },
			Ready:  func() bool { return a.Status().Ready },
			Status: func() any { return a.Status() },
			Why:    func() string { return a.Status().Reason() },
		}
		srv = &http.Server{Handler: supervisor.Handler(view, sup, opts.Metrics.Registry), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.WithError(err).Error("HTTP server failed")
			}
		}()
		log.WithField("listen", ln.Addr().String()).Info("serving /healthz, /readyz and /metrics")
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if err := sup.Reload(); err == nil {
				log.Info("SIGHUP: asked confd to render again")
			}
		}
	}()

	startErr := sup.Start(ctx, a.Status().Node)
	if startErr == nil {
		log.Info("the node is registered, confd rendered and BIRD answers")
		_ = supervisor.Notify("READY=1")
		<-ctx.Done()
	}
	log.Info("stopping: BIRD, then confd, then the agent")
	_ = supervisor.Notify("STOPPING=1")
	sup.Stop()
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	stopAgent()
	a.Wait()
	if startErr != nil && ctx.Err() == nil {
		return startErr
	}
	log.Info("roost-node stopped")
	return nil
}

func healthCmd() *cobra.Command {
	var cfg config.Health
	list := cfg.Settings()
	checks := map[string]*bool{}
	cmd := &cobra.Command{
		Use:   "health --bird-ready|--bird-live|--confd-live|--node-ready|--node-live ...",
		Short: "probe BIRD, confd and the agent for orchestrators (exit 0, or 1 with a one-line reason)",
		Long: "Runs the chosen checks and prints one line: \"ok: ...\" (exit 0) or the first failure's reason (exit 1).\n" +
			"It reads the same settings as `run` (BIRD_SOCKET, ROOST_CONFD_HEALTH_ADDR, ROOST_NODE_LISTEN), so in a\n" +
			"container or unit with roost-node's environment it needs no flags.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := settings.Resolve(cmd.Flags(), list, os.Getenv, nil); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
			defer cancel()
			var done []string
			for _, c := range config.HealthChecks {
				if !*checks[c.Flag] {
					continue
				}
				if err := runCheck(ctx, c.Flag, &cfg); err != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: %v\n", c.Flag, err)
					cmd.SilenceErrors = true
					return errHealth
				}
				done = append(done, c.Flag)
			}
			if len(done) == 0 {
				return errors.New("choose at least one check: --bird-ready, --bird-live, --confd-live, --node-ready, --node-live")
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %s\n", strings.Join(done, ", "))
			return nil
		},
	}
	for _, c := range config.HealthChecks {
		checks[c.Flag] = cmd.Flags().Bool(c.Flag, false, c.Help)
	}
	settings.Register(cmd.Flags(), list)
	return cmd
}

// errHealth is a failed check: the reason is already printed.
var errHealth = errors.New("unhealthy")

func runCheck(ctx context.Context, check string, cfg *config.Health) error {
	switch check {
	case "bird-live":
		return supervisor.BirdLive(ctx, cfg.BirdSocket)
	case "bird-ready":
		return supervisor.BirdReady(ctx, cfg.BirdSocket, cfg.ReadyRequireEstablished)
	case "confd-live", "node-live", "node-ready":
		addr, path := cfg.Listen, "/healthz"
		if check == "confd-live" {
			addr = cfg.ConfdHealthAddr
		}
		if check == "node-ready" {
			path = "/readyz"
		}
		if addr == "" {
			return fmt.Errorf("no address to check (the %s server is off)", strings.TrimSuffix(check, "-live"))
		}
		url, err := supervisor.LocalURL(addr, path)
		if err != nil {
			return err
		}
		return supervisor.HTTPCheck(ctx, url)
	}
	return fmt.Errorf("unknown check %q", check)
}

// syncLiveness fails /healthz once the agent has been out of sync for
// --datastore-sync-timeout with a datastore that answers a fresh
// connection (health.SyncLiveness).
func syncLiveness(cfg datastore.Config, timeout time.Duration, log *logrus.Logger) *health.SyncLiveness {
	l := &health.SyncLiveness{Timeout: timeout}
	if cfg.Type == datastore.TypeEtcd {
		quiet := logrus.New()
		quiet.SetOutput(log.Out)
		quiet.SetLevel(logrus.ErrorLevel)
		l.Probe = func(ctx context.Context) error { return connect.Probe(ctx, cfg, connect.WithLogger(quiet)) }
	}
	return l
}

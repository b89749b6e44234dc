// Package app wires confd together: settings, datastore, BGP model, key
// store, template resources, renderer, runner, metrics and signals.
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/birdctl/birdsock"
	"github.com/roostnet/roost/confd/bgp"
	"github.com/roostnet/roost/confd/birdfmt"
	"github.com/roostnet/roost/confd/config"
	"github.com/roostnet/roost/confd/funcs"
	"github.com/roostnet/roost/confd/kvstore"
	"github.com/roostnet/roost/confd/metrics"
	"github.com/roostnet/roost/confd/render"
	"github.com/roostnet/roost/confd/resource"
	"github.com/roostnet/roost/confd/runner"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/connect"
	"github.com/roostnet/roost/etc"
	"github.com/roostnet/roost/internal/health"
	"github.com/roostnet/roost/templates"
)

// App is one confd instance.
type App struct {
	cfg   *config.Config
	log   *logrus.Logger
	store datastore.Datastore

	cache  *bgp.Cache
	kv     *kvstore.Store
	mirror *kvstore.Mirror

	// Owned by the runner goroutine.
	renderer  *render.Renderer
	model     *bgp.Model
	published map[string]string
	warned    string

	mu          sync.Mutex
	templateErr error
	warnings    []string              // the last model's non-fatal problems, for /readyz
	disabled    []bgp.DisabledSession // of the last model

	runner   *runner.Runner
	metrics  *metrics.Metrics
	reloader *birdReloader // nil with --sync-only and --noop
}

// Prefixes confd watches for a node: the five v3 kinds it renders from,
// the node's own block affinities (as Calico's confd does) and Roost's
// BFDProfiles.
func Prefixes(node string) []string {
	return []string{
		datastore.KindPrefix(api.KindBGPConfiguration),
		datastore.KindPrefix(api.KindBGPPeer),
		datastore.KindPrefix(api.KindNode),
		datastore.KindPrefix(api.KindIPPool),
		datastore.KindPrefix(api.KindBGPFilter),
		datastore.HostAffinityPrefix(node),
		datastore.KindPrefix(api.KindBFDProfile),
	}
}

// New opens the datastore and loads the template resources.
func New(ctx context.Context, cfg *config.Config, log *logrus.Logger) (*App, error) {
	a := &App{
		cfg: cfg, log: log,
		cache:     bgp.NewCache(),
		kv:        kvstore.New(),
		published: map[string]string{},
		metrics:   metrics.New(),
	}
	a.mirror = kvstore.NewMirror(a.kv, cfg.NodeName)
	if !cfg.SyncOnly && !cfg.Noop {
		a.reloader = &birdReloader{socket: cfg.BirdSocket, down: make(chan struct{}, 1)}
	}
	if err := a.loadResources(); err != nil {
		return nil, err
	}
	store, err := connect.Open(ctx, cfg.Datastore, connect.WithLogger(log))
	if err != nil {
		return nil, err
	}
	a.store = store
	a.runner = runner.New(runner.Config{
		Store:         store,
		Prefixes:      Prefixes(cfg.NodeName),
		Apply:         a.apply,
		Render:        a.render,
		RetryMin:      cfg.RetryMin,
		RetryMax:      cfg.RetryMax,
		RenderShare:   cfg.RenderCPUShare,
		MaxReloadRate: cfg.MaxReloadRate,
		MinInterval:   cfg.MinRenderInterval,
		Quiet:         cfg.RenderQuiet,
		Observer:      a.metrics,
		Log:           log,
		Once:          cfg.Onetime,
	})
	return a, nil
}

// Close releases the datastore.
func (a *App) Close() error { return a.store.Close() }

// Runner exposes the main loop (tests, signals).
func (a *App) Runner() *runner.Runner { return a.runner }

func (a *App) funcMap() template.FuncMap {
	return funcs.All(a.kv, birdfmt.Funcs(), template.FuncMap{
		// model is this node's computed BGP model; it fails the render
		// when the model has a fatal problem.
		"model": func() (*bgp.Model, error) {
			if a.model == nil {
				return nil, errors.New("no BGP model for this node")
			}
			return a.model, nil
		},
	})
}

func (a *App) loadResources() error {
	src := resource.Sources{
		ConfDir: a.cfg.ConfDir, TemplateDir: a.cfg.TemplateDir,
		EmbeddedConf: etc.ConfD(), EmbeddedTmpl: templates.FS,
		OutputDir: a.cfg.OutputDir,
	}
	res, err := resource.Load(src, a.funcMap())
	if err != nil {
		return err
	}
	opts := render.Options{
		SyncOnly: a.cfg.SyncOnly, Noop: a.cfg.Noop, KeepStageFiles: a.cfg.KeepStageFiles,
		Log: a.log,
		// Called from the runner's goroutine, after render set a.model.
		Secrets: func() []string {
			if a.model == nil {
				return nil
			}
			return a.model.Passwords()
		},
	}
	if a.reloader != nil {
		opts.Reloader = a.reloader
	}
	a.renderer = render.New(res, opts)
	return nil
}

// reloadTemplates re-reads conf.d and templates after an admin edit. A
// broken edit is reported and the last good templates stay in use.
func (a *App) reloadTemplates() {
	err := a.loadResources()
	a.mu.Lock()
	a.templateErr = err
	a.mu.Unlock()
	if err != nil {
		a.metrics.TemplateLoadFailed(err)
		a.log.WithError(err).Error("Template or template resource is broken; keeping the last good ones")
		return
	}
	a.log.Info("Templates reloaded")
}

func (a *App) apply(key string, obj api.Resource) {
	if err := a.cache.Apply(key, obj); err != nil {
		a.log.WithError(err).WithField("key", key).Warn("BGP model ignored a resource")
	}
	if err := a.mirror.Apply(key, obj); err != nil {
		a.log.WithError(err).WithField("key", key).Warn("Key store ignored a resource")
	}
}

// render computes the model, publishes its keys and renders every
// template resource from this one consistent state.
func (a *App) render(ctx context.Context) (render.Result, error) {
	m, errs := bgp.Compute(a.cache, bgp.Options{NodeName: a.cfg.NodeName, RouterID: a.cfg.RouterID, SecretsDir: a.cfg.SecretsDir})
	a.reportProblems(errs)
	if err := bgp.Fatal(errs); err != nil {
		a.model = nil
		return render.Result{}, &render.Error{Stage: render.StageTemplate, Err: err}
	}
	ds := m.DisabledSessions()
	if a.cfg.Onetime && len(ds) > 0 {
		// --onetime is strict (see preflight): what a running confd
		// renders disabled fails the run, naming resource and secret.
		a.model = nil
		a.setDisabled(ds)
		return render.Result{}, &render.Error{Stage: render.StageTemplate, Err: a.sessionProblem()}
	}
	a.model = m
	a.metrics.Model(len(errs), m.BFDSessions, m.MissingBFDProfiles)
	a.setDisabled(ds)
	a.publishModel(m)
	res, err := a.renderer.Render(ctx, nil)
	if a.cfg.Noop && res.Diff != "" {
		fmt.Fprint(os.Stdout, res.Diff)
	}
	return res, err
}

// setDisabled records the sessions rendered disabled for readiness and
// metrics.
func (a *App) setDisabled(ds []bgp.DisabledSession) {
	a.metrics.DisabledSessions(ds)
	a.mu.Lock()
	a.disabled = ds
	a.mu.Unlock()
}

// sessionProblem is confd's readiness beyond rendering: sessions rendered
// disabled because their password cannot be used (nil when there are none).
func (a *App) sessionProblem() error {
	a.mu.Lock()
	ds := a.disabled
	a.mu.Unlock()
	if len(ds) == 0 {
		return nil
	}
	const show = 3
	parts := make([]string, 0, show+1)
	for i, d := range ds {
		if i == show {
			parts = append(parts, fmt.Sprintf("and %d more", len(ds)-show))
			break
		}
		parts = append(parts, d.Name+" ("+d.Reason+")")
	}
	n := "1 BGP session"
	if len(ds) > 1 {
		n = fmt.Sprintf("%d BGP sessions", len(ds))
	}
	return fmt.Errorf("%s disabled: %s", n, strings.Join(parts, ", "))
}

// readyProblem is what keeps a confd that rendered from being ready.
func (a *App) readyProblem() error {
	if err := a.sessionProblem(); err != nil {
		return fmt.Errorf("%s %w", metrics.ReadyDisabledPrefix, err)
	}
	return nil
}

// reportProblems logs the model's warnings once per distinct set, so a
// steady state does not repeat them on every render, each with the
// resource and field as fields.
func (a *App) reportProblems(errs []error) {
	errs = slices.Clone(errs)
	slices.SortFunc(errs, func(x, y error) int { return strings.Compare(x.Error(), y.Error()) })
	msgs := make([]string, 0, len(errs))
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	a.mu.Lock()
	a.warnings = msgs
	a.mu.Unlock()
	joined := strings.Join(msgs, "\n")
	if joined == a.warned {
		return
	}
	a.warned = joined
	for _, e := range errs {
		entry := a.log.WithField("node", a.cfg.NodeName)
		var p *bgp.Problem
		if errors.As(e, &p) {
			entry = entry.WithFields(logrus.Fields{"kind": p.Kind, "name": p.Name, "field": p.Field, "fatal": p.Fatal})
		}
		entry.Warn(e.Error())
	}
}

// Run runs until ctx ends (or after one render with --onetime).
func (a *App) Run(ctx context.Context) error {
	if !a.cfg.Noop && !a.cfg.KeepStageFiles {
		// A confd killed mid-render left its stage (passwords included);
		// --keep-stage-file keeps stages on purpose.
		a.renderer.SweepStale()
	}
	if a.cfg.Onetime {
		if err := a.preflight(ctx); err != nil {
			return err
		}
	}
	var servers []*http.Server
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	if a.cfg.MetricsAddr != "" {
		s, err := serve(a.cfg.MetricsAddr, a.metrics.Handler())
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		servers = append(servers, s)
	}
	if a.cfg.HealthAddr != "" {
		s, err := serve(a.cfg.HealthAddr, metrics.HealthHandler(a.status, a.readyProblem, a.syncLiveness(), a.modelWarnings))
		if err != nil {
			return fmt.Errorf("health: %w", err)
		}
		servers = append(servers, s)
	}
	if !a.cfg.Onetime && a.reloader != nil {
		probeCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); a.probeBird(probeCtx) }()
		defer func() { stop(); <-done }()
	}
	if !a.cfg.Onetime && a.cfg.SecretsDir != "" {
		stop, err := a.watchSecrets(ctx)
		if err != nil {
			return err
		}
		defer stop()
	}
	if !a.cfg.Onetime && (a.cfg.ConfDir != "" || a.cfg.TemplateDir != "") {
		stop, err := a.watchTemplates(ctx)
		if err != nil {
			return err
		}
		defer stop()
	}
	return a.runner.Run(ctx)
}

// syncLiveness fails /healthz once confd has been out of sync for
// --datastore-sync-timeout with a datastore that answers a fresh
// connection (health.SyncLiveness).
func (a *App) syncLiveness() *health.SyncLiveness {
	l := &health.SyncLiveness{Timeout: a.cfg.SyncTimeout}
	if a.cfg.Datastore.Type == datastore.TypeEtcd {
		quiet := logrus.New()
		quiet.SetOutput(a.log.Out)
		quiet.SetLevel(logrus.ErrorLevel)
		l.Probe = func(ctx context.Context) error { return connect.Probe(ctx, a.cfg.Datastore, connect.WithLogger(quiet)) }
	}
	return l
}

// status adds a broken template edit to the runner's status.
func (a *App) status() runner.Status {
	s := a.runner.Status()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.templateErr != nil && s.LastError == nil {
		s.LastError = a.templateErr
	}
	return s
}

// modelWarnings are the last model's warnings, for /readyz.
func (a *App) modelWarnings() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.warnings
}

func serve(addr string, h http.Handler) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go s.Serve(ln)
	return s, nil
}

// birdReloader runs `configure` over BIRD's control socket. BIRD rereads
// the file it was started with (the rendered bird.cfg).
type birdReloader struct {
	socket string
	mu     sync.Mutex
	client *birdsock.Client
	// down is signalled when a reload found BIRD unreachable: probeBird
	// then watches for its return.
	down chan struct{}
}

func (r *birdReloader) Reload(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.client == nil {
		c, err := birdsock.Dial(ctx, r.socket)
		if err != nil {
			r.markDown()
			return fmt.Errorf("BIRD is not reachable: %w (%w)", err, render.ErrDaemonDown)
		}
		r.client = c
	}
	// The client replaces a connection BIRD closed (a restart) before it
	// sends the command; an error here means BIRD went away meanwhile.
	if err := r.client.Configure(ctx, ""); err != nil {
		var be *birdsock.BirdError
		if !errors.As(err, &be) {
			r.client.Close()
			r.client = nil
			r.markDown()
			return fmt.Errorf("BIRD configure: %w (%w)", err, render.ErrDaemonDown)
		}
		return fmt.Errorf("BIRD rejected the configuration: %w", err)
	}
	return nil
}

func (r *birdReloader) markDown() {
	select {
	case r.down <- struct{}{}:
	default:
	}
}

// birdProbeInterval is how often probeBird dials a BIRD that is down.
const birdProbeInterval = 200 * time.Millisecond

// probeBird makes a reload that found BIRD down happen as soon as BIRD
// answers again, rather than at the next retry (up to --retry-max later),
// so confd's readiness follows BIRD's return within a moment: while a
// reload waits, it dials BIRD's socket every birdProbeInterval, and asks
// for a render when BIRD greets.
func (a *App) probeBird(ctx context.Context) {
	r := a.reloader
	tick := time.NewTicker(birdProbeInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.down:
		}
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				dctx, cancel := context.WithTimeout(ctx, birdProbeInterval)
				c, err := birdsock.Dial(dctx, r.socket)
				cancel()
				if err == nil {
					c.Close()
					waiting = false
				}
			}
		}
		a.log.WithField("socket", r.socket).Info("BIRD answers again; reloading")
		a.runner.Trigger()
	}
}

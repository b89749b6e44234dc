package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/node/config"
)

// Options configure a Supervisor.
type Options struct {
	Config    config.Supervise
	Datastore datastore.Config // normalized; given to confd as its environment
	BaseEnv   []string         // the children's environment before Roost's settings (os.Environ())
	Log       logrus.FieldLogger
	// Registerer gets the supervisor's metrics (nil: none).
	Registerer prometheus.Registerer
	// PollInterval is how often BIRD's sessions are checked (0: 1s).
	PollInterval time.Duration
}

// Supervisor runs confd and BIRD for one node.
type Supervisor struct {
	opts      Options
	log       logrus.FieldLogger
	birdOpts  BirdOptions
	confdOpts ConfdOptions
	tracker   *BGPTracker
	metrics   *metrics

	mu           sync.Mutex
	bird, confd  *Child
	stopTracker  context.CancelFunc
	trackerDone  chan struct{}
	stopped      bool
	startupState string
}

// New checks the settings and finds the executables; nothing starts yet.
func New(o Options) (*Supervisor, error) {
	c := o.Config
	if !c.WithBird && !c.WithConfd {
		return nil, errors.New("supervisor: neither BIRD nor confd to run")
	}
	if o.Log == nil {
		o.Log = logrus.StandardLogger()
	}
	if o.BaseEnv == nil {
		o.BaseEnv = os.Environ()
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if c.BirdConfig == "" || c.BirdSocket == "" {
		return nil, errors.New("supervisor: the BIRD config path and socket must be set")
	}
	s := &Supervisor{opts: o, log: o.Log.WithField("component", "supervisor"), startupState: "not started"}
	s.birdOpts = BirdOptions{Config: c.BirdConfig, Socket: c.BirdSocket, LogStderr: c.BirdLogStderr, GracefulRestart: c.BirdGracefulRestart}
	s.confdOpts = ConfdOptions{BirdConfig: c.BirdConfig, BirdSocket: c.BirdSocket, HealthAddr: c.ConfdHealthAddr}
	var err error
	if c.WithBird {
		if s.birdOpts.Path, err = BirdBinary(c.BirdPath); err != nil {
			return nil, err
		}
		s.tracker = NewBGPTracker(c.BirdSocket, c.ReadyRequireEstablished, s.log)
	}
	if c.WithConfd {
		if s.confdOpts.Path, err = ConfdBinary(c.ConfdPath); err != nil {
			return nil, err
		}
	}
	s.metrics = newMetrics(o.Registerer, s)
	return s, nil
}

// restartJitter spreads restart delays: confd exits when etcd does not
// answer at start, and after an outage the nodes must not all come back
// at the same instant.
const restartJitter = 0.5

func (s *Supervisor) spec(name, path string, env []string) Spec {
	c := s.opts.Config
	return Spec{Name: name, Path: path, Env: env, StopTimeout: c.StopTimeout,
		BackoffMin: c.BackoffMin, BackoffMax: c.BackoffMax, StableAfter: c.StableAfter, BackoffJitter: restartJitter}
}

func (s *Supervisor) setStartup(state string) {
	s.mu.Lock()
	s.startupState = state
	s.mu.Unlock()
}

// Start starts confd, waits for its first render, then starts BIRD on the
// rendered configuration and waits until BIRD answers on its socket. The
// node must already be registered (nodeName is confd's NODENAME). On error
// (or when ctx ends) Stop still has to be called.
func (s *Supervisor) Start(ctx context.Context, nodeName string) error {
	c := s.opts.Config
	if c.WithBird {
		// Another BIRD on our socket would make ours exit and fool readiness.
		actx, cancel := context.WithTimeout(ctx, time.Second)
		err := BirdLive(actx, c.BirdSocket)
		cancel()
		if err == nil {
			return fmt.Errorf("another BIRD already answers on %s: stop it (e.g. systemctl disable --now bird) or set BIRD_SOCKET", c.BirdSocket)
		}
	}
	if c.WithConfd {
		env := childEnv(s.opts.BaseEnv, s.confdEnv(nodeName))
		spec := s.spec("confd", s.confdOpts.Path, env)
		spec.Args = s.confdOpts.args
		spec.Ready = s.confdOpts.rendered(s.log.WithField("component", "confd"))
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			return errors.New("supervisor stopped")
		}
		s.confd = StartChild(spec, s.opts.Log, s.metrics)
		s.mu.Unlock()
		s.setStartup("waiting for confd's first render")
		if err := s.confd.WaitReady(ctx); err != nil {
			return err
		}
	}
	if c.WithBird {
		if !c.WithConfd {
			s.setStartup("waiting for " + c.BirdConfig)
			if err := waitFile(ctx, c.BirdConfig, s.log); err != nil {
				return err
			}
		}
		spec := s.spec("bird", s.birdOpts.Path, s.opts.BaseEnv)
		spec.Args = s.birdOpts.args
		spec.Ready = func(ctx context.Context, _ int) error { return waitAnswers(ctx, c.BirdSocket) }
		spec.Stop = s.birdOpts.stop(s.log.WithField("component", "bird"))
		spec.OnReady = s.birdStarted
		tctx, cancel := context.WithCancel(context.Background())
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			cancel()
			return errors.New("supervisor stopped")
		}
		s.bird = StartChild(spec, s.opts.Log, s.metrics)
		s.stopTracker, s.trackerDone = cancel, make(chan struct{})
		s.mu.Unlock()
		go func() {
			defer close(s.trackerDone)
			s.tracker.Run(tctx, s.opts.PollInterval)
		}()
		s.setStartup("waiting for BIRD to answer on " + c.BirdSocket)
		if err := s.bird.WaitReady(ctx); err != nil {
			return err
		}
	}
	s.setStartup("")
	return nil
}

// birdStarted runs each time BIRD answers after a start.
func (s *Supervisor) birdStarted(restart bool) {
	s.tracker.Reset()
	s.tracker.Poll(context.Background())
	if !restart {
		return
	}
	// BIRD read the current files at start; confd may still hold a reload
	// it could not deliver while BIRD was down: let it retry now rather
	// than after its backoff.
	s.mu.Lock()
	confd := s.confd
	s.mu.Unlock()
	if confd != nil {
		if err := confd.Signal(syscall.SIGHUP); err == nil {
			s.log.Info("BIRD restarted: asked confd to render and reload again (SIGHUP)")
		}
	}
}

// confdEnv is what confd must see whatever roost-node's environment holds:
// the node name the agent registered and the datastore roost-node uses
// (flags included). The password travels in the environment, never argv.
func (s *Supervisor) confdEnv(nodeName string) map[string]string {
	ds := s.opts.Datastore
	return map[string]string{
		"NODENAME":                 nodeName,
		datastore.EnvType:          ds.Type,
		datastore.EnvFile:          ds.File,
		datastore.EnvEtcdEndpoints: ds.EtcdEndpoints,
		datastore.EnvEtcdCACert:    ds.EtcdCACert,
		datastore.EnvEtcdCert:      ds.EtcdCert,
		datastore.EnvEtcdKey:       ds.EtcdKey,
		datastore.EnvEtcdUsername:  ds.EtcdUsername,
		datastore.EnvEtcdPassword:  ds.EtcdPassword,
		"ROOST_CONFD_OUTPUT_DIR":   "", // --output-dir is the BIRD config's directory
		"ROOST_CONFD_HEALTH_ADDR":  "", // passed as --health-addr
		"ROOST_CONFD_ONETIME":      "", // a supervised confd runs for good
		"ROOST_CONFD_NOOP":         "", // and writes what it renders
	}
}

// Reload asks confd to render again (SIGHUP).
func (s *Supervisor) Reload() error {
	s.mu.Lock()
	confd := s.confd
	s.mu.Unlock()
	if confd == nil {
		return errors.New("confd is not supervised")
	}
	return confd.Signal(syscall.SIGHUP)
}

// Stop stops BIRD (graceful restart or down, see BirdOptions), then confd.
// It returns when both are gone; it is safe to call more than once.
func (s *Supervisor) Stop() {
	s.mu.Lock()
	s.stopped = true
	bird, confd, stopTracker, trackerDone := s.bird, s.confd, s.stopTracker, s.trackerDone
	s.stopTracker = nil
	s.mu.Unlock()
	if stopTracker != nil {
		stopTracker()
		<-trackerDone
	}
	if bird != nil {
		bird.Stop()
	}
	if confd != nil {
		confd.Stop()
	}
}

// Status is the supervisor's part of /readyz.
type Status struct {
	Ready    bool          `json:"ready"`
	Reason   string        `json:"reason,omitempty"`
	Children []ChildStatus `json:"children"`
	BGP      *BGPState     `json:"bgp,omitempty"`
}

// Status reports readiness: confd rendered (when supervised) and BIRD
// ready as BGPTracker defines it (when supervised).
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	bird, confd, startup := s.bird, s.confd, s.startupState
	s.mu.Unlock()
	st := Status{Ready: true}
	var reasons []string
	if startup != "" {
		reasons = append(reasons, startup)
	}
	if confd != nil {
		cs := confd.Status()
		st.Children = append(st.Children, cs)
		switch {
		case !cs.Running:
			reasons = append(reasons, "confd is not running")
		case !cs.Ready:
			reasons = append(reasons, "confd is starting (no render yet)")
		}
	}
	if bird != nil {
		bs := bird.Status()
		st.Children = append(st.Children, bs)
		bgp := s.tracker.State()
		st.BGP = &bgp
		switch {
		case !bs.Running:
			reasons = append(reasons, "BIRD is not running")
		case !bs.Ready:
			reasons = append(reasons, "BIRD is starting")
		case !bgp.Ready:
			reasons = append(reasons, bgp.Reason)
		}
	}
	if len(reasons) > 0 {
		st.Ready = false
		st.Reason = strings.Join(reasons, "; ")
	}
	return st
}

// Child returns the supervised child by name ("bird", "confd"), or nil.
func (s *Supervisor) Child(name string) *Child {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch name {
	case "bird":
		return s.bird
	case "confd":
		return s.confd
	}
	return nil
}

func waitFile(ctx context.Context, path string, log logrus.FieldLogger) error {
	start := time.Now()
	lastLog := start
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Since(lastLog) >= 10*time.Second {
			lastLog = time.Now()
			log.WithField("waited", time.Since(start).Round(time.Second).String()).Info("waiting for " + path)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", path, context.Cause(ctx))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// metrics are the supervisor's Prometheus metrics.
type metrics struct {
	up       *prometheus.GaugeVec
	restarts *prometheus.CounterVec
}

func newMetrics(r prometheus.Registerer, s *Supervisor) *metrics {
	m := &metrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "roost_node_child_up",
			Help: "1 while the supervised child process runs (component: bird, confd)."}, []string{"component"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "roost_node_child_restarts_total",
			Help: "Restarts of a supervised child after it exited (component: bird, confd)."}, []string{"component"}),
	}
	if r == nil {
		return m
	}
	r.MustRegister(m.up, m.restarts)
	if s.tracker != nil {
		r.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "roost_node_bird_ready",
				Help: "1 when BIRD answers and every BGP session has been Established once since BIRD started (or that is not required)."},
				func() float64 { return b2f(s.tracker.State().Ready) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "roost_node_bgp_sessions_established",
				Help: "BGP sessions BIRD reports Established."},
				func() float64 {
					n := 0
					for _, v := range s.tracker.State().Sessions {
						if strings.HasPrefix(v, "Established") {
							n++
						}
					}
					return float64(n)
				}),
		)
	}
	return m
}

func (m *metrics) ChildUp(name string, up bool) { m.up.WithLabelValues(name).Set(b2f(up)) }
func (m *metrics) ChildRestarted(name string)   { m.restarts.WithLabelValues(name).Inc() }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

package config

import (
	"time"

	"github.com/roostnet/roost/internal/settings"
)

// Defaults of the supervisor (`run --with-bird --with-confd`) and of the
// `health` probes. The paths are the image's and the systemd units'.
const (
	DefaultBirdConfig      = "/etc/roost/bird/bird.cfg"
	DefaultBirdSocket      = "/var/run/roost/bird.ctl"
	DefaultConfdHealthAddr = "127.0.0.1:9097"
	DefaultNodeListen      = ":9099"
)

// Supervise holds the settings of `roost-node run --with-bird
// --with-confd`: roost-node then starts and supervises confd and BIRD
// beside the agent, as calico-node's image does with runit.
type Supervise struct {
	WithBird  bool
	WithConfd bool

	BirdPath            string // "" : bird in PATH, else /usr/sbin/bird
	BirdConfig          string // the rendered main file BIRD runs on
	BirdSocket          string
	BirdLogStderr       bool // run BIRD on a wrapper adding `log stderr all`
	BirdGracefulRestart bool // stop with `graceful restart`, restart with -R

	ConfdPath       string // "" : next to roost-node, else PATH
	ConfdHealthAddr string

	ReadyRequireEstablished bool

	BackoffMin  time.Duration
	BackoffMax  time.Duration
	StableAfter time.Duration
	StopTimeout time.Duration
}

// Settings lists the supervisor's settings.
func (s *Supervise) Settings() []*Setting {
	return []*Setting{
		{Flag: "with-bird", Env: "ROOST_WITH_BIRD", Default: "false", Bool: true,
			Help: "start and supervise BIRD 2 on the rendered configuration", Parse: settings.Bool(&s.WithBird)},
		{Flag: "with-confd", Env: "ROOST_WITH_CONFD", Default: "false", Bool: true,
			Help: "start and supervise confd (renders BIRD's configuration)", Parse: settings.Bool(&s.WithConfd)},
		{Flag: "bird-path", Env: "ROOST_BIRD_PATH", Help: "BIRD 2 executable (default: bird in PATH, else /usr/sbin/bird)", Parse: settings.String(&s.BirdPath)},
		{Flag: "bird-config", Env: "ROOST_BIRD_CONFIG", Default: DefaultBirdConfig,
			Help: "the BIRD configuration confd renders and BIRD runs on; confd writes into its directory", Parse: settings.String(&s.BirdConfig)},
		birdSocketSetting(&s.BirdSocket),
		{Flag: "bird-log-stderr", Env: "ROOST_BIRD_LOG_STDERR", Default: "true", Bool: true,
			Help: "run BIRD on a small wrapper (next to the socket) that adds 'log stderr all;' and includes the rendered configuration, so BIRD's log reaches roost-node's", Parse: settings.Bool(&s.BirdLogStderr)},
		{Flag: "bird-graceful-restart", Env: "ROOST_BIRD_GRACEFUL_RESTART", Default: "true", Bool: true,
			Help: "stop BIRD with 'graceful restart' (peers keep its routes for the restart time, kernel routes stay) and start it with -R after a crash or a graceful stop; false: stop with 'down' (peers withdraw at once)", Parse: settings.Bool(&s.BirdGracefulRestart)},
		{Flag: "confd-path", Env: "ROOST_CONFD_PATH", Help: "confd executable (default: confd next to roost-node, else in PATH)", Parse: settings.String(&s.ConfdPath)},
		confdHealthSetting(&s.ConfdHealthAddr),
		readySetting(&s.ReadyRequireEstablished),
		{Flag: "restart-backoff-min", Env: "ROOST_RESTART_BACKOFF_MIN", Default: "1s", Help: "delay before restarting a child that exited", Parse: settings.Duration(&s.BackoffMin)},
		{Flag: "restart-backoff-max", Env: "ROOST_RESTART_BACKOFF_MAX", Default: "30s", Help: "longest restart delay (the delay doubles on each failure; each one is drawn at random from the upper half of its value)", Parse: settings.Duration(&s.BackoffMax)},
		{Flag: "restart-stable-after", Env: "ROOST_RESTART_STABLE_AFTER", Default: "60s", Help: "a child that ran this long starts again from the shortest delay", Parse: settings.Duration(&s.StableAfter)},
		{Flag: "stop-timeout", Env: "ROOST_STOP_TIMEOUT", Default: "10s", Help: "time a child gets to stop before SIGKILL", Parse: settings.Duration(&s.StopTimeout)},
	}
}

func birdSocketSetting(p *string) *Setting {
	return &Setting{Flag: "bird-socket", Env: "BIRD_SOCKET", Default: DefaultBirdSocket, Help: "BIRD's control socket (also confd's and birdctl's)", Parse: settings.String(p)}
}

func confdHealthSetting(p *string) *Setting {
	return &Setting{Flag: "confd-health-addr", Env: "ROOST_CONFD_HEALTH_ADDR", Default: DefaultConfdHealthAddr,
		Help: "confd's /healthz and /readyz address (the supervisor passes it to confd)", Parse: settings.String(p)}
}

func readySetting(p *bool) *Setting {
	return &Setting{Flag: "ready-require-established", Env: "ROOST_READY_REQUIRE_ESTABLISHED", Default: "true", Bool: true,
		Help: "readiness needs every BGP session Established (/readyz: once since BIRD started; health --bird-ready: now)", Parse: settings.Bool(p)}
}

// HealthChecks are the checks of `roost-node health`, one flag each.
var HealthChecks = []struct{ Flag, Help string }{
	{"bird-live", "BIRD answers on its control socket"},
	{"bird-ready", "BIRD answers, is up (not shutting down, not in graceful restart recovery) and every BGP session is Established (unless --ready-require-established=false)"},
	{"confd-live", "confd's /healthz answers 200 (its datastore watches run)"},
	{"node-live", "roost-node's /healthz answers 200 (the node is registered)"},
	{"node-ready", "roost-node's /readyz answers 200 (datastore in sync, dataplane programmed and, under the supervisor, BIRD ready)"},
}

// Health holds the settings of `roost-node health`. Names are those of
// `run`, so the probe reads the same environment as the process it checks.
type Health struct {
	BirdSocket              string
	ConfdHealthAddr         string
	Listen                  string
	ReadyRequireEstablished bool
	Timeout                 time.Duration
}

// Settings lists the settings of `health`.
func (h *Health) Settings() []*Setting {
	return []*Setting{
		birdSocketSetting(&h.BirdSocket),
		confdHealthSetting(&h.ConfdHealthAddr),
		{Flag: "listen", Env: "ROOST_NODE_LISTEN", Default: DefaultNodeListen, Help: "roost-node's /healthz and /readyz address (a missing host means 127.0.0.1)", Parse: settings.String(&h.Listen)},
		readySetting(&h.ReadyRequireEstablished),
		{Flag: "timeout", Env: "ROOST_HEALTH_TIMEOUT", Default: "5s", Help: "time limit of all checks together", Parse: settings.Duration(&h.Timeout)},
	}
}

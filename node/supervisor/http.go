package supervisor

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/roostnet/roost/internal/health"
)

// AgentView is what the HTTP handler needs from the node agent.
type AgentView struct {
	Alive  func() bool
	Ready  func() bool
	Status func() any // the agent's JSON status
	// Why says why the agent is not ready (optional).
	Why func() string
}

// report is the JSON body of /healthz and /readyz under the supervisor.
type report struct {
	Alive      bool   `json:"alive"`
	Ready      bool   `json:"ready"`
	Reason     string `json:"reason,omitempty"`
	Agent      any    `json:"agent"`
	Supervisor Status `json:"supervisor"`
}

// Handler serves /healthz (the agent registered the node), /readyz (the
// agent is ready and so is the supervisor: confd rendered, BIRD answers
// and its BGP sessions reached Established) and /metrics from g.
func Handler(a AgentView, s *Supervisor, g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	build := func() report {
		st := s.Status()
		r := report{Alive: a.Alive(), Agent: a.Status(), Supervisor: st}
		var reasons []string
		if !r.Alive {
			reasons = append(reasons, "the node is not registered yet")
		} else if !a.Ready() {
			why := "the agent is not in sync yet"
			if a.Why != nil {
				if w := a.Why(); w != "" {
					why = w
				}
			}
			reasons = append(reasons, why)
		}
		if !st.Ready {
			reasons = append(reasons, st.Reason)
		}
		r.Ready = len(reasons) == 0
		r.Reason = strings.Join(reasons, "; ")
		return r
	}
	health.Register(mux,
		func() (bool, any) { r := build(); return r.Alive, r },
		func() (bool, any) { r := build(); return r.Ready, r })
	return mux
}

// jsonReason extracts a JSON status's reason, for one-line probe output.
func jsonReason(body []byte) string {
	var v struct {
		Reason    string `json:"reason"`
		LastError string `json:"lastError"`
		Alive     *bool  `json:"alive"`
		Ready     *bool  `json:"ready"`
		InSync    map[string]bool
	}
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	switch {
	case v.Reason != "":
		return v.Reason
	case v.Ready != nil && !*v.Ready:
		var missing []string
		for k, ok := range v.InSync {
			if !ok {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			return "not in sync: " + strings.Join(missing, ", ")
		}
		if v.LastError != "" {
			return "not ready: " + v.LastError
		}
		return "not ready"
	case v.Alive != nil && !*v.Alive:
		return "not alive"
	}
	return ""
}

// Notify sends a state ("READY=1", "STOPPING=1") to systemd when it
// started roost-node with Type=notify; otherwise it does nothing.
func Notify(state string) error {
	sock := os.Getenv("NOTIFY_SOCKET")
	if sock == "" {
		return nil
	}
	if strings.HasPrefix(sock, "@") {
		sock = "\x00" + sock[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}

// Package health serves the liveness and readiness endpoints of Roost's
// programs (/healthz and /readyz): 200 when the check passes, 503 when it
// fails, and a body that says why. confd answers in one line of text,
// roost-node with its JSON status; both go through Respond.
package health

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Paths of the two endpoints.
const (
	LivePath  = "/healthz"
	ReadyPath = "/readyz"
)

// Check answers one probe. ok picks the status code; body is the response:
// a string is sent as one line of text, anything else as indented JSON.
type Check func() (ok bool, body any)

// Register adds LivePath (live) and ReadyPath (ready) to mux.
func Register(mux *http.ServeMux, live, ready Check) {
	mux.Handle(LivePath, handler(live))
	mux.Handle(ReadyPath, handler(ready))
}

// Handler serves only the two endpoints.
func Handler(live, ready Check) *http.ServeMux {
	mux := http.NewServeMux()
	Register(mux, live, ready)
	return mux
}

func handler(c Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		ok, body := c()
		Respond(w, ok, body)
	})
}

// Respond writes body with 200 when ok, else 503 (see Check for the body).
func Respond(w http.ResponseWriter, ok bool, body any) {
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	if s, isText := body.(string); isText {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(code)
		fmt.Fprintln(w, s)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(body) // the client went away: nothing to do
}

package health

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestEndpoints(t *testing.T) {
	type status struct {
		Alive  bool   `json:"alive"`
		Reason string `json:"reason,omitempty"`
	}
	live := func() (bool, any) { return true, "ok" }
	cases := []struct {
		name     string
		ready    Check
		path     string
		code     int
		ctype    string
		wantBody string
	}{
		{"live text", nil, LivePath, 200, "text/plain; charset=utf-8", "ok\n"},
		{"not ready text", func() (bool, any) { return false, "not in sync with the datastore" }, ReadyPath, 503, "text/plain; charset=utf-8", "not in sync with the datastore\n"},
		{"ready JSON", func() (bool, any) { return true, status{Alive: true} }, ReadyPath, 200, "application/json", "{\n  \"alive\": true\n}\n"},
		{"not ready JSON", func() (bool, any) { return false, status{Reason: "BIRD is down"} }, ReadyPath, 503, "application/json", "{\n  \"alive\": false,\n  \"reason\": \"BIRD is down\"\n}\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ready := tc.ready
			if ready == nil {
				ready = live
			}
			srv := httptest.NewServer(Handler(live, ready))
			defer srv.Close()
			resp, err := http.Get(srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.code || resp.Header.Get("Content-Type") != tc.ctype || string(b) != tc.wantBody {
				t.Errorf("got %d %q %q, want %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), b, tc.code, tc.ctype, tc.wantBody)
			}
		})
	}
}

// Other paths are not served by Handler.
func TestOnlyTwoPaths(t *testing.T) {
	srv := httptest.NewServer(Handler(func() (bool, any) { return true, "ok" }, func() (bool, any) { return true, "ok" }))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/metrics: %d", resp.StatusCode)
	}
}

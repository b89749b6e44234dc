package supervisor

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"

	"github.com/roostnet/roost/birdctl/birdsock"
)

// The checks behind `roost-node health`. Each returns nil, or an error
// whose text is a one-line reason.

// BirdLive checks that BIRD answers `show status` on its control socket.
func BirdLive(ctx context.Context, socket string) error {
	c, err := birdsock.Dial(ctx, socket)
	if err != nil {
		return fmt.Errorf("BIRD is not answering on %s: %s", socket, oneLine(unwrapDial(err)))
	}
	defer c.Close()
	if _, err := c.Status(ctx); err != nil {
		return fmt.Errorf("BIRD on %s: show status: %s", socket, oneLine(err.Error()))
	}
	return nil
}

// BirdReady checks that BIRD answers, is up (not shutting down) and, when
// requireEstablished is set, that every BGP session is Established now.
// A probe keeps no history: for "Established at least once since BIRD
// started" ask roost-node's /readyz (health --node-ready).
func BirdReady(ctx context.Context, socket string, requireEstablished bool) error {
	c, err := birdsock.Dial(ctx, socket)
	if err != nil {
		return fmt.Errorf("BIRD is not answering on %s: %s", socket, oneLine(unwrapDial(err)))
	}
	defer c.Close()
	st, recovering, err := birdStatus(ctx, c)
	if err != nil {
		return fmt.Errorf("BIRD on %s: show status: %s", socket, oneLine(err.Error()))
	}
	if ok, why := birdSettled(st, recovering); !ok {
		return fmt.Errorf("BIRD is not ready: %s", why)
	}
	if !requireEstablished {
		return nil
	}
	protos, err := c.Protocols(ctx)
	if err != nil {
		return fmt.Errorf("BIRD on %s: show protocols: %s", socket, oneLine(err.Error()))
	}
	var down []string
	n := 0
	for _, p := range protos {
		if !strings.EqualFold(p.Proto, "BGP") {
			continue
		}
		n++
		info := strings.Join(strings.Fields(p.Info), " ")
		if !strings.HasPrefix(info, "Established") {
			if info == "" {
				info = p.State
			}
			down = append(down, p.Name+" ("+info+")")
		}
	}
	if len(down) > 0 {
		sort.Strings(down)
		return fmt.Errorf("%d of %d BGP sessions not Established: %s", len(down), n, strings.Join(firstN(down, 5), ", "))
	}
	return nil
}

// HTTPCheck GETs url and expects 200.
func HTTPCheck(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %s", url, oneLine(unwrapURL(err)))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64*1024))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, summarize(body))
	}
	return nil
}

// LocalURL turns a listen address (":9099", "0.0.0.0:9099",
// "127.0.0.1:9097") into a URL on this host.
func LocalURL(listen, path string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("address %q: %w", listen, err)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}

// summarize makes a response body one short line: a JSON status's reason
// when there is one, else the first line.
func summarize(body []byte) string {
	s := strings.TrimSpace(string(body))
	if strings.HasPrefix(s, "{") {
		if r := jsonReason(body); r != "" {
			return r
		}
	}
	s = oneLine(s)
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

func unwrapDial(err error) string {
	// birdsock's text repeats the path; the innermost error is the reason.
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.Contains(s, "dial unix") {
		return s[i+2:]
	}
	return s
}

func unwrapURL(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+2:]
	}
	return s
}

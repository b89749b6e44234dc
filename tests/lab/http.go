package lab

import (
	"context"
	"fmt"
	"strings"
)

// HTTPGet fetches http://127.0.0.1:<port><path> inside the host's
// namespace (roost-node's and confd's health and metrics servers listen on
// its loopback) and returns the status code and body. It uses bash's
// /dev/tcp, so the lab needs no HTTP client on the machine.
func (l *Lab) HTTPGet(ctx context.Context, h *Host, port int, path string) (int, string, error) {
	script := fmt.Sprintf(`exec 3<>/dev/tcp/127.0.0.1/%d && printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3 && cat <&3`, port, path)
	out, err := l.Exec(ctx, h.NS, nil, "bash", "-c", script)
	if err != nil {
		return 0, "", err
	}
	head, body, ok := strings.Cut(out, "\r\n\r\n")
	var code int
	if _, serr := fmt.Sscanf(head, "HTTP/1.%d %d", new(int), &code); !ok || serr != nil {
		return 0, "", fmt.Errorf("GET %s on %s: not an HTTP response: %q", path, h.Name, firstLine(out))
	}
	return code, body, nil
}

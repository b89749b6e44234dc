package birdsock

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Reply codes from BIRD's doc/reply_codes that the helpers rely on.
const (
	codeReconfigured       = 3
	codeReconfInProgress   = 4  // accepted; protocols are still restarting
	codeReconfQueued       = 5  // accepted; applied after the running one
	codeReconfQueueReplace = 17 // accepted; replaced a queued config
	codeConfigOK           = 20
	codeNetworkNotFound    = 8001
)

// quoteFile quotes a path for BIRD's CLI, whose strings have no escapes.
func quoteFile(file string) (string, error) {
	if strings.ContainsAny(file, "\"\r\n") {
		return "", fmt.Errorf("birdsock: config path %q contains a quote or line break", file)
	}
	return `"` + file + `"`, nil
}

// Configure makes BIRD load file (`configure "file"`), or re-read its current
// configuration file if file is empty. It succeeds when BIRD accepted the new
// configuration ("0003 Reconfigured", or reconfiguration in progress or
// queued). Otherwise it returns a *BirdError whose Text is BIRD's message,
// e.g. "/etc/bird.conf:12:3 syntax error, unexpected '}'".
func (c *Client) Configure(ctx context.Context, file string) error {
	_, err := c.ConfigureResult(ctx, file, false)
	return err
}

// ConfigureCheck asks BIRD to parse file without applying it
// (`configure check "file"`); it expects "0020 Configuration OK".
func (c *Client) ConfigureCheck(ctx context.Context, file string) error {
	_, err := c.ConfigureResult(ctx, file, true)
	return err
}

// ConfigureResult is Configure, or ConfigureCheck when check is set, that
// also returns BIRD's final message on success: "Reconfigured",
// "Reconfiguration in progress", "Configuration OK"...
func (c *Client) ConfigureResult(ctx context.Context, file string, check bool) (string, error) {
	cmd, ok := "configure", []int{codeReconfigured, codeReconfInProgress, codeReconfQueued, codeReconfQueueReplace}
	if check {
		cmd, ok = "configure check", []int{codeConfigOK}
	}
	if file != "" {
		q, err := quoteFile(file)
		if err != nil {
			return "", err
		}
		cmd += " " + q
	}
	rep, err := c.Exec(ctx, cmd)
	if err != nil {
		return "", err
	}
	msg := rep.Lines[len(rep.Lines)-1].Text
	for _, code := range ok {
		if rep.Code == code {
			return msg, nil
		}
	}
	// E.g. "0006 Reconfiguration ignored, shutting down".
	return "", &BirdError{Code: rep.Code, Text: msg, Command: cmd}
}

// Status runs `show status`.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	rep, err := c.Exec(ctx, "show status")
	if err != nil {
		return nil, err
	}
	return ParseStatus(rep.Text())
}

// Protocols runs `show protocols`.
func (c *Client) Protocols(ctx context.Context) ([]Protocol, error) {
	rep, err := c.Exec(ctx, "show protocols")
	if err != nil {
		return nil, err
	}
	return ParseProtocols(rep.Text())
}

// ProtocolDetails runs `show protocols all`: every protocol's details.
func (c *Client) ProtocolDetails(ctx context.Context) ([]ProtocolDetail, error) {
	rep, err := c.Exec(ctx, "show protocols all")
	if err != nil {
		return nil, err
	}
	return ParseProtocolDetails(rep.Text())
}

// ProtocolDetail runs `show protocols all "name"`. The name is sent as a
// pattern so that an unknown name gives BIRD's "8003 No protocols match"
// (a *BirdError) rather than a syntax error; wildcards are refused.
func (c *Client) ProtocolDetail(ctx context.Context, name string) (*ProtocolDetail, error) {
	if name == "" || strings.ContainsAny(name, "\"\r\n*?\\") {
		return nil, fmt.Errorf("birdsock: invalid protocol name %q", name)
	}
	rep, err := c.Exec(ctx, `show protocols all "`+name+`"`)
	if err != nil {
		return nil, err
	}
	ds, err := ParseProtocolDetails(rep.Text())
	if err != nil {
		return nil, err
	}
	for i := range ds {
		if ds[i].Name == name {
			return &ds[i], nil
		}
	}
	return nil, fmt.Errorf("birdsock: protocol %s missing from BIRD's reply", name)
}

// Routes runs `show route ARGS`, e.g. args "all for 10.0.0.0/24",
// "protocol Mesh_10_0_0_2" or "table master6". A network that BIRD does not
// know ("8001 Network not found") gives no routes and no error.
func (c *Client) Routes(ctx context.Context, args string) ([]Route, error) {
	cmd := strings.TrimSpace("show route " + args)
	rep, err := c.Exec(ctx, cmd)
	var be *BirdError
	if errors.As(err, &be) && be.Code == codeNetworkNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseRoutes(rep.Text())
}

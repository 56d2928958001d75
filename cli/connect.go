package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
)

// tlsConfig is the client TLS configuration: the edge verified against the
// CA of --ca, or the system pool when none is set, and the certificate of
// the login when there is no token.
func tlsConfig(s *Settings) (*tls.Config, error) {
	var pool *x509.CertPool
	if s.CA != "" {
		var err error
		if pool, err = certs.LoadPool(s.CA); err != nil {
			return nil, &configError{fmt.Errorf("read the CA certificate %s: %w", s.CA, err)}
		}
	}
	tc := certs.ClientTLSConfig(pool)
	return tc, useLogin(s, tc)
}

// connection is everything a device command needs to reach the edge.
type connection struct {
	settings *Settings
	tls      *tls.Config
	device   string
	log      *slog.Logger
	cfg      *transport.Config
}

// prepare resolves settings for a command that reaches device.
func (g *globalOptions) prepare(device string) (*connection, error) {
	g.msg.device = device
	s, err := g.settings()
	if err != nil {
		return nil, err
	}
	if err := s.requireEdge(); err != nil {
		return nil, err
	}
	if device == "" {
		return nil, usageErrorf("the device ID is empty")
	}
	tc, err := tlsConfig(s)
	if err != nil {
		return nil, err
	}
	return &connection{settings: s, tls: tc, device: device, log: g.logger(),
		cfg: &transport.Config{HandshakeTimeout: g.timeout}}, nil
}

// dial opens a client session to the device. Its Done reports a lost
// connection at once.
func (c *connection) dial(ctx context.Context) (*client.Client, error) {
	c.log.Debug("dialing the edge", "edge", c.settings.Edge, "device", c.device)
	d := &client.Dialer{Edge: c.settings.Edge, Token: c.settings.Token, TLSConfig: c.tls, Config: c.cfg}
	return d.Dial(ctx, c.device)
}

// redial dials the device and keeps the session and its successors alive
// for a long-running command (tcp, udp, socks), telling the user of losses
// and reconnections in the words of describe, each failure once. The first
// dial's error is returned as it is.
func (c *connection) redial(ctx context.Context, out func(string, ...any)) (*client.Redialer, error) {
	first, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	var lastMsg string
	r := &client.Redialer{
		Dial: c.dial,
		Notify: func(e client.Event) {
			switch e.Kind {
			case client.Lost:
				out("lost the connection to the edge; reconnecting (local listeners stay open)")
			case client.RedialFailed:
				_, msg := describe(e.Err, msgContext{c.settings.Edge, c.device, c.settings.TokenFrom, c.settings.CA})
				if msg != lastMsg {
					out("reconnect failed: %s; retrying", msg)
					lastMsg = msg
				}
			case client.Reconnected:
				lastMsg = ""
				out("reconnected to the edge")
			}
		},
	}
	if err := r.Start(ctx, first); err != nil {
		first.Close()
		return nil, err
	}
	return r, nil
}

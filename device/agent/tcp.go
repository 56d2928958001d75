package agent

import (
	"context"
	"errors"
	"net/netip"

	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/tcp"
)

// handleTCP serves a TCP tunnel (0x10) with tcp.Handler under the config
// in force: the allow list authorizes every address the target resolves
// to, and only those are dialed.
func (a *Agent) handleTCP(ctx context.Context, st *transport.Stream, payload []byte) error {
	cfg := a.cfg.Load()
	log := a.log()
	h := &tcp.Handler{
		Authorize: func(ctx context.Context, t target.Target) ([]netip.Addr, error) {
			addrs, err := cfg.AuthorizeTCP(ctx, a.Resolver, t)
			if err != nil && errors.Is(err, ErrNotAllowed) {
				log.Warn("tcp tunnel refused by the allow list", "target", t.String(), "allow", cfg.TCPAllow(), "reason", err.Error())
			}
			return addrs, err
		},
		DialTimeout:  cfg.DialTimeout,
		StallTimeout: max(cfg.StallTimeout, 0),
		Logger:       log,
	}
	return h.Serve(ctx, st, payload)
}

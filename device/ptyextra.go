package device

import (
	"context"

	"github.com/tetherhq/tether/transport"
)

// ptyExtra serves PTY (0x12) and PTY command (0x13) streams when
// pty.enabled is set in the config in force.
type ptyExtra struct {
	a *Agent
}

func (p *ptyExtra) start(a *Agent, dc *transport.DeviceClient, cfg *Config) {
	p.a = a
	dc.Handle(transport.MsgPTY, p.handle)
	dc.Handle(transport.MsgPTYCommand, p.handle)
}

func (p *ptyExtra) apply(cfg *Config) {}

func (p *ptyExtra) close() error { return nil }

func (p *ptyExtra) handle(ctx context.Context, st *transport.Stream, payload []byte) {
	if !p.a.cfg.Load().PTY.Enabled {
		_ = transport.WriteError(st, ptyDisabled)
		return
	}
	_ = transport.WriteError(st, "PTY sessions are not available in this build of the agent")
}

const ptyDisabled = "PTY sessions are disabled on this device; its owner can set pty.enabled: true in the agent's config"

package agent

import (
	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/pty"
	"github.com/tetherhq/tether/transport/wire"
)

// ptyExtra serves PTY (0x12) and PTY command (0x13) streams through a
// pty.Server. The server always exists, so that a reload can turn
// pty.enabled on or off; while it is off every new session is refused with
// an Error that says how to turn it on.
type ptyExtra struct {
	srv *pty.Server
}

func (p *ptyExtra) start(a *Agent, dc *device.Client, cfg *Config) {
	p.srv = &pty.Server{Config: ptyConfig(cfg), Logger: a.Logger}
	dc.Handle(wire.MsgPTY, p.srv.ServePTY)
	dc.Handle(wire.MsgPTYCommand, p.srv.ServeCommand)
}

// apply hands the new PTY settings to the server; running sessions keep
// theirs.
func (p *ptyExtra) apply(cfg *Config) {
	if p.srv != nil {
		p.srv.SetConfig(ptyConfig(cfg))
	}
}

// close hangs up every session and waits for their processes.
func (p *ptyExtra) close() error {
	if p.srv == nil {
		return nil
	}
	return p.srv.Close()
}

func ptyConfig(cfg *Config) pty.Config {
	return pty.Config{
		Enabled:     cfg.PTY.Enabled,
		Shell:       cfg.PTY.Shell,
		User:        cfg.PTY.User,
		MaxSessions: cfg.PTY.MaxSessions,
		IdleTimeout: cfg.PTY.IdleTimeout,
	}
}

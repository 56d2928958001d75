package agent

import (
	"errors"

	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/pty"
	"github.com/tetherhq/tether/transport/wire"
)

// ptyExtra serves PTY (0x12) and PTY command (0x13) streams through a
// pty.Server. The server always exists, so that a reload can turn
// pty.enabled on or off; while it is off every new session is refused with
// an Error that says how to turn it on.
//
// Exec (0x71) streams, commands without a terminal, go to a
// pty.ExecServer in the same way, with exec.enabled.
type ptyExtra struct {
	srv  *pty.Server
	exec *pty.ExecServer
}

func (p *ptyExtra) start(a *Agent, dc *device.Client, cfg *Config) {
	p.srv = &pty.Server{Config: ptyConfig(cfg), Logger: a.Logger}
	dc.Handle(wire.MsgPTY, p.srv.ServePTY)
	dc.Handle(wire.MsgPTYCommand, p.srv.ServeCommand)
	p.exec = &pty.ExecServer{Config: execConfig(cfg), Logger: a.Logger}
	dc.Handle(wire.MsgExec, p.exec.Serve)
}

// apply hands the new PTY and exec settings to the servers; running
// sessions and commands keep theirs.
func (p *ptyExtra) apply(cfg *Config) {
	if p.srv != nil {
		p.srv.SetConfig(ptyConfig(cfg))
	}
	if p.exec != nil {
		p.exec.SetConfig(execConfig(cfg))
	}
}

// close hangs up every session and command and waits for their processes.
func (p *ptyExtra) close() error {
	var errs []error
	if p.srv != nil {
		errs = append(errs, p.srv.Close())
	}
	if p.exec != nil {
		errs = append(errs, p.exec.Close())
	}
	return errors.Join(errs...)
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

func execConfig(cfg *Config) pty.ExecConfig {
	return pty.ExecConfig{
		Enabled:     cfg.Exec.Enabled,
		Shell:       cfg.PTY.Shell,
		User:        cfg.PTY.User,
		MaxSessions: cfg.Exec.MaxSessions,
	}
}

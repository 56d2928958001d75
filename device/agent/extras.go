package agent

import (
	"context"
	"errors"
	"net/netip"

	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/transport/files"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/wire"
	"github.com/tetherhq/tether/udp"
)

// extras are the handlers that live in their own packages: UDP tunnels,
// PTY sessions and file transfers. The agent owns them and closes them on Close.
type extras struct {
	udp   *udp.Handler
	allow func(context.Context, target.Target) (netip.Addr, error) // the UDP check, on the config in force
	pty   ptyExtra
	files *files.Server
}

func (e *extras) start(a *Agent, dc *device.Client, cfg *Config) {
	// Every UDP target is checked like a TCP one; the tunnel sends to the
	// first of the addresses that were checked.
	e.allow = func(ctx context.Context, t target.Target) (netip.Addr, error) {
		addrs, err := a.cfg.Load().AuthorizeUDP(ctx, a.Resolver, t)
		if err != nil {
			return netip.Addr{}, err
		}
		return addrs[0], nil
	}
	e.udp = &udp.Handler{Config: udpConfig(cfg, e.allow), Logger: a.Logger}
	dc.Handle(wire.MsgUDP, e.udp.Serve)
	e.pty.start(a, dc, cfg)
	e.files = &files.Server{Logger: a.Logger}
	e.files.SetConfig(cfg.FilesConfig())
	dc.Handle(wire.MsgFileTransfer, e.files.Serve)
}

// apply hands a new config to the handlers; streams opened from now on use it.
func (e *extras) apply(cfg *Config) {
	if e.udp != nil {
		e.udp.SetConfig(udpConfig(cfg, e.allow))
	}
	e.pty.apply(cfg)
	if e.files != nil {
		e.files.SetConfig(cfg.FilesConfig())
	}
}

func (e *extras) close() error {
	var errs []error
	if e.udp != nil {
		errs = append(errs, e.udp.Close())
	}
	errs = append(errs, e.pty.close())
	return errors.Join(errs...)
}

func udpConfig(cfg *Config, allow func(context.Context, target.Target) (netip.Addr, error)) udp.DeviceConfig {
	return udp.DeviceConfig{
		IdleTimeout:         cfg.UDP.IdleTimeout,
		MaxPacketsPerSecond: cfg.UDP.MaxPacketsPerSecond,
		MaxReplyRatio:       cfg.UDP.MaxReplyRatio,
		ReplyRatioWindow:    cfg.UDP.ReplyWindow,
		ReplyAllowance:      cfg.UDP.ReplyAllowanceBytes,
		Authorize:           allow,
	}
}

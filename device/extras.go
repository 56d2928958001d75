package device

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/tetherhq/tether/internal/target"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/udp"
)

// extras are the handlers that live in their own packages: UDP tunnels
// and PTY sessions. The agent owns them and closes them on Close.
type extras struct {
	udp   *udp.DeviceHandler
	allow func(context.Context, target.Target) (netip.Addr, error) // the UDP check, on the config in force
	pty   ptyExtra
}

func (e *extras) start(a *Agent, dc *transport.DeviceClient, cfg *Config) {
	e.allow = func(ctx context.Context, t target.Target) (netip.Addr, error) {
		if err := a.cfg.Load().AllowUDP(t); err != nil {
			return netip.Addr{}, err
		}
		return resolveOne(ctx, t)
	}
	e.udp = udp.NewDeviceHandler(udpConfig(cfg, e.allow), a.Logger)
	dc.Handle(transport.MsgUDP, e.udp.Handle)
	e.pty.start(a, dc, cfg)
}

// apply hands a new config to the handlers; streams opened from now on use it.
func (e *extras) apply(cfg *Config) {
	if e.udp != nil {
		e.udp.SetConfig(udpConfig(cfg, e.allow))
	}
	e.pty.apply(cfg)
}

func (e *extras) close() error {
	var errs []error
	if e.udp != nil {
		errs = append(errs, e.udp.Close())
	}
	errs = append(errs, e.pty.close())
	return errors.Join(errs...)
}

// resolveOne returns t's address: its IP, or the first address its name
// resolves to.
func resolveOne(ctx context.Context, t target.Target) (netip.Addr, error) {
	if a, err := netip.ParseAddr(t.Host); err == nil {
		return a, nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", t.Host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("resolve %s: %w", t.Host, err)
	}
	if len(addrs) == 0 {
		return netip.Addr{}, fmt.Errorf("resolve %s: no addresses", t.Host)
	}
	return addrs[0], nil
}

func udpConfig(cfg *Config, allow func(context.Context, target.Target) (netip.Addr, error)) udp.DeviceConfig {
	return udp.DeviceConfig{
		IdleTimeout:         cfg.UDP.IdleTimeout,
		MaxPacketsPerSecond: cfg.UDP.MaxPacketsPerSecond,
		Authorize:           allow,
	}
}

package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/internal/logx"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// Agent is the device agent. Set ConfigPath (or Config) and TLSConfig, then
// call Start; Close stops it. An Agent runs once.
//
//	a := &agent.Agent{ConfigPath: "/etc/tether/agent.yaml", TLSConfig: tc, Logger: log}
//	if err := a.Start(ctx); err != nil { ... }
//	defer a.Close()
//
// The fields must not change after Start.
type Agent struct {
	// ConfigPath is the YAML file to load and to re-read on every reload.
	// It may be empty when Config is set; reloads then fail.
	ConfigPath string
	// Config is the initial configuration, as LoadConfig or ParseConfig
	// returned it (a Config built by hand has empty allow lists and so
	// refuses every tunnel); nil means LoadConfig(ConfigPath).
	Config *Config
	// TLSConfig carries the device certificate and the CA that verifies the
	// edge. Required.
	TLSConfig *tls.Config
	// Transport tunes the session; nil means the config's max_streams,
	// stream_window_kib, receive_budget_mib and keepalive over the
	// transport defaults (Config.TransportConfig).
	Transport *transport.Config
	// Resolver looks up the names of tunnel targets: once per tunnel,
	// before the allow list checks each address, which is then the one
	// dialed. nil means net.DefaultResolver.
	Resolver Resolver
	// Version is the agent's version, sent to the edge at connect with the
	// platform and the operating system (device.LocalAgentInfo) for the
	// device list. Empty sends none of them.
	Version string
	// Logger receives the agent's log; nil discards it.
	Logger *slog.Logger
	// BackoffInitial and BackoffMax bound reconnect delays; zero means the
	// device.Client defaults (1 s and 60 s).
	BackoffInitial, BackoffMax time.Duration

	cfg     atomic.Pointer[Config] // the config in force
	dc      *device.Client
	ext     extras
	reloads reloader
	ctx     context.Context // ends on Close
	cancel  context.CancelFunc

	mu sync.Mutex
	// mu guards the following.
	started, closed bool
}

func (a *Agent) log() *slog.Logger { return logx.Or(a.Logger) }

// Start loads the configuration, registers the stream handlers and starts
// connecting in the background; the agent reconnects until ctx ends or
// Close is called. It returns an error for a bad configuration, a missing
// TLSConfig, or a second call.
func (a *Agent) Start(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.started {
		return errors.New("device: agent already started")
	}
	if a.closed {
		return ErrAgentClosed
	}
	if a.TLSConfig == nil {
		return errors.New("device: Agent.TLSConfig is required (the device certificate and the edge's CA)")
	}
	cfg := a.Config
	if cfg == nil {
		if a.ConfigPath == "" {
			return errors.New("device: set Agent.ConfigPath or Agent.Config")
		}
		var err error
		if cfg, err = LoadConfig(a.ConfigPath); err != nil {
			return err
		}
	}
	tcfg := a.Transport
	if tcfg == nil {
		tcfg = cfg.TransportConfig()
	}
	if err := transport.VerifyConfig(tcfg); err != nil {
		return err
	}
	a.cfg.Store(cfg)
	a.ctx, a.cancel = context.WithCancel(ctx)
	a.reloads.run = a.reload

	dc := &device.Client{URL: cfg.Edge, TLSConfig: a.TLSConfig, Config: tcfg, Logger: a.Logger,
		BackoffInitial: a.BackoffInitial, BackoffMax: a.BackoffMax}
	if a.Version != "" {
		dc.Agent = device.LocalAgentInfo(a.Version)
	}
	dc.Handle(wire.MsgTCP, a.handleTCP)
	dc.Handle(wire.MsgReload, a.handleReload)
	a.ext.start(a, dc, cfg)
	if err := dc.Start(a.ctx); err != nil {
		a.ext.close()
		a.cancel()
		return err
	}
	a.dc = dc
	a.started = true
	a.log().Info("agent started", "edge", cfg.Edge, "allow_tcp", cfg.TCPAllow(), "allow_udp", cfg.UDPAllow(), "pty", cfg.PTY.Enabled, "exec", cfg.Exec.Enabled)
	return nil
}

// Ready is closed once the first session to the edge is up. It must be
// called after Start.
func (a *Agent) Ready() <-chan struct{} { return a.dc.Ready() }

// Connected reports whether a session to the edge is up now.
func (a *Agent) Connected() bool { return a.dc != nil && a.dc.Connected() }

// Done is closed when the agent has stopped (after Close, or when Start's
// context ended) and every stream handler returned. It must be called after
// Start.
func (a *Agent) Done() <-chan struct{} { return a.dc.Done() }

// CurrentConfig returns the configuration in force.
func (a *Agent) CurrentConfig() *Config { return a.cfg.Load() }

// Close cuts open streams, disconnects, waits for every handler and
// reload to finish, and releases the UDP and PTY handlers. It is idempotent.
func (a *Agent) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	started := a.started
	a.mu.Unlock()
	if !started {
		return nil
	}
	a.cancel()
	err := a.dc.Close()
	a.reloads.close()
	if cerr := a.ext.close(); err == nil {
		err = cerr
	}
	a.log().Info("agent stopped")
	return err
}

// Reload re-reads the configuration file, validates it, applies it at once
// (or keeps the old one when it is invalid), runs reload.command, and
// returns the outcome. A reload asked for while one runs is coalesced with
// the next run: however many arrive, at most one more run follows.
func (a *Agent) Reload(ctx context.Context) error {
	actx, err := a.runContext()
	if err != nil {
		return err
	}
	res := a.reloads.trigger(actx)
	select {
	case <-res.done:
		return res.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TriggerReload starts a reload and returns at once; the outcome is
// logged. It is for SIGHUP.
func (a *Agent) TriggerReload() {
	if actx, err := a.runContext(); err == nil {
		a.reloads.trigger(actx)
	}
}

// runContext returns the context of the running agent, which ends on Close.
func (a *Agent) runContext() (context.Context, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.started {
		return nil, errors.New("device: agent not started")
	}
	return a.ctx, nil
}

// reload is one run: read, validate, apply, then run the command.
func (a *Agent) reload(ctx context.Context) error {
	log := a.log()
	err := a.reloadOnce(ctx)
	if err != nil {
		log.Warn("reload failed", "err", err)
	} else {
		log.Info("reload done")
	}
	return err
}

func (a *Agent) reloadOnce(ctx context.Context) error {
	if a.ConfigPath == "" {
		return errors.New("this agent was started without a config file; nothing to reload")
	}
	old := a.cfg.Load()
	nc, err := LoadConfig(a.ConfigPath)
	if err != nil {
		return fmt.Errorf("%w (the previous config stays in force)", err)
	}
	if key, changed := nc.connectionKeysChanged(old); changed {
		return &ConfigError{Path: nc.Path, Line: nc.line(key),
			Msg: fmt.Sprintf("%s changed; restart the agent to apply it (the previous config stays in force)", key)}
	}
	a.cfg.Store(nc)
	a.ext.apply(nc)
	a.log().Info("config applied", "allow_tcp", nc.TCPAllow(), "allow_udp", nc.UDPAllow(), "pty", nc.PTY.Enabled, "exec", nc.Exec.Enabled)
	if len(nc.Reload.Command) == 0 {
		return nil
	}
	return runReloadCommand(ctx, nc.Reload, a.log())
}

// handleReload answers a reload stream (0x14) once the reload ran.
func (a *Agent) handleReload(ctx context.Context, st *transport.Stream, _ []byte) error {
	res := a.reloads.trigger(a.ctx)
	select {
	case <-res.done:
	case <-ctx.Done():
		return errors.New("the agent is shutting down; reload not done")
	}
	if res.err != nil {
		return res.err
	}
	return wire.WriteOK(st, nil)
}

//go:build !windows

package pty

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tetherhq/tether/internal/logx"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// Config tunes a Server (the agent fills it from its pty: section). The
// zero Config refuses every session.
type Config struct {
	// Enabled allows PTY sessions. When false every PTY stream gets an Error.
	Enabled bool
	// Shell is the program started when the client sends no command, as a
	// login shell. Empty means the user's login shell from the passwd
	// database, or /bin/sh when it has none.
	Shell string
	// User runs the sessions as this user (name or numeric uid) when the
	// agent runs as root. Empty means the agent's own user.
	User string
	// MaxSessions caps concurrent sessions; a session beyond it gets an
	// Error. Zero means no cap beyond the session's stream limit.
	MaxSessions int
	// IdleTimeout hangs a session up after this long without a byte in
	// either direction. Zero means never.
	IdleTimeout time.Duration
}

// Validate checks c the way a session would use it, so that a
// configuration check can report problems before any client connects: the
// shell must be an absolute path to an executable, the user must exist and
// be reachable (the agent must run as root to switch to another user), and
// the limits must not be negative. A disabled configuration is always
// valid.
func (c Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	if c.MaxSessions < 0 {
		return fmt.Errorf("pty: max sessions %d is negative; use 0 for no limit", c.MaxSessions)
	}
	if c.IdleTimeout < 0 {
		return fmt.Errorf("pty: idle timeout %v is negative; use 0 to turn it off", c.IdleTimeout)
	}
	if c.Shell != "" {
		if !filepath.IsAbs(c.Shell) {
			return fmt.Errorf("pty: shell %q is not an absolute path", c.Shell)
		}
		fi, err := os.Stat(c.Shell)
		if err != nil {
			return fmt.Errorf("pty: shell: %w", err)
		}
		if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			return fmt.Errorf("pty: shell %s is not an executable file", c.Shell)
		}
	}
	_, err := resolveAccount(c.User)
	return err
}

// Teardown and bookkeeping constants.
const (
	// hangupGrace is how long a hung-up session has between SIGHUP and
	// SIGKILL.
	hangupGrace = 3 * time.Second
	// drainTimeout bounds how long the output of an exited process is
	// still copied to the stream (a process left behind may hold the
	// terminal open).
	drainTimeout = 5 * time.Second
	// exitMemory is how long the exit status of an ended session is kept.
	exitMemory = time.Minute
	// maxExited bounds the remembered exit statuses; the oldest go first.
	maxExited = 4096
)

// Sentinel errors. Their text reaches the client in Error answers.
var (
	// ErrDisabled: PTY sessions are disabled in the configuration.
	ErrDisabled = errors.New("pty: shell access is disabled on this device (set pty.enabled in the agent configuration)")
	// ErrClosed: the server is shutting down.
	ErrClosed = errors.New("pty: the agent is shutting down; try again once it has reconnected")
	// ErrTooManySessions: MaxSessions sessions are open.
	ErrTooManySessions = errors.New("pty: too many shell sessions are open on this device; close one and retry")
	// ErrUnknownSession: no session has this ID.
	ErrUnknownSession = errors.New("pty: no such shell session (it never existed, or ended more than a minute ago)")
	// ErrSessionEnded: the session exists no more, only its exit status.
	ErrSessionEnded = errors.New("pty: the shell session has ended")
)

// Server runs the PTY sessions of a device: register ServePTY and
// ServeCommand with the device runtime for wire.MsgPTY and
// wire.MsgPTYCommand, and Close the Server on shutdown. The zero value is
// ready to use and refuses every session (its Config is not Enabled).
//
//	srv := &pty.Server{Config: pty.Config{Enabled: true}, Logger: log}
//	dc.Handle(wire.MsgPTY, srv.ServePTY)
//	dc.Handle(wire.MsgPTYCommand, srv.ServeCommand)
//	defer srv.Close()
type Server struct {
	// Config is the configuration sessions start with, until SetConfig
	// replaces it. Do not change the field after the first call of a
	// method.
	Config Config
	// Logger receives session events; nil discards them.
	Logger *slog.Logger

	initOnce sync.Once
	log      *slog.Logger
	wg       sync.WaitGroup // one per running session handler

	mu sync.Mutex
	// mu guards the following.
	cfg      Config
	closed   bool
	sessions map[string]*session
	exited   map[string]exitRecord
	order    []string // IDs in exited, oldest first
	ctx      context.Context
	cancel   context.CancelFunc
}

type exitRecord struct {
	status wire.ExitStatus
	at     time.Time
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.log = logx.Or(s.Logger)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.cfg = s.Config
		s.sessions = make(map[string]*session)
		s.exited = make(map[string]exitRecord)
		s.ctx, s.cancel = context.WithCancel(context.Background())
	})
}

// SetConfig replaces the configuration. New sessions use it; running ones
// keep the settings they started with.
func (s *Server) SetConfig(cfg Config) {
	s.init()
	s.mu.Lock()
	s.cfg = cfg
	s.mu.Unlock()
}

// Close hangs up every session, waits until each one's processes are
// reaped and its terminal closed, and refuses new sessions. It is
// idempotent.
func (s *Server) Close() error {
	s.init()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// NumSessions returns the number of running sessions.
func (s *Server) NumSessions() int {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// ServePTY serves a PTY stream (0x12): it is a device.Handler. It
// returns when the session has ended and its processes are reaped.
func (s *Server) ServePTY(ctx context.Context, st *transport.Stream, payload []byte) error {
	s.init()
	req, err := wire.DecodePTYCommand(payload)
	if err != nil {
		_ = wire.WriteError(st, fmt.Sprintf("bad PTY request: %v", err))
		return nil
	}
	sess, cfg, err := s.reserve()
	if err != nil {
		_ = wire.WriteError(st, err.Error())
		return nil
	}
	defer s.wg.Done()
	started := false
	defer func() {
		if !started {
			s.release(sess.id)
		}
	}()
	if err := sess.start(cfg, req); err != nil {
		s.log.Warn("cannot start PTY session", "err", err)
		_ = wire.WriteError(st, err.Error())
		return nil
	}
	started = true
	s.mu.Lock()
	sess.ready = true // resize and status may reach it from now on
	s.mu.Unlock()
	if err := wire.WriteOK(st, []byte(sess.id)); err != nil {
		s.log.Debug("PTY session answer failed", "sid", shortID(sess.id), "err", err)
		sess.abort()
		s.finish(sess)
		return nil
	}
	s.log.Info("PTY session started", "sid", shortID(sess.id), "pid", sess.cmd.Process.Pid,
		"user", sess.user, "command", sess.argv0)

	// The session ends with the handler's context (the agent is closing)
	// or the server's.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	status, why := sess.run(rctx, st, cfg.IdleTimeout, func(es wire.ExitStatus) { s.recordExit(sess.id, es) })
	s.finish(sess)
	s.log.Info("PTY session ended", "sid", shortID(sess.id), "status", status.String(), "why", why)
	return nil
}

// reserve registers a new session under a fresh ID, within the limits.
// On success the caller owns one count of s.wg.
func (s *Server) reserve() (*session, Config, error) {
	id, err := newID()
	if err != nil {
		return nil, Config{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg := s.cfg
	switch {
	case s.closed:
		return nil, cfg, ErrClosed
	case !cfg.Enabled:
		return nil, cfg, ErrDisabled
	case cfg.MaxSessions > 0 && len(s.sessions) >= cfg.MaxSessions:
		return nil, cfg, fmt.Errorf("%w (limit %d)", ErrTooManySessions, cfg.MaxSessions)
	}
	sess := &session{id: id, log: s.log}
	s.sessions[id] = sess
	s.wg.Add(1)
	return sess, cfg, nil
}

func (s *Server) release(id string) {
	s.mu.Lock()
	delete(s.sessions, id)
	s.mu.Unlock()
}

// finish closes what is left of a session and unregisters it. Its exit
// status was recorded when the process ended, before the stream closed.
func (s *Server) finish(sess *session) {
	sess.closeTerminal()
	s.release(sess.id)
}

// recordExit remembers a session's exit status for exitMemory.
func (s *Server) recordExit(id string, es wire.ExitStatus) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked(now)
	if len(s.order) >= maxExited {
		delete(s.exited, s.order[0])
		s.order = s.order[1:]
	}
	s.exited[id] = exitRecord{status: es, at: now}
	s.order = append(s.order, id)
}

// pruneLocked forgets exit statuses older than exitMemory.
func (s *Server) pruneLocked(now time.Time) {
	n := 0
	for n < len(s.order) && now.Sub(s.exited[s.order[n]].at) > exitMemory {
		delete(s.exited, s.order[n])
		n++
	}
	if n > 0 {
		s.order = append(s.order[:0], s.order[n:]...)
	}
}

// ServeCommand serves a PTY command stream (0x13): resize (type 0) or
// exit status (type 1). It is a device.Handler.
func (s *Server) ServeCommand(_ context.Context, st *transport.Stream, payload []byte) error {
	s.init()
	cmd, err := wire.DecodePTYCommand(payload)
	if err != nil {
		_ = wire.WriteError(st, fmt.Sprintf("bad PTY command: %v", err))
		return nil
	}
	switch cmd.Type {
	case wire.PTYResize:
		err = s.resize(cmd.SID, cmd.Cols, cmd.Rows)
		if err == nil {
			_ = wire.WriteOK(st, nil)
		}
	case wire.PTYStatus:
		var b []byte
		b, err = s.status(cmd.SID)
		if err == nil {
			_ = wire.WriteOK(st, b)
		}
	default:
		err = fmt.Errorf("unknown PTY command type %d (this device knows 0 = resize and 1 = status)", int(cmd.Type))
	}
	if err != nil {
		_ = wire.WriteError(st, err.Error())
	}
	return nil
}

func (s *Server) lookup(id string) (*session, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Sessions that run keep working after a reload turned PTY off.
	s.pruneLocked(time.Now())
	_, exited := s.exited[id]
	if sess, ok := s.sessions[id]; ok && sess.ready {
		return sess, exited, nil
	}
	if exited {
		return nil, true, nil
	}
	return nil, false, ErrUnknownSession
}

func (s *Server) resize(id string, cols, rows int) error {
	if cols < 1 || rows < 1 {
		return fmt.Errorf("bad PTY resize: window size %dx%d must be at least 1x1", cols, rows)
	}
	sess, exited, err := s.lookup(id)
	if err != nil {
		return err
	}
	if sess == nil || exited {
		return ErrSessionEnded
	}
	return sess.resize(cols, rows)
}

func (s *Server) status(id string) ([]byte, error) {
	if _, _, err := s.lookup(id); err != nil {
		return nil, err
	}
	s.mu.Lock()
	rec, ok := s.exited[id]
	s.mu.Unlock()
	es := wire.ExitStatus{}
	if ok {
		es = rec.status
	}
	return es.Encode()
}

// newID returns a random 128-bit session ID in hex.
func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("pty: session ID: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// shortID is the part of a session ID that goes to logs.
func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

//go:build !windows

package pty

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tetherhq/tether/internal/logx"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// ExecConfig tunes an ExecServer (the agent fills it from its exec:
// section, and the run-as user and shell from its pty: section). The zero
// ExecConfig refuses every command.
type ExecConfig struct {
	// Enabled allows exec streams. When false every exec stream gets an
	// Error.
	Enabled bool
	// Shell runs the commands, as `shell -c COMMAND`, and is the login
	// shell of an exec stream without a command. Empty means the user's
	// login shell from the passwd database, or /bin/sh when it has none.
	Shell string
	// User runs the commands as this user (name or numeric uid) when the
	// agent runs as root. Empty means the agent's own user.
	User string
	// MaxSessions caps concurrent commands; one beyond it gets an Error.
	// Zero means no cap beyond the session's stream limit.
	MaxSessions int
}

// Exec sentinel errors. Their text reaches the client in Error answers.
var (
	// ErrExecDisabled: exec streams are disabled in the configuration.
	ErrExecDisabled = errors.New("pty: running commands without a terminal is disabled on this device (set exec.enabled in the agent configuration)")
	// ErrTooManyExecs: MaxSessions commands run.
	ErrTooManyExecs = errors.New("pty: too many commands are running on this device; wait for one to end and retry")
)

// ExecServer runs the commands of exec streams (wire.MsgExec): each one
// without a terminal, its stdout and stderr apart, as the configured user
// with a clean environment. Register Serve with the device runtime and
// Close the server on shutdown. The zero value is ready to use and refuses
// every command (its Config is not Enabled).
//
//	srv := &pty.ExecServer{Config: pty.ExecConfig{Enabled: true}, Logger: log}
//	dc.Handle(wire.MsgExec, srv.Serve)
//	defer srv.Close()
type ExecServer struct {
	// Config is the configuration commands start with, until SetConfig
	// replaces it. Do not change the field after the first call of a
	// method.
	Config ExecConfig
	// Logger receives command events; nil discards them.
	Logger *slog.Logger

	initOnce sync.Once
	log      *slog.Logger
	wg       sync.WaitGroup // one per running command's handler

	mu sync.Mutex
	// mu guards the following.
	cfg     ExecConfig
	closed  bool
	running int
	ctx     context.Context
	cancel  context.CancelFunc
}

func (s *ExecServer) init() {
	s.initOnce.Do(func() {
		s.log = logx.Or(s.Logger)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.cfg = s.Config
		s.ctx, s.cancel = context.WithCancel(context.Background())
	})
}

// SetConfig replaces the configuration. New commands use it; running ones
// keep the settings they started with.
func (s *ExecServer) SetConfig(cfg ExecConfig) {
	s.init()
	s.mu.Lock()
	s.cfg = cfg
	s.mu.Unlock()
}

// NumRunning returns the number of running commands.
func (s *ExecServer) NumRunning() int {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running
}

// Close hangs up every command, waits until each one's processes are
// reaped, and refuses new commands. It is idempotent.
func (s *ExecServer) Close() error {
	s.init()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// Serve serves an exec stream (0x71): it is a device.Handler. It returns
// when the command has ended, its processes are reaped and its status
// sent.
func (s *ExecServer) Serve(ctx context.Context, st *transport.Stream, payload []byte) error {
	s.init()
	req, err := wire.DecodeExecRequest(payload)
	if err != nil {
		_ = wire.WriteError(st, fmt.Sprintf("bad exec request: %v", err))
		return nil
	}
	cfg, err := s.reserve()
	if err != nil {
		_ = wire.WriteError(st, err.Error())
		return nil
	}
	defer s.wg.Done()
	defer s.release()
	p, err := startExec(cfg, req.Command)
	if err != nil {
		s.log.Warn("cannot start command", "err", err)
		_ = wire.WriteError(st, err.Error())
		return nil
	}
	if err := wire.WriteOK(st, nil); err != nil {
		s.log.Debug("exec answer failed", "err", err)
		p.abort()
		return nil
	}
	s.log.Info("command started", "pid", p.cmd.Process.Pid, "user", p.user, "command_bytes", len(req.Command))
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	es, why := p.run(rctx, st, s.log)
	s.log.Info("command ended", "pid", p.cmd.Process.Pid, "status", es.String(), "why", why)
	return nil
}

// reserve counts a new command within the limits. On success the caller
// owns one count of s.wg and calls release.
func (s *ExecServer) reserve() (ExecConfig, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg := s.cfg
	switch {
	case s.closed:
		return cfg, ErrClosed
	case !cfg.Enabled:
		return cfg, ErrExecDisabled
	case cfg.MaxSessions > 0 && s.running >= cfg.MaxSessions:
		return cfg, fmt.Errorf("%w (limit %d)", ErrTooManyExecs, cfg.MaxSessions)
	}
	s.running++
	s.wg.Add(1)
	return cfg, nil
}

func (s *ExecServer) release() {
	s.mu.Lock()
	s.running--
	s.mu.Unlock()
}

// execProc is one running command. The handler that started it owns it.
type execProc struct {
	user   string
	cmd    *exec.Cmd
	pgid   int      // its process group and session ID (it leads both)
	stdin  *os.File // write end of its stdin; nil once closed
	stdout *os.File // read end of its stdout
	stderr *os.File // read end of its stderr

	waitDone chan struct{} // closed once the child is reaped
	state    *os.ProcessState
}

// startExec starts command (empty: the login shell) as cfg's user, in a
// session of its own, with pipes for stdin, stdout and stderr.
func startExec(cfg ExecConfig, command string) (*execProc, error) {
	acct, err := resolveAccount(cfg.User)
	if err != nil {
		return nil, err
	}
	shell := shellFor(cfg.Shell, acct)
	args := []string{"-" + filepath.Base(shell)} // a login shell reading stdin
	if command != "" {
		args = []string{filepath.Base(shell), "-c", command}
	}
	var env []string
	for _, kv := range environment(acct, shell, "") {
		if !strings.HasPrefix(kv, "TERM=") { // no terminal, no TERM (as sshd)
			env = append(env, kv)
		}
	}

	var files []*os.File // every end, closed on failure
	pipe := func() (r, w *os.File) {
		if err != nil {
			return nil, nil
		}
		r, w, err = os.Pipe()
		files = append(files, r, w)
		return r, w
	}
	inR, inW := pipe()
	outR, outW := pipe()
	errR, errW := pipe()
	if err != nil {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
		return nil, fmt.Errorf("pty: cannot create pipes on the device: %w", err)
	}
	cmd := &exec.Cmd{
		Path:   shell,
		Args:   args,
		Env:    env,
		Dir:    workDir(acct),
		Stdin:  inR,
		Stdout: outW,
		Stderr: errW,
		SysProcAttr: &syscall.SysProcAttr{
			Setsid:     true, // its own session and process group, so all of it can be killed
			Credential: acct.cred,
		},
	}
	defaultSessionSignals()
	err = cmd.Start()
	inR.Close() // the child has its own copies
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("pty: start %s as %s: %w", shell, acct.name, err)
	}
	p := &execProc{user: acct.name, cmd: cmd, pgid: cmd.Process.Pid, stdin: inW, stdout: outR, stderr: errR,
		waitDone: make(chan struct{})}
	go func() {
		defer close(p.waitDone)
		_ = cmd.Wait()
		p.state = cmd.ProcessState
	}()
	return p, nil
}

// abort kills a command that never got going, reaps it and closes its
// pipes.
func (p *execProc) abort() {
	killSession(p.pgid, syscall.SIGKILL)
	<-p.waitDone
	p.stdin.Close()
	p.stdout.Close()
	p.stderr.Close()
}

// run relays the stream's frames to and from the command until it ends,
// then tears it down: hang-up and reaping when the client left first,
// output drain, the exit frame, and the stream closed. It returns the exit
// status and why the command ended.
func (p *execProc) run(ctx context.Context, st *transport.Stream, log *slog.Logger) (wire.ExitStatus, string) {
	var wmu sync.Mutex // serializes frames on the stream
	writeFrame := func(frame []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		_, err := st.Write(frame)
		return err
	}

	hup := make(chan string, 1) // why the client's side ended before the command did
	inDone := make(chan struct{})
	go func() {
		defer close(inDone)
		if why := p.copyIn(st); why != "" {
			hup <- why
		}
	}()
	var outs sync.WaitGroup
	outputDone := make(chan struct{})
	for _, o := range []struct {
		f *os.File
		c wire.ExecChannel
	}{{p.stdout, wire.ExecStdout}, {p.stderr, wire.ExecStderr}} {
		outs.Add(1)
		go func() {
			defer outs.Done()
			copyOut(o.f, o.c, writeFrame)
		}()
	}
	go func() {
		outs.Wait()
		close(outputDone)
	}()

	why := "process exited"
	exited, clientGone := false, false
	select {
	case <-p.waitDone:
		exited = true
	case why = <-hup:
		clientGone = true
	case <-ctx.Done():
		why = "agent shutting down"
	}
	if !exited {
		hangup(p.pgid, p.waitDone)
	}
	es := exitStatus(p.state)
	if clientGone || ctx.Err() != nil {
		_ = st.SetDeadline(time.Unix(1, 0)) // nobody reads: unblock the writers
	}

	// Drain what the command wrote; a process left behind that holds its
	// stdout or stderr open gets drainTimeout, then the whole session is
	// killed, which ends the pipes.
	drain := time.NewTimer(drainTimeout)
	select {
	case <-outputDone:
	case <-drain.C:
	case <-ctx.Done():
	}
	drain.Stop()
	killSession(p.pgid, syscall.SIGKILL)
	// The pipes' write ends are all closed now, so the copies end once
	// their data is written to the stream, or the stream fails.
	select {
	case <-outputDone:
	case <-ctx.Done():
		_ = st.SetDeadline(time.Unix(1, 0))
		<-outputDone
	}
	p.stdout.Close()
	p.stderr.Close()
	if !clientGone {
		if frame, err := wire.ExecExitFrame(es); err == nil {
			wmu.Lock()
			_, err = st.Write(frame)
			wmu.Unlock()
			if err != nil {
				log.Debug("exec exit frame not sent", "err", err)
			}
		}
		_ = st.CloseWrite()
	}
	// The client closes its side once it has the exit frame; a client
	// that does not is cut off by the deadline.
	_ = st.SetReadDeadline(time.Now().Add(drainTimeout))
	<-inDone
	p.closeStdin()
	_ = st.Close()
	return es, why
}

// copyIn relays the client's stdin frames to the command. It returns why
// the client's side ended before its time ("" when it ended normally: the
// stream closed after the command ended, or a deadline woke it).
func (p *execProc) copyIn(st *transport.Stream) string {
	r := wire.NewExecReader(st)
	eof := false
	for {
		f, err := r.ReadExecFrame()
		if err != nil {
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				return ""
			case errors.Is(err, io.EOF):
				return "client closed the stream"
			case errors.Is(err, wire.ErrInvalidExecFrame):
				_ = st.AbortWith("exec: " + err.Error())
				return "protocol error: " + err.Error()
			}
			return "stream failed: " + err.Error()
		}
		if !f.Channel.FromClient() || eof {
			reason := fmt.Sprintf("exec: a client may not send a %v frame here", f.Channel)
			_ = st.AbortWith(reason)
			return "protocol error: " + reason
		}
		switch f.Channel {
		case wire.ExecStdin:
			if p.stdin != nil {
				// A command that closed its stdin gets no more: the
				// rest is read and dropped, as a pipe's reader would.
				if _, err := p.stdin.Write(f.Data); err != nil {
					p.closeStdin()
				}
			}
		case wire.ExecStdinEOF:
			eof = true
			p.closeStdin()
		}
	}
}

// closeStdin closes the command's stdin; only copyIn's goroutine, and run
// after it ended, call it.
func (p *execProc) closeStdin() {
	if p.stdin != nil {
		p.stdin.Close()
		p.stdin = nil
	}
}

// copyOut relays one of the command's outputs as frames of channel c until
// it ends or the stream fails. It reads behind the frame header's room in
// its one buffer, so that a frame goes out in one write without a copy.
func copyOut(f *os.File, c wire.ExecChannel, write func([]byte) error) {
	buf := make([]byte, wire.ExecFrameHeader+wire.MaxExecData)
	for {
		n, err := f.Read(buf[wire.ExecFrameHeader:])
		if n > 0 {
			wire.PutExecFrameHeader(buf, c, n)
			if werr := write(buf[:wire.ExecFrameHeader+n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

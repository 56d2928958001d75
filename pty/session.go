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
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	cpty "github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// session is one PTY session: a child process on a pseudo-terminal. The
// handler goroutine that started it owns it and tears it down.
type session struct {
	id  string
	log *slog.Logger

	// Set by start, read-only afterwards.
	user  string
	argv0 string
	cmd   *exec.Cmd
	ptm   *os.File // the terminal's master side, non-blocking (closing it wakes readers)
	pgid  int      // the child's process group and session ID (it is their leader)

	// ready is set once start has succeeded; Server.mu guards it.
	ready bool

	waitDone  chan struct{} // closed once the child is reaped
	state     *os.ProcessState
	closeOnce sync.Once
}

// start launches the child described by req on a new terminal.
func (s *session) start(cfg Config, req wire.PTYCommand) error {
	acct, err := resolveAccount(cfg.User)
	if err != nil {
		return err
	}
	shell := shellFor(cfg.Shell, acct)
	var path string
	var args []string
	if req.Command == "" {
		path = shell
		args = []string{"-" + filepath.Base(shell)} // a login shell
	} else {
		if path, err = lookPath(req.Command, sessionPath(acct)); err != nil {
			return err
		}
		args = append([]string{req.Command}, req.CommandArgs...)
	}
	cols, rows := req.Cols, req.Rows
	if cols == 0 || rows == 0 {
		cols, rows = DefaultCols, DefaultRows
	}

	ptm, tty, err := openTerminal()
	if err != nil {
		return fmt.Errorf("pty: cannot open a pseudo-terminal on the device: %w", err)
	}
	if err := setSize(ptm, cols, rows); err != nil {
		ptm.Close()
		tty.Close()
		return fmt.Errorf("pty: set window size: %w", err)
	}
	cmd := &exec.Cmd{
		Path:   path,
		Args:   args,
		Env:    environment(acct, shell, req.Term),
		Dir:    workDir(acct),
		Stdin:  tty,
		Stdout: tty,
		Stderr: tty,
		SysProcAttr: &syscall.SysProcAttr{
			Setsid:     true, // new session and process group, led by the child
			Setctty:    true, // with the terminal (its stdin) as controlling tty
			Credential: acct.cred,
		},
	}
	defaultSessionSignals()
	err = cmd.Start()
	tty.Close() // the child has its own copies; the agent must not keep the slave open
	if err != nil {
		ptm.Close()
		return fmt.Errorf("pty: start %s as %s: %w", path, acct.name, err)
	}
	s.user, s.argv0, s.cmd, s.ptm, s.pgid = acct.name, args[0], cmd, ptm, cmd.Process.Pid
	s.waitDone = make(chan struct{})
	go func() {
		defer close(s.waitDone)
		_ = cmd.Wait()
		s.state = cmd.ProcessState
	}()
	return nil
}

// openTerminal opens a pseudo-terminal pair. The master is returned in
// non-blocking mode, registered with the runtime poller, so that closing it
// wakes a blocked reader (creack/pty hands it out in blocking mode).
func openTerminal() (ptm, tty *os.File, err error) {
	m, t, err := cpty.Open()
	if err != nil {
		return nil, nil, err
	}
	fd, err := unix.FcntlInt(m.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	m.Close()
	if err != nil {
		t.Close()
		return nil, nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		t.Close()
		return nil, nil, err
	}
	return os.NewFile(uintptr(fd), "/dev/ptmx"), t, nil
}

// setSize sets the window size of the terminal; the kernel sends SIGWINCH
// to its foreground process group.
func setSize(ptm *os.File, cols, rows int) error {
	rc, err := ptm.SyscallConn()
	if err != nil {
		return err
	}
	ws := &unix.Winsize{Col: uint16(cols), Row: uint16(rows)}
	var ioErr error
	if err := rc.Control(func(fd uintptr) { ioErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, ws) }); err != nil {
		return err
	}
	return ioErr
}

func (s *session) resize(cols, rows int) error {
	if err := setSize(s.ptm, cols, rows); err != nil {
		return fmt.Errorf("pty: resize: %w", err)
	}
	return nil
}

// run copies bytes between the stream and the terminal until the session
// ends, then tears it down: hang-up and reaping, exit status (handed to
// onExit as soon as it is known), output drain, and the terminal closed.
// It returns the exit status and why the session ended.
func (s *session) run(ctx context.Context, st *transport.Stream, idle time.Duration, onExit func(wire.ExitStatus)) (wire.ExitStatus, string) {
	var last atomic.Int64 // time of the last byte either way, in Unix ns
	touch := func() { last.Store(time.Now().UnixNano()) }
	touch()

	hup := make(chan struct{})    // closed when the client's side of the stream ended
	inDone := make(chan struct{}) // the input copy returned
	outDone := make(chan struct{})
	go func() {
		defer close(inDone)
		if s.copyIn(st, touch) {
			close(hup)
		}
	}()
	go func() {
		defer close(outDone)
		s.copyOut(st, touch)
	}()

	var (
		idleC <-chan time.Time
		idleT *time.Timer
	)
	if idle > 0 {
		idleT = time.NewTimer(idle)
		defer idleT.Stop()
		idleC = idleT.C
	}

	why := "process exited"
	exited := false
wait:
	for {
		select {
		case <-s.waitDone:
			exited = true
			break wait
		case <-hup:
			why = "client closed the stream"
			break wait
		case <-ctx.Done():
			why = "agent shutting down"
			break wait
		case <-idleC:
			if since := time.Since(time.Unix(0, last.Load())); since < idle {
				idleT.Reset(idle - since)
				continue
			}
			why = fmt.Sprintf("idle for %v", idle)
			break wait
		}
	}

	if !exited {
		s.hangup()
	}
	es := exitStatus(s.state)
	onExit(es)

	// Drain what the process wrote before it ended, then make sure nothing
	// of the session is left: processes that ignored SIGHUP and still hold
	// the terminal are killed.
	drain := time.NewTimer(drainTimeout)
	select {
	case <-outDone:
	case <-drain.C:
	}
	drain.Stop()
	killSession(s.pgid, syscall.SIGKILL)
	s.closeTerminal()
	_ = st.SetDeadline(time.Unix(1, 0)) // wakes a copy blocked on the stream
	<-inDone
	<-outDone
	return es, why
}

// copyIn copies the client's bytes to the terminal. It reports whether it
// ended because the client's side of the stream ended.
func (s *session) copyIn(st *transport.Stream, touch func()) bool {
	buf := make([]byte, 32*1024)
	for {
		n, err := st.Read(buf)
		if n > 0 {
			touch()
			if _, werr := s.ptm.Write(buf[:n]); werr != nil {
				return false // the terminal is gone: the session is ending anyway
			}
		}
		if err != nil {
			return !errors.Is(err, os.ErrDeadlineExceeded)
		}
	}
}

// copyOut copies the terminal's output to the stream until the terminal
// reports EIO (every process closed it) or the master is closed.
func (s *session) copyOut(st *transport.Stream, touch func()) {
	buf := make([]byte, 32*1024)
	for {
		n, err := s.ptm.Read(buf)
		if n > 0 {
			touch()
			if _, werr := st.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.EIO) && !errors.Is(err, os.ErrClosed) {
				s.log.Debug("PTY read ended", "sid", shortID(s.id), "err", err)
			}
			return
		}
	}
}

// hangup ends a running session: SIGHUP to its process group, SIGKILL to
// every process of the session after hangupGrace, then reaps the child.
func (s *session) hangup() { hangup(s.pgid, s.waitDone) }

// hangup sends SIGHUP (and SIGCONT) to the process group pgid, whose
// leader is the child whose reaping closes waitDone, then SIGKILL to every
// process of its session after hangupGrace, and waits for the reaping.
func hangup(pgid int, waitDone <-chan struct{}) {
	_ = syscall.Kill(-pgid, syscall.SIGHUP)
	_ = syscall.Kill(-pgid, syscall.SIGCONT) // a stopped job must run to see the hang-up
	grace := time.NewTimer(hangupGrace)
	defer grace.Stop()
	select {
	case <-waitDone:
		return
	case <-grace.C:
	}
	killSession(pgid, syscall.SIGKILL)
	<-waitDone
}

// abort kills a session that never got going and reaps it.
func (s *session) abort() {
	killSession(s.pgid, syscall.SIGKILL)
	<-s.waitDone
	s.closeTerminal()
}

// closeTerminal closes the master side once.
func (s *session) closeTerminal() {
	s.closeOnce.Do(func() {
		if s.ptm != nil {
			s.ptm.Close()
		}
	})
}

// exitStatus converts a reaped child's state.
func exitStatus(ps *os.ProcessState) wire.ExitStatus {
	if ps == nil {
		return wire.ExitStatus{Exited: true, Code: 255}
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return wire.ExitStatus{Exited: true, Code: 128 + int(ws.Signal()), Signal: SignalName(ws.Signal())}
	}
	code := ps.ExitCode()
	if code < 0 || code > 255 {
		code = 255
	}
	return wire.ExitStatus{Exited: true, Code: code}
}

// SignalName names a signal the way the exit-status extension reports it:
// without the "SIG" prefix ("KILL", "HUP"), or its number when it has no
// name.
func SignalName(sig syscall.Signal) string {
	name := unix.SignalName(sig)
	if len(name) > 3 && name[:3] == "SIG" {
		return name[3:]
	}
	return fmt.Sprintf("%d", int(sig))
}

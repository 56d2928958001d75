package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tetherhq/tether/pty"
	terminal "github.com/tetherhq/tether/pty/term"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/wire"
)

type shellOptions struct {
	g       *globalOptions
	device  string
	words   []string // the command line after DEVICE, joined with spaces as ssh does
	term    string
	tty     bool   // -t: a terminal even when stdin is not one
	noTTY   bool   // -T: never a terminal
	escape  string // -e: the escape character, or none
	execCmd bool   // tether exec: never a terminal, a command required

	// tether exec on a fleet (fleet.go): device is then a glob, or empty.
	selector string // -l: a label selector
	parallel int    // --parallel: devices at once
	output   string // -o: text, or each device's result in json or yaml

	timeout time.Duration // tether exec --timeout: hang the command up after this long; 0 never
}

// errCommandTimeout is the cause of a command's context that --timeout
// ended.
var errCommandTimeout = errors.New("the command did not end in time")

// withTimeout bounds ctx by --timeout, when it is set.
func (o *shellOptions) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if o.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, o.timeout, errCommandTimeout)
}

// timedOut reports whether --timeout ended ctx.
func timedOut(ctx context.Context) bool {
	return errors.Is(context.Cause(ctx), errCommandTimeout)
}

func newShellCommand(g *globalOptions) *cobra.Command {
	o := &shellOptions{g: g}
	cmd := &cobra.Command{
		Use:   "shell [-t|-T] [-e CHAR] DEVICE [-- COMMAND...]",
		Short: "Open a shell on a device, or run one command there",
		Long: `Open a shell on a device, or run one command there, as ssh does.

When stdin is a terminal, the shell or command runs on a pseudo-terminal:
tether puts yours in raw mode (every key, Ctrl-C and Ctrl-D included, goes
to the device) and restores it when the session ends, even on an error or a
signal; window size changes follow you.

When stdin is not a terminal (a pipe or a file), nothing runs on a
terminal: the command, or with none the login shell, reads stdin until its
end, its stdout and stderr stay apart, and tether exits with its status.
This needs exec.enabled on the device and the exec right at the edge (see
tether exec); a device that does not know such streams gets a terminal
instead. -t forces a terminal, -T forbids one.

The command line (the words after DEVICE, joined with spaces) runs through
the remote shell (sh -c), so pipes and quotes work as with ssh.

On a terminal, ~. at the start of a line closes the session at once, even
when the edge no longer answers; ~? lists the escapes; ~~ sends one ~.
-e CHAR picks another escape character, -e none turns escapes off.

The exit code is the remote command's, 128+N when a signal N killed it.
When the connection to the edge is lost, or the session is closed with ~.,
tether exits 255, as ssh does; when the remote exit status is unknown (the
device does not report it), tether says so and exits 254.`,
		Example: `  # An interactive shell
  tether shell d1

  # One command; its exit code becomes tether's
  tether shell d1 -- systemctl is-active myapp

  # A script from a file, without a terminal
  tether shell d1 < fix-permissions.sh

  # A full-screen program from a script: force a terminal
  tether shell -t d1 -- top -b -n 1`,
		ValidArgsFunction: completeDevice(g),
		Args:              argsUsage(cobra.MinimumNArgs(1), "tether shell [-t|-T] [-e CHAR] DEVICE [-- COMMAND...]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.setArgs(args)
			return o.run(cmd.Context())
		},
	}
	// Everything after DEVICE belongs to the remote command, flags too.
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().StringVar(&o.term, "term", "", "TERM for the remote terminal (default: $TERM, else xterm-256color)")
	cmd.Flags().BoolVarP(&o.tty, "tty", "t", false, "run on a terminal even when stdin is not one")
	cmd.Flags().BoolVarP(&o.noTTY, "no-tty", "T", false, "never run on a terminal")
	cmd.Flags().StringVarP(&o.escape, "escape", "e", "~", "escape character at the start of a line, or none")
	return cmd
}

func (o *shellOptions) setArgs(args []string) {
	o.device = args[0]
	rest := args[1:]
	if len(rest) > 0 && rest[0] == "--" {
		rest = rest[1:]
	}
	o.words = rest
}

// ptyInput adapts a PTY session for Splice: the end of stdin is sent as the
// terminal's end-of-input character rather than a half-close, which would
// hang the session up before its output is read.
type ptyInput struct {
	*pty.Session
}

func (p ptyInput) CloseWrite() error { return p.SendEOF() }

// closer runs close functions when a command ends: in line, or, after the
// user closed the session with ~., in the background, so that an edge
// that no longer answers cannot hold tether up.
type closer struct {
	detached bool
	fns      []func()
}

func (c *closer) add(fn func()) { c.fns = append(c.fns, fn) }

func (c *closer) run() {
	fns := c.fns
	all := func() {
		for i := len(fns) - 1; i >= 0; i-- {
			fns[i]()
		}
	}
	if c.detached {
		go all() // the process exits right after; nothing may wait for this
		return
	}
	all()
}

func (o *shellOptions) run(ctx context.Context) error {
	ctx, cancel := o.withTimeout(ctx)
	defer cancel()
	err := o.runOn(ctx)
	if err != nil && timedOut(ctx) {
		return &exitError{code: ExitTimeout, err: fmt.Errorf("the command did not end within %v (--timeout); it was hung up", o.timeout)}
	}
	return err
}

func (o *shellOptions) runOn(ctx context.Context) error {
	conn, err := o.g.prepare(o.device)
	if err != nil {
		return err
	}
	if o.tty && o.noTTY {
		return usageErrorf("-t asks for a terminal and -T forbids one: pass one of them")
	}
	escape, err := parseEscape(o.escape)
	if err != nil {
		return err
	}
	command := strings.Join(o.words, " ")
	if o.execCmd && strings.TrimSpace(command) == "" {
		return usageErrorf("no command to run; usage: tether exec DEVICE -- COMMAND...")
	}
	inFD, interactive := terminalFD(o.g.io.In)
	usePTY := o.tty || (interactive && !o.noTTY && !o.execCmd)

	cl, err := conn.dial(ctx)
	if err != nil {
		return err
	}
	c := &closer{}
	defer c.run()
	c.add(func() { cl.Close() })

	var esc *escapeReader
	if interactive && escape != escNoEsc {
		esc = newEscapeReader(o.g.io.In, byte(escape), o.g.io.ErrOut, usePTY)
	}
	if !usePTY {
		err := o.runExec(ctx, cl, c, command, esc)
		var re *wire.RemoteError
		if errors.As(err, &re) && !o.noTTY && !o.execCmd {
			// Refused before it ran: say why tether asked for no terminal.
			return &exitError{code: ExitRemote, err: fmt.Errorf("%s (stdin is not a terminal, so tether asked to run this without one; pass -t to use a terminal instead)", re.Reason)}
		}
		if !errors.Is(err, errExecUnsupported) || o.noTTY || o.execCmd {
			return err
		}
		o.g.notice("device %s does not run commands without a terminal (its agent predates exec streams); using a terminal", o.device)
	}
	return o.runPTY(ctx, conn, cl, c, command, inFD, interactive, esc)
}

// errExecUnsupported: the device closed an exec stream without answering.
var errExecUnsupported = errors.New("the device does not support exec streams")

// errStatusUnknown is reported when the remote exit status is unknown.
var errStatusUnknown = errors.New("exit status unknown")

func (o *shellOptions) runPTY(ctx context.Context, conn *connection, cl *client.Client, c *closer, command string, inFD int, interactive bool, esc *escapeReader) error {
	term := o.term
	if term == "" {
		term = o.g.getenv("TERM")
	}
	if wire.ValidateTerm(term) != nil || term == "dumb" {
		term = ""
	}
	// Without a terminal there is no size to pass on: the usual 80x24, as
	// some devices apply 0x0 literally.
	req := pty.Request{Cols: pty.DefaultCols, Rows: pty.DefaultRows, Term: term}
	if command != "" {
		req.Command, req.Args = "sh", []string{"-c", command}
	}
	if interactive {
		if cols, rows, err := terminal.Size(inFD); err == nil && cols > 0 && rows > 0 {
			req.Cols, req.Rows = cols, rows
		}
	}
	// sctx ends the resize calls too when the user closes the session.
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	sess, err := pty.Open(ctx, cl, req)
	if err != nil {
		return err
	}
	c.add(func() { sess.Close() })

	if interactive {
		restore, err := terminal.MakeRaw(inFD)
		if err != nil {
			return err
		}
		// Deferred calls run on return and while a panic unwinds; signals
		// end ctx, which ends the copy below and returns here.
		defer restore()
		stopResize := terminal.WatchResize(sctx, inFD, func(cols, rows int) {
			defer func() {
				if r := recover(); r != nil {
					conn.log.Error("resize panicked", "panic", r)
				}
			}()
			rctx, cancel := context.WithTimeout(sctx, transport.DefaultOpenTimeout)
			defer cancel()
			if err := sess.Resize(rctx, cols, rows); err != nil {
				conn.log.Debug("resize failed", "err", err)
			}
		})
		defer func() {
			if c.detached {
				go stopResize() // a resize may be stuck on the edge
				return
			}
			stopResize()
		}()
	}

	var in io.Reader = o.g.io.In
	var quit <-chan struct{}
	if esc != nil {
		in, quit = esc, esc.Quit()
	}
	stdio := newStdioConn(in, o.g.io.Out)
	spliced := make(chan struct{})
	var (
		panicked  any
		spliceErr error
	)
	go func() {
		defer close(spliced)
		// A panic is raised again on this function's goroutine, below, so
		// that the deferred restore of the terminal runs.
		defer func() { panicked = recover() }()
		_, _, spliceErr = transport.Splice(ctx, stdio, ptyInput{sess}, nil)
	}()
	select {
	case <-stdio.outDone:
	case <-spliced:
	case <-ctx.Done():
	case <-quit:
		// Out at once: nothing here waits on the edge.
		scancel()
		c.detached = true
		if interactive {
			fmt.Fprint(o.g.io.ErrOut, "\r\n")
		}
		return &exitError{code: ExitLost, err: errEscaped}
	}
	stdio.Close()
	sess.Close()
	<-spliced
	if panicked != nil {
		panic(panicked)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	lostErr := func() error {
		if interactive {
			// The remote output may have left the cursor mid-line.
			fmt.Fprint(o.g.io.ErrOut, "\r\n")
		}
		return &exitError{code: ExitLost, err: errSessionLost}
	}
	// A reset after the remote's clean end only refused input that the
	// remote no longer read (a shell that exited with keystrokes or piped
	// input still on their way): its exit status says how it ended.
	if errors.Is(spliceErr, transport.ErrStreamReset) && !errors.Is(spliceErr, transport.ErrStoppedReading) {
		if interactive {
			fmt.Fprint(o.g.io.ErrOut, "\r\n")
		}
		return &exitError{code: ExitLost, err: streamReset(spliceErr)}
	}
	if !stdio.remoteEOF() {
		if lost(cl) {
			return lostErr()
		}
		return errors.New("the shell's stream ended before the remote terminal closed")
	}

	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	st, err := sess.ExitStatus(wctx)
	var re *wire.RemoteError
	switch {
	case errors.Is(err, pty.ErrExitStatusUnsupported):
		return &exitError{code: ExitStatusUnknown, err: fmt.Errorf("%w: device %s does not report the exit status of terminal sessions (its agent predates the exit-status extension)", errStatusUnknown, o.device)}
	case errors.As(err, &re):
		return &exitError{code: ExitStatusUnknown, err: fmt.Errorf("%w: device %s did not report it (it answered: %s)", errStatusUnknown, o.device, sanitizeReason(re.Reason))}
	case err != nil:
		if lost(cl) {
			return lostErr()
		}
		return fmt.Errorf("read the remote exit status: %w", err)
	}
	if st.Code != 0 {
		return &exitError{code: st.Code}
	}
	return nil
}

// lost reports whether cl's session to the edge broke. Done reports a
// broken connection at once; allow it a moment to race the stream's end.
func lost(cl *client.Client) bool {
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case <-cl.Done():
		return true
	case <-t.C:
		return false
	}
}

// terminalFD returns in's descriptor and whether it is a terminal.
func terminalFD(in any) (int, bool) {
	f, ok := in.(*os.File)
	if !ok {
		return -1, false
	}
	fd := int(f.Fd())
	return fd, terminal.IsTerminal(fd)
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
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
	command string
	args    []string
	term    string
}

func newShellCommand(g *globalOptions) *cobra.Command {
	o := &shellOptions{g: g}
	cmd := &cobra.Command{
		Use:   "shell DEVICE [-- COMMAND [ARGS...]]",
		Short: "Open a shell on a device, or run one command on a terminal there",
		Long: `Open a shell on a device, or run one command there, on a pseudo-terminal.

On a terminal, tether puts yours in raw mode (every key, Ctrl-C included,
goes to the device) and restores it when the session ends, even on an error
or a signal; window size changes follow you. When stdin is not a terminal
(a pipe or a file), tether runs in pipe mode: no raw mode, and the end of
stdin is passed on as end-of-input (Ctrl-D).

The exit code is the remote command's, 128+N when a signal N killed it.
When the connection to the edge is lost, tether says so and exits 255, as
ssh does.`,
		Example: `  # An interactive shell
  tether shell d1

  # One command; its exit code becomes tether's
  tether shell d1 -- systemctl is-active myapp

  # A script from a file (pipe mode)
  tether shell d1 < fix-permissions.sh`,
		ValidArgsFunction: completeDevice(g),
		Args:              argsUsage(cobra.MinimumNArgs(1), "tether shell DEVICE [-- COMMAND [ARGS...]]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.device = args[0]
			rest := args[1:]
			if len(rest) > 0 && rest[0] == "--" {
				rest = rest[1:]
			}
			if len(rest) > 0 {
				o.command, o.args = rest[0], rest[1:]
			}
			return o.run(cmd.Context())
		},
	}
	// Everything after DEVICE belongs to the remote command, flags too.
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().StringVar(&o.term, "term", "", "TERM for the remote terminal (default: $TERM, else xterm-256color)")
	return cmd
}

// ptyInput adapts a PTY session for Splice: the end of stdin is sent as the
// terminal's end-of-input character rather than a half-close, which would
// hang the session up before its output is read.
type ptyInput struct {
	*pty.Session
}

func (p ptyInput) CloseWrite() error { return p.SendEOF() }

func (o *shellOptions) run(ctx context.Context) error {
	conn, err := o.g.prepare(o.device)
	if err != nil {
		return err
	}
	term := o.term
	if term == "" {
		term = o.g.getenv("TERM")
	}
	if wire.ValidateTerm(term) != nil || term == "dumb" {
		term = ""
	}

	inFD, interactive := terminalFD(o.g.io.In)
	req := pty.Request{Command: o.command, Args: o.args, Term: term}
	if interactive {
		if cols, rows, err := terminal.Size(inFD); err == nil {
			req.Cols, req.Rows = cols, rows
		}
	}

	cl, err := conn.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	sess, err := pty.Open(ctx, cl, req)
	if err != nil {
		return err
	}
	defer sess.Close()

	if interactive {
		restore, err := terminal.MakeRaw(inFD)
		if err != nil {
			return err
		}
		// Deferred calls run on return and while a panic unwinds; signals
		// end ctx, which ends the copy below and returns here.
		defer restore()
		stopResize := terminal.WatchResize(ctx, inFD, func(cols, rows int) {
			defer func() {
				if r := recover(); r != nil {
					conn.log.Error("resize panicked", "panic", r)
				}
			}()
			rctx, cancel := context.WithTimeout(ctx, transport.DefaultOpenTimeout)
			defer cancel()
			if err := sess.Resize(rctx, cols, rows); err != nil {
				conn.log.Debug("resize failed", "err", err)
			}
		})
		defer stopResize()
	}

	stdio := newStdioConn(o.g.io.In, o.g.io.Out)
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
	if errors.Is(spliceErr, transport.ErrStreamReset) {
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

	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	st, err := sess.ExitStatus(sctx)
	switch {
	case errors.Is(err, pty.ErrExitStatusUnsupported):
		o.g.notice("the device does not report exit codes (its agent is older); exiting 0")
		return nil
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

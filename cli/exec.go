package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"

	"github.com/spf13/cobra"
	"github.com/tetherhq/tether/pty"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/wire"
)

func newExecCommand(g *globalOptions) *cobra.Command {
	o := &shellOptions{g: g, execCmd: true}
	cmd := &cobra.Command{
		Use:   "exec [-e CHAR] DEVICE -- COMMAND...\n  tether exec [-l SELECTOR] [--parallel N] PATTERN -- COMMAND...\n  tether exec -l SELECTOR [--parallel N] -- COMMAND...",
		Short: "Run one command on a device without a terminal, as ssh does",
		Long: `Run one command on a device without a terminal.

The command line (the words after DEVICE, joined with spaces) runs through
the remote user's shell (sh -c), so pipes and quotes work as with ssh. Its
stdout and stderr arrive on tether's stdout and stderr, apart and
byte for byte; tether's stdin is its stdin, and the end of stdin reaches it
as end-of-file. tether exits with the command's code, 128+N when a signal N
killed it.

The device's agent must have exec.enabled, and the token the exec right at
the edge (allow: {exec: true}); the edge's audit log records the command
line. When the connection to the edge is lost tether exits 255; when the
stream ends without the command's exit status, it says so and exits 254.
On a terminal, ~. at the start of a line ends tether at once (see tether
shell). With --timeout, a command still running after that long is hung
up, as when the session ends (SIGHUP to its process group, then SIGKILL),
and tether exits 124, as timeout(1) does.

On a fleet: with a glob of device IDs (PATTERN, such as 'gw-*') or a label
selector (-l site=berlin,tier!=test), or both, the command runs on every
connected device they pick, --parallel at a time, as pdsh does. Each line
of a device's stdout and stderr goes to tether's, prefixed with the
device's ID ("gw-1: ..."); stdin is not read. At the end, each device on
which the command failed or did not run is named on stderr, with its exit
code or what went wrong, and tether exits with the highest of the devices'
codes (0 when it succeeded on all of them; 7 when no connected device
matches). With -o json or -o yaml, nothing is printed as it comes: at the
end, a list with each device's exit code, stdout and stderr (the first
64 KiB of each, as UTF-8; "truncated" says when there was more) and what
went wrong, for a script to read (a device ID alone is then a fleet of
one).`,
		Example: `  # A pipeline on the device
  tether exec d1 -- 'journalctl -u myapp | tail -n 50'

  # Copy a file to the device, byte for byte
  tether exec d1 -- 'cat > /tmp/fw.bin' < fw.bin

  # Its exit code becomes tether's
  tether exec d1 -- systemctl is-active myapp || echo down

  # On every connected gateway in Berlin, 20 at a time
  tether exec -l site=berlin --parallel 20 'gw-*' -- systemctl restart myapp`,
		ValidArgsFunction: completeDevice(g),
		Args:              argsUsage(cobra.MinimumNArgs(1), "tether exec DEVICE -- COMMAND..."),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.selector != "" && cmd.ArgsLenAtDash() == 0 {
				o.words = args // no pattern: every device the selector picks
			} else {
				o.setArgs(args)
			}
			if o.isFleet() || o.output != "text" {
				return o.runFleet(cmd.Context())
			}
			return o.run(cmd.Context())
		},
	}
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().StringVarP(&o.escape, "escape", "e", "~", "escape character at the start of a line, or none")
	cmd.Flags().StringVarP(&o.selector, "selector", "l", "", "run on every connected device whose labels meet this selector (site=berlin,tier!=test)")
	cmd.Flags().IntVar(&o.parallel, "parallel", 10, "on a fleet, how many devices run the command at once")
	cmd.Flags().StringVarP(&o.output, "output", "o", "text", "text, or each device's result (exit code, stdout, stderr) in json or yaml")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 0, "hang the command up if it has not ended after this long, and exit 124 (on a fleet, on each device from its start)")
	return cmd
}

// runExec runs command (empty: the login shell) without a terminal:
// stdin is sent until its end, stdout and stderr are copied apart, and
// the remote status becomes the exit code. A device that closes the stream
// without answering yields errExecUnsupported.
func (o *shellOptions) runExec(ctx context.Context, cl *client.Client, c *closer, command string, esc *escapeReader) error {
	sess, err := pty.Exec(ctx, cl, command)
	if errors.Is(err, wire.ErrNoAnswer) {
		return fmt.Errorf("%w: %w", errExecUnsupported, err)
	}
	if err != nil {
		return err
	}
	c.add(func() { sess.Close() })

	var in io.Reader = o.g.io.In
	var quit <-chan struct{}
	if esc != nil {
		in, quit = esc, esc.Quit()
	}
	stdin := newStdioConn(in, io.Discard)
	inDone := make(chan struct{})
	go func() {
		defer close(inDone)
		if _, err := io.Copy(sess, stdin); err == nil {
			_ = sess.CloseWrite()
		}
	}()
	type waited struct {
		st  wire.ExitStatus
		err error
	}
	done := make(chan waited, 1)
	go func() {
		st, err := sess.Wait(o.g.io.Out, o.g.io.ErrOut)
		done <- waited{st, err}
	}()
	var w waited
	got := false
	select {
	case w = <-done:
		got = true
	case <-ctx.Done():
		w.err = ctx.Err()
	case <-quit:
		c.detached = true
		return &exitError{code: ExitLost, err: errEscaped}
	}
	stdin.Close()
	sess.Close()
	<-inDone
	if w.err == nil {
		if w.st.Code != 0 {
			return &exitError{code: w.st.Code}
		}
		return nil
	}
	if !got {
		<-done // the stream is closed, so Wait returns now
	}
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(w.err, transport.ErrStreamReset):
		return &exitError{code: ExitLost, err: streamReset(w.err)}
	case lost(cl):
		return &exitError{code: ExitLost, err: errSessionLost}
	case errors.Is(w.err, pty.ErrNoExitStatus):
		return &exitError{code: ExitStatusUnknown, err: fmt.Errorf("%w: the remote command ended without an exit status (its stream was closed before the device sent it); the output may be incomplete", errStatusUnknown)}
	}
	return fmt.Errorf("exec on device %s: %w", o.device, w.err)
}

// sanitizeReason makes a reason from the device safe to print: control
// and format characters become spaces, and it is cut to 256 bytes.
func sanitizeReason(s string) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return ' '
		}
		return r
	}, s)
	if len(s) > 256 {
		cut := 256
		for cut > 0 && s[cut]&0xC0 == 0x80 {
			cut--
		}
		s = s[:cut]
	}
	return strings.TrimSpace(s)
}

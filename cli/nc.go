package cli

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/spf13/cobra"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

type ncOptions struct {
	g      *globalOptions
	device string
	target string
}

func newNCCommand(g *globalOptions) *cobra.Command {
	o := &ncOptions{g: g}
	cmd := &cobra.Command{
		Use:   "nc DEVICE HOST:PORT",
		Short: "Connect stdin and stdout to HOST:PORT as reached from a device",
		Long: `Connect stdin and stdout to HOST:PORT as reached from a device, as one TCP
stream. The end of stdin is passed on as a half-close, so the remote side
sees EOF and may still answer; the command ends when the remote side ends its
output. It fits ssh's ProxyCommand, where %h is the host name given to ssh
(here, the device ID); tether ssh sets it up for you.

The ways ssh ends a ProxyCommand are not failures: SIGHUP, and a closed
stdout, end the command with 0 and no message. Ctrl-C exits 130.`,
		Example: `  # ssh to a device's own sshd through the edge
  ssh -o ProxyCommand='tether nc %h 127.0.0.1:22' root@d1

  # Or in ~/.ssh/config:
  #   Host d1 d2
  #     ProxyCommand tether nc %h 127.0.0.1:22

  # Talk to a service next to the device
  printf 'GET / HTTP/1.0\r\n\r\n' | tether nc d1 192.168.1.20:80`,
		ValidArgsFunction: completeDevice(g),
		Args:              argsUsage(cobra.ExactArgs(2), "tether nc DEVICE HOST:PORT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.device = args[0]
			t, err := parseTarget(args[1])
			if err != nil {
				return &usageError{err.Error()}
			}
			o.target = t
			err = o.run(cmd.Context())
			// ssh sends its ProxyCommand SIGHUP when the session ends:
			// that is the normal end of a proxied session, not an
			// interruption.
			if errors.Is(err, context.Canceled) && hungUp(cmd.Context()) {
				return nil
			}
			return err
		},
	}
	return cmd
}

func (o *ncOptions) run(ctx context.Context) error {
	conn, err := o.g.prepare(o.device)
	if err != nil {
		return err
	}
	cl, err := conn.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	// Optimistic open: stdin's first bytes follow the request at once.
	st, err := cl.OpenStreamEarly(ctx, wire.MsgTCP, []byte(o.target), nil)
	if err != nil {
		return err
	}
	stdio := newStdioConn(o.g.io.In, o.g.io.Out)
	spliced := make(chan struct{})
	var spliceErr error
	go func() {
		defer close(spliced)
		_, _, spliceErr = transport.Splice(ctx, stdio, st, nil)
	}()
	select {
	case <-stdio.outDone:
		// The remote side ended its output: stop reading stdin too.
	case <-spliced:
	case <-ctx.Done():
	}
	stdio.Close()
	st.Close()
	<-spliced
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := st.Failed(); err != nil {
		// The open was refused: its answer is the error.
		return err
	}
	// A stream cut by a broken connection reads ErrConnLost, never a clean
	// EOF: the remote side's EOF is the end of its output.
	if errors.Is(spliceErr, transport.ErrConnLost) {
		return errSessionLost
	}
	if errors.Is(spliceErr, transport.ErrStreamReset) {
		return streamReset(spliceErr)
	}
	if !stdio.remoteEOF() && !stdio.outputFailed() && lost(cl) {
		return errSessionLost
	}
	return nil
}

// stdioConn is stdin and stdout as one io.ReadWriteCloser for Splice.
// Reads from stdin run in a pump goroutine through a pipe, so that Close
// unblocks a Read even when stdin is a terminal that never ends; the pump
// itself ends at stdin's next read. CloseWrite marks the end of the remote
// output.
type stdioConn struct {
	pr *io.PipeReader
	w  io.Writer

	outDone   chan struct{}
	closeOnce sync.Once
	outOnce   sync.Once
	mu        sync.Mutex
	// mu guards the following.
	gotEOF   bool
	writeErr error
}

func newStdioConn(in io.Reader, out io.Writer) *stdioConn {
	pr, pw := io.Pipe()
	go func() {
		_, err := io.Copy(pw, in)
		pw.CloseWithError(err)
	}()
	return &stdioConn{pr: pr, w: out, outDone: make(chan struct{})}
}

func (c *stdioConn) Read(p []byte) (int, error) { return c.pr.Read(p) }

func (c *stdioConn) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if err != nil {
		c.mu.Lock()
		c.writeErr = err
		c.mu.Unlock()
	}
	return n, err
}

// outputFailed reports whether writing to stdout failed (its reader went
// away), which ends the command without blaming the edge.
func (c *stdioConn) outputFailed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writeErr != nil
}

// CloseWrite is called by Splice when the remote output reached EOF.
func (c *stdioConn) CloseWrite() error {
	c.mu.Lock()
	c.gotEOF = true
	c.mu.Unlock()
	c.outOnce.Do(func() { close(c.outDone) })
	return nil
}

func (c *stdioConn) remoteEOF() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gotEOF
}

func (c *stdioConn) Close() error {
	c.closeOnce.Do(func() { c.pr.Close() })
	return nil
}

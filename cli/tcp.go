package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/tcp"
	"github.com/tetherhq/tether/transport/wire"
)

type tcpOptions struct {
	g      *globalOptions
	device string
	specs  []forwardSpec
}

func newTCPCommand(g *globalOptions) *cobra.Command {
	o := &tcpOptions{g: g}
	cmd := &cobra.Command{
		Use:   "tcp DEVICE [BIND:]LPORT:HOST:RPORT [more...]",
		Short: "Forward local TCP ports to addresses reached from a device, like ssh -L",
		Long: `Forward local TCP ports to addresses reached from a device, like ssh -L.

Each forward listens on BIND:LPORT (BIND defaults to 127.0.0.1; * is every
interface; LPORT 0 picks a free port) and carries every connection to
HOST:RPORT as dialled by the device. One line per forward is printed once it
listens:

  127.0.0.1:8080 -> d1 127.0.0.1:80

Every listener is bound before anything is printed; when one cannot be,
the others are closed and the command fails. It serves until Ctrl-C or
SIGTERM, which close the listeners and their connections and exit 130.
When the connection to the edge is lost, the listeners stay open and the
session is redialled with backoff.`,
		Example: `  # The device's web UI on http://127.0.0.1:8080
  tether tcp d1 8080:127.0.0.1:80

  # Two forwards, one on a port picked for you
  tether tcp d1 8080:127.0.0.1:80 0:192.168.1.20:502

  # Listen on every interface of this machine
  tether tcp d1 '*:2222:127.0.0.1:22'`,
		ValidArgsFunction: completeDevice(g),
		Args:              argsUsage(cobra.MinimumNArgs(2), "tether tcp DEVICE [BIND:]LPORT:HOST:RPORT [more...]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.device = args[0]
			specs, err := parseForwardSpecs(args[1:])
			if err != nil {
				return err
			}
			o.specs = specs
			return o.run(cmd.Context())
		},
	}
	return cmd
}

func (o *tcpOptions) run(ctx context.Context) error {
	conn, err := o.g.prepare(o.device)
	if err != nil {
		return err
	}
	// Listen first, so that a busy port fails before the edge is dialled.
	var (
		lc  net.ListenConfig
		lns []net.Listener
	)
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for _, s := range o.specs {
		ln, err := lc.Listen(ctx, "tcp", s.Local)
		if err != nil {
			return listenError(s.Local, err)
		}
		lns = append(lns, ln)
	}
	r, err := conn.redial(ctx, o.g.notice)
	if err != nil {
		return err
	}
	defer r.Close()

	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fwds := make([]*tcp.Forward, len(lns))
	stopped := make(chan int, len(lns))
	for i, ln := range lns {
		op := &reportingOpener{Opener: r, g: o.g, what: fmt.Sprintf("%s -> %s %s", ln.Addr(), o.device, o.specs[i].Remote)}
		fwds[i] = &tcp.Forward{Listener: ln, Opener: op, Remote: o.specs[i].Remote, Logger: o.g.debugLogger()}
		if err := fwds[i].Start(ctx); err != nil {
			return err
		}
		go func() {
			<-fwds[i].Done()
			stopped <- i
		}()
	}
	lns = nil // the forwards own the listeners now
	for i, f := range fwds {
		fmt.Fprintf(o.g.io.Out, "%s -> %s %s\n", f.Addr(), o.device, o.specs[i].Remote)
	}
	var ferr error
	select {
	case <-ctx.Done():
	case i := <-stopped:
		if err := fwds[i].Err(); err != nil {
			ferr = fmt.Errorf("forward %s stopped: %w", fwds[i].Addr(), err)
		}
	}
	cancel()
	for _, f := range fwds {
		f.Close()
	}
	if ferr == nil && parent.Err() != nil {
		// Ctrl-C or SIGTERM: the listeners and their connections are
		// closed; exit as interrupted.
		return parent.Err()
	}
	return ferr
}

// listenError says which local address could not be listened on and why,
// in the words of the system call ("address already in use").
func listenError(addr string, err error) error {
	var se *os.SyscallError
	if errors.As(err, &se) {
		err = se.Err
	}
	hint := "pick another local port (0 picks a free one)"
	switch {
	case errors.Is(err, syscall.EACCES):
		hint = "ports below 1024 need privileges; pick a port above 1023"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		hint = "that address is not one of this machine's; use 127.0.0.1, or * for every interface"
	}
	return fmt.Errorf("cannot listen on %s: %w; %s", addr, err, hint)
}

// notice prints a progress line for the user on stderr. Forwards call it
// from many goroutines; noticeMu keeps the lines whole.
func (g *globalOptions) notice(format string, args ...any) {
	if g.noticeMu != nil {
		g.noticeMu.Lock()
		defer g.noticeMu.Unlock()
	}
	fmt.Fprintf(g.io.ErrOut, "tether: %s\n", termSafe(fmt.Sprintf(format, args...)))
}

// reportingOpener tells the user, in the words of describe, why a
// forwarded connection could not be opened.
type reportingOpener struct {
	transport.Opener
	g    *globalOptions
	what string
}

// OpenStreamEarly opens optimistically (transport.OpenEarly) and tells
// the user of a failed open, or of a refusal when its answer comes.
func (o *reportingOpener) OpenStreamEarly(ctx context.Context, t wire.MsgType, payload, first []byte) (*transport.EarlyStream, error) {
	st, err := transport.OpenEarly(ctx, o.Opener, t, payload, first)
	if err != nil {
		o.report(ctx, err)
		return nil, err
	}
	st.OnAnswer(func(err error) { o.report(ctx, err) })
	return st, nil
}

func (o *reportingOpener) report(ctx context.Context, err error) {
	if err != nil && ctx.Err() == nil {
		_, msg := describe(err, o.g.msg)
		o.g.notice("%s: %s", o.what, msg)
	}
}

func (o *reportingOpener) OpenStream(ctx context.Context, t wire.MsgType, payload []byte) (*transport.Stream, []byte, error) {
	st, ok, err := o.Opener.OpenStream(ctx, t, payload)
	if err != nil && ctx.Err() == nil {
		_, msg := describe(err, o.g.msg)
		o.g.notice("%s: %s", o.what, msg)
	}
	return st, ok, err
}

// Command tether reaches devices behind a Tether edge: tunnels, shells and
// device operations. See `tether --help`. It builds for Linux, macOS and
// Windows.
package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/tetherhq/tether/cli"
	"github.com/tetherhq/tether/internal/procs"
)

func main() {
	// The context ends with the signal as its cause, so that a command can
	// tell Ctrl-C from ssh hanging up on its ProxyCommand.
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, stopSignals...)
	// A closed stdout fails writes with EPIPE instead of killing the
	// process, so that tether nc can end quietly when its reader goes away.
	// (Notify, not Ignore: an ignored signal would stay ignored in the
	// programs tether ssh runs.)
	pipes := make(chan os.Signal, 1)
	if len(pipeSignals) > 0 {
		signal.Notify(pipes, pipeSignals...)
	}
	go func() {
		select {
		case s := <-sigs:
			cancel(&cli.SignalError{Signal: s})
		case <-ctx.Done():
		}
	}()
	// One P for a shell or a tunnel's small messages, all of them for a
	// bulk copy (internal/procs).
	stopProcs := procs.Start(nil)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stopProcs()
	cancel(nil)
	signal.Stop(sigs)
	signal.Stop(pipes)
	os.Exit(code)
}

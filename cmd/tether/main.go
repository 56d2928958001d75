// Command tether reaches devices behind a Tether edge: tunnels, shells and
// device operations. See `tether --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tetherhq/tether/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

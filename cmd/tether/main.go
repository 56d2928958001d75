// Command tether reaches devices behind a Tether edge: tunnels, shells and
// device operations. See `tether --help`. It builds for Linux, macOS and
// Windows.
package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/tetherhq/tether/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), stopSignals...)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

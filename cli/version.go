package cli

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
	"github.com/tetherhq/tether/internal/version"
	"github.com/tetherhq/tether/transport"
)

func newVersionCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version of tether and the protocol it speaks",
		Example: `  tether version`,
		Args:    argsUsage(cobra.NoArgs, "tether version"),
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintf(g.io.Out, "tether %s (protocol %s, %s, %s/%s)\n",
				version.Version, transport.ProtocolToken, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}

package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/tetherhq/tether/internal/version"
	"github.com/tetherhq/tether/transport"
)

// versionLine is what `tether version` and `tether --version` print.
func versionLine() string {
	return version.Line("tether", "protocol "+transport.ProtocolToken)
}

func newVersionCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version of tether and the protocol it speaks",
		Example: `  tether version`,
		Args:    argsUsage(cobra.NoArgs, "tether version"),
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(g.io.Out, versionLine())
			return nil
		},
	}
}

// addVersionFlag gives root a --version flag that prints the same line as
// the version command.
func addVersionFlag(root *cobra.Command) {
	root.Version = version.Version
	root.SetVersionTemplate(versionLine() + "\n")
}

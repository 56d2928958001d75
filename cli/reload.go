package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/tetherhq/tether/transport/wire"
)

type reloadOptions struct {
	g      *globalOptions
	device string
}

func newReloadCommand(g *globalOptions) *cobra.Command {
	o := &reloadOptions{g: g}
	return &cobra.Command{
		Use:   "reload DEVICE",
		Short: "Ask a device's agent to reload its configuration",
		Long: `Ask a device's agent to reload its configuration and run its reload action.
The agent's answer is printed; when it answers with an error, the reason is
printed as sent (control characters escaped) and the command exits 8.`,
		Example: `  tether reload d1

  # Reload several devices, stopping at the first failure
  for d in d1 d2 d3; do tether reload "$d" || break; done`,
		ValidArgsFunction: completeDevice(g),
		Args:              argsUsage(cobra.ExactArgs(1), "tether reload DEVICE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.device = args[0]
			return o.run(cmd.Context())
		},
	}
}

func (o *reloadOptions) run(ctx context.Context) error {
	conn, err := o.g.prepare(o.device)
	if err != nil {
		return err
	}
	cl, err := conn.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	st, answer, err := cl.OpenStream(ctx, wire.MsgReload, nil)
	if err != nil {
		return err
	}
	st.Close()
	if len(answer) > 0 {
		fmt.Fprintf(o.g.io.Out, "%s: %s\n", o.device, termSafe(strings.TrimSpace(string(answer))))
		return nil
	}
	fmt.Fprintf(o.g.io.Out, "%s: configuration reloaded\n", o.device)
	return nil
}

package cli

import (
	"io"
	"os"
	"sync"

	"github.com/spf13/cobra"
)

// CommandTree returns the tether command with all its subcommands, as
// --help shows them, for generating documentation such as manual pages.
// It is not for running: use Main.
func CommandTree() *cobra.Command {
	g := &globalOptions{
		io:       IO{In: os.Stdin, Out: io.Discard, ErrOut: io.Discard},
		getenv:   os.Getenv,
		noticeMu: new(sync.Mutex),
	}
	return newRootCommand(g)
}

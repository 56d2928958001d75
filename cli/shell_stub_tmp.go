package cli

import "github.com/spf13/cobra"

func newShellCommand(g *globalOptions) *cobra.Command { return &cobra.Command{Use: "shell"} }

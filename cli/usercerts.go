package cli

import (
	"github.com/spf13/cobra"
)

// newCertsUserCACommand creates the user CA: the CA with which the edge
// signs the short-lived certificates of an SSO login. It is never the
// device CA.
func newCertsUserCACommand(g *globalOptions) *cobra.Command {
	o := &certsOptions{g: g}
	cmd := &cobra.Command{
		Use:   "user-ca",
		Short: "Create the user CA, with which the edge signs the certificates of SSO logins",
		Long: `Create a self-signed user CA: DIR/user-ca.crt and DIR/user-ca.key (mode 0600).
The edge signs the short-lived certificate of each ` + "`tether login`" + ` with it
(auth.user_ca in edge.yaml) and accepts user certificates that chain to it.
Keep it apart from the device CA: the edge refuses to run with one CA for
both. Every edge of a cluster needs the same user CA.`,
		Example: `  tether certs user-ca --dir pki
  tether certs user-ca --dir pki --name "Acme user CA"`,
		Args: argsUsage(cobra.NoArgs, "tether certs user-ca [--dir DIR]"),
		RunE: func(*cobra.Command, []string) error { return o.newCA("user-ca") },
	}
	o.addFlags(cmd, false, "3650d")
	cmd.Flags().StringVar(&o.name, "name", "Tether user CA", "the CA's common name")
	return cmd
}

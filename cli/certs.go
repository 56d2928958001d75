package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/transport/labels"
)

// certsOptions are the flags the certs subcommands share.
type certsOptions struct {
	g        *globalOptions
	dir      string
	caCert   string
	caKey    string
	cert     string
	key      string
	lifetime string
	force    bool
	name     string
}

func newCertsCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs init|edge|device|user-ca",
		Short: "Create the operator's PKI: a CA, the edge's certificate, device certificates",
		Long: `Create the operator's PKI: a CA, the edge's server certificate and one client
certificate per device (its Subject CN is the device ID). Keys are ECDSA
P-256, written with mode 0600; existing files are kept unless --force is
given. Default lifetimes: 10 years for the CA, 1 year for leaf certificates.`,
		Example: `  tether certs init --dir pki
  tether certs edge --dir pki edge.example.com 203.0.113.10
  tether certs device --dir pki d1`,
		Args: argsUsage(cobra.NoArgs, "tether certs init|edge|device"),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newCertsInitCommand(g), newCertsEdgeCommand(g), newCertsDeviceCommand(g), newCertsUserCACommand(g))
	for _, c := range cmd.Commands() {
		c.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err.Error()} })
	}
	return cmd
}

func (o *certsOptions) addFlags(cmd *cobra.Command, leaf bool, defLifetime string) {
	f := cmd.Flags()
	f.StringVar(&o.dir, "dir", ".", "directory of the CA and of the files written")
	f.StringVar(&o.lifetime, "lifetime", defLifetime, "validity, such as 8760h or 365d")
	f.BoolVar(&o.force, "force", false, "overwrite existing files")
	f.StringVar(&o.cert, "cert", "", "certificate file to write (default in --dir)")
	f.StringVar(&o.key, "key", "", "private key file to write (default in --dir)")
	if leaf {
		f.StringVar(&o.caCert, "ca-cert", "", "CA certificate (default DIR/ca.crt)")
		f.StringVar(&o.caKey, "ca-key", "", "CA private key (default DIR/ca.key)")
	}
}

func newCertsInitCommand(g *globalOptions) *cobra.Command {
	o := &certsOptions{g: g}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a CA that signs the edge's and the devices' certificates",
		Long: `Create a self-signed CA: DIR/ca.crt and DIR/ca.key (mode 0600). The edge
trusts device certificates signed by it (device_ca), and agents and the
tether CLI trust the edge's certificate through it (--ca).`,
		Example: `  tether certs init --dir pki
  tether certs init --dir pki --name "Acme Fleet CA" --lifetime 3650d`,
		Args: argsUsage(cobra.NoArgs, "tether certs init [--dir DIR]"),
		RunE: func(*cobra.Command, []string) error { return o.runInit() },
	}
	o.addFlags(cmd, false, "3650d")
	cmd.Flags().StringVar(&o.name, "name", "Tether CA", "the CA's common name")
	return cmd
}

func newCertsEdgeCommand(g *globalOptions) *cobra.Command {
	o := &certsOptions{g: g}
	var hosts []string
	cmd := &cobra.Command{
		Use:   "edge HOST [HOST...]",
		Short: "Issue the edge's server certificate for its host names and addresses",
		Long: `Issue the edge's server certificate, signed by the CA in DIR: every HOST (a DNS
name or an IP address) becomes a subject alternative name; the first is the
common name. Writes DIR/edge.crt and DIR/edge.key (mode 0600).`,
		Example: `  tether certs edge --dir pki edge.example.com
  tether certs edge --dir pki localhost 127.0.0.1 ::1 --lifetime 90d`,
		Args: argsUsage(cobra.MinimumNArgs(1), "tether certs edge HOST [HOST...]"),
		RunE: func(_ *cobra.Command, args []string) error {
			hosts = args
			return o.runLeaf("edge", func(ca *certs.KeyPair, opts certs.Options) (*certs.KeyPair, error) {
				return ca.IssueServer(hosts, opts)
			})
		},
	}
	o.addFlags(cmd, true, "365d")
	return cmd
}

func newCertsDeviceCommand(g *globalOptions) *cobra.Command {
	o := &certsOptions{g: g}
	var lbls []string
	cmd := &cobra.Command{
		Use:   "device ID",
		Short: "Issue a device's client certificate; its common name is the device ID",
		Long: `Issue a device's client certificate, signed by the CA in DIR. The device ID
(letters, digits, '.', '-', '_' and ':') becomes the subject common name, by
which the edge knows the device. Writes DIR/ID.crt and DIR/ID.key (mode
0600); copy them and DIR/ca.crt to the device.

Each --label KEY=VALUE becomes a URI subject alternative name
tether://label/KEY=VALUE, from which the edge labels the device: roles
select devices by label, and tether devices -l filters by them. Keys and
values are letters, digits, '.', '-' and '_'.`,
		Example: `  tether certs device --dir pki d1
  tether certs device --dir pki gw-0042 --lifetime 730d --cert /tmp/gw.crt --key /tmp/gw.key
  tether certs device --dir pki gw-0042 --label site=berlin --label tier=prod`,
		Args: argsUsage(cobra.ExactArgs(1), "tether certs device ID"),
		RunE: func(_ *cobra.Command, args []string) error {
			id := args[0]
			if err := certs.ValidDeviceID(id); err != nil {
				return &usageError{strings.TrimPrefix(err.Error(), "certs: ")}
			}
			set, err := labels.ParseSet(lbls...)
			if err != nil {
				return usageErrorf("--label: %v", strings.TrimPrefix(err.Error(), labels.ErrSyntax.Error()+": "))
			}
			return o.runLeaf(id, func(ca *certs.KeyPair, opts certs.Options) (*certs.KeyPair, error) {
				opts.URIs = labels.URIs(set)
				return ca.IssueDevice(id, opts)
			})
		},
	}
	o.addFlags(cmd, true, "365d")
	cmd.Flags().StringArrayVarP(&lbls, "label", "l", nil, "a label of the device, KEY=VALUE (repeatable)")
	return cmd
}

// minLifetime is the shortest --lifetime: a certificate that expires
// within seconds is a typo, not a plan.
const minLifetime = time.Minute

// parseLifetime accepts Go durations ("8760h") and whole days ("365d"), of
// at least minLifetime.
func parseLifetime(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 || n > 100*365 {
			return 0, usageErrorf("lifetime %q: want a number of days between 1 and 36500, or a duration such as 8760h", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, usageErrorf("lifetime %q: want a positive duration such as 8760h, or days such as 365d", s)
	}
	if d < minLifetime {
		return 0, usageErrorf("lifetime %q is shorter than %v: the certificate would expire before it is installed; pass a duration such as 24h or days such as 30d", s, minLifetime)
	}
	return d, nil
}

func (o *certsOptions) paths(base string) (string, string) {
	cert, key := o.cert, o.key
	if cert == "" {
		cert = filepath.Join(o.dir, base+".crt")
	}
	if key == "" {
		key = filepath.Join(o.dir, base+".key")
	}
	return cert, key
}

// checkFree refuses to overwrite existing files without --force, before
// anything is written.
func (o *certsOptions) checkFree(paths ...string) error {
	if o.force {
		return nil
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return &exitError{code: ExitError, err: fmt.Errorf("%s already exists; pass --force to overwrite it", p)}
		}
	}
	return nil
}

func (o *certsOptions) runInit() error { return o.newCA("ca") }

// newCA makes a CA and saves it as base.crt and base.key.
func (o *certsOptions) newCA(base string) error {
	life, err := parseLifetime(o.lifetime)
	if err != nil {
		return err
	}
	certPath, keyPath := o.paths(base)
	if err := o.checkFree(certPath, keyPath); err != nil {
		return err
	}
	ca, err := certs.NewCA(o.name, certs.Options{Lifetime: life})
	if err != nil {
		return err
	}
	if err := ca.Save(certPath, keyPath, o.force); err != nil {
		return err
	}
	saved(o.g.io.Out, certPath, keyPath, ca)
	return nil
}

func (o *certsOptions) runLeaf(base string, issue func(*certs.KeyPair, certs.Options) (*certs.KeyPair, error)) error {
	life, err := parseLifetime(o.lifetime)
	if err != nil {
		return err
	}
	caCert, caKey := o.caCert, o.caKey
	if caCert == "" {
		caCert = filepath.Join(o.dir, "ca.crt")
	}
	if caKey == "" {
		caKey = filepath.Join(o.dir, "ca.key")
	}
	ca, err := certs.Load(caCert, caKey)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return &configError{fmt.Errorf("no CA at %s and %s: create one with `tether certs init --dir %s`, or pass --ca-cert and --ca-key", caCert, caKey, o.dir)}
		}
		return &configError{fmt.Errorf("load the CA: %w", err)}
	}
	if !ca.Cert.IsCA {
		return &configError{fmt.Errorf("%s is not a CA certificate", caCert)}
	}
	certPath, keyPath := o.paths(base)
	if err := o.checkFree(certPath, keyPath); err != nil {
		return err
	}
	kp, err := issue(ca, certs.Options{Lifetime: life})
	if err != nil {
		return &usageError{strings.TrimPrefix(err.Error(), "certs: ")}
	}
	if err := kp.Save(certPath, keyPath, o.force); err != nil {
		return err
	}
	saved(o.g.io.Out, certPath, keyPath, kp)
	return nil
}

func saved(w io.Writer, certPath, keyPath string, kp *certs.KeyPair) {
	fmt.Fprintf(w, "Your certificate has been saved in %s.\n", certPath)
	fmt.Fprintf(w, "Your private key has been saved in %s.\n", keyPath)
	fmt.Fprintf(w, "Subject: %s, valid until %s, serial %s.\n",
		kp.Cert.Subject.CommonName, kp.Cert.NotAfter.UTC().Format(time.RFC3339), certs.SerialHex(kp.Cert))
	if set, err := labels.FromURIs(kp.Cert.URIs); err == nil && len(set) > 0 {
		fmt.Fprintf(w, "Labels: %s.\n", set)
	}
}

package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/labels"
)

// Output formats of tether devices.
var deviceFormats = []string{"table", "wide", "json", "yaml"}

// Statuses tether devices selects by.
var deviceStatuses = []string{client.StatusAll, client.StatusOnline, client.StatusOffline}

type devicesOptions struct {
	g      *globalOptions
	output string
	status string
	json   bool   // the older spelling of -o json
	labels string // a label selector (-l)
}

func newDevicesCommand(g *globalOptions) *cobra.Command {
	o := &devicesOptions{g: g}
	cmd := &cobra.Command{
		Use:   "devices [PATTERN] [-l SELECTOR] [-o table|wide|json|yaml] [--status all|online|offline]",
		Short: "List the devices the token may see, connected or recently gone",
		Long: `List the devices the token may see: those connected now (online), and
those that disconnected within the edge's devices.last_seen_ttl (offline).

The table shows each device's ID, its status, the edge that holds it (in a
cluster), how long it has been in that status (AGE) and the agent's
version. -o wide adds its platform, OS, address, the time it connected or
was last seen, and its open streams. -o json and -o yaml print the edge's
objects (GET /api/devices, see docs/api.md).

PATTERN keeps the IDs it matches: * matches any run of characters, ? one
character, [a-z] one of a class; quote it so that the shell leaves it alone.

-l keeps the devices whose labels meet a selector, as kubectl's does:
requirements separated by commas, all of which must hold: key=value,
key!=value, key (has the label) and !key (has not). Labels come from the
device's certificate (tether certs device --label) and the edge's labels
file, never from the agent; a LABELS column shows them.`,
		Example: `  # Every device, online or not
  tether devices

  # The gateways, with platform and address
  tether devices 'gw-*' -o wide

  # IDs of the devices online now, for scripts
  tether devices --status online -o json | jq -r '.[].id'

  # The devices in Berlin that are not test devices
  tether devices -l 'site=berlin,tier!=test'`,
		Args: argsUsage(cobra.MaximumNArgs(1), "tether devices [PATTERN] [-o table|wide|json|yaml]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			pattern := ""
			if len(args) == 1 {
				pattern = args[0]
			}
			return o.run(cmd.Context(), pattern)
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "table", "output format: "+strings.Join(deviceFormats, ", "))
	cmd.Flags().StringVar(&o.status, "status", client.StatusAll, "which devices: "+strings.Join(deviceStatuses, ", "))
	cmd.Flags().BoolVar(&o.json, "json", false, "the same as -o json")
	cmd.Flags().StringVarP(&o.labels, "selector", "l", "", "keep the devices whose labels meet this selector: key=value, key!=value, key, !key, comma-separated")
	_ = cmd.Flags().MarkHidden("json")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(deviceFormats, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("status", cobra.FixedCompletions(deviceStatuses, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// check validates the options and the pattern before anything is sent.
func (o *devicesOptions) check(pattern string) error {
	if o.json {
		if o.output != "table" && o.output != "json" {
			return usageErrorf("--json and -o %s disagree; use -o alone", o.output)
		}
		o.output = "json"
	}
	if !contains(deviceFormats, o.output) {
		return usageErrorf("unknown output format %q: use -o with one of %s", o.output, strings.Join(deviceFormats, ", "))
	}
	if !contains(deviceStatuses, o.status) {
		return usageErrorf("unknown status %q: use --status with one of %s", o.status, strings.Join(deviceStatuses, ", "))
	}
	if _, err := path.Match(pattern, ""); err != nil {
		return usageErrorf("pattern %q: %v: use * for any run of characters, ? for one, [a-z] for a class, \\ to escape", pattern, err)
	}
	if _, err := labels.ParseSelector(o.labels); err != nil {
		return usageErrorf("-l: %v", strings.TrimPrefix(err.Error(), labels.ErrSyntax.Error()+": "))
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (o *devicesOptions) run(ctx context.Context, pattern string) error {
	if err := o.check(pattern); err != nil {
		return err
	}
	s, err := o.g.settings()
	if err != nil {
		return err
	}
	if err := s.requireEdge(); err != nil {
		return err
	}
	// The edge's notices (cluster state unavailable, say) go to stderr, so
	// that a script reading the list still gets it whole.
	notice := func(n string) { fmt.Fprintf(o.g.io.ErrOut, "tether: warning: %s\n", sanitizeReason(n)) }
	devs, err := fetchDevices(ctx, s, o.g.timeout, client.DevicesOptions{Status: o.status, Match: pattern, Labels: o.labels, Notice: notice})
	if err != nil {
		return err
	}
	// An edge that predates the query lists every online device: select
	// here too.
	devs = selectDevices(devs, o.status, pattern)
	if sel, _ := labels.ParseSelector(o.labels); len(sel) > 0 {
		devs = selectLabels(devs, sel)
	}
	out := o.g.io.Out
	if o.output == "json" || o.output == "yaml" {
		return printStructured(out, o.output, devs, len(devs))
	}
	if len(devs) == 0 {
		switch {
		case o.labels != "":
			fmt.Fprintf(o.g.io.ErrOut, "No devices match '%s' with labels '%s'.\n", pattern, o.labels)
		case pattern != "":
			fmt.Fprintf(o.g.io.ErrOut, "No devices match '%s'.\n", pattern)
		default:
			fmt.Fprintln(o.g.io.ErrOut, "No devices found.")
		}
		return nil
	}
	return printDevices(out, devs, time.Now(), o.output == "wide")
}

// fetchDevices asks the edge for its devices; timeout bounds the request.
func fetchDevices(ctx context.Context, s *Settings, timeout time.Duration, opts client.DevicesOptions) ([]client.Device, error) {
	tc, err := tlsConfig(s)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := &client.Dialer{Edge: s.Edge, Token: s.Token, TLSConfig: tc}
	devs, err := d.Devices(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("list devices on %s: %w", s.Edge, err)
	}
	return devs, nil
}

// selectDevices keeps the devices of status (client.StatusAll: every one)
// whose ID matches pattern ("" matches all).
func selectDevices(devs []client.Device, status, pattern string) []client.Device {
	out := make([]client.Device, 0, len(devs))
	for _, d := range devs {
		if status != client.StatusAll && d.Status != status {
			continue
		}
		if pattern != "" {
			if ok, _ := path.Match(pattern, d.ID); !ok {
				continue
			}
		}
		out = append(out, d)
	}
	return out
}

// selectLabels keeps the devices whose labels meet sel.
func selectLabels(devs []client.Device, sel labels.Selector) []client.Device {
	out := make([]client.Device, 0, len(devs))
	for _, d := range devs {
		if sel.Matches(d.Labels) {
			out = append(out, d)
		}
	}
	return out
}

// printDevices writes the device table; wide adds the columns of -o wide.
// A LABELS column ends it when a device has labels.
func printDevices(w io.Writer, devs []client.Device, now time.Time, wide bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := "ID\tSTATUS\tEDGE\tAGE\tVERSION"
	if wide {
		head += "\tPLATFORM\tOS\tADDRESS\tSINCE\tSTREAMS"
	}
	showLabels := false
	for _, d := range devs {
		showLabels = showLabels || len(d.Labels) > 0
	}
	if showLabels {
		head += "\tLABELS"
	}
	fmt.Fprintln(tw, head)
	for _, d := range devs {
		when := d.ConnectedSince
		if d.Status == client.StatusOffline {
			when = d.LastSeen
		}
		age, since := "-", "-"
		if when != nil && !when.IsZero() {
			age = ago(now.Sub(*when))
			since = when.Local().Format("2006-01-02 15:04:05")
		}
		cols := []string{d.ID, d.Status, d.Edge, age, d.Version}
		if wide {
			streams := "-"
			if d.Status == client.StatusOnline {
				streams = strconv.Itoa(d.Streams)
			}
			cols = append(cols, d.Platform, d.OS, d.RemoteAddr, since, streams)
		}
		if showLabels {
			cols = append(cols, labels.Set(d.Labels).String())
		}
		for i, c := range cols {
			cols[i] = cell(c)
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	return tw.Flush()
}

// cell makes a value from the edge fit for one table cell: "-" when
// empty, control characters and tabs shown as '?'.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}

// ago is a short human duration, as kubectl shows ages: 45s, 12m, 3h, 5d.
func ago(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// completeDevice completes a DEVICE argument with the IDs of the online
// devices the edge lists, using the settings in force; without them it
// offers nothing.
func completeDevice(g *globalOptions) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		s, err := g.settings()
		if err != nil || s.requireEdge() != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		devs, err := fetchDevices(cmd.Context(), s, min(g.timeout, 5*time.Second), client.DevicesOptions{Status: client.StatusOnline})
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, d := range devs {
			if strings.HasPrefix(d.ID, toComplete) {
				out = append(out, d.ID)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// printStructured writes v, a list of n items, as indented JSON or as
// YAML (format "json" or "yaml"): what -o json and -o yaml print. An
// empty list is [] in both.
func printStructured(out io.Writer, format string, v any, n int) error {
	var b []byte
	var err error
	switch {
	case format == "json":
		b, err = json.MarshalIndent(v, "", "  ")
		b = append(b, '\n')
	case n == 0:
		b = []byte("[]\n")
	default:
		b, err = yaml.Marshal(v)
	}
	if err != nil {
		return err
	}
	_, err = out.Write(b)
	return err
}

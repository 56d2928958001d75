package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
)

// Output formats of tether recordings.
var recordingFormats = []string{"table", "wide", "json", "yaml"}

type recordingsOptions struct {
	g      *globalOptions
	device string
	client string
	since  string
	limit  int
	output string
}

const recordingsUse = "recordings [ls] [--device D] [--client C] [--since T] [-o table|wide|json|yaml]"

func newRecordingsCommand(g *globalOptions) *cobra.Command {
	o := &recordingsOptions{g: g}
	run := func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context()) }
	cmd := &cobra.Command{
		Use:   recordingsUse,
		Short: "List the recorded shells the token may read",
		Long: `List the shells the edge recorded (in a cluster, every edge), newest
first: those of the devices the token may reach, when its client rule has
the recordings: read right.

The table shows each recording's ID (for tether play), the device, the
client, how long ago it started (AGE), its length and its size. -o wide
adds when it started, the edge that holds it, the terminal's size and the
command. -o json and -o yaml print the edge's objects (GET
/api/recordings, see docs/api.md).

--since keeps those that started at or after a time (RFC 3339, such as
2026-12-02T09:00:00Z) or within a duration before now (24h, 90m). When an
edge of a cluster does not answer, the list is printed without its
recordings and a warning names it on stderr.`,
		Example: `  # The recordings of device gw-17 in the last day
  tether recordings --device gw-17 --since 24h

  # Replay the newest one
  tether play "$(tether recordings --device gw-17 -o json | jq -r '.[0].id')"`,
		Args: argsUsage(cobra.NoArgs, "tether "+recordingsUse),
		RunE: run,
	}
	ls := &cobra.Command{
		Use:   "ls [--device D] [--client C] [--since T] [-o table|wide|json|yaml]",
		Short: "List the recorded shells the token may read (the same as tether recordings)",
		Example: `  # What ops recorded on the gateways this morning
  tether recordings ls --client ops --since 2026-12-02T06:00:00Z -o wide`,
		Args: argsUsage(cobra.NoArgs, "tether recordings ls [--device D] [--client C] [--since T]"),
		RunE: run,
	}
	cmd.AddCommand(ls)
	f := cmd.PersistentFlags()
	f.StringVar(&o.device, "device", "", "only the recordings of this device")
	f.StringVar(&o.client, "client", "", "only the recordings of this client (a name of the edge's clients section)")
	f.StringVar(&o.since, "since", "", "only those started at or after this RFC 3339 time, or within this duration before now (24h)")
	f.IntVar(&o.limit, "limit", 0, "at most this many (0: as many as the edge lists)")
	f.StringVarP(&o.output, "output", "o", "table", "output format: "+strings.Join(recordingFormats, ", "))
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(recordingFormats, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("device", completeDevice(g))
	return cmd
}

// check validates the options before anything is sent.
func (o *recordingsOptions) check() error {
	if !contains(recordingFormats, o.output) {
		return usageErrorf("unknown output format %q: use -o with one of %s", o.output, strings.Join(recordingFormats, ", "))
	}
	if o.limit < 0 {
		return usageErrorf("--limit %d: give a positive number, or 0 for no limit", o.limit)
	}
	if o.since != "" {
		if _, err := time.Parse(time.RFC3339, o.since); err != nil {
			if d, derr := time.ParseDuration(o.since); derr != nil || d <= 0 {
				return usageErrorf("--since %q is neither an RFC 3339 time (2026-12-02T09:00:00Z) nor a positive duration (24h, 90m)", o.since)
			}
		}
	}
	return nil
}

func (o *recordingsOptions) run(ctx context.Context) error {
	if err := o.check(); err != nil {
		return err
	}
	s, err := o.g.settings()
	if err != nil {
		return err
	}
	if err := s.requireEdge(); err != nil {
		return err
	}
	d, err := apiDialer(s)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.g.timeout)
	defer cancel()
	list, err := d.Recordings(ctx, client.RecordingsOptions{Device: o.device, Client: o.client, Since: o.since, Limit: o.limit})
	if err != nil {
		return recordingsError(fmt.Errorf("list recordings on %s: %w", s.Edge, err), "")
	}
	if len(list.Unavailable) > 0 {
		edges := make([]string, len(list.Unavailable))
		for i, e := range list.Unavailable {
			edges[i] = cell(e)
		}
		o.g.notice("warning: edge %s did not answer: its recordings are missing from this list; try again later", strings.Join(edges, ", "))
	}
	recs := list.Recordings
	out := o.g.io.Out
	if o.output == "json" || o.output == "yaml" {
		return printStructured(out, o.output, recs, len(recs))
	}
	if len(recs) == 0 {
		fmt.Fprintln(o.g.io.ErrOut, "No recordings found.")
		return nil
	}
	return printRecordings(out, recs, time.Now(), o.output == "wide")
}

// apiDialer is a Dialer for the edge's HTTP API with the settings s.
func apiDialer(s *Settings) (*client.Dialer, error) {
	tc, err := tlsConfig(s)
	if err != nil {
		return nil, err
	}
	return &client.Dialer{Edge: s.Edge, Token: s.Token, TLSConfig: tc}, nil
}

// recordingsError puts the edge's refusals of the recordings API in words;
// id is the recording asked for, if any.
func recordingsError(err error, id string) error {
	var se *transport.StatusError
	if !errors.As(err, &se) {
		return err
	}
	reason := ""
	if se.Reason != "" {
		reason = ": " + se.Reason
	}
	switch se.StatusCode {
	case http.StatusBadRequest:
		return &exitError{code: ExitUsage, err: fmt.Errorf("the edge refused the query (HTTP 400%s): check --device, --client, --since and --limit (at most 1000)", reason)}
	case http.StatusBadGateway:
		return &exitError{code: ExitUnreachable, err: fmt.Errorf("the edge that holds the recording did not send it (HTTP 502%s): it may be down; try again later", reason)}
	case http.StatusForbidden:
		return &exitError{code: ExitForbidden, err: fmt.Errorf("forbidden (HTTP 403%s): the token may not read recordings; ask the edge's operator for the recordings: read right", reason)}
	case http.StatusNotFound:
		if id != "" {
			return &exitError{code: ExitOffline, err: fmt.Errorf("recording %s not found (HTTP 404%s): check the ID with `tether recordings`; it may have expired", id, reason)}
		}
		return &exitError{code: ExitOffline, err: fmt.Errorf("the edge does not list recordings (HTTP 404%s): check the --edge URL, or upgrade tether-edge", reason)}
	}
	return err
}

// printRecordings writes the recording table; wide adds the columns of -o
// wide.
func printRecordings(w io.Writer, recs []client.Recording, now time.Time, wide bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := "ID\tDEVICE\tCLIENT\tAGE\tDURATION\tSIZE"
	if wide {
		head += "\tSTART\tEDGE\tTERMINAL\tCOMMAND"
	}
	fmt.Fprintln(tw, head)
	for _, r := range recs {
		age, start := "-", "-"
		if !r.Start.IsZero() {
			age = ago(now.Sub(r.Start))
			start = r.Start.Local().Format("2006-01-02 15:04:05")
		}
		cols := []string{r.ID, r.Device, r.Client, age, durationCell(r.Duration), bytesCell(r.Bytes)}
		if wide {
			term := "-"
			if r.Width > 0 && r.Height > 0 {
				term = fmt.Sprintf("%dx%d", r.Width, r.Height)
			}
			cols = append(cols, start, r.Edge, term, r.Command)
		}
		for i, c := range cols {
			cols[i] = cell(c)
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	return tw.Flush()
}

// durationCell is a recording's duration in seconds, as 45s, 12m05s, 3h02m.
func durationCell(sec float64) string {
	if sec < 0 || sec != sec {
		return "-"
	}
	d := time.Duration(sec * float64(time.Second)).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

// bytesCell is a byte count in binary units: 512B, 2.0KiB, 13MiB.
func bytesCell(n int64) string {
	if n < 1024 {
		return strconv.FormatInt(max(n, 0), 10) + "B"
	}
	v, unit := float64(n), ""
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v, unit = v/1024, u
		if v < 1024 {
			break
		}
	}
	if v < 10 {
		return fmt.Sprintf("%.1f%s", v, unit)
	}
	return fmt.Sprintf("%.0f%s", v, unit)
}

// completeRecording completes the argument of tether play with the IDs of
// the recordings the edge lists (at most 100, newest first), and files.
func completeRecording(g *globalOptions) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		s, err := g.settings()
		if err != nil || s.requireEdge() != nil {
			return nil, cobra.ShellCompDirectiveDefault
		}
		d, err := apiDialer(s)
		if err != nil {
			return nil, cobra.ShellCompDirectiveDefault
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), min(g.timeout, 5*time.Second))
		defer cancel()
		list, err := d.Recordings(ctx, client.RecordingsOptions{Limit: 100})
		if err != nil {
			return nil, cobra.ShellCompDirectiveDefault
		}
		var out []cobra.Completion
		for _, r := range list.Recordings {
			if strings.HasPrefix(r.ID, toComplete) {
				out = append(out, cobra.CompletionWithDesc(r.ID, cell(r.Title)))
			}
		}
		return out, cobra.ShellCompDirectiveDefault
	}
}

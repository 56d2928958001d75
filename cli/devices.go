package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/tetherhq/tether/transport"
)

// maxDevicesBody bounds the edge's answer to GET /api/devices.
const maxDevicesBody = 32 << 20

// Device is one connected device as the edge's API lists it.
type Device struct {
	ID             string `json:"id"`
	ConnectedSince string `json:"connected_since"` // RFC 3339
	RemoteAddr     string `json:"remote_addr"`
	Streams        int    `json:"streams"`
}

type devicesOptions struct {
	g    *globalOptions
	json bool
}

func newDevicesCommand(g *globalOptions) *cobra.Command {
	o := &devicesOptions{g: g}
	cmd := &cobra.Command{
		Use:   "devices [--json]",
		Short: "List the devices connected to the edge that the token may see",
		Long: `List the devices connected to the edge that the token may see: their ID,
when they connected, their address and their open streams.`,
		Example: `  # A table
  tether devices

  # JSON for scripts
  tether devices --json | jq -r '.[].id'`,
		Args: argsUsage(cobra.NoArgs, "tether devices [--json]"),
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context()) },
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print the list as JSON")
	return cmd
}

func (o *devicesOptions) run(ctx context.Context) error {
	s, err := o.g.settings()
	if err != nil {
		return err
	}
	if err := s.requireEdge(); err != nil {
		return err
	}
	tc, err := tlsConfig(s)
	if err != nil {
		return err
	}
	devs, raw, err := fetchDevices(ctx, s, tc, o.g.timeout)
	if err != nil {
		return err
	}
	if o.json {
		// The edge's objects as they came, fields this version does not
		// know included, as an indented list ([] when empty).
		if raw == nil {
			raw = []json.RawMessage{}
		}
		out, err := json.MarshalIndent(raw, "", "  ")
		if err != nil {
			return err
		}
		_, err = o.g.io.Out.Write(append(out, '\n'))
		return err
	}
	if len(devs) == 0 {
		o.g.notice("no devices connected that this token may see")
		return nil
	}
	return printDevices(o.g.io.Out, devs, time.Now())
}

// fetchDevices asks the edge for its connected devices, decoded and as the
// edge sent each of them. timeout bounds the whole request.
func fetchDevices(ctx context.Context, s *Settings, tc *tls.Config, timeout time.Duration) ([]Device, []json.RawMessage, error) {
	u, err := url.Parse(s.Edge)
	if err != nil {
		return nil, nil, usageErrorf("edge URL %q: %v", s.Edge, err)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/api/devices"
	u.RawPath = ""
	hc := &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:             http.ProxyFromEnvironment,
			TLSClientConfig:   tc,
			DisableKeepAlives: true,
		},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, nil, usageErrorf("edge URL %q: %v", s.Edge, err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDevicesBody+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read the device list: %w", err)
	}
	if len(body) > maxDevicesBody {
		return nil, nil, fmt.Errorf("the edge's device list is larger than %d bytes", maxDevicesBody)
	}
	if resp.StatusCode != http.StatusOK {
		reason := strings.TrimSpace(string(body))
		if len(reason) > 512 {
			reason = reason[:512]
		}
		return nil, nil, &transport.StatusError{StatusCode: resp.StatusCode, Reason: reason}
	}
	devs, raw, err := decodeDevices(body)
	if err != nil {
		return nil, nil, fmt.Errorf("the edge's device list is not valid (%v): check that --edge points at a tether edge", err)
	}
	return devs, raw, nil
}

// decodeDevices decodes the edge's JSON list of devices, keeping each
// object as it came too.
func decodeDevices(body []byte) ([]Device, []json.RawMessage, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, nil, err
	}
	devs := make([]Device, len(raw))
	for i, r := range raw {
		if err := json.Unmarshal(r, &devs[i]); err != nil {
			return nil, nil, fmt.Errorf("device %d: %w", i, err)
		}
	}
	return devs, raw, nil
}

// printDevices writes the device table.
func printDevices(w io.Writer, devs []Device, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCONNECTED SINCE\tADDRESS\tSTREAMS")
	for _, d := range devs {
		since := d.ConnectedSince
		if t, err := time.Parse(time.RFC3339Nano, d.ConnectedSince); err == nil {
			since = t.Local().Format("2006-01-02 15:04:05") + " (" + ago(now.Sub(t)) + " ago)"
		} else if since == "" {
			since = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", d.ID, since, d.RemoteAddr, d.Streams)
	}
	return tw.Flush()
}

// ago is a short human duration: 45s, 12m, 3h, 5d.
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

// completeDevice completes a DEVICE argument with the IDs the edge lists,
// using the settings in force; without them it offers nothing.
func completeDevice(g *globalOptions) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		s, err := g.settings()
		if err != nil || s.requireEdge() != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		tc, err := tlsConfig(s)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		devs, _, err := fetchDevices(cmd.Context(), s, tc, min(g.timeout, 5*time.Second))
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

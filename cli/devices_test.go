package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/labels"
)

func TestPrintDevices(t *testing.T) {
	now := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { t := now.Add(-d); return &t }
	devs := []client.Device{
		{ID: "d1", Status: "online", ConnectedSince: at(90 * time.Minute), RemoteAddr: "198.51.100.7:40112", Streams: 2,
			Edge: "edge-1", AgentInfo: transport.AgentInfo{Version: "1.4.0", Platform: "linux/arm/v7", OS: "Debian GNU/Linux 12 (bookworm)"}},
		{ID: "gateway-0042", Status: "offline", LastSeen: at(5 * time.Minute), RemoteAddr: "[2001:db8::1]:5000", Edge: "edge-2"},
		{ID: "d3\tx", Status: "online"},
	}
	var b bytes.Buffer
	require.NoError(t, printDevices(&b, devs, now, false))
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	require.Len(t, lines, 4)
	require.Regexp(t, `^ID\s+STATUS\s+EDGE\s+AGE\s+VERSION$`, lines[0])
	require.Regexp(t, `^d1\s+online\s+edge-1\s+1h\s+1\.4\.0$`, lines[1])
	require.Regexp(t, `^gateway-0042\s+offline\s+edge-2\s+5m\s+-$`, lines[2])
	require.Regexp(t, `^d3\?x\s+online\s+-\s+-\s+-$`, lines[3], "a tab in a value must not shift the columns")
	// Columns line up.
	require.Equal(t, strings.Index(lines[0], "EDGE"), strings.Index(lines[1], "edge-1"))
	require.Equal(t, strings.Index(lines[0], "AGE"), strings.Index(lines[2], "5m"))

	b.Reset()
	require.NoError(t, printDevices(&b, devs, now, true))
	lines = strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	require.Len(t, lines, 4)
	require.Regexp(t, `^ID\s+STATUS\s+EDGE\s+AGE\s+VERSION\s+PLATFORM\s+OS\s+ADDRESS\s+SINCE\s+STREAMS$`, lines[0])
	require.Regexp(t, `^d1\s+online\s+edge-1\s+1h\s+1\.4\.0\s+linux/arm/v7\s+Debian GNU/Linux 12 \(bookworm\)\s+198\.51\.100\.7:40112\s+\S+ \S+\s+2$`, lines[1])
	require.Regexp(t, `^gateway-0042\s+offline\s+edge-2\s+5m\s+-\s+-\s+-\s+\[2001:db8::1\]:5000\s+\S+ \S+\s+-$`, lines[2])
	require.Equal(t, strings.Index(lines[0], "ADDRESS"), strings.Index(lines[1], "198.51.100.7"))
}

func TestSelectDevices(t *testing.T) {
	devs := []client.Device{{ID: "gw-1", Status: "online"}, {ID: "gw-2", Status: "offline"}, {ID: "lab-1", Status: "online"}}
	ids := func(ds []client.Device) []string {
		out := []string{}
		for _, d := range ds {
			out = append(out, d.ID)
		}
		return out
	}
	tests := []struct {
		name, status, pattern string
		want                  []string
	}{
		{"all", "all", "", []string{"gw-1", "gw-2", "lab-1"}},
		{"online", "online", "", []string{"gw-1", "lab-1"}},
		{"offline", "offline", "", []string{"gw-2"}},
		{"pattern", "all", "gw-*", []string{"gw-1", "gw-2"}},
		{"pattern and status", "online", "gw-?", []string{"gw-1"}},
		{"nothing", "all", "x*", []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, ids(selectDevices(devs, tt.status, tt.pattern)))
		})
	}
}

func TestDevicesOptionsCheck(t *testing.T) {
	tests := []struct {
		name    string
		o       devicesOptions
		pattern string
		want    string // "" for no error
	}{
		{"defaults", devicesOptions{output: "table", status: "all"}, "", ""},
		{"wide and a pattern", devicesOptions{output: "wide", status: "online"}, "gw-[0-9]*", ""},
		{"--json", devicesOptions{output: "table", status: "all", json: true}, "", ""},
		{"bad output", devicesOptions{output: "xml", status: "all"}, "", `unknown output format "xml": use -o with one of table, wide, json, yaml`},
		{"bad status", devicesOptions{output: "json", status: "gone"}, "", `unknown status "gone"`},
		{"--json and -o yaml", devicesOptions{output: "yaml", status: "all", json: true}, "", "disagree"},
		{"bad pattern", devicesOptions{output: "table", status: "all"}, "gw-[", `pattern "gw-[": syntax error in pattern`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.check(tt.pattern)
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestAgo(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 45 * time.Second: "45s", 12 * time.Minute: "12m", 3 * time.Hour: "3h", 5 * 24 * time.Hour: "5d",
	} {
		require.Equal(t, want, ago(d), d.String())
	}
}

// FuzzDevicesJSON feeds the device list decoder and the table printer
// whatever an edge might send.
func FuzzDevicesJSON(f *testing.F) {
	f.Add([]byte(`[{"id":"d1","status":"online","connected_since":"2026-01-02T15:04:05Z","remote_addr":"127.0.0.1:1","streams":3,"version":"1.4.0"}]`))
	f.Add([]byte(`[{"id":"d2","status":"offline","last_seen":"2026-01-02T15:04:05Z","edge":"e1","platform":"linux/arm64"}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`[{"id":"\u0000\t\n","streams":-1}]`))
	f.Add([]byte(`{"id":1}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[{"id":"d1","future_field":{"x":[1,2]}}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		devs, err := client.DecodeDevices(b)
		if err != nil {
			return
		}
		for _, wide := range []bool{false, true} {
			var out bytes.Buffer
			require.NoError(t, printDevices(&out, devs, time.Now(), wide))
			lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
			require.True(t, strings.HasPrefix(lines[0], "ID"))
			require.Len(t, lines, len(devs)+1, "one line per device, whatever the values hold")
		}
	})
}

func TestPrintDevicesLabels(t *testing.T) {
	devs := []client.Device{
		{ID: "gw-1", Status: "online", Labels: map[string]string{"tier": "prod", "site": "berlin"}},
		{ID: "gw-2", Status: "online"},
	}
	var b bytes.Buffer
	require.NoError(t, printDevices(&b, devs, time.Now(), false))
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	require.Regexp(t, `^ID\s+STATUS\s+EDGE\s+AGE\s+VERSION\s+LABELS$`, lines[0])
	require.Regexp(t, `^gw-1\s+online\s+-\s+-\s+-\s+site=berlin,tier=prod$`, lines[1])
	require.Regexp(t, `^gw-2\s+online\s+-\s+-\s+-\s+-$`, lines[2])

	sel, err := labels.ParseSelector("site=berlin")
	require.NoError(t, err)
	require.Equal(t, "gw-1", selectLabels(devs, sel)[0].ID)
	require.Len(t, selectLabels(devs, sel), 1)
}

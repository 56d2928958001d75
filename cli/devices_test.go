package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPrintDevices(t *testing.T) {
	now := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	devs := []Device{
		{ID: "d1", ConnectedSince: now.Add(-90 * time.Minute).Format(time.RFC3339Nano), RemoteAddr: "198.51.100.7:40112", Streams: 2},
		{ID: "gateway-0042", ConnectedSince: "not a time", RemoteAddr: "[2001:db8::1]:5000"},
		{ID: "d3"},
	}
	var b bytes.Buffer
	require.NoError(t, printDevices(&b, devs, now))
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	require.Len(t, lines, 4)
	require.Regexp(t, `^ID\s+CONNECTED SINCE\s+ADDRESS\s+STREAMS$`, lines[0])
	require.Regexp(t, `^d1\s+\S+ \S+ \(1h ago\)\s+198\.51\.100\.7:40112\s+2$`, lines[1])
	require.Regexp(t, `^gateway-0042\s+not a time\s+\[2001:db8::1\]:5000\s+0$`, lines[2])
	require.Regexp(t, `^d3\s+-\s+0$`, lines[3])
	// Columns line up.
	require.Equal(t, strings.Index(lines[0], "ADDRESS"), strings.Index(lines[1], "198.51.100.7"))
	require.Equal(t, strings.Index(lines[0], "ADDRESS"), strings.Index(lines[2], "[2001:db8::1]"))
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
	f.Add([]byte(`[{"id":"d1","connected_since":"2026-01-02T15:04:05Z","remote_addr":"127.0.0.1:1","streams":3}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`[{"id":"\u0000\t\n","streams":-1}]`))
	f.Add([]byte(`{"id":1}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[{"id":"d1","future_field":{"x":[1,2]}}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		devs, raw, err := decodeDevices(b)
		if err != nil {
			return
		}
		require.Len(t, raw, len(devs))
		var out bytes.Buffer
		require.NoError(t, printDevices(&out, devs, time.Now()))
		require.True(t, strings.HasPrefix(out.String(), "ID"))
	})
}

func TestDecodeDevicesKeepsUnknownFields(t *testing.T) {
	devs, raw, err := decodeDevices([]byte(`[{"id":"d1","streams":2,"firmware":"4.2"}]`))
	require.NoError(t, err)
	require.Equal(t, []Device{{ID: "d1", Streams: 2}}, devs)
	require.JSONEq(t, `{"id":"d1","streams":2,"firmware":"4.2"}`, string(raw[0]))
	_, _, err = decodeDevices([]byte(`[{"id":7}]`))
	require.ErrorContains(t, err, "device 0")
}

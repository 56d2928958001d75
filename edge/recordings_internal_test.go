package edge

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/transport/wire"
)

// FuzzReadRecordingInfo: whatever a file in the recording directory
// holds, reading its header and tail neither fails nor allocates beyond
// their bounds, and what it accepts names the file's own recording.
func FuzzReadRecordingInfo(f *testing.F) {
	const id = "e1-0123456789abcdef"
	header := `{"version":2,"width":80,"height":24,"timestamp":1764662400,"title":"ops@d-1","tether":{"id":"` + id + `","session":"s","device":"d-1","client":"ops","edge":"e1"}}` + "\n"
	f.Add([]byte(header + `[0.5,"o","hi"]` + "\n" + `[1.25,"r","100x30"]` + "\n"))
	f.Add([]byte(header + `[0.5,"o","hi"]` + "\n" + `[2.0,"o","cut`))
	f.Add([]byte(header))
	f.Add([]byte(`{"version":2}` + "\n"))
	f.Add([]byte(header + `[-1,"o","x"]` + "\n" + `["x","o","y"]` + "\n" + `[1e308,"m","z"]` + "\n"))
	f.Add([]byte("\n\n\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, id+".cast")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		info, err := readRecordingInfo(p, "d-1", id, st)
		if err != nil {
			return
		}
		if info.ID != id || info.Device != "d-1" || info.Edge != "e1" || info.Bytes != int64(len(b)) {
			t.Fatalf("accepted %+v for %s", info, id)
		}
		if info.Duration < 0 || len(info.Command) > maxRecordingText+3 || len(info.Title) > maxRecordingText+3 {
			t.Fatalf("out of bounds: %+v", info)
		}
	})
}

// FuzzParseRecordingQuery: any query of GET /api/recordings is either
// refused with a reason or selects within its bounds, and matching never
// fails.
func FuzzParseRecordingQuery(f *testing.F) {
	for _, q := range []string{"", "device=d-1", "client=ops&since=24h", "since=2026-12-02T09:00:00Z&limit=5", "limit=0",
		"limit=99999999999999999999", "since=-1h", "device=a%20b", "x=1", "device=d&device=e", "client=" + strings.Repeat("c", 300)} {
		f.Add(q, "d-1", "ops")
	}
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw, device, client string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := parseRecordingQuery(v, now)
		if err != nil {
			require.NotEmpty(t, err.Error())
			require.LessOrEqual(t, len(err.Error()), 512, "the refusal repeats too much of the query")
			return
		}
		require.GreaterOrEqual(t, q.limit, 1)
		require.LessOrEqual(t, q.limit, wire.MaxPeerRecordingsLimit)
		if q.device != "" {
			require.NoError(t, certs.ValidDeviceID(q.device))
		}
		require.LessOrEqual(t, len(q.client), 256)
		if !q.since.IsZero() && v.Get("since") != "" && !strings.ContainsAny(v.Get("since"), "T:") {
			require.False(t, q.since.After(now), "a duration ago is not in the future")
		}
		r := recordingInfo{Device: device, Client: client, Start: now}
		if q.device == "" && q.client == "" && !q.since.After(now) {
			require.True(t, q.matches(r))
		} else {
			_ = q.matches(r)
		}
	})
}

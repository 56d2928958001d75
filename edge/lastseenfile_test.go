package edge_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/transport"
)

func TestLastSeenFileSurvivesReopening(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "last-seen.jsonl")
	ls, err := edge.OpenLastSeen(path, time.Hour, 0, nil)
	require.NoError(t, err)
	now := time.Now().UTC().Truncate(time.Millisecond)
	recs := []edge.LastSeenRecord{
		{ID: "gw-2", LastSeen: now.Add(-time.Minute), Since: now.Add(-time.Hour), RemoteAddr: "198.51.100.7:40112",
			AgentInfo: transport.AgentInfo{Version: "1.4.0", Platform: "linux/arm64"}, Labels: map[string]string{"site": "berlin"}},
		{ID: "gw-1", LastSeen: now, Since: now.Add(-time.Hour)},
	}
	for _, rec := range recs {
		require.NoError(t, ls.RecordLastSeen(ctx, rec))
	}
	// Older than the TTL by the time the file is read again.
	require.NoError(t, ls.RecordLastSeen(ctx, edge.LastSeenRecord{ID: "old", LastSeen: now.Add(-59 * time.Minute)}))
	require.NoError(t, ls.Close())
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	again, err := edge.OpenLastSeen(path, 30*time.Minute, 0, nil)
	require.NoError(t, err)
	defer again.Close()
	got, err := again.ListLastSeen(ctx)
	require.NoError(t, err)
	require.Len(t, got, 2)
	for i, want := range []edge.LastSeenRecord{recs[1], recs[0]} { // sorted by ID
		require.Equal(t, want.ID, got[i].ID)
		require.True(t, want.LastSeen.Equal(got[i].LastSeen), "%v %v", want.LastSeen, got[i].LastSeen)
		require.Equal(t, want.RemoteAddr, got[i].RemoteAddr)
		require.Equal(t, want.AgentInfo, got[i].AgentInfo)
		require.Equal(t, want.Labels, got[i].Labels)
	}
}

func TestLastSeenFileOfAnotherKindIsMovedAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "last-seen.jsonl")
	for _, text := range []string{"not json\n", `{"id":"bad id","last_seen":"2026-12-01T00:00:00Z"}` + "\n", `{"id":"d1"}` + "\n"} {
		require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
		var logs bytes.Buffer
		ls, err := edge.OpenLastSeen(path, time.Hour, 0, slog.New(slog.NewTextHandler(&logs, nil)))
		require.NoError(t, err, text)
		got, err := ls.ListLastSeen(context.Background())
		require.NoError(t, err)
		require.Empty(t, got)
		require.NoError(t, ls.Close())
		moved, err := os.ReadFile(path + ".bad")
		require.NoError(t, err, "the file was not kept")
		require.Equal(t, text, string(moved))
		require.Contains(t, logs.String(), "moved aside")
		require.Contains(t, logs.String(), "line 1")
	}
	_, err := edge.OpenLastSeen(filepath.Join(dir, "no", "such", "dir", "x"), time.Hour, 0, nil)
	require.NoError(t, err, "a missing file is an empty store")
	require.NoError(t, os.WriteFile(path, []byte(strings.Repeat("x", 70<<10)+"\n"), 0o600))
	ls, err := edge.OpenLastSeen(path, time.Hour, 0, nil)
	require.NoError(t, err)
	require.NoError(t, ls.Close())
}

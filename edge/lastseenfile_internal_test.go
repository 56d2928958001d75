package edge

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A record reaches the file without a Close: the store saves a change
// within its interval.
func TestLastSeenFileSavesAChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "last-seen.jsonl")
	ls, err := OpenLastSeen(path, time.Hour, 0, nil)
	require.NoError(t, err)
	defer ls.Close()
	ls.every = 10 * time.Millisecond
	require.NoError(t, ls.RecordLastSeen(context.Background(), LastSeenRecord{ID: "d1", LastSeen: time.Now()}))
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(path)
		return err == nil && json.Valid(b[:max(len(b)-1, 0)]) && len(b) > 0
	}, 10*time.Second, 5*time.Millisecond)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	recs, err := parseLastSeen(b)
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Equal(t, "d1", recs[0].ID)
}

// FuzzParseLastSeen checks that a last-seen file either fails to parse
// or gives records of valid device IDs with a time.
func FuzzParseLastSeen(f *testing.F) {
	f.Add([]byte(`{"id":"d1","last_seen":"2026-12-01T00:00:00Z","since":"2026-11-30T00:00:00Z","labels":{"a":"b"}}` + "\n"))
	f.Add([]byte("{}\n"))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := parseLastSeen(b)
		if err != nil {
			return
		}
		for _, rec := range recs {
			if rec.ID == "" || rec.LastSeen.IsZero() {
				t.Fatalf("kept %+v", rec)
			}
		}
	})
}

package edge

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func lastSeenIDs(t *testing.T, m *MemoryLastSeen) []string {
	t.Helper()
	recs, err := m.ListLastSeen(context.Background())
	require.NoError(t, err)
	out := []string{}
	for _, r := range recs {
		out = append(out, r.ID)
	}
	return out
}

func TestMemoryLastSeenExpires(t *testing.T) {
	now := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	m := &MemoryLastSeen{TTL: time.Hour}
	m.now = func() time.Time { return now }
	put := func(id string) {
		require.NoError(t, m.RecordLastSeen(context.Background(), LastSeenRecord{ID: id, LastSeen: now}))
	}
	put("b")
	now = now.Add(30 * time.Minute)
	put("a")
	require.Equal(t, []string{"a", "b"}, lastSeenIDs(t, m), "sorted by ID")
	now = now.Add(31 * time.Minute)
	require.Equal(t, []string{"a"}, lastSeenIDs(t, m), "b is older than the TTL")
	// A new record of a device replaces its older one and lives on.
	put("a")
	now = now.Add(59 * time.Minute)
	require.Equal(t, []string{"a"}, lastSeenIDs(t, m))
	now = now.Add(time.Minute)
	require.Empty(t, lastSeenIDs(t, m))
}

func TestMemoryLastSeenEvictsTheOldestBeyondMax(t *testing.T) {
	m := &MemoryLastSeen{Max: 3}
	for i := range 5 {
		require.NoError(t, m.RecordLastSeen(context.Background(), LastSeenRecord{ID: fmt.Sprint("d", i), LastSeen: time.Now()}))
	}
	require.Equal(t, []string{"d2", "d3", "d4"}, lastSeenIDs(t, m))
	// d2 again: now the newest, so d3 goes next.
	require.NoError(t, m.RecordLastSeen(context.Background(), LastSeenRecord{ID: "d2", LastSeen: time.Now()}))
	require.NoError(t, m.RecordLastSeen(context.Background(), LastSeenRecord{ID: "d5", LastSeen: time.Now()}))
	require.Equal(t, []string{"d2", "d4", "d5"}, lastSeenIDs(t, m))
}

func TestMemoryLastSeenDefaults(t *testing.T) {
	var m MemoryLastSeen
	require.NoError(t, m.RecordLastSeen(context.Background(), LastSeenRecord{ID: "d", LastSeen: time.Now().Add(-DefaultLastSeenTTL + time.Hour)}))
	require.Equal(t, []string{"d"}, lastSeenIDs(t, &m))
	require.NoError(t, m.RecordLastSeen(context.Background(), LastSeenRecord{ID: "old", LastSeen: time.Now().Add(-DefaultLastSeenTTL - time.Hour)}))
	require.Equal(t, []string{"d"}, lastSeenIDs(t, &m), "a record older than the default TTL is dropped")
}

// FuzzParseDeviceQuery: any query of GET /api/devices is either refused
// with a reason or selects something, and matching never fails.
func FuzzParseDeviceQuery(f *testing.F) {
	for _, q := range []string{"", "status=all", "match=gw-*", "match=%5B", "status=offline&match=a%5C", "x=1", "match=" + strings.Repeat("*", 300),
		"labels=site%3Dberlin,tier!%3Dtest", "labels=!site", "labels=a%20b"} {
		f.Add(q, "gw-1")
	}
	f.Fuzz(func(t *testing.T, raw, id string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := parseDeviceQuery(v)
		if err != nil {
			require.NotEmpty(t, err.Error())
			return
		}
		require.True(t, q.online || q.offline)
		require.LessOrEqual(t, len(q.match), maxMatchPattern)
		_ = q.matches(DeviceRef{ID: id})
		if q.match == "" && len(q.labels) == 0 {
			require.True(t, q.matches(DeviceRef{ID: id}))
		}
	})
}

package cluster

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// FuzzDecodeLeases: a lease record of any content is read or refused,
// never taken in part, and what is read writes back to the same record.
func FuzzDecodeLeases(f *testing.F) {
	f.Add([]byte(`{"edge-a/00112233":1767225600000}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(``))
	f.Add([]byte(`{"x":"y"}`))
	f.Add([]byte(`[1,2]`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeLeases(b)
		if err != nil {
			require.Nil(t, rec)
			return
		}
		require.NotNil(t, rec, "a record read as nil takes no lease")
		out, err := json.Marshal(rec)
		require.NoError(t, err)
		again, err := decodeLeases(out)
		require.NoError(t, err)
		require.Equal(t, rec, again)
		require.LessOrEqual(t, len(b), maxLeaseRecord)
	})
}

// TestLeaseRecordLive: lapsed leases are dropped, the others counted.
func TestLeaseRecordLive(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	rec := leaseRecord{"a/1": 999_999, "a/2": 1_000_000, "b/1": 1_000_001}
	require.Equal(t, 1, rec.live(now))
	require.Equal(t, leaseRecord{"b/1": 1_000_001}, rec)
}

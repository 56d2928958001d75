package transport_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/transport"
)

// TestBackoffSchedule checks the reconnect schedule's promises over many
// draws: the first redial after a loss comes within Initial, no device
// dials more than three times in any 10 s, and an edge back within a few
// seconds is redialed within 7.5 s.
func TestBackoffSchedule(t *testing.T) {
	for range 2000 {
		var b transport.Backoff
		at := []time.Duration{}
		var now time.Duration
		for range 8 {
			now += b.Next()
			at = append(at, now)
		}
		require.Less(t, at[0], transport.DefaultBackoffInitial, "first redial")
		for i := 3; i < len(at); i++ {
			require.Greater(t, at[i]-at[i-3], 10*time.Second, "four dials within 10 s: %v", at)
		}
		// An edge that is back 3.5 s after the loss: the first dial after
		// that comes within 7.5 s.
		for _, d := range at {
			if d >= 3500*time.Millisecond {
				require.LessOrEqual(t, d-3500*time.Millisecond, 7500*time.Millisecond, "dials at %v", at)
				break
			}
		}
		for _, d := range at {
			require.LessOrEqual(t, d-at[0], 200*time.Second)
		}
	}
	b := transport.Backoff{Initial: time.Second, Max: 2 * time.Second}
	for range 10 {
		require.LessOrEqual(t, b.Next(), 2*time.Second, "Max caps every delay")
	}
	b.Reset()
	require.Less(t, b.Next(), time.Second, "Reset starts over")
}

package transport

import (
	"math"
	"math/rand/v2"
	"time"
)

// Reconnect schedule defaults (see Backoff).
const (
	DefaultBackoffInitial = time.Second
	DefaultBackoffMax     = 60 * time.Second
)

// Backoff is the reconnect schedule of devices and clients: quick after a
// connection that lived, then spaced out so that a fleet dropped at once
// neither hammers its edge nor waits long once the edge is back.
//
// The first delay after Reset is drawn uniformly from [0, Initial). The
// n-th one after that is drawn from [c/2, c] with c = 5×Initial×1.5^(n-1),
// capped at Max. With the defaults (1 s, 60 s) the first four dials after
// a loss fall at 0–1 s, 2.5–6 s, 6.3–13.5 s and 12–25 s: a device tries at
// most three times in any 10 s, and redials within 7.5 s of an edge that
// comes back within the first few seconds. The zero value uses the
// defaults. A Backoff is not safe for concurrent use.
type Backoff struct {
	// Initial scales the schedule. Zero means DefaultBackoffInitial (1 s).
	Initial time.Duration
	// Max caps every delay. Zero means DefaultBackoffMax (60 s).
	Max time.Duration

	attempt int
}

// Next returns the delay before the next attempt and advances the schedule.
func (b *Backoff) Next() time.Duration {
	initial := orDefault(b.Initial, DefaultBackoffInitial)
	maxDelay := max(orDefault(b.Max, DefaultBackoffMax), initial)
	n := b.attempt
	b.attempt++
	if n == 0 {
		return time.Duration(rand.Int64N(int64(initial)))
	}
	ceil := float64(5*initial) * math.Pow(1.5, float64(min(n-1, 60)))
	if ceil > float64(maxDelay) {
		ceil = float64(maxDelay)
	}
	half := int64(ceil / 2)
	return time.Duration(half + rand.Int64N(half+1))
}

// Reset starts the schedule over, after a connection that lived.
func (b *Backoff) Reset() { b.attempt = 0 }

func orDefault(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

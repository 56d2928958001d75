// Package ratelimit is the project's one token bucket: the edge's upgrade
// limit per source IP and its limit on refused-upgrade audit records, and
// the UDP tunnels' packet rate, all count with it.
//
// The caller passes the time of every call (time.Now() in production), so
// that tests step the clock by hand and never sleep.
package ratelimit

import (
	"sync"
	"time"
)

// Bucket is a token bucket: it holds at most Burst tokens, starts full,
// and refills at Rate tokens a second; Allow spends one. The zero value
// (Rate 0) allows everything; set the fields before the first Allow and do
// not change them afterwards. A Bucket is not safe for concurrent use: the
// caller holds a lock, or a single goroutine owns it.
type Bucket struct {
	// Rate is the refill rate, in tokens per second. Zero or negative
	// means no limit: Allow always reports true.
	Rate float64
	// Burst is the most tokens the bucket holds, which is also what it
	// starts with. Less than 1 means 1.
	Burst float64

	tokens  float64
	last    time.Time // when tokens was last brought up to date
	started bool
}

// Allow spends a token at now and reports whether there was one. A now
// earlier than the previous call's refills nothing.
func (b *Bucket) Allow(now time.Time) bool {
	if b.Rate <= 0 {
		return true
	}
	b.refill(now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Full reports whether the bucket would hold Burst tokens at now: it then
// holds no information, and a table of buckets may drop it.
func (b *Bucket) Full(now time.Time) bool {
	if b.Rate <= 0 || !b.started {
		return true
	}
	return b.tokens+b.elapsed(now)*b.Rate >= b.burst()
}

func (b *Bucket) burst() float64 { return max(b.Burst, 1) }

// elapsed is the time since the last refill, in seconds; never negative.
func (b *Bucket) elapsed(now time.Time) float64 {
	return max(now.Sub(b.last).Seconds(), 0)
}

func (b *Bucket) refill(now time.Time) {
	if !b.started {
		b.started, b.tokens, b.last = true, b.burst(), now
		return
	}
	b.tokens = min(b.burst(), b.tokens+b.elapsed(now)*b.Rate)
	if now.After(b.last) {
		b.last = now
	}
}

// DefaultMaxKeys bounds the buckets of a Keyed by default.
const DefaultMaxKeys = 1 << 16

// Keyed limits each key (a source IP, say) with a Bucket of its own. Its
// table is bounded: when it is full, the buckets that have refilled are
// dropped (they hold no information); when none has, a new key is refused,
// so a flood from too many keys cannot grow it. The zero value (Rate 0)
// allows everything; set the fields before the first Allow and do not
// change them afterwards. It is safe for concurrent use.
type Keyed struct {
	// Rate and Burst are those of each key's Bucket: tokens per second,
	// and tokens a new key starts with.
	Rate  float64
	Burst float64
	// MaxKeys bounds the buckets kept at once. Zero or negative means
	// DefaultMaxKeys (65,536).
	MaxKeys int

	mu sync.Mutex
	// mu guards the following.
	buckets map[string]*Bucket
}

// Allow spends a token of key's bucket at now and reports whether there
// was one.
func (k *Keyed) Allow(key string, now time.Time) bool {
	if k.Rate <= 0 {
		return true
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	b := k.buckets[key]
	if b == nil {
		maxKeys := k.MaxKeys
		if maxKeys <= 0 {
			maxKeys = DefaultMaxKeys
		}
		if len(k.buckets) >= maxKeys {
			k.pruneLocked(now)
		}
		if len(k.buckets) >= maxKeys {
			return false
		}
		if k.buckets == nil {
			k.buckets = make(map[string]*Bucket)
		}
		b = &Bucket{Rate: k.Rate, Burst: k.Burst}
		k.buckets[key] = b
	}
	return b.Allow(now)
}

// Len returns the number of buckets kept.
func (k *Keyed) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.buckets)
}

func (k *Keyed) pruneLocked(now time.Time) {
	for key, b := range k.buckets {
		if b.Full(now) {
			delete(k.buckets, key)
		}
	}
}

package ratelimit

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

var t0 = time.Unix(1000, 0)

// step is one call of a scripted run: at t0+at, n calls to Allow, of which
// want succeed.
type step struct {
	at   time.Duration
	n    int
	want int
}

func TestBucket(t *testing.T) {
	for _, tc := range []struct {
		name  string
		b     Bucket
		steps []step
	}{
		{name: "starts full and refuses past the burst", b: Bucket{Rate: 2, Burst: 3},
			steps: []step{{0, 5, 3}}},
		{name: "refills at the rate", b: Bucket{Rate: 2, Burst: 3},
			steps: []step{{0, 3, 3}, {500 * time.Millisecond, 3, 1}, {time.Second, 3, 1}, {2 * time.Second, 5, 2}}},
		{name: "a fraction of a token is kept", b: Bucket{Rate: 2, Burst: 3},
			steps: []step{{0, 3, 3}, {250 * time.Millisecond, 1, 0}, {500 * time.Millisecond, 1, 1}}},
		{name: "never holds more than the burst", b: Bucket{Rate: 100, Burst: 10},
			steps: []step{{0, 10, 10}, {time.Hour, 50, 10}}},
		{name: "a tenth of a second's worth", b: Bucket{Rate: 100, Burst: 10},
			steps: []step{{0, 50, 10}, {50 * time.Millisecond, 50, 5}}},
		{name: "a burst below 1 holds one token", b: Bucket{Rate: 1, Burst: 0.2},
			steps: []step{{0, 3, 1}, {time.Second, 3, 1}}},
		{name: "zero rate is unlimited", b: Bucket{},
			steps: []step{{0, 1000, 1000}}},
		{name: "negative rate is unlimited", b: Bucket{Rate: -1, Burst: 1},
			steps: []step{{0, 1000, 1000}}},
		{name: "a clock that steps back refills nothing", b: Bucket{Rate: 1, Burst: 2},
			steps: []step{{time.Minute, 2, 2}, {0, 2, 0}, {time.Minute + time.Second, 2, 1}}},
		{name: "the first call starts the clock", b: Bucket{Rate: 1, Burst: 1},
			steps: []step{{time.Hour, 2, 1}, {time.Hour + time.Second, 2, 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.b
			for i, s := range tc.steps {
				got := 0
				for range s.n {
					if b.Allow(t0.Add(s.at)) {
						got++
					}
				}
				if got != s.want {
					t.Errorf("step %d (+%v): got %d of %d allowed; want %d", i, s.at, got, s.n, s.want)
				}
			}
		})
	}
}

func TestBucketFull(t *testing.T) {
	b := Bucket{Rate: 2, Burst: 2}
	if !b.Full(t0) {
		t.Error("an unused bucket: got Full false; want true")
	}
	b.Allow(t0)
	for _, tc := range []struct {
		at   time.Duration
		want bool
	}{
		{0, false},
		{250 * time.Millisecond, false},
		{500 * time.Millisecond, true},
		{time.Hour, true},
	} {
		if got := b.Full(t0.Add(tc.at)); got != tc.want {
			t.Errorf("one token spent at +0, Full at +%v: got %v; want %v", tc.at, got, tc.want)
		}
	}
}

func TestKeyed(t *testing.T) {
	type call struct {
		key  string
		at   time.Duration
		want bool
	}
	for _, tc := range []struct {
		name  string
		k     *Keyed
		calls []call
	}{
		{name: "each key has its own bucket", k: &Keyed{Rate: 2, Burst: 2}, calls: []call{
			{"a", 0, true}, {"a", 0, true}, {"a", 0, false},
			{"b", 0, true}, {"b", 0, true}, {"b", 0, false},
			{"a", 500 * time.Millisecond, true}, {"a", 500 * time.Millisecond, false},
		}},
		{name: "a full table drops refilled buckets for a new key", k: &Keyed{Rate: 1, Burst: 1, MaxKeys: 2}, calls: []call{
			{"a", 0, true}, {"b", 0, true},
			{"c", 0, false}, // a and b are empty: nothing to drop, the newcomer is refused
			{"c", time.Second, true},
			{"a", time.Second, true}, // a was dropped, so it starts full again
		}},
		{name: "zero rate is unlimited", k: &Keyed{}, calls: []call{
			{"a", 0, true}, {"a", 0, true}, {"a", 0, true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i, c := range tc.calls {
				if got := tc.k.Allow(c.key, t0.Add(c.at)); got != c.want {
					t.Errorf("call %d (%s at +%v): got %v; want %v", i, c.key, c.at, got, c.want)
				}
			}
		})
	}
}

func TestKeyedTableStaysBounded(t *testing.T) {
	k := &Keyed{Rate: 1, Burst: 1, MaxKeys: 100}
	for i := range 1000 {
		k.Allow(fmt.Sprint("key-", i), t0.Add(time.Duration(i)*10*time.Millisecond))
	}
	if got := k.Len(); got > 100 {
		t.Errorf("got %d buckets; want at most MaxKeys (100)", got)
	}
}

func TestKeyedConcurrent(t *testing.T) {
	k := &Keyed{Rate: 1, Burst: 50}
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if k.Allow("a", t0) {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if allowed != 50 {
		t.Errorf("got %d allowed from 8 goroutines at one instant; want the burst, 50", allowed)
	}
}

func BenchmarkKeyedAllow(b *testing.B) {
	k := &Keyed{Rate: 1e9, Burst: 1e9}
	now := t0
	for b.Loop() {
		k.Allow("192.0.2.1", now)
	}
}

package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/asciicast"
)

// fakeClock is the clock of a player under test. Auto: every After fires
// at once and moves the time on by its duration. Manual: the test fires
// the last timer with fire.
type fakeClock struct {
	mu       sync.Mutex
	now      time.Time
	waits    []time.Duration
	manual   bool
	pending  chan time.Time
	pendingD time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waits = append(c.waits, d)
	ch := make(chan time.Time, 1)
	if c.manual {
		c.pending, c.pendingD = ch, d
		return ch
	}
	c.now = c.now.Add(d)
	ch <- c.now
	return ch
}

func (c *fakeClock) fire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(c.pendingD)
	c.pending <- c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *fakeClock) waitList() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.waits...)
}

// syncBuffer is a bytes.Buffer safe to read while a player writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// castEvent is one event for castFile.
type castEvent struct {
	t    float64
	code string
	data string
}

// castFile is an asciicast v2 recording: header fields merged into a
// 80x24 header, then the events, each line encoded with encoding/json.
func castFile(t testing.TB, header map[string]any, evs ...castEvent) string {
	h := map[string]any{"version": 2, "width": 80, "height": 24}
	for k, v := range header {
		h[k] = v
	}
	var b strings.Builder
	line, err := json.Marshal(h)
	require.NoError(t, err)
	b.Write(append(line, '\n'))
	for _, ev := range evs {
		line, err := json.Marshal([]any{ev.t, ev.code, ev.data})
		require.NoError(t, err)
		b.Write(append(line, '\n'))
	}
	return b.String()
}

// recordWrites makes output events of the writes a program made, one
// every 10 ms, as the edge records them: UTF-8 decoded incrementally, so
// that a character split across writes is held until it is whole.
func recordWrites(writes ...string) []castEvent {
	var evs []castEvent
	var pending []byte
	for i, w := range writes {
		b := append(pending, w...)
		cut := len(b)
		for j := len(b) - 1; j >= 0 && j >= len(b)-3; j-- {
			if utf8.RuneStart(b[j]) {
				if !utf8.FullRune(b[j:]) {
					cut = j
				}
				break
			}
		}
		pending = append([]byte(nil), b[cut:]...)
		if cut > 0 {
			evs = append(evs, castEvent{float64(i+1) / 100, "o", string(b[:cut])})
		}
	}
	return evs
}

// newTestPlayer is a player writing to out on an auto fake clock, with no
// terminal.
func newTestPlayer(out *syncBuffer) (*player, *fakeClock) {
	c := &fakeClock{now: time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)}
	return &player{out: out, speed: 1, clock: c, size: func() (int, int, bool) { return 0, 0, false }}, c
}

func decoder(s string) *asciicast.Decoder { return asciicast.NewDecoder(strings.NewReader(s)) }

// TestPlayerTiming asserts the delays the player waits, on a fake clock:
// the recording's gaps, capped by the idle limit, divided by the speed.
func TestPlayerTiming(t *testing.T) {
	evs := []castEvent{
		{0.5, "o", "a"},
		{1.0, "o", "b"},
		{1.0, "i", "typed"}, // input shows nothing and waits for nothing
		{11.0, "o", "c"},    // after 10 s idle
		{11.25, "r", "90x30"},
		{11.5, "m", "marker"},
		{11.0, "o", "d"}, // a time going back waits for nothing
		{12.0, "o", "e"},
	}
	ms := func(n ...float64) []time.Duration {
		out := make([]time.Duration, len(n))
		for i, v := range n {
			out[i] = time.Duration(v * float64(time.Millisecond))
		}
		return out
	}
	tests := []struct {
		name   string
		header map[string]any
		speed  float64
		idle   time.Duration
		want   []time.Duration
	}{
		{"original timing", nil, 1, 0, ms(500, 500, 10000, 250, 750)},
		{"twice as fast", nil, 2, 0, ms(250, 250, 5000, 125, 375)},
		{"half as fast", nil, 0.5, 0, ms(1000, 1000, 20000, 500, 1500)},
		{"idle limit", nil, 1, 2 * time.Second, ms(500, 500, 2000, 250, 750)},
		{"idle limit and speed", nil, 4, 2 * time.Second, ms(125, 125, 500, 62.5, 187.5)},
		{"the header's idle_time_limit", map[string]any{"idle_time_limit": 1.5}, 1, 0, ms(500, 500, 1500, 250, 750)},
		{"--idle-limit beats the header's", map[string]any{"idle_time_limit": 1.5}, 1, 3 * time.Second, ms(500, 500, 3000, 250, 750)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out syncBuffer
			p, c := newTestPlayer(&out)
			p.speed, p.idle = tt.speed, tt.idle
			require.NoError(t, p.play(context.Background(), decoder(castFile(t, tt.header, evs...))))
			require.Equal(t, tt.want, c.waitList())
			require.Equal(t, "abcde", out.String())
		})
	}

	t.Run("cat waits for nothing", func(t *testing.T) {
		var out syncBuffer
		p, c := newTestPlayer(&out)
		p.cat = true
		require.NoError(t, p.play(context.Background(), decoder(castFile(t, nil, evs...))))
		require.Empty(t, c.waitList())
		require.Equal(t, "abcde", out.String())
	})
}

// TestPlayerPause drives the keys: space pauses (the time paused does not
// count), . steps one event, space resumes.
func TestPlayerPause(t *testing.T) {
	var out syncBuffer
	p, c := newTestPlayer(&out)
	c.manual = true
	keys := make(chan byte) // unbuffered: a send returns once the player took it
	p.keys = keys
	done := make(chan error, 1)
	go func() {
		done <- p.play(context.Background(), decoder(castFile(t, nil, castEvent{1, "o", "one"}, castEvent{2, "o", "two"}, castEvent{3, "o", "three"})))
	}()
	waits := func(n int) {
		t.Helper()
		require.Eventually(t, func() bool { return len(c.waitList()) == n }, 30*time.Second, time.Millisecond)
	}
	waits(1) // waiting 1 s for "one"
	keys <- keyPause
	keys <- 'x' // ignored; taken only once the player is paused
	c.advance(100 * time.Second)
	keys <- keyPause // resume: the 100 s paused do not count
	waits(2)
	require.Equal(t, []time.Duration{time.Second, time.Second}, c.waitList())
	require.Empty(t, out.String())
	c.fire()
	waits(3) // "one" shown, waiting 1 s for "two"
	require.Equal(t, "one", out.String())
	keys <- keyPause
	keys <- keyStep // "two" at once, still paused
	require.Eventually(t, func() bool { return out.String() == "onetwo" }, 30*time.Second, time.Millisecond)
	keys <- keyPause
	waits(4)
	require.Equal(t, time.Second, c.waitList()[3], "after a step, the next event keeps its gap")
	c.fire()
	require.NoError(t, <-done)
	require.Equal(t, "onetwothree", out.String())
}

func TestPlayerStopKeys(t *testing.T) {
	for _, tt := range []struct {
		name string
		keys string
		want error
	}{
		{"q", "q", errQuit},
		{"Ctrl-D", "\x04", errQuit},
		{"Ctrl-C", "\x03", context.Canceled},
		{"Ctrl-C while paused", " \x03", context.Canceled},
		{"q while paused", " q", errQuit},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out syncBuffer
			p, _ := newTestPlayer(&out)
			keys := make(chan byte, len(tt.keys))
			for _, k := range []byte(tt.keys) {
				keys <- k
			}
			p.keys = keys
			err := p.play(context.Background(), decoder(castFile(t, nil, castEvent{1, "o", "one"})))
			require.ErrorIs(t, err, tt.want)
			require.Empty(t, out.String())
		})
	}

	t.Run("context", func(t *testing.T) {
		var out syncBuffer
		p, _ := newTestPlayer(&out)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		require.ErrorIs(t, p.play(ctx, decoder(castFile(t, nil, castEvent{1, "o", "one"}))), context.Canceled)
		p.cat = true
		require.ErrorIs(t, p.play(ctx, decoder(castFile(t, nil, castEvent{1, "o", "one"}))), context.Canceled)
	})

	t.Run("stdin ends", func(t *testing.T) {
		var out syncBuffer
		p, _ := newTestPlayer(&out)
		keys := make(chan byte)
		close(keys)
		p.keys = keys
		require.NoError(t, p.play(context.Background(), decoder(castFile(t, nil, castEvent{1, "o", "one"}))))
		require.Equal(t, "one", out.String())
	})
}

// TestPlayerSizeNotice: a recorded terminal larger than the local one is
// reported once per size.
func TestPlayerSizeNotice(t *testing.T) {
	var out syncBuffer
	p, _ := newTestPlayer(&out)
	p.size = func() (int, int, bool) { return 100, 30, true }
	var notices []string
	p.notice = func(format string, args ...any) { notices = append(notices, fmt.Sprintf(format, args...)) }
	rec := castFile(t, map[string]any{"width": 120, "height": 30},
		castEvent{1, "r", "80x24"},
		castEvent{2, "r", "120x30"}, // as the header: said already
		castEvent{3, "r", "100x31"},
		castEvent{4, "r", "bogus"},
		castEvent{5, "r", "100x31"},
		castEvent{6, "r", "100x30"},
	)
	require.NoError(t, p.play(context.Background(), decoder(rec)))
	require.Equal(t, []string{
		"the recorded terminal is 120x30, larger than this one (100x30): lines may wrap; enlarge the window to see it as it was",
		"the recorded terminal is 100x31, larger than this one (100x30): lines may wrap; enlarge the window to see it as it was",
	}, notices)
}

func TestRecordWrites(t *testing.T) {
	// The helper itself: a character split across writes lands whole in
	// the later event.
	evs := recordWrites("a\xc3", "\xa9b", "\xf0\x9f", "\x98", "\x80")
	require.Equal(t, []castEvent{{0.01, "o", "a"}, {0.02, "o", "éb"}, {0.05, "o", "😀"}}, evs)
}

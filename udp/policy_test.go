package udp

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReplyPorts(t *testing.T) {
	var s replyPorts
	assert.False(t, s.has(53), "an empty set has no port")
	s.learn(0)
	assert.False(t, s.has(0), "port 0 is never learned")

	for p := uint16(1000); p < 1000+maxReplyPorts; p++ {
		s.learn(p)
	}
	for p := uint16(1000); p < 1000+maxReplyPorts; p++ {
		assert.True(t, s.has(p), "port %d: got forgotten; want learned", p)
	}
	// Learning a known port again forgets nothing.
	s.learn(1003)
	assert.True(t, s.has(1000), "a repeated port must not push out the oldest")

	// One more forgets the oldest, and only it.
	s.learn(2000)
	assert.False(t, s.has(1000), "the oldest port must be forgotten past the cap")
	assert.True(t, s.has(2000))
	for p := uint16(1001); p < 1000+maxReplyPorts; p++ {
		assert.True(t, s.has(p), "port %d: got forgotten; want learned", p)
	}
}

func TestReplyMeter(t *testing.T) {
	type step struct {
		at    time.Duration // after the meter's start
		req   int           // bytes sent to the target
		rep   int           // bytes from the target; checked
		allow bool          // want for rep
	}
	cases := []struct {
		name      string
		ratio     int
		allowance int
		steps     []step
	}{
		{"one large answer within the allowance", 10, 65536, []step{
			{at: 0, req: 40, rep: 60000, allow: true},
		}},
		{"the allowance is per window, not per answer", 10, 65536, []step{
			{at: 0, req: 40, rep: 60000, allow: true},
			{at: time.Second, req: 40, rep: 60000, allow: false},
		}},
		{"exactly at the cap passes, one byte more does not", 10, 100, []step{
			{at: 0, req: 40, rep: 500, allow: true}, // 500 ≤ 10×40 + 100
			{at: 0, rep: 0, allow: true},
			{at: 0, rep: 1, allow: false},
		}},
		{"bytes over the cap are not counted", 10, 100, []step{
			{at: 0, req: 40, rep: 501, allow: false},
			{at: 0, rep: 500, allow: true},
		}},
		{"no allowance", 2, -1, []step{
			{at: 0, rep: 1, allow: false},
			{at: 0, req: 10, rep: 20, allow: true},
			{at: 0, rep: 1, allow: false},
		}},
		{"requests fall out of the window", 10, 0, []step{
			{at: 0, req: 100, rep: 1000, allow: true},
			{at: 5 * time.Second, req: 100, rep: 0, allow: true},
			// At 10 s the first second's part has gone: 100 requested, 0 replied.
			{at: 10 * time.Second, rep: 1000, allow: true},
			{at: 10 * time.Second, rep: 1, allow: false},
		}},
		{"replies fall out of the window", 10, 1000, []step{
			{at: 0, rep: 1000, allow: true},
			{at: 5 * time.Second, rep: 1, allow: false},
			// At 10 s the first second's part has gone with its replies.
			{at: 10 * time.Second, rep: 1000, allow: true},
			{at: 10 * time.Second, rep: 1, allow: false},
		}},
		{"a long silence clears everything", 1, 0, []step{
			{at: 0, req: 1000, rep: 1000, allow: true},
			{at: time.Hour, rep: 1, allow: false},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Unix(1000, 0)
			m := newReplyMeter(tc.ratio, 10*time.Second, tc.allowance, start)
			for i, s := range tc.steps {
				now := start.Add(s.at)
				if s.req > 0 {
					m.request(now, s.req)
				}
				got := m.reply(now, s.rep)
				assert.Equal(t, s.allow, got, "step %d (%+v): got allowed=%v; want %v", i, s, got, s.allow)
			}
		})
	}

	off := newReplyMeter(-1, 10*time.Second, 0, time.Now())
	require.Nil(t, off, "a negative ratio means no meter")
	off.request(time.Now(), 1)
	assert.True(t, off.reply(time.Now(), 1<<30), "no meter allows everything")
}

func TestDeviceConfigDefaults(t *testing.T) {
	cases := []struct {
		name                     string
		in                       DeviceConfig
		wantRatio, wantAllowance int
		wantWindow               time.Duration
	}{
		{"zero means defaults", DeviceConfig{}, DefaultMaxReplyRatio, DefaultReplyAllowance, DefaultReplyRatioWindow},
		{"negative ratio is kept: no cap", DeviceConfig{MaxReplyRatio: -1}, -1, DefaultReplyAllowance, DefaultReplyRatioWindow},
		{"negative allowance is kept: none", DeviceConfig{ReplyAllowance: -1}, DefaultMaxReplyRatio, -1, DefaultReplyRatioWindow},
		{"negative window means the default", DeviceConfig{ReplyRatioWindow: -time.Second}, DefaultMaxReplyRatio, DefaultReplyAllowance, DefaultReplyRatioWindow},
		{"set values stay", DeviceConfig{MaxReplyRatio: 3, ReplyAllowance: 10, ReplyRatioWindow: time.Minute}, 3, 10, time.Minute},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.in.withDefaults()
			assert.Equal(t, tc.wantRatio, got.MaxReplyRatio, "MaxReplyRatio")
			assert.Equal(t, tc.wantAllowance, got.ReplyAllowance, "ReplyAllowance")
			assert.Equal(t, tc.wantWindow, got.ReplyRatioWindow, "ReplyRatioWindow")
		})
	}
	assert.Equal(t, 10, DefaultMaxReplyRatio)
	assert.Equal(t, 10*time.Second, DefaultReplyRatioWindow)
	assert.Greater(t, DefaultReplyAllowance, MaxFrameData, "one answer of any size must fit the default allowance")
}

func TestCloseReason(t *testing.T) {
	long := strings.Repeat("é", MaxCloseReason) // 2 bytes each
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"plain", []byte("reply traffic exceeded 10x the requests over 10s"), "reply traffic exceeded 10x the requests over 10s"},
		{"empty", nil, noReason},
		{"only controls", []byte("\x00\r\n\t\x1b"), noReason},
		{"escape sequence", []byte("\x1b[2J\x1b[31mred"), "[2J [31mred"},
		{"line breaks", []byte("one\r\ntwo\u2028three"), "one two three"},
		{"runs of space", []byte("  a \t\t b  "), "a b"},
		{"bidi override", []byte("abc\u202edef"), "abc def"},
		{"invalid UTF-8", []byte("ok\xff\xfe"), "ok\uFFFD\uFFFD"},
		{"cut on a character boundary", []byte(long), strings.Repeat("é", MaxCloseReason/2)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := closeReason(tc.in)
			assert.Equal(t, tc.want, got, "got %q; want %q", got, tc.want)
		})
	}
}

func TestAppendCloseFrame(t *testing.T) {
	cases := []struct {
		name, reason, want string
	}{
		{"short", "reply cap", "reply cap"},
		{"cut on a character boundary", "x" + strings.Repeat("€", MaxCloseReason), "x" + strings.Repeat("€", (MaxCloseReason-1)/3)},
		{"invalid UTF-8 replaced", "a\xffb", "a\uFFFDb"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := appendCloseFrame([]byte("prefix"), tc.reason)
			port, data, n, err := DecodeFrame(b[len("prefix"):])
			require.NoError(t, err)
			assert.Equal(t, len(b)-len("prefix"), n)
			assert.Zero(t, port, "a close frame has port 0")
			assert.Equal(t, tc.want, string(data))
			assert.LessOrEqual(t, len(data), MaxCloseReason)
		})
	}
}

// FuzzCloseReason checks the client's reading of a close frame: whatever
// the device sends, the text is one line of printable UTF-8 within
// MaxCloseReason bytes, reading it again changes nothing, and what a
// device writes with appendCloseFrame decodes as a bounded close frame.
func FuzzCloseReason(f *testing.F) {
	for _, s := range []string{"reply traffic exceeded 10x the requests over 10s", "", "\x1b[2J", "a\r\nb", "\xff\xfe",
		"\u202e\u200b", strings.Repeat("€", 200), "  x  "} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got := closeReason(data)
		if !utf8.ValidString(got) {
			t.Fatalf("closeReason(%q) = %q: invalid UTF-8", data, got)
		}
		if len(got) == 0 || len(got) > MaxCloseReason {
			t.Fatalf("closeReason(%q): got %d bytes; want 1..%d", data, len(got), MaxCloseReason)
		}
		for _, r := range got {
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || (unicode.IsSpace(r) && r != ' ') {
				t.Fatalf("closeReason(%q) = %q holds %U", data, got, r)
			}
		}
		if strings.HasPrefix(got, " ") || strings.HasSuffix(got, " ") || strings.Contains(got, "  ") {
			t.Fatalf("closeReason(%q) = %q: untrimmed or doubled space", data, got)
		}
		if again := closeReason([]byte(got)); again != got {
			t.Fatalf("closeReason is not stable: %q then %q", got, again)
		}

		b := appendCloseFrame(nil, string(data))
		port, reason, n, err := DecodeFrame(b)
		if err != nil || port != 0 || n != len(b) {
			t.Fatalf("close frame for %q: port %d, %d of %d bytes, %v", data, port, n, len(b), err)
		}
		if len(reason) > MaxCloseReason || !utf8.Valid(reason) || !bytes.HasPrefix([]byte(strings.ToValidUTF8(string(data), "\uFFFD")), reason) {
			t.Fatalf("close frame for %q carries %q", data, reason)
		}
	})
}

// BenchmarkTunnelChecks measures the per-datagram work the port rule and
// the reply cap add to a tunnel: one port check and one request on the way
// out, one reply on the way back.
func BenchmarkTunnelChecks(b *testing.B) {
	var ports replyPorts
	for p := uint16(1); p <= maxReplyPorts; p++ {
		ports.learn(1000 + p)
	}
	start := time.Now()
	m := newReplyMeter(DefaultMaxReplyRatio, DefaultReplyRatioWindow, DefaultReplyAllowance, start)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now := start.Add(time.Duration(i) * time.Microsecond)
		if !ports.has(1000 + maxReplyPorts) {
			b.Fatal("a learned port was not found")
		}
		m.request(now, 512)
		if !m.reply(now, 512) {
			b.Fatal("a reply the size of its request passed the cap")
		}
	}
}

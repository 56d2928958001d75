package asciicast_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tetherhq/tether/internal/asciicast"
)

func TestWriter(t *testing.T) {
	var b bytes.Buffer
	w, err := asciicast.NewWriter(&b, asciicast.Header{Width: 80, Height: 24, Timestamp: 1700000000,
		Env: map[string]string{"TERM": "xterm"}, Tether: &asciicast.Meta{ID: "e-0123456789abcdef", Device: "d1"}})
	if err != nil {
		t.Fatal(err)
	}
	events := []asciicast.Event{
		{Time: 0, Code: asciicast.Output, Data: "a<b>&\x1b[0m\r\n"},
		{Time: 0.0000004, Code: asciicast.Resize, Data: "100x30"},
		{Time: 1.5, Code: asciicast.Input, Data: "ls\r"},
		{Time: 12.0000314, Code: asciicast.Marker, Data: "exit code 0"},
		{Time: 1e7, Code: asciicast.Output, Data: "é"},
	}
	for _, e := range events {
		if err := w.WriteEvent(e); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 1+len(events) {
		t.Fatalf("got %d lines; want %d:\n%s", len(lines), 1+len(events), b.String())
	}
	var h asciicast.Header
	if err := json.Unmarshal([]byte(lines[0]), &h); err != nil || h.Version != 2 || h.Tether.ID != "e-0123456789abcdef" {
		t.Fatalf("header %s: %v, %+v", lines[0], err, h)
	}
	wantLines := []string{
		`[0.0,"o","a<b>&\u001b[0m\r\n"]`,
		`[0.0,"r","100x30"]`,
		`[1.5,"i","ls\r"]`,
		`[12.000031,"m","exit code 0"]`,
		`[10000000.0,"o","é"]`,
	}
	for i, want := range wantLines {
		if lines[i+1] != want {
			t.Errorf("line %d: got %s; want %s", i+1, lines[i+1], want)
		}
	}
	for _, bad := range []asciicast.Event{{Time: -1, Code: asciicast.Output}, {Time: 1, Code: "x"}} {
		if err := w.WriteEvent(bad); err == nil {
			t.Errorf("WriteEvent(%+v) took a bad event", bad)
		}
	}
}

func TestUTF8Decoder(t *testing.T) {
	tests := []struct {
		name  string
		parts []string
		want  string
	}{
		{"ascii", []string{"abc", "def"}, "abcdef"},
		{"split two-byte", []string{"\xc3", "\xa9"}, "é"},
		{"split four-byte thrice", []string{"x\xf0", "\x9f", "\x98", "\x80y"}, "x😀y"},
		{"invalid byte", []string{"a\xffb"}, "a\uFFFDb"},
		{"lead then ascii", []string{"\xc3", "a"}, "\uFFFDa"},
		{"held three then bad", []string{"\xf0\x9f\x98", "z"}, "\uFFFD\uFFFD\uFFFDz"},
		{"truncated at the end", []string{"ok\xe2\x82"}, "ok\uFFFD\uFFFD"},
		{"surrogate", []string{"\xed\xa0", "\x80"}, "\uFFFD\uFFFD\uFFFD"},
		{"empty parts", []string{"", "\xc3", "", "\xa9", ""}, "é"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var d asciicast.UTF8Decoder
			var out []byte
			for _, p := range tc.parts {
				out = d.Append(out, []byte(p))
			}
			out = d.Flush(out)
			if string(out) != tc.want {
				t.Errorf("got %q; want %q", out, tc.want)
			}
		})
	}
}

// FuzzUTF8Decoder checks that the decoder, fed a stream cut anywhere,
// gives what converting the whole stream to runes gives, and always valid
// UTF-8.
func FuzzUTF8Decoder(f *testing.F) {
	f.Add([]byte("héllo wörld 😀"), uint8(1), uint8(3))
	f.Add([]byte("\xc3\xa9\xff\xf0\x9f"), uint8(2), uint8(1))
	f.Add([]byte("\xed\xa0\x80\xe2\x82\xac"), uint8(0), uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, cut1, cut2 uint8) {
		want := string([]rune(string(data)))
		var d asciicast.UTF8Decoder
		var out []byte
		a, b := int(cut1)%(len(data)+1), int(cut2)%(len(data)+1)
		if a > b {
			a, b = b, a
		}
		for _, p := range [][]byte{data[:a], data[a:b], data[b:]} {
			out = d.Append(out, p)
			if !utf8.Valid(out) {
				t.Fatalf("invalid UTF-8 out of %q: %q", data, out)
			}
		}
		out = d.Flush(out)
		if string(out) != want {
			t.Fatalf("%q cut at %d, %d: got %q; want %q", data, a, b, out, want)
		}
		// Byte at a time too.
		out = out[:0]
		for i := range data {
			out = d.Append(out, data[i:i+1])
		}
		if out = d.Flush(out); string(out) != want {
			t.Fatalf("%q byte by byte: got %q; want %q", data, out, want)
		}
	})
}

// FuzzAppendEvent checks that every event line is one valid JSON array
// that decodes to the event's code and data.
func FuzzAppendEvent(f *testing.F) {
	f.Add(1.25, "o", "hello\r\n\x1b[1m")
	f.Add(0.0, "r", "80x24")
	f.Add(3e-9, "m", "\xff")
	f.Fuzz(func(t *testing.T, tm float64, code, data string) {
		enc := asciicast.NewEventEncoder()
		prefix := []byte("before\n")
		line, err := enc.AppendEvent(prefix, asciicast.Event{Time: tm, Code: asciicast.Code(code), Data: data})
		if err != nil {
			if string(line) != string(prefix) {
				t.Fatalf("a failed event changed the buffer: %q", line)
			}
			return
		}
		if !bytes.HasPrefix(line, prefix) {
			t.Fatalf("the line did not go after the buffer's bytes: %q", line)
		}
		line = line[len(prefix):]
		if !bytes.HasSuffix(line, []byte("\n")) || bytes.Count(line, []byte("\n")) != 1 {
			t.Fatalf("not one line: %q", line)
		}
		var ev [3]any
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if ev[1] != code || ev[2] != string([]rune(data)) {
			t.Fatalf("%q decodes to %v", line, ev)
		}
		// The encoder goes on with the next event as if fresh.
		next, err := enc.AppendEvent(nil, asciicast.Event{Time: 1, Code: asciicast.Marker, Data: "next"})
		if err != nil || string(next) != `[1.0,"m","next"]`+"\n" {
			t.Fatalf("the next event: %q, %v", next, err)
		}
	})
}

// benchText is 32 KiB of terminal output: log lines, a few colours.
func benchText() []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < 32<<10; i++ {
		b.WriteString("Dec  2 14:00:00 device-1 \x1b[32msshd\x1b[0m[1234]: accepted publickey for root from 10.0.0.7 port 52211 ssh2 <ok> & done\r\n")
	}
	return b.Bytes()[:32<<10]
}

// BenchmarkEncodeEvent measures one 32 KiB output event's encoding, the
// recording's main cost per byte, against encoding/json's own Encode into
// a bytes.Buffer (the baseline sub-benchmark): what AppendEvent adds.
func BenchmarkEncodeEvent(b *testing.B) {
	data := string(benchText())
	b.Run("AppendEvent", func(b *testing.B) {
		var buf []byte
		enc := asciicast.NewEventEncoder()
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if buf, err = enc.AppendEvent(buf[:0], asciicast.Event{Time: 12.5, Code: asciicast.Output, Data: data}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(buf))/float64(len(data)), "x-raw-bytes")
	})
	b.Run("encoding-json", func(b *testing.B) {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			buf.Reset()
			if err := enc.Encode([3]any{json.Number("12.5"), "o", data}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkUTF8Decoder measures the incremental decoder on text read in
// 4 KiB pieces that cut characters.
func BenchmarkUTF8Decoder(b *testing.B) {
	text := bytes.Repeat([]byte("héllo wörld, ça va? 😀 "), 2000)
	var d asciicast.UTF8Decoder
	out := make([]byte, 0, len(text)+8)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		out = out[:0]
		for p := text; len(p) > 0; {
			n := min(len(p), 4093)
			out = d.Append(out, p[:n])
			p = p[n:]
		}
		out = d.Flush(out)
	}
}

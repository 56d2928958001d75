package asciicast_test

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/asciicast"
)

// readAll decodes a whole recording.
func readAll(t testing.TB, s string) (asciicast.Header, []asciicast.Event, error) {
	d := asciicast.NewDecoder(strings.NewReader(s))
	h, err := d.Header()
	if err != nil {
		return h, nil, err
	}
	var evs []asciicast.Event
	for {
		ev, err := d.Next()
		if err == io.EOF {
			return h, evs, nil
		}
		if err != nil {
			return h, evs, err
		}
		evs = append(evs, ev)
	}
}

// TestDecodeAsciinema reads a file that asciinema 2.2 wrote (asciinema rec
// -i 2 under script, printing UTF-8, colours and a title).
func TestDecodeAsciinema(t *testing.T) {
	b, err := os.ReadFile("testdata/asciinema-2.2.cast")
	require.NoError(t, err)
	d := asciicast.NewDecoder(strings.NewReader(string(b)))
	h, err := d.Header()
	require.NoError(t, err)
	require.Equal(t, 2, h.Version)
	require.Equal(t, 100, h.Width)
	require.Equal(t, 30, h.Height)
	require.Equal(t, int64(1796221429), h.Timestamp)
	require.Equal(t, "xterm", h.Env["TERM"])
	require.Nil(t, h.Tether)
	require.Equal(t, 2.0, d.IdleTimeLimit())
	var out strings.Builder
	var times []float64
	for {
		ev, err := d.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		require.Equal(t, asciicast.Output, ev.Code)
		out.WriteString(ev.Data)
		times = append(times, ev.Time)
	}
	require.Equal(t, "héllo \x1b[1;31mred\x1b[0m €\r\n\x1b]0;title\x07done\r\n", out.String())
	require.Equal(t, []float64{0.174843, 0.612638}, times)
}

func TestDecodeTetherHeader(t *testing.T) {
	want := asciicast.Header{
		Version: 2, Width: 120, Height: 40, Timestamp: 1796220000, Title: "ops@gw-1",
		Env:    map[string]string{"TERM": "xterm-256color"},
		Tether: &asciicast.Meta{ID: "edge-1-0123456789abcdef", Session: "s1", Device: "gw-1", Client: "ops", Edge: "edge-1", Command: "bash"},
	}
	line, err := json.Marshal(want)
	require.NoError(t, err)
	h, evs, err := readAll(t, string(line)+"\n"+
		`[0, "r", "80x24"]`+"\r\n"+
		"\n"+
		`[1.5, "o", "a\u00e9\ud83d\ude00\n"]`+"\n"+
		`[2, "i", "ls\r"]`+"\n"+
		`[2.25e0, "m", "exit 0"]`+"\n"+
		`[3, "x", "unknown codes are returned"]`) // no final newline
	require.NoError(t, err)
	require.Equal(t, want, h)
	require.Equal(t, []asciicast.Event{
		{Time: 0, Code: asciicast.Resize, Data: "80x24"},
		{Time: 1.5, Code: asciicast.Output, Data: "aé😀\n"},
		{Time: 2, Code: asciicast.Input, Data: "ls\r"},
		{Time: 2.25, Code: asciicast.Marker, Data: "exit 0"},
		{Time: 3, Code: "x", Data: "unknown codes are returned"},
	}, evs)
}

func TestDecodeFractionalTimestamp(t *testing.T) {
	h, _, err := readAll(t, `{"version":2,"width":80,"height":24,"timestamp":1796220000.75,"theme":{"fg":"#fff"}}`)
	require.NoError(t, err)
	require.Equal(t, int64(1796220000), h.Timestamp)
}

func TestDecodeInvalidUTF8(t *testing.T) {
	_, evs, err := readAll(t, "{\"version\":2,\"width\":80,\"height\":24}\n[0,\"o\",\"a\xffb\"]\n")
	require.NoError(t, err)
	require.Equal(t, "a\uFFFDb", evs[0].Data)
}

func TestDecodeErrors(t *testing.T) {
	const hdr = `{"version":2,"width":80,"height":24}` + "\n"
	tests := []struct {
		name, in string
		line     int
		want     string
		is       error
	}{
		{"empty", "", 0, "line 0: empty: no header line", nil},
		{"version 1", `{"version":1,"width":80,"height":24,"stdout":[]}`, 1, "line 1: not an asciicast v2 recording: the header says version 1", asciicast.ErrVersion},
		{"html", "<html><body>login</body></html>\n", 1, "line 1: not an asciicast v2 recording: the header is not a JSON object", asciicast.ErrVersion},
		{"header an array", "[0, \"o\", \"x\"]\n", 1, "line 1: not an asciicast v2 recording: the header is not a JSON object (found a array)", asciicast.ErrVersion},
		{"negative size", `{"version":2,"width":-1,"height":24}`, 1, "line 1: the header's width and height -1x24", nil},
		{"bad timestamp", `{"version":2,"width":80,"height":24,"timestamp":-5}`, 1, "line 1: the header's timestamp -5 is not a time in Unix seconds", nil},
		{"event object", hdr + "[0,\"o\",\"a\"]\n{\"t\":1}\n", 3, `line 3: an event must be a JSON array [time, code, data], got "{\"t\":1}"`, nil},
		{"event short", hdr + "[0,\"o\"]\n", 2, "line 2: an event has 3 elements [time, code, data], this one has 2", nil},
		{"event long", hdr + "[0,\"o\",\"a\",1]\n", 2, "line 2: an event has 3 elements [time, code, data], this one has 4", nil},
		{"time a string", hdr + "[\"0\",\"o\",\"a\"]\n", 2, `line 2: the event's time "\"0\"" is not a number`, nil},
		{"negative time", hdr + "[-1,\"o\",\"a\"]\n", 2, "line 2: the event's time \"-1\" is negative", nil},
		{"huge time", hdr + "[1e999,\"o\",\"a\"]\n", 2, `line 2: the event's time "1e999" is not a number`, nil},
		{"code empty", hdr + "[0,\"\",\"a\"]\n", 2, `line 2: the event's code "\"\"" is not a non-empty string`, nil},
		{"data a number", hdr + "[0,\"o\",5]\n", 2, "line 2: the event's data \"5\" is not a string", nil},
		{"broken JSON", hdr + "\n[0,\"o\",\"a]\n", 3, "line 3: the event is not valid JSON (unexpected end of JSON input", nil},
		{"line too long", hdr + "[0,\"o\",\"" + strings.Repeat("a", asciicast.MaxLineBytes) + "\"]\n", 2, "line 2: line too long: more than 1048576 bytes", asciicast.ErrLineTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := readAll(t, tt.in)
			require.Error(t, err)
			require.ErrorContains(t, err, "asciicast: "+tt.want)
			var le *asciicast.LineError
			require.ErrorAs(t, err, &le)
			require.Equal(t, tt.line, le.Line)
			if tt.is != nil {
				require.ErrorIs(t, err, tt.is)
			}
		})
	}
}

// TestDecodeErrorSticks: after an error, the Decoder keeps returning it.
func TestDecodeErrorSticks(t *testing.T) {
	d := asciicast.NewDecoder(strings.NewReader("{\"version\":2,\"width\":1,\"height\":1}\nnope\n[1,\"o\",\"a\"]\n"))
	_, err := d.Next()
	require.ErrorContains(t, err, "line 2")
	_, err2 := d.Next()
	require.Equal(t, err, err2)
}

// TestDecodeLongLineAtLimit: a line of exactly MaxLineBytes is read.
func TestDecodeLongLineAtLimit(t *testing.T) {
	prefix, suffix := `[0,"o","`, `"]`
	data := strings.Repeat("a", asciicast.MaxLineBytes-len(prefix)-len(suffix))
	_, evs, err := readAll(t, "{\"version\":2,\"width\":1,\"height\":1}\r\n"+prefix+data+suffix+"\r\n")
	require.NoError(t, err)
	require.Len(t, evs[0].Data, len(data))
}

func TestParseResize(t *testing.T) {
	cols, rows, err := asciicast.ParseResize("120x40")
	require.NoError(t, err)
	require.Equal(t, [2]int{120, 40}, [2]int{cols, rows})
	for _, bad := range []string{"", "120", "x40", "120x", "0x40", "120x-1", "axb", "120x40x2", "99999999x1"} {
		_, _, err := asciicast.ParseResize(bad)
		require.ErrorContains(t, err, "is not COLSxROWS", bad)
	}
}

// FuzzDecode feeds the Decoder any bytes: it must not panic, every error
// but the end names its line, and an event that decodes re-encodes to
// one that decodes the same.
func FuzzDecode(f *testing.F) {
	if b, err := os.ReadFile("testdata/asciinema-2.2.cast"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"version":2,"width":80,"height":24,"tether":{"id":"e-0123456789abcdef","session":"s","device":"d","client":"c","edge":"e"}}` + "\n" +
		`[0.5,"o","\u001b[31mred\u001b[0m\r\n"]` + "\n" + `[1,"r","100x30"]` + "\n" + `[2,"m","exit 0"]` + "\n"))
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte("{\"version\":2,\"width\":80,\"height\":24}\n[1e308,\"o\",\"\\ud800\"]\n[0,\"o\",\"a\xff\"]"))
	f.Add([]byte("{\"version\":2,\"width\":80,\"height\":24}\n\n\r\n[ 1 , \"i\" , \"\" ]"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		d := asciicast.NewDecoder(strings.NewReader(string(b)))
		for i := 0; ; i++ {
			ev, err := d.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				var le *asciicast.LineError
				require.True(t, errors.As(err, &le), "an error without its line: %v", err)
				return
			}
			require.GreaterOrEqual(t, ev.Time, 0.0)
			require.NotEmpty(t, ev.Code)
			line, err := json.Marshal([]any{ev.Time, ev.Code, ev.Data})
			require.NoError(t, err)
			_, again, err := readAll(t, "{\"version\":2,\"width\":1,\"height\":1}\n"+string(line)+"\n")
			require.NoError(t, err)
			require.Equal(t, []asciicast.Event{ev}, again)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	var s strings.Builder
	s.WriteString(`{"version":2,"width":120,"height":40}` + "\n")
	for i := range 1000 {
		line, _ := json.Marshal([]any{float64(i) / 100, "o", "total 48\r\n\x1b[01;34mdrwxr-xr-x\x1b[0m  2 root root 4096 Dec  2 14:00 héllo\r\n"})
		s.Write(append(line, '\n'))
	}
	rec := s.String()
	b.SetBytes(int64(len(rec)))
	for b.Loop() {
		d := asciicast.NewDecoder(strings.NewReader(rec))
		for {
			if _, err := d.Next(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
	}
}

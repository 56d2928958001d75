package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/transport/client"
)

// runPlayCLI runs tether with args in process, with only vars (and an
// empty HOME) in the environment.
func runPlayCLI(t *testing.T, vars map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	e := map[string]string{"HOME": t.TempDir()}
	for k, v := range vars {
		e[k] = v
	}
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, IO{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, func(k string) string { return e[k] })
	return out.String(), errOut.String(), code
}

// writeCast writes a recording into a file under t.TempDir.
func writeCast(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

// sessionWrites is what a program wrote in a session, write by write:
// colours, cursor movement, UTF-8 with characters cut across writes,
// characters whose UTF-8 holds bytes that look like C1 controls.
var sessionWrites = []string{
	"\x1b[?2004h$ ls --color\r\n",
	"\x1b[0m\x1b[01;34mbin\x1b[0m  caf\xc3", "\xa9.txt  \xe2\x82", "\xac  \xf0\x9f\x98\x80\r\n",
	"\x1b[2J\x1b[H\x1b[10;20Hv\xc4\x9bc \xc3\x9d \xc7\x9d\r\n",
	"\x1b]8;;https://example.com\x1b\\link\x1b]8;;\x1b\\\r\n$ ",
}

// TestPlayCatByteIdentical: tether play FILE --cat prints exactly what the
// session wrote, a character cut across two writes included.
func TestPlayCatByteIdentical(t *testing.T) {
	evs := recordWrites(sessionWrites...)
	path := writeCast(t, "session.cast", castFile(t, map[string]any{"idle_time_limit": 2}, evs...))
	out, errOut, code := runPlayCLI(t, nil, "play", path, "--cat")
	require.Equal(t, 0, code, errOut)
	require.Empty(t, errOut)
	require.Equal(t, strings.Join(sessionWrites, ""), out)

	out, _, code = runPlayCLI(t, nil, "play", "--cat", "--raw", path)
	require.Equal(t, 0, code)
	require.Equal(t, strings.Join(sessionWrites, ""), out)
}

// TestPlayFilters: the filter is on unless --raw, in timed play and with
// --cat alike, even when a sequence is cut across events.
func TestPlayFilters(t *testing.T) {
	rec := castFile(t, nil,
		castEvent{0.001, "o", "\x1b]0;evil title\x07a\x1b]52;c;ZWNobyBwd25lZA==\x07"},
		castEvent{0.002, "o", "b\x1b["},
		castEvent{0.003, "o", "6nc\x1b[31mred\x1b[0m"},
	)
	path := writeCast(t, "evil.cast", rec)
	for _, args := range [][]string{{"play", path, "--cat"}, {"play", path, "--speed", "1000"}} {
		out, errOut, code := runPlayCLI(t, nil, args...)
		require.Equal(t, 0, code, errOut)
		require.Equal(t, "abc\x1b[31mred\x1b[0m", out, args)
	}
	out, _, code := runPlayCLI(t, nil, "play", path, "--cat", "--raw")
	require.Equal(t, 0, code)
	require.Equal(t, "\x1b]0;evil title\x07a\x1b]52;c;ZWNobyBwd25lZA==\x07b\x1b[6nc\x1b[31mred\x1b[0m", out)
}

func TestPlayErrors(t *testing.T) {
	dir := t.TempDir()
	bad := writeCast(t, "bad.cast", "{\"version\":2,\"width\":80,\"height\":24}\n[0.1,\"o\",\"hello\"]\n[0.2,\"o\"]\n")
	v1 := writeCast(t, "v1.cast", `{"version":1,"width":80,"height":24,"stdout":[[0.1,"x"]]}`)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"missing file", []string{"play", filepath.Join(dir, "nope.cast")}, ExitError, "open the recording: open " + filepath.Join(dir, "nope.cast") + ": no such file or directory: check the path"},
		{"neither", []string{"play", "yesterday"}, ExitUsage, `"yesterday" is neither a file nor a recording ID (EDGE-0123456789abcdef, from ` + "`tether recordings`)"},
		{"bad event", []string{"play", bad, "--cat"}, ExitError, "play " + bad + ": asciicast: line 3: an event has 3 elements"},
		{"version 1", []string{"play", v1}, ExitError, "read " + v1 + ": asciicast: line 1: not an asciicast v2 recording: the header says version 1; tether play reads asciicast v2 (convert other versions with asciinema convert)"},
		{"bad speed", []string{"play", bad, "--speed", "0"}, ExitUsage, "--speed 0: give a positive number"},
		{"bad idle limit", []string{"play", bad, "--idle-limit", "-1s"}, ExitUsage, "--idle-limit -1s: give a positive duration"},
		{"ID without an edge", []string{"play", "edge-1-0123456789abcdef"}, ExitUsage, "no edge URL"},
		{"no argument", []string{"play"}, ExitUsage, "usage: tether play ID|FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runPlayCLI(t, nil, tt.args...)
			require.Equal(t, tt.code, code, errOut)
			require.Contains(t, errOut, tt.want)
			if tt.name == "bad event" {
				require.Equal(t, "hello", out, "what came before the bad line is printed")
			}
		})
	}
}

// apiEdge is an HTTPS server that answers the recordings API as an edge
// does, and the environment that points tether at it.
func apiEdge(t *testing.T, recs []client.Recording, unavailable []string, files map[string]string) map[string]string {
	t.Helper()
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "unknown token", http.StatusUnauthorized)
			return
		}
		if r.URL.Path == "/api/recordings" {
			if r.URL.Query().Get("limit") == "5000" {
				http.Error(w, "limit must be 1 to 1000", http.StatusBadRequest)
				return
			}
			if r.URL.Query().Get("client") == "intruder" {
				http.Error(w, "client intruder may not read recordings", http.StatusForbidden)
				return
			}
			var keep []client.Recording
			for _, rec := range recs {
				if d := r.URL.Query().Get("device"); d == "" || d == rec.Device {
					keep = append(keep, rec)
				}
			}
			if keep == nil {
				keep = []client.Recording{}
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"recordings": keep, "unavailable": unavailable})
			return
		}
		id, ok := strings.CutPrefix(r.URL.Path, "/api/recordings/")
		cast, found := files[id]
		if id == "edge-9-0123456789abcdef" {
			http.Error(w, "edge-9 did not answer", http.StatusBadGateway)
			return
		}
		if !ok || !found {
			http.Error(w, "no recording "+id, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/x-asciicast")
		io.WriteString(w, cast)
	}))
	t.Cleanup(ts.Close)
	ca := filepath.Join(t.TempDir(), "ca.crt")
	require.NoError(t, os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600))
	return map[string]string{EnvEdge: ts.URL, EnvToken: "tok", EnvCA: ca}
}

func TestRecordingsList(t *testing.T) {
	start := time.Now().Add(-3 * time.Hour).UTC().Truncate(time.Second)
	recs := []client.Recording{
		{ID: "edge-1-0123456789abcdef", Edge: "edge-1", Device: "gw-1", Client: "ops", Session: "s1", Title: "ops@gw-1",
			Start: start, Duration: 725, Bytes: 20480, Width: 120, Height: 40},
		{ID: "edge-2-fedcba9876543210", Edge: "edge-2", Device: "gw-2", Client: "dev", Session: "s2", Command: "top\tx",
			Start: start.Add(-time.Hour), Duration: 5, Bytes: 512, Width: 80, Height: 24},
	}
	vars := apiEdge(t, recs, []string{"edge-3"}, nil)

	for _, args := range [][]string{{"recordings"}, {"recordings", "ls"}} {
		out, errOut, code := runPlayCLI(t, vars, args...)
		require.Equal(t, 0, code, errOut)
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		require.Len(t, lines, 3, out)
		require.Regexp(t, `^ID\s+DEVICE\s+CLIENT\s+AGE\s+DURATION\s+SIZE$`, lines[0])
		require.Regexp(t, `^edge-1-0123456789abcdef\s+gw-1\s+ops\s+3h\s+12m05s\s+20KiB$`, lines[1])
		require.Regexp(t, `^edge-2-fedcba9876543210\s+gw-2\s+dev\s+4h\s+5s\s+512B$`, lines[2])
		require.Equal(t, "tether: warning: edge edge-3 did not answer: its recordings are missing from this list; try again later\n", errOut)
	}

	out, _, code := runPlayCLI(t, vars, "recordings", "ls", "-o", "wide", "--device", "gw-2")
	require.Equal(t, 0, code)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	require.Len(t, lines, 2, out)
	require.Regexp(t, `^ID\s+DEVICE\s+CLIENT\s+AGE\s+DURATION\s+SIZE\s+START\s+EDGE\s+TERMINAL\s+COMMAND$`, lines[0])
	require.Regexp(t, `^edge-2-fedcba9876543210\s+gw-2\s+dev\s+4h\s+5s\s+512B\s+\S+ \S+\s+edge-2\s+80x24\s+top\?x$`, lines[1])

	out, _, code = runPlayCLI(t, vars, "recordings", "-o", "json", "--since", "24h")
	require.Equal(t, 0, code)
	var got []client.Recording
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	require.Equal(t, recs, got)

	out, errOut, code := runPlayCLI(t, vars, "recordings", "--device", "nothing")
	require.Equal(t, 0, code)
	require.Empty(t, out)
	require.Contains(t, errOut, "No recordings found.")

	_, errOut, code = runPlayCLI(t, vars, "recordings", "--client", "intruder")
	require.Equal(t, ExitForbidden, code)
	require.Contains(t, errOut, "tether: forbidden (HTTP 403: client intruder may not read recordings): the token may not read recordings; ask the edge's operator for the recordings: read right")

	_, errOut, code = runPlayCLI(t, vars, "recordings", "--limit", "5000")
	require.Equal(t, ExitUsage, code)
	require.Contains(t, errOut, "tether: the edge refused the query (HTTP 400: limit must be 1 to 1000): check --device, --client, --since and --limit")

	for _, tt := range []struct{ args []string }{
		{[]string{"recordings", "--since", "yesterday"}},
		{[]string{"recordings", "--since", "-5m"}},
		{[]string{"recordings", "-o", "xml"}},
		{[]string{"recordings", "--limit", "-1"}},
		{[]string{"recordings", "extra"}},
	} {
		_, errOut, code := runPlayCLI(t, vars, tt.args...)
		require.Equal(t, ExitUsage, code, "%v: %s", tt.args, errOut)
	}
}

func TestPlayID(t *testing.T) {
	rec := castFile(t, nil, recordWrites(sessionWrites...)...)
	vars := apiEdge(t, nil, nil, map[string]string{"edge-1-0123456789abcdef": rec})

	out, errOut, code := runPlayCLI(t, vars, "play", "edge-1-0123456789abcdef", "--cat")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, strings.Join(sessionWrites, ""), out)

	_, errOut, code = runPlayCLI(t, vars, "play", "edge-1-fedcba9876543210")
	require.Equal(t, ExitOffline, code)
	require.Contains(t, errOut, "tether: recording edge-1-fedcba9876543210 not found (HTTP 404: no recording edge-1-fedcba9876543210): check the ID with `tether recordings`")

	_, errOut, code = runPlayCLI(t, vars, "play", "edge-9-0123456789abcdef")
	require.Equal(t, ExitUnreachable, code)
	require.Contains(t, errOut, "tether: the edge that holds the recording did not send it (HTTP 502: edge-9 did not answer)")

	bad := map[string]string{}
	for k, v := range vars {
		bad[k] = v
	}
	bad[EnvToken] = "wrong"
	_, errOut, code = runPlayCLI(t, bad, "play", "edge-1-0123456789abcdef")
	require.Equal(t, ExitAuth, code, errOut)
}

func TestIsRecordingFile(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "edge-1-0123456789abcdef")
	require.NoError(t, os.WriteFile(existing, nil, 0o600))
	t.Chdir(dir)
	for arg, want := range map[string]bool{
		"edge-1-0123456789abcdef": true, // a file of that name here
		"edge-2-0123456789abcdef": false,
		"x.cast":                  true,
		"./x":                     true,
		"sub/x":                   true,
		".":                       false,
	} {
		require.Equal(t, want, isRecordingFile(arg), arg)
	}
}

// TestPlayAsciinemaFile plays a file asciinema 2.2 wrote; its title
// sequence is removed.
func TestPlayAsciinemaFile(t *testing.T) {
	out, errOut, code := runPlayCLI(t, nil, "play", "--cat", filepath.Join("..", "internal", "asciicast", "testdata", "asciinema-2.2.cast"))
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "héllo \x1b[1;31mred\x1b[0m €\r\ndone\r\n", out)
}

// pipeGone is a stdout whose reader went away.
type pipeGone struct{}

func (pipeGone) Write([]byte) (int, error) {
	return 0, &os.PathError{Op: "write", Path: "/dev/stdout", Err: syscall.EPIPE}
}

// TestPlayClosedPipe: `tether play --cat | head` ends quietly when head
// has read enough.
func TestPlayClosedPipe(t *testing.T) {
	path := writeCast(t, "s.cast", castFile(t, nil, castEvent{0.1, "o", "hello"}))
	var errOut bytes.Buffer
	code := run(context.Background(), []string{"play", "--cat", path}, IO{In: strings.NewReader(""), Out: pipeGone{}, ErrOut: &errOut},
		func(string) string { return "" })
	require.Equal(t, 0, code)
	require.Empty(t, errOut.String())
}

func TestCompleteRecording(t *testing.T) {
	vars := apiEdge(t, []client.Recording{
		{ID: "edge-1-0123456789abcdef", Title: "ops@gw-1"},
		{ID: "edge-2-fedcba9876543210", Title: "dev@gw-2"},
	}, nil, nil)
	out, errOut, code := runPlayCLI(t, vars, "__complete", "play", "edge-1")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "edge-1-0123456789abcdef\tops@gw-1\n:0\n", out, errOut)
}

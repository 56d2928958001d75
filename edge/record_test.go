//go:build linux

package edge_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tetherhq/tether/internal/testutil"

	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/internal/asciicast"
	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/pty"
	"github.com/tetherhq/tether/transport/wire"
)

const recDevice = "d-rec"

// recRig is a real edge that records shells, with metrics, and a device
// serving real PTYs.
type recRig struct {
	m       *mock.EdgeMock
	metrics *edge.Metrics
	dir     string
}

func newRecRig(t *testing.T, cfg edge.RecordingConfig) *recRig {
	t.Helper()
	metrics := &edge.Metrics{}
	m := newEdge(t, mock.Options{Metrics: metrics})
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	m.Server().SetRecording(&cfg)
	dc := m.DeviceClientWithID(recDevice)
	srv := &pty.Server{Config: pty.Config{Enabled: true, Shell: "/bin/sh"}}
	dc.Handle(wire.MsgPTY, srv.ServePTY)
	dc.Handle(wire.MsgPTYCommand, srv.ServeCommand)
	t.Cleanup(func() { require.NoError(t, srv.Close()) })
	return &recRig{m: m, metrics: metrics, dir: cfg.Dir}
}

// recording is a recording read back.
type recording struct {
	raw    []byte
	header asciicast.Header
	events []asciicast.Event
}

func (r recording) data(code asciicast.Code) string {
	var b strings.Builder
	for _, e := range r.events {
		if e.Code == code {
			b.WriteString(e.Data)
		}
	}
	return b.String()
}

func (r recording) all(code asciicast.Code) []string {
	var out []string
	for _, e := range r.events {
		if e.Code == code {
			out = append(out, e.Data)
		}
	}
	return out
}

// readRecording parses a recording strictly: the header, then events of
// non-decreasing times.
func readRecording(t *testing.T, path string) recording {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	rec := recording{raw: raw}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, 1<<20)
	require.True(t, sc.Scan(), "empty recording")
	require.NoError(t, json.Unmarshal(sc.Bytes(), &rec.header))
	last := 0.0
	for sc.Scan() {
		var ev [3]json.RawMessage
		require.NoError(t, json.Unmarshal(sc.Bytes(), &ev), "line %q", sc.Bytes())
		var e asciicast.Event
		require.NoError(t, json.Unmarshal(ev[0], &e.Time))
		require.NoError(t, json.Unmarshal(ev[1], &e.Code))
		require.NoError(t, json.Unmarshal(ev[2], &e.Data))
		require.GreaterOrEqual(t, e.Time, last, "event times go back: %q", sc.Bytes())
		last = e.Time
		rec.events = append(rec.events, e)
	}
	require.NoError(t, sc.Err())
	return rec
}

// castFiles lists the recordings under dir.
func castFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".cast") {
			out = append(out, p)
		}
		return err
	}))
	return out
}

// readUntil reads r into out until it matches re.
func readUntil(t *testing.T, r io.Reader, out *bytes.Buffer, re string) {
	t.Helper()
	rx := regexp.MustCompile(re)
	buf := make([]byte, 4096)
	for !rx.Match(out.Bytes()) {
		n, err := r.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			t.Fatalf("stream ended before %q: %v; output:\n%q", re, err, out.String())
		}
	}
}

// shellScript is what the recorded shell runs: a two-byte character
// written in two halves, a window size after each resize, and exit 3.
const shellScript = `printf 'start\n'; read x; printf '\303'; sleep 0.2; printf '\251!\n'; stty size; read y; stty size; exit 3`

// runRecordedShell runs shellScript on the rig's device through a client
// of the edge, resizing to 100x30 and 120x40; it returns everything the
// client read.
func runRecordedShell(t *testing.T, rig *recRig) []byte {
	t.Helper()
	ctx := ctxT(t)
	c := clientWithToken(t, rig.m, recDevice, opsToken)
	s, err := pty.Open(ctx, c, pty.Request{Cols: 80, Rows: 24, Command: "/bin/sh", Args: []string{"-c", shellScript}, Term: "vt100"})
	require.NoError(t, err)
	defer s.Close()
	var out bytes.Buffer
	readUntil(t, s, &out, `start\r\n`)
	require.NoError(t, s.Resize(ctx, 100, 30))
	_, err = s.Write([]byte("go\n"))
	require.NoError(t, err)
	readUntil(t, s, &out, `30 100\r\n`)
	require.NoError(t, s.Resize(ctx, 120, 40))
	_, err = s.Write([]byte("on\n"))
	require.NoError(t, err)
	rest, err := io.ReadAll(s)
	require.NoError(t, err)
	out.Write(rest)
	require.Contains(t, out.String(), "é!")
	require.Contains(t, out.String(), "40 120")
	st, err := s.ExitStatus(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, st.Code)
	return out.Bytes()
}

func waitStreamClose(t *testing.T, m *mock.EdgeMock, typ string) edge.Event {
	t.Helper()
	return waitEvent(t, m, func(e edge.Event) bool { return e.Kind == edge.EventStreamClose && e.Type == typ })
}

func TestRecordingCLIShell(t *testing.T) {
	rig := newRecRig(t, edge.RecordingConfig{Mode: edge.RecordingBestEffort})
	out := runRecordedShell(t, rig)
	closeEv := waitStreamClose(t, rig.m, "pty")

	files := castFiles(t, rig.dir)
	require.Len(t, files, 1)
	path := files[0]
	rec := readRecording(t, path)

	// The file: where, and private.
	require.NotNil(t, closeEv.Recording)
	require.Equal(t, closeEv.Recording.Path, strings.TrimPrefix(path, rig.dir+"/"))
	require.Regexp(t, `^\d{4}/\d\d/\d\d/d-rec/edge-[0-9a-f]{16}\.cast$`, closeEv.Recording.Path)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	di, err := os.Stat(filepath.Dir(path))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), di.Mode().Perm())

	// The header.
	h := rec.header
	require.Equal(t, 2, h.Version)
	require.Equal(t, 80, h.Width)
	require.Equal(t, 24, h.Height)
	require.Equal(t, "vt100", h.Env["TERM"])
	require.Equal(t, "ops@"+recDevice, h.Title)
	require.InDelta(t, time.Now().Unix(), h.Timestamp, 120)
	require.NotNil(t, h.Tether)
	require.Equal(t, closeEv.Recording.ID, h.Tether.ID)
	require.Equal(t, filepath.Base(path), h.Tether.ID+".cast")
	require.Equal(t, recDevice, h.Tether.Device)
	require.Equal(t, "ops", h.Tether.Client)
	require.Equal(t, edge.DefaultRecordingEdgeID, h.Tether.Edge)
	require.Equal(t, "/bin/sh -c "+shellScript, h.Tether.Command)
	require.Regexp(t, `^[0-9a-f]{32}$`, h.Tether.Session)

	// The events: the output as the client saw it, the split character
	// whole, the resizes in order, no input, the exit status last.
	require.Equal(t, string(out), rec.data(asciicast.Output))
	require.NotContains(t, rec.data(asciicast.Output), "\uFFFD")
	require.Equal(t, []string{"100x30", "120x40"}, rec.all(asciicast.Resize))
	require.Empty(t, rec.all(asciicast.Input))
	last := rec.events[len(rec.events)-1]
	require.Equal(t, asciicast.Marker, last.Code)
	require.Equal(t, "exit: exit code 3", last.Data)
	// The first resize comes before the output it caused.
	var sawResize bool
	for _, e := range rec.events {
		if e.Code == asciicast.Resize {
			sawResize = true
		}
		if e.Code == asciicast.Output && strings.Contains(e.Data, "30 100") {
			require.True(t, sawResize, "the output of the resize came before it")
		}
	}

	// The audit: the open line says recorded, the close line vouches for
	// the file.
	openEv := waitEvent(t, rig.m, func(e edge.Event) bool { return e.Kind == edge.EventStreamOpen && e.Type == "pty" })
	require.NotNil(t, openEv.Recording)
	require.True(t, openEv.Recording.Recorded)
	require.Equal(t, h.Tether.ID, openEv.Recording.ID)
	sum := sha256.Sum256(rec.raw)
	require.True(t, closeEv.Recording.Recorded)
	require.Equal(t, hex.EncodeToString(sum[:]), closeEv.Recording.SHA256)
	require.Equal(t, int64(len(rec.raw)), closeEv.Recording.Bytes)
	require.False(t, closeEv.Recording.Truncated)
	require.Empty(t, closeEv.Recording.Error)

	t.Run("asciinema cat", func(t *testing.T) {
		requireAsciinemaCat(t, path, out)
	})
}

// requireAsciinemaCat checks that Debian's asciinema prints the
// recording as the session's output. asciinema cat needs a terminal: it
// runs under script(1); asciinema writes the output events as they are.
func requireAsciinemaCat(t *testing.T, path string, want []byte) {
	t.Helper()
	testutil.NeedTool(t, "asciinema", "asciinema")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "script", "-qec", "asciinema cat "+path, "/dev/null")
	cmd.Env = append(os.Environ(), "TERM=dumb")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	got, err := cmd.Output()
	require.NoError(t, err, "asciinema cat: %s", stderr.String())
	// asciinema cat puts script's terminal in raw mode: what it writes
	// arrives unchanged.
	require.Equal(t, string(want), string(got))
}

func TestRecordingInput(t *testing.T) {
	rig := newRecRig(t, edge.RecordingConfig{Mode: edge.RecordingRequired, Input: true})
	runRecordedShell(t, rig)
	waitStreamClose(t, rig.m, "pty")
	files := castFiles(t, rig.dir)
	require.Len(t, files, 1)
	rec := readRecording(t, files[0])
	require.Equal(t, "go\non\n", rec.data(asciicast.Input))
}

// readOnlyDir returns a recording directory that cannot be created: one
// under a read-only directory, or, for root, whom permissions do not stop,
// one under a regular file.
func readOnlyDir(t *testing.T) string {
	base := t.TempDir()
	if os.Geteuid() == 0 {
		f := filepath.Join(base, "file")
		require.NoError(t, os.WriteFile(f, nil, 0o600))
		return filepath.Join(f, "recordings")
	}
	require.NoError(t, os.Chmod(base, 0o500))
	t.Cleanup(func() { os.Chmod(base, 0o700) })
	return filepath.Join(base, "recordings")
}

func TestRecordingRequiredRefuses(t *testing.T) {
	rig := newRecRig(t, edge.RecordingConfig{Mode: edge.RecordingOff, Dir: readOnlyDir(t)})
	// The client rule asks for more than the edge's default.
	rules := testRules()
	rules[0].Recording = edge.RecordingRequired
	p, err := edge.NewStaticPolicy(rules)
	require.NoError(t, err)
	rig.m.Server().Reload(p, nil)

	c := clientWithToken(t, rig.m, recDevice, opsToken)
	_, err = pty.Open(ctxT(t), c, pty.Request{Cols: 80, Rows: 24})
	require.Error(t, err)
	require.Contains(t, err.Error(), "this edge records every shell of client ops, and the recording cannot start")
	deny := waitEvent(t, rig.m, func(e edge.Event) bool { return e.Kind == edge.EventStreamDeny && e.Type == "pty" })
	require.Equal(t, "recording_unavailable", deny.Result)
	require.Contains(t, deny.Reason, "recording cannot start")
	require.NotNil(t, deny.Recording)
	require.False(t, deny.Recording.Recorded)
	for _, e := range rig.m.AuditEvents() {
		require.NotEqual(t, edge.EventStreamRequest, e.Kind, "the request reached the device's side of the edge")
	}
	require.Contains(t, scrape(t, rig.metrics), `tether_edge_recording_errors_total{mode="required",stage="start"} 1`)
}

func TestRecordingBestEffortStart(t *testing.T) {
	rig := newRecRig(t, edge.RecordingConfig{Mode: edge.RecordingBestEffort, Dir: readOnlyDir(t)})
	runRecordedShell(t, rig)
	closeEv := waitStreamClose(t, rig.m, "pty")
	require.Equal(t, "ok", closeEv.Result)
	openEv := waitEvent(t, rig.m, func(e edge.Event) bool { return e.Kind == edge.EventStreamOpen && e.Type == "pty" })
	require.NotNil(t, openEv.Recording)
	require.False(t, openEv.Recording.Recorded)
	require.Contains(t, openEv.Recording.Error, "create the recording directory")
	require.Contains(t, scrape(t, rig.metrics), `tether_edge_recording_errors_total{mode="best_effort",stage="start"} 1`)
}

func TestRecordingBestEffortWriteFails(t *testing.T) {
	rig := newRecRig(t, edge.RecordingConfig{Mode: edge.RecordingBestEffort})
	edge.FailRecordingWrites(rig.m.Server(), 1, true)
	out := runRecordedShell(t, rig)
	closeEv := waitStreamClose(t, rig.m, "pty")
	require.Equal(t, "ok", closeEv.Result, "the shell ended early: %s", closeEv.Reason)
	files := castFiles(t, rig.dir)
	require.Len(t, files, 1)
	rec := readRecording(t, files[0]) // whole lines only: the failed write was undone
	var marker string
	for _, e := range rec.events {
		if e.Code == asciicast.Marker && strings.HasPrefix(e.Data, "recording error") {
			marker = e.Data
		}
	}
	require.Contains(t, marker, "no space left on device")
	require.Contains(t, marker, "bytes of the recording were lost")
	require.Less(t, len(rec.data(asciicast.Output)), len(out))
	require.Contains(t, closeEv.Recording.Error, "no space left on device")
	sum := sha256.Sum256(rec.raw)
	require.Equal(t, hex.EncodeToString(sum[:]), closeEv.Recording.SHA256)
	require.Contains(t, scrape(t, rig.metrics), `tether_edge_recording_errors_total{mode="best_effort",stage="write"} 1`)
}

func TestRecordingRequiredWriteFails(t *testing.T) {
	rig := newRecRig(t, edge.RecordingConfig{Mode: edge.RecordingRequired})
	edge.FailRecordingWrites(rig.m.Server(), 1, false)
	c := clientWithToken(t, rig.m, recDevice, opsToken)
	s, err := pty.Open(ctxT(t), c, pty.Request{Cols: 80, Rows: 24, Command: "/bin/sh", Args: []string{"-c", "echo hello; sleep 30"}})
	require.NoError(t, err)
	defer s.Close()
	_, err = io.ReadAll(s)
	require.Error(t, err)
	require.Contains(t, err.Error(), "the recording of this shell failed")
	require.Contains(t, err.Error(), "no space left on device")
	closeEv := waitStreamClose(t, rig.m, "pty")
	require.Equal(t, "error", closeEv.Result)
	require.Contains(t, closeEv.Reason, "the recording of this shell failed")
	require.Contains(t, scrape(t, rig.metrics), `tether_edge_recording_errors_total{mode="required",stage="write"} 1`)
}

func TestRecordingTruncates(t *testing.T) {
	rig := newRecRig(t, edge.RecordingConfig{Mode: edge.RecordingBestEffort, MaxBytesPerSession: 2000})
	c := clientWithToken(t, rig.m, recDevice, opsToken)
	s, err := pty.Open(ctxT(t), c, pty.Request{Cols: 80, Rows: 24, Command: "/bin/sh", Args: []string{"-c", "seq 1 3000"}})
	require.NoError(t, err)
	out, err := io.ReadAll(s)
	require.NoError(t, err)
	s.Close()
	require.Contains(t, string(out), "\r\n3000\r\n")
	closeEv := waitStreamClose(t, rig.m, "pty")
	require.True(t, closeEv.Recording.Truncated)
	files := castFiles(t, rig.dir)
	require.Len(t, files, 1)
	rec := readRecording(t, files[0])
	require.LessOrEqual(t, len(rec.raw), 2000+512)
	require.Contains(t, strings.Join(rec.all(asciicast.Marker), "\n"), "truncated: the recording reached its limit of 2000 bytes")
	require.True(t, strings.HasPrefix(string(out), rec.data(asciicast.Output)))
}

func TestRecordingWebShell(t *testing.T) {
	r := newWebRig(t, edge.WebConfig{})
	dir := t.TempDir()
	r.m.Server().SetRecording(&edge.RecordingConfig{Mode: edge.RecordingRequired, Dir: dir})
	b := r.browser(t)
	b.signIn(opsToken)
	ctx := ctxT(t)
	tm := b.openTerm(ctx, webDevice, 80, 24)
	tm.keys(ctx, "echo $((6*7))\r")
	tm.expect(ctx, `\b42\r\n`)
	tm.sendJSON(ctx, map[string]any{"t": "resize", "cols": 100, "rows": 30})
	var all bytes.Buffer // everything the page got
	for i := 0; ; i++ {
		all.Write(tm.out.Bytes())
		tm.out.Reset()
		tm.keys(ctx, "stty size\r")
		tm.expect(ctx, `\b\d+ \d+\r\n`)
		if regexp.MustCompile(`\b30 100\r\n`).Match(tm.out.Bytes()) {
			break
		}
		require.Less(t, i, 100, "stty size never showed 30 100")
		time.Sleep(20 * time.Millisecond)
	}
	tm.keys(ctx, "exit 7\r")
	tm.drain(ctx)
	all.Write(tm.out.Bytes())
	closeEv := waitEvent(t, r.m, func(e edge.Event) bool { return e.Kind == edge.EventStreamClose && e.Method == "web" })
	files := castFiles(t, dir)
	require.Len(t, files, 1)
	rec := readRecording(t, files[0])
	require.Equal(t, all.String(), rec.data(asciicast.Output))
	require.Equal(t, []string{"100x30"}, rec.all(asciicast.Resize))
	require.Equal(t, "exit: exit code 7", rec.events[len(rec.events)-1].Data)
	require.Equal(t, "ops@"+webDevice, rec.header.Title)
	sum := sha256.Sum256(rec.raw)
	require.Equal(t, hex.EncodeToString(sum[:]), closeEv.Recording.SHA256)
}

func TestRecordingRetention(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	// Five recordings of 1000 bytes, a day apart; the oldest is 5 days old.
	var paths []string
	for i := range 5 {
		age := time.Duration(5-i) * 24 * time.Hour
		day := now.Add(-age).UTC().Format("2006/01/02")
		p := filepath.Join(dir, day, "d-1", "edge-000000000000000"+string(rune('a'+i))+".cast")
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o700))
		require.NoError(t, os.WriteFile(p, bytes.Repeat([]byte("x"), 1000), 0o600))
		require.NoError(t, os.Chtimes(p, now.Add(-age), now.Add(-age)))
		paths = append(paths, p)
	}
	rig := newRecRig(t, edge.RecordingConfig{Mode: edge.RecordingBestEffort, Dir: dir,
		Retention: 4*24*time.Hour + time.Hour, MaxTotalBytes: 2500})
	rig.m.Server().SweepRecordings()
	// The 5-day-old one is past the retention; of the 4 left (4000
	// bytes), the two oldest go for the quota.
	require.Equal(t, paths[3:], castFiles(t, dir))
	var deleted []edge.Event
	for _, e := range rig.m.AuditEvents() {
		if e.Kind == edge.EventRecordingDeleted {
			deleted = append(deleted, e)
		}
	}
	require.Len(t, deleted, 3)
	for i, e := range deleted {
		require.Equal(t, strings.TrimPrefix(paths[i], dir+"/"), e.Recording.Path)
		require.Equal(t, int64(1000), e.Recording.Bytes)
		require.Equal(t, "d-1", e.Device)
	}
	require.Equal(t, "retention", deleted[0].Result)
	require.Equal(t, "max_total_bytes", deleted[1].Result)
	require.Equal(t, "max_total_bytes", deleted[2].Result)
	_, err := os.Stat(filepath.Dir(paths[0]))
	require.True(t, os.IsNotExist(err), "the emptied directory stays")
	require.Contains(t, scrape(t, rig.metrics), `tether_edge_recordings_deleted_total{reason="max_total_bytes"} 2`)
}

// scrape returns the metrics' text.
func scrape(t *testing.T, m *edge.Metrics) string {
	t.Helper()
	rr := httptest.NewRecorder()
	m.Handler().ServeHTTP(rr, httptest.NewRequest("GET", "/metrics", nil))
	return rr.Body.String()
}

// TestRecordingSurvivesDrain: a shell still running when the edge shuts
// down is cut at the end of the drain, and its recording holds every
// byte the client got, with the audit record vouching for the file.
func TestRecordingSurvivesDrain(t *testing.T) {
	rig := newRecRig(t, edge.RecordingConfig{Mode: edge.RecordingRequired})
	c := clientWithToken(t, rig.m, recDevice, opsToken)
	s, err := pty.Open(ctxT(t), c, pty.Request{Cols: 80, Rows: 24, Command: "/bin/sh", Args: []string{"-c", "seq 1 500; echo ready; sleep 60"}})
	require.NoError(t, err)
	defer s.Close()
	var out bytes.Buffer
	readUntil(t, s, &out, `ready\r\n`)
	// While the shell runs, what the client got is already in the file:
	// a kill -9 of the edge now would lose none of it.
	require.Eventually(t, func() bool {
		files := castFiles(t, rig.dir)
		if len(files) != 1 {
			return false
		}
		b, err := os.ReadFile(files[0])
		return err == nil && bytes.Contains(b, []byte(`ready\r\n`))
	}, 10*time.Second, 10*time.Millisecond, "the output is not in the file while the shell runs")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, rig.m.Server().Shutdown(ctx), context.DeadlineExceeded)
	rest, _ := io.ReadAll(s)
	out.Write(rest)

	closeEv := waitStreamClose(t, rig.m, "pty")
	files := castFiles(t, rig.dir)
	require.Len(t, files, 1)
	rec := readRecording(t, files[0])
	require.Equal(t, out.String(), rec.data(asciicast.Output))
	sum := sha256.Sum256(rec.raw)
	require.Equal(t, hex.EncodeToString(sum[:]), closeEv.Recording.SHA256)
	require.Empty(t, closeEv.Recording.Error)
}

// TestRecordingReload: a new recording configuration applies to the
// shells opened after it.
func TestRecordingReload(t *testing.T) {
	rig := newRecRig(t, edge.RecordingConfig{Mode: edge.RecordingOff})
	runRecordedShell(t, rig)
	ev := waitStreamClose(t, rig.m, "pty")
	require.False(t, ev.Recording.Recorded)
	require.Empty(t, castFiles(t, rig.dir))

	rig.m.Server().SetRecording(&edge.RecordingConfig{Mode: edge.RecordingBestEffort, Dir: rig.dir})
	runRecordedShell(t, rig)
	require.Eventually(t, func() bool { return len(castFiles(t, rig.dir)) == 1 }, 20*time.Second, 20*time.Millisecond)
}

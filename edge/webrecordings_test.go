//go:build linux

package edge_test

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tetherhq/tether/internal/testutil"

	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/internal/asciicast"
)

// TestWebRecordings: the browser's recordings pages list what the
// signed-in client may read, the player page allows WebAssembly and no
// inline script, and the file comes with the session cookie, scoped as
// the API is.
func TestWebRecordings(t *testing.T) {
	e := startRecEdgeWeb(t, "e1", &edge.WebConfig{Key: webKey})
	now := time.Now().UTC()
	id, path := writeCast(t, e.dir, cast{edge: "e1", device: "d-1", client: "ops", start: now, events: shellEvents("played")})
	hidden, _ := writeCast(t, e.dir, cast{edge: "e1", device: "x-9", client: "ops", start: now, events: shellEvents("x")})
	want, err := os.ReadFile(path)
	require.NoError(t, err)

	anon := newBrowser(t, e.url, e.pki.ClientTLS())
	resp, _ := anon.do("GET", "/web/recordings", nil, nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/web/login", resp.Header.Get("Location"))
	resp, _ = anon.do("GET", "/web/recordings/"+id+".cast", nil, nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	b := newBrowser(t, e.url, e.pki.ClientTLS())
	require.Equal(t, http.StatusSeeOther, b.signIn(auditorToken).StatusCode)
	resp, page := b.do("GET", "/web/", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, page, `href="/web/recordings"`, "the device list links to the recordings")

	resp, page = b.do("GET", "/web/recordings", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, page)
	require.Contains(t, page, `href="/web/recordings/`+id+`"`)
	require.NotContains(t, page, hidden, "x-9 is out of the auditor's scope")
	resp, page = b.do("GET", "/web/recordings?device=x-9", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, page)
	require.NotContains(t, page, hidden)

	resp, page = b.do("GET", "/web/recordings/"+id, nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, page)
	require.Contains(t, page, `content="/web/recordings/`+id+`.cast"`)
	require.Contains(t, page, "ops@d-1")
	csp := resp.Header.Get("Content-Security-Policy")
	require.Contains(t, csp, "script-src 'self' 'wasm-unsafe-eval';")
	require.NotContains(t, csp, "unsafe-inline")
	require.NotContains(t, csp, "'unsafe-eval'")
	require.Contains(t, csp, "frame-ancestors 'none'")

	resp, body := b.do("GET", "/web/recordings/"+id+".cast", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Equal(t, "application/x-asciicast", resp.Header.Get("Content-Type"))
	require.Equal(t, string(want), body)
	var read bool
	for _, ev := range e.audit.Events() {
		read = read || ev.Kind == edge.EventRecordingRead && ev.Method == "web" && ev.Path == id && ev.Client == "auditor"
	}
	require.True(t, read, "the browser's read is audited with the method web")

	for _, p := range []string{hidden + ".cast", hidden, "e1-0123456789abcdef.cast", "..%2F..%2Fetc%2Fpasswd.cast", "../../etc/passwd", id + ".cast.cast"} {
		resp, body := b.do("GET", "/web/recordings/"+p, nil, nil)
		require.Equal(t, http.StatusNotFound, resp.StatusCode, "%s: %s", p, body)
	}
	resp, js := b.do("GET", "/web/static/asciinema-player.js", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, strings.Contains(js, "AsciinemaPlayer"))
	resp, _ = b.do("GET", "/web/static/play.js", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// A client without the right sees no link and is refused.
	ops := newBrowser(t, e.url, e.pki.ClientTLS())
	require.Equal(t, http.StatusSeeOther, ops.signIn(opsToken).StatusCode)
	_, page = ops.do("GET", "/web/", nil, nil)
	require.NotContains(t, page, "/web/recordings")
	resp, body = ops.do("GET", "/web/recordings", nil, nil)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.Contains(t, body, "recordings: read")
	resp, _ = ops.do("GET", "/web/recordings/"+id+".cast", nil, nil)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
}

// browserDir holds the browser tests (package.json, its lock file, and
// node_modules once `npm ci` ran there).
const browserDir = "../web/browser"

// TestRecordingPlayerInChromium runs web/browser/recordings.test.mjs in
// Debian's Chromium: from the device list to the recordings, to the
// player, which plays the recording to its last frame; and a sign-out
// that the edge refuses, which the page shows. The screenshot goes to
// $TETHER_ARTIFACTS (or the test's temporary directory).
func TestRecordingPlayerInChromium(t *testing.T) {
	chromium, node := testutil.BrowserTools(t, browserDir)
	artifacts := os.Getenv("TETHER_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	}
	artifacts, err := filepath.Abs(artifacts)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(artifacts, 0o755))
	e := startRecEdgeWeb(t, "e1", &edge.WebConfig{Key: webKey})
	const first, last = "first frame: ls -l /etc", "last frame: exit 0 (42)"
	id, _ := writeCast(t, e.dir, cast{edge: "e1", device: "d-1", client: "ops", start: time.Now(), events: []asciicast.Event{
		{Time: 0.1, Code: asciicast.Output, Data: "$ " + first + "\r\n"},
		{Time: 0.4, Code: asciicast.Output, Data: "caf\u00e9 \u2713 \x1b[1;32mgreen\x1b[0m\r\n"},
		{Time: 0.6, Code: asciicast.Resize, Data: "100x30"},
		{Time: 0.9, Code: asciicast.Output, Data: "\x1b[2J\x1b[H" + last + "\r\n\x1b[38;2;255;0;0mtrue-red\x1b[48;2;0;0;255m-on-blue\x1b[0m\r\n$ "},
		{Time: 1.0, Code: asciicast.Marker, Data: "exit 0"},
	}})

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "recordings.test.mjs")
	cmd.Dir = browserDir
	cmd.Env = append(os.Environ(), "TETHER_URL="+e.url, "TETHER_TOKEN="+auditorToken, "TETHER_RECORDING="+id,
		"TETHER_FIRST="+first, "TETHER_LAST="+last, "TETHER_ARTIFACTS="+artifacts, "TETHER_CHROMIUM="+chromium)
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("node --test:\n%s", out)
	require.NoError(t, err, "the browser test failed")
	t.Logf("screenshot: %s", filepath.Join(artifacts, "recording.png"))
}

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tetherhq/tether/internal/testutil"
)

// browserDir holds the browser tests (package.json, its lock file, and
// node_modules once `npm ci` ran there).
const browserDir = "../web/browser"

// newWebSystem starts an edge with the web terminal on, its public URL
// the edge's own address.
func newWebSystem(tb testing.TB) *system {
	tb.Helper()
	keyFile := filepath.Join(tb.TempDir(), "web.key")
	require.NoError(tb, os.WriteFile(keyFile, []byte("0123456789abcdef0123456789abcdef-e2e"), 0o600))
	return newSystemWith(tb, fmt.Sprintf("log_level: debug\nweb: {enabled: true, public_url: \"https://{{listen}}\", session_key_file: %q}\n", keyFile))
}

// TestWebTerminalInChromium runs web/browser/*.test.mjs with `node --test`
// in Debian's Chromium against the built edge and agent: sign-in, the
// device list's filter, a shell, resize, exit status, a flood, Ctrl-C, a
// large paste, 24-bit colours, the copy and paste keys, links, finding in
// the scrollback, the files page, and a page on another origin. The screenshots go to
// $TETHER_ARTIFACTS (or the test's temporary directory).
func TestWebTerminalInChromium(t *testing.T) {
	chromium, node := testutil.BrowserTools(t, browserDir)
	artifacts := os.Getenv("TETHER_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	}
	artifacts, err := filepath.Abs(artifacts)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(artifacts, 0o755))
	s := newWebSystem(t)
	const device = "dev-web"
	filesDir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(filesDir, "in"), 0o755))
	s.addAgent(agentOpts{id: device, extra: fmt.Sprintf("files: {read: [%q], write: [%q]}\n", filesDir, filepath.Join(filesDir, "in"))})

	// The other origin: a page on 127.0.0.2.
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2 for the other origin: %v", err)
	}
	attack := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "<!doctype html><title>another origin</title><p>another origin")
	}))
	attack.Listener.Close()
	attack.Listener = ln
	attack.StartTLS()
	defer attack.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "terminal.test.mjs")
	cmd.Dir = browserDir
	cmd.Env = append(os.Environ(),
		"TETHER_URL=https://"+s.addr, "TETHER_TOKEN="+s.token, "TETHER_DEVICE="+device,
		"TETHER_ATTACK_URL="+attack.URL, "TETHER_ARTIFACTS="+artifacts, "TETHER_CHROMIUM="+chromium, "TETHER_FILES_DIR="+filesDir)
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("node --test:\n%s", out)
	require.NoError(t, err, "the browser tests failed")
	t.Logf("screenshot: %s", filepath.Join(artifacts, "terminal.png"))

	// The audit file: the terminal's close with the shell's exit code.
	var closed bool
	audit, err := os.ReadFile(filepath.Join(s.dir, "audit.jsonl"))
	require.NoError(t, err)
	sc := bufio.NewScanner(strings.NewReader(string(audit)))
	for sc.Scan() {
		var e struct {
			Event, Method, Device string
			ExitCode              *int `json:"exit_code"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &e))
		if e.Event == "stream_close" && e.Method == "web" && e.Device == device && e.ExitCode != nil && *e.ExitCode == 7 {
			closed = true
		}
	}
	require.True(t, closed, "no stream_close record with exit_code 7 in the audit file:\n%s", audit)

	// The other origin's request reached the edge and was refused.
	require.Eventually(t, func() bool {
		return strings.Contains(s.edge.Output(), "cross-origin request refused")
	}, 10*time.Second, 50*time.Millisecond, "the edge did not refuse the other origin's request:\n%s", s.edge.Output())

	// No secret in the logs or the audit file.
	cookie, err := os.ReadFile(filepath.Join(artifacts, "session-cookie.txt"))
	require.NoError(t, err)
	require.NoError(t, os.Remove(filepath.Join(artifacts, "session-cookie.txt")), "the artifacts keep no credential")
	for _, secret := range []string{s.token, string(cookie), "not-the-token-0123456789"} {
		require.NotContains(t, s.edge.Output(), secret, "a secret is in the edge's logs")
		require.NotContains(t, string(audit), secret, "a secret is in the audit file")
	}
}

package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tetherhq/tether/internal/testutil"

	"github.com/tetherhq/tether/pty"
)

// BenchmarkWebTerminal measures the web terminal in Chromium
// (web/browser/bench.mjs) beside the CLI's shell through the same edge and
// agent in the same run: keystroke to rendered echo, a flood's rendering
// rate, a cold page load to the prompt, and the page's weight as sent.
// Goals: keystroke p50 <= 5 ms and p99 <= 25 ms, flood >= 4 MB/s, load
// <= 1 s, page <= 200 KB gzipped.
func BenchmarkWebTerminal(b *testing.B) {
	chromium, node := testutil.BrowserTools(b, browserDir)
	s := newWebSystem(b)
	const device = "dev-web"
	s.addAgent(agentOpts{id: device})

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "bench.mjs")
	cmd.Dir = browserDir
	cmd.Env = append(os.Environ(), "TETHER_URL=https://"+s.addr, "TETHER_TOKEN="+s.token, "TETHER_DEVICE="+device, "TETHER_CHROMIUM="+chromium)
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	require.NoError(b, err, "bench.mjs:\n%s", out)
	var web struct {
		LoadMS     float64 `json:"load_ms"`
		KeyP50     float64 `json:"key_p50_ms"`
		KeyP99     float64 `json:"key_p99_ms"`
		ParsedP50  float64 `json:"key_parsed_p50_ms"`
		ParsedP99  float64 `json:"key_parsed_p99_ms"`
		RecvP50    float64 `json:"key_received_p50_ms"`
		FrameP50   float64 `json:"frame_p50_ms"`
		FloodMBps  float64 `json:"flood_mbps"`
		FloodBytes int64   `json:"flood_bytes"`
	}
	line := ""
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "BENCH ") {
			line = strings.TrimPrefix(l, "BENCH ")
		}
	}
	require.NotEmpty(b, line, "bench.mjs printed no figures:\n%s", out)
	require.NoError(b, json.Unmarshal([]byte(line), &web))

	// The CLI's shell through the same edge and agent: the baselines.
	c := s.dialClient(b, device)
	lat := keystrokes(b, c, 300)
	cliP50, cliP99 := percentile(lat, 0.5), percentile(lat, 0.99)
	sess, err := pty.Open(ctx, c, pty.Request{Cols: 80, Rows: 24, Command: "/bin/sh", Args: []string{"-c", "seq 1 2000000"}})
	require.NoError(b, err)
	t0 := time.Now()
	n, _ := io.Copy(io.Discard, sess)
	cliFlood := float64(n) / 1e6 / time.Since(t0).Seconds()
	sess.Close()

	b.ReportMetric(web.KeyP50, "web-key-p50-ms")
	b.ReportMetric(web.KeyP99, "web-key-p99-ms")
	b.ReportMetric(web.ParsedP50, "web-key-parsed-p50-ms")
	b.ReportMetric(web.ParsedP99, "web-key-parsed-p99-ms")
	b.ReportMetric(web.RecvP50, "web-key-received-p50-ms")
	b.ReportMetric(web.FrameP50, "web-frame-p50-ms")
	b.ReportMetric(cliP50, "cli-key-p50-ms")
	b.ReportMetric(cliP99, "cli-key-p99-ms")
	b.ReportMetric(web.KeyP50/cliP50, "x-cli-key-p50")
	b.ReportMetric(web.FloodMBps, "web-flood-MB/s")
	b.ReportMetric(cliFlood, "cli-flood-MB/s")
	b.ReportMetric(web.FloodMBps/cliFlood, "x-cli-flood")
	b.ReportMetric(web.LoadMS, "cold-load-to-prompt-ms")
	b.ReportMetric(float64(pageWeight(b, s))/1024, "page-KiB-gzip")
}

// pageWeight returns the bytes the terminal page costs as the edge sends
// them to a browser that takes gzip: the HTML (about 1 KiB, not
// compressed) and every file it loads.
func pageWeight(b *testing.B, s *system) int {
	b.Helper()
	hc := s.httpClient()
	total := 1200 // the terminal page's HTML, rendered
	for _, f := range []string{"xterm.js", "xterm.css", "addon-fit.js", "term.js", "app.css", "icon.svg"} {
		req, err := http.NewRequest("GET", "https://"+s.addr+"/web/static/"+f, nil)
		require.NoError(b, err)
		req.Header.Set("Accept-Encoding", "gzip") // set by hand: the transport then leaves the body compressed
		resp, err := hc.Do(req)
		require.NoError(b, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(b, err)
		require.Equal(b, http.StatusOK, resp.StatusCode, f)
		total += len(body)
	}
	return total
}

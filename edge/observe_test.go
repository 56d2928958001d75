package edge_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/transport/wire"
)

// metric returns the sum of the samples of name whose labels contain
// every one of labels.
func metric(t *testing.T, m *edge.Metrics, name string, labels ...string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	sum := 0.0
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || strings.HasPrefix(line, "#") {
			continue
		}
		rest := line[len(name):]
		if rest != "" && rest[0] != ' ' && rest[0] != '{' {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(rest, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		require.NoError(t, err)
		sum += v
	}
	return sum
}

func TestMetrics(t *testing.T) {
	metrics := &edge.Metrics{}
	m := newEdge(t, mock.Options{Metrics: metrics})
	dev := m.DeviceClientWithID("d-1")
	dev.Handle(wire.MsgTCP, tcpHandler)
	echo := testutil.TCPServer(t, testutil.LineEcho)
	c := m.ClientFor("d-1")
	_, err := roundTrip(t, c, echo, "12345")
	require.NoError(t, err)
	_, _, err = c.OpenStream(ctxT(t), wire.MsgTCP, []byte("10.9.9.9:25"))
	require.Error(t, err)
	dialStatus(t, m, "/client/d-1", "Bearer wrong", m.ClientTLS())

	require.Eventually(t, func() bool {
		return metric(t, metrics, "tether_edge_bytes_total", `direction="up"`) == 5 &&
			metric(t, metrics, "tether_edge_bytes_total", `direction="down"`) == 5
	}, 20*time.Second, 10*time.Millisecond)
	require.Equal(t, 1.0, metric(t, metrics, "tether_edge_devices_connected"))
	require.Equal(t, 1.0, metric(t, metrics, "tether_edge_client_sessions"))
	require.Equal(t, 1.0, metric(t, metrics, "tether_edge_streams_total", `type="tcp"`, `result="ok"`))
	require.Equal(t, 1.0, metric(t, metrics, "tether_edge_streams_total", `type="tcp"`, `result="denied"`))
	require.Equal(t, 0.0, metric(t, metrics, "tether_edge_streams_active", `type="tcp"`))
	require.Equal(t, 1.0, metric(t, metrics, "tether_edge_upgrade_failures_total", `reason="bad_token"`))
	require.Greater(t, metric(t, metrics, "go_goroutines"), 0.0, "the Go runtime collector is missing")
	require.Greater(t, metric(t, metrics, "process_open_fds"), 0.0, "the process collector is missing")
}

// A JSONAuditor closed before its first record starts and ends its writer
// cleanly, and refuses what comes after.
func TestJSONAuditorClosedBeforeUse(t *testing.T) {
	var buf bytes.Buffer
	a := &edge.JSONAuditor{W: &buf}
	require.NoError(t, a.Close())
	require.NoError(t, a.Close(), "a second Close")
	a.Audit(edge.Event{Kind: edge.EventStreamOpen})
	err := a.AuditWait(context.Background(), edge.Event{Kind: edge.EventStreamRequest})
	require.ErrorIs(t, err, edge.ErrAuditUnavailable)
	require.Empty(t, buf.String(), "a closed auditor wrote a record")
}

func TestJSONAuditorWritesOneLinePerEvent(t *testing.T) {
	var buf bytes.Buffer
	a := &edge.JSONAuditor{W: &buf}
	a.Audit(edge.Event{Time: time.Unix(0, 0).UTC(), Kind: edge.EventStreamDeny, Client: "ops", Device: "d1",
		Type: "tcp", Target: "10.0.0.5:25", Result: "denied", Reason: "not allowed"})
	a.Audit(edge.Event{Time: time.Unix(1, 0).UTC(), Kind: edge.EventStreamClose, BytesUp: 3, BytesDown: 4, DurationMS: 5})
	require.NoError(t, a.Close(), "Close writes what is queued")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2)
	var first map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &first))
	require.Equal(t, "stream_deny", first["event"])
	require.Equal(t, "10.0.0.5:25", first["target"])
	require.NotContains(t, first, "bytes_up", "empty fields are left out")
	var second map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &second))
	require.Equal(t, 3.0, second["bytes_up"])
	require.Equal(t, 4.0, second["bytes_down"])
}

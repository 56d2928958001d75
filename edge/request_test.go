package edge_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/mock"
)

// rawConn is a TLS connection to the edge that sends hand-written bytes.
type rawConn struct {
	t *testing.T
	c *tls.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, m *mock.EdgeMock) *rawConn {
	t.Helper()
	c, err := tls.Dial("tcp", strings.TrimPrefix(m.URL(), "https://"), m.ClientTLS())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (rc *rawConn) send(raw string) {
	rc.t.Helper()
	_, err := io.WriteString(rc.c, raw)
	require.NoError(rc.t, err)
}

// answer reads one response and returns its status and body.
func (rc *rawConn) answer() (int, string) {
	rc.t.Helper()
	resp, err := http.ReadResponse(rc.r, nil)
	require.NoError(rc.t, err)
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp.StatusCode, ""
	}
	b, err := io.ReadAll(resp.Body)
	require.NoError(rc.t, err)
	return resp.StatusCode, string(b)
}

// closedByEdge reports whether the edge closed the connection.
func (rc *rawConn) closedByEdge() bool {
	_, err := rc.r.ReadByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

const upgradeHead = "Host: edge\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: qbee-v1\r\n"

// Credentials and framing that a proxy in front of the edge could read
// otherwise than net/http does are refused with 400 and a body that says
// why, and the connection is closed.
func TestAmbiguousRequestsAreRefused(t *testing.T) {
	m := newEdge(t, mock.Options{})
	m.DeviceClientWithID("d-1")
	auth := "Authorization: Bearer " + opsToken + "\r\n"
	tests := []struct {
		name, raw string
		want      int
		body      string
	}{
		{"clean upgrade", "GET /client/d-1 HTTP/1.1\r\n" + upgradeHead + auth + "\r\n", http.StatusSwitchingProtocols, ""},
		{"two Authorization headers", "GET /client/d-1 HTTP/1.1\r\n" + upgradeHead + auth + "Authorization: Bearer other\r\n\r\n",
			http.StatusBadRequest, "more than one Authorization header"},
		{"two Authorization headers on the device list", "GET /api/devices HTTP/1.1\r\nHost: edge\r\n" + auth + auth + "\r\n",
			http.StatusBadRequest, "more than one Authorization header"},
		{"Transfer-Encoding and Content-Length", "GET /client/d-1 HTTP/1.1\r\n" + upgradeHead + auth +
			"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", http.StatusBadRequest, "Transfer-Encoding"},
		{"chunked body", "GET /device HTTP/1.1\r\n" + upgradeHead + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			http.StatusBadRequest, "Transfer-Encoding"},
		{"Content-Length body", "GET /client/d-1 HTTP/1.1\r\n" + upgradeHead + auth + "Content-Length: 5\r\n\r\nhello",
			http.StatusBadRequest, "has a body"},
		{"folded Authorization", "GET /client/d-1 HTTP/1.1\r\n" + upgradeHead + "Authorization: Bearer\r\n " + opsToken + "\r\n\r\n",
			http.StatusBadRequest, "folded onto the previous one"},
		{"folded with a tab", "GET /client/d-1 HTTP/1.1\r\n" + upgradeHead + auth + "X-Note: a\r\n\tb\r\n\r\n",
			http.StatusBadRequest, "folded onto the previous one"},
		{"folded, bare LF", "GET /healthz HTTP/1.1\nHost: edge\nX-Note: a\n b\n\n", http.StatusBadRequest, "folded onto the previous one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := dialRaw(t, m)
			rc.send(tt.raw)
			code, body := rc.answer()
			require.Equal(t, tt.want, code, "body: %s", body)
			require.Contains(t, body, tt.body)
			if code == http.StatusBadRequest {
				require.True(t, rc.closedByEdge(), "the edge kept the connection of an ambiguous request open")
			}
		})
	}
	refused := 0
	for _, e := range append(eventsOf(m, edge.EventClientRejected), eventsOf(m, edge.EventDeviceRejected)...) {
		if e.Result == "ambiguous_request" {
			refused++
		}
	}
	require.Equal(t, 6, refused, "refused upgrades are audited")
}

// Several requests on one connection (HTTP/1.1 keep-alive, pipelined or
// not): each is judged by its own head.
func TestFoldedHeadsAreFoundPerRequest(t *testing.T) {
	m := newEdge(t, mock.Options{})
	m.DeviceClientWithID("d-1")
	const (
		clean  = "GET /healthz HTTP/1.1\r\nHost: edge\r\nX-Note: a\r\n\r\n"
		folded = "GET /healthz HTTP/1.1\r\nHost: edge\r\nX-Note: a\r\n b\r\n\r\n"
	)
	upgrade := "GET /client/d-1 HTTP/1.1\r\n" + upgradeHead + "Authorization: Bearer " + opsToken + "\r\n\r\n"
	tests := []struct {
		name   string
		writes []string // sent one after the other, each after the answers to the previous one
		want   []int
	}{
		{"clean then folded", []string{clean, folded}, []int{200, 400}},
		{"clean and folded pipelined", []string{clean + folded}, []int{200, 400}},
		{"three clean pipelined", []string{clean + clean + clean}, []int{200, 200, 200}},
		{"clean, clean, folded", []string{clean, clean, folded}, []int{200, 200, 400}},
		{"clean then upgrade", []string{clean, upgrade}, []int{200, 101}},
		{"clean and upgrade pipelined", []string{clean + upgrade}, []int{200, 101}},
		{"folded then clean pipelined", []string{folded + clean}, []int{400}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := dialRaw(t, m)
			var got []int
			for _, w := range tt.writes {
				rc.send(w)
				for n := strings.Count(w, "GET "); n > 0 && len(got) < len(tt.want); n-- {
					code, _ := rc.answer()
					got = append(got, code)
				}
			}
			require.Equal(t, tt.want, got)
			if got[len(got)-1] == http.StatusBadRequest {
				require.True(t, rc.closedByEdge(), "the connection must close after a 400")
			}
		})
	}
}

package transport_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/testbroker"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// TestUpgradeAccepts: header values are matched case-insensitively and as
// token lists, and the answer is exactly the three required headers.
func TestUpgradeAccepts(t *testing.T) {
	tests := []struct {
		name, connection, upgrade, protocol string
	}{
		{"reference", "upgrade", "websocket", "qbee-v1"},
		{"capitalised", "Upgrade", "WebSocket", "qbee-v1"},
		{"upper case", "UPGRADE", "WEBSOCKET", "QBEE-V1"},
		{"token list", "keep-alive, Upgrade", "websocket", "qbee-v1"},
		{"token list without spaces", "keep-alive,upgrade", "h2c,websocket", "chat,qbee-v1"},
	}
	us, pki := newUpgradeServer(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := rawDial(t, us.addr, pki)
			p.Write([]byte(fmt.Sprintf("GET /device HTTP/1.1\r\nHost: edge\r\nConnection: %s\r\nUpgrade: %s\r\nSec-WebSocket-Protocol: %s\r\n\r\n",
				tt.connection, tt.upgrade, tt.protocol)))
			p.Expect101()
			us.session(t)
		})
	}
}

// TestUpgradeRejects: anything but a qbee-v1 upgrade gets 426 with a reason,
// and still tells the caller what to send.
func TestUpgradeRejects(t *testing.T) {
	tests := []struct {
		name    string
		request string
	}{
		{"plain GET", "GET / HTTP/1.1\r\nHost: edge\r\n\r\n"},
		{"no Connection", "GET / HTTP/1.1\r\nHost: edge\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: qbee-v1\r\n\r\n"},
		{"Connection without upgrade token", "GET / HTTP/1.1\r\nHost: edge\r\nConnection: keep-alive\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: qbee-v1\r\n\r\n"},
		{"other protocol", "GET / HTTP/1.1\r\nHost: edge\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: qbee-v2\r\n\r\n"},
		{"token is a prefix", "GET / HTTP/1.1\r\nHost: edge\r\nConnection: upgrades\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: qbee-v1\r\n\r\n"},
		{"POST", "POST / HTTP/1.1\r\nHost: edge\r\nContent-Length: 0\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: qbee-v1\r\n\r\n"},
	}
	us, pki := newUpgradeServer(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := rawDial(t, us.addr, pki)
			p.Write([]byte(tt.request))
			resp, err := http.ReadResponse(p.Reader, nil)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Equal(t, http.StatusUpgradeRequired, resp.StatusCode)
			require.Equal(t, "websocket", resp.Header.Get("Upgrade"))
			require.Contains(t, string(body), "Sec-WebSocket-Protocol: qbee-v1")
			require.ErrorIs(t, <-us.refused, transport.ErrNotUpgrade)
		})
	}
}

// TestUpgradeGarbageBeforeRequest: bytes that are not HTTP before the
// upgrade get an HTTP error, never a session.
func TestUpgradeGarbageBeforeRequest(t *testing.T) {
	us, pki := newUpgradeServer(t, nil)
	p := rawDial(t, us.addr, pki)
	p.Write([]byte("\x00\x01\x02garbage\r\n"), []byte(fmt.Sprintf(upgradeRequest, "/device")))
	resp, err := http.ReadResponse(p.Reader, nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	select {
	case <-us.sessions:
		t.Fatal("a session was upgraded after garbage")
	default:
	}
}

// TestUpgradeKeepsBytesSentAhead: a dialer that starts smux without waiting
// for the 101 loses nothing: bytes buffered with the request reach smux.
func TestUpgradeKeepsBytesSentAhead(t *testing.T) {
	us, pki := newUpgradeServer(t, nil)
	p := rawDial(t, us.addr, pki)
	p.Write([]byte(fmt.Sprintf(upgradeRequest, "/device")),
		frame(2, cmdSYN, 1, nil),
		frame(2, cmdPSH, 1, msg(wire.MsgTCP, []byte("127.0.0.1:22"))))
	s := us.session(t)
	st, err := s.Accept()
	require.NoError(t, err)
	m, err := wire.ReadMessage(st)
	require.NoError(t, err)
	require.Equal(t, wire.MsgTCP, m.Type)
	require.Equal(t, "127.0.0.1:22", string(m.Payload))
}

// TestDialSendsExactHeaders: our dialer sends the header values existing
// edges compare case-sensitively.
func TestDialSendsExactHeaders(t *testing.T) {
	_, pki := newUpgradeServer(t, nil)
	e := testbroker.NewRawEdge(t, pki)
	errc := make(chan error, 1)
	go func() {
		s, err := transport.Dial(testCtx(t), e.URL, "Bearer secret", pki.ClientTLS(), nil)
		if err == nil {
			s.Close()
		}
		errc <- err
	}()
	_, req := e.Accept(t)
	require.NoError(t, <-errc)
	require.Equal(t, http.MethodGet, req.Method)
	require.Equal(t, "/device", req.URL.Path)
	require.Equal(t, []string{"upgrade"}, req.Header.Values("Connection"))
	require.Equal(t, []string{"websocket"}, req.Header.Values("Upgrade"))
	require.Equal(t, []string{"qbee-v1"}, req.Header.Values("Sec-WebSocket-Protocol"))
	require.Equal(t, "Bearer secret", req.Header.Get("Authorization"))
}

func TestIsUpgradeRequest(t *testing.T) {
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(fmt.Sprintf(upgradeRequest, "/x"))))
	require.NoError(t, err)
	require.True(t, transport.IsUpgradeRequest(r))
	r.Header.Set("Upgrade", "h2c")
	require.False(t, transport.IsUpgradeRequest(r))
}

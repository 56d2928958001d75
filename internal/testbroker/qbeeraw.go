package testbroker

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/transport/wire"
)

// QbeeClientRequest is the exact request a qbee-v1 client (qbee-cli) sends:
// the path (/device/<id>, or /edge/<edge ID>/device/<id>) and the
// Authorization header's whole value, which that client sends as the bare
// token. %s are the path and the value.
const QbeeClientRequest = "GET %s HTTP/1.1\r\nHost: edge\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: qbee-v1\r\nAuthorization: %s\r\n\r\n"

// DialQbee dials addr over TLS with tc, sends QbeeClientRequest for path
// and auth, and reads the answer. On 101 it returns the raw peer, whose
// session is ready for hand-built smux frames; otherwise the peer is nil
// and the answer's status and body say why.
func DialQbee(t testing.TB, addr string, tc *tls.Config, path, auth string) (p *RawPeer, status int, body string) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, tc)
	require.NoError(t, err)
	p = NewRawPeer(t, c)
	p.Write(fmt.Appendf(nil, QbeeClientRequest, path, auth))
	resp, err := http.ReadResponse(p.Reader, nil)
	require.NoError(t, err)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		c.Close()
		return nil, resp.StatusCode, string(b)
	}
	require.Equal(t, "qbee-v1", resp.Header.Get("Sec-WebSocket-Protocol"))
	return p, resp.StatusCode, ""
}

// OpenStream opens smux stream sid (odd for a client) and sends the
// opening message, in one write, as a qbee-v1 client does.
func (p *RawPeer) OpenStream(sid uint32, t wire.MsgType, payload []byte) {
	p.t.Helper()
	p.Write(Frame(2, CmdSYN, sid, nil), Frame(2, CmdPSH, sid, Msg(t, payload)))
}

// SendData sends b on stream sid as one data frame.
func (p *RawPeer) SendData(sid uint32, b []byte) {
	p.t.Helper()
	p.Write(Frame(2, CmdPSH, sid, b))
}

// StreamReader reads the data of one stream of a RawPeer, skipping the
// frames of other streams, keep-alives and window updates. It is not safe
// for concurrent use, and one RawPeer has one reader at a time.
type StreamReader struct {
	p   *RawPeer
	sid uint32
	buf []byte
}

// Stream returns a reader of stream sid's data.
func (p *RawPeer) Stream(sid uint32) *StreamReader { return &StreamReader{p: p, sid: sid} }

// Read returns exactly n bytes of the stream's data; it fails the test if
// the stream or the connection ends first.
func (r *StreamReader) Read(n int) []byte {
	r.p.t.Helper()
	for len(r.buf) < n {
		cmd, id, payload, err := r.p.ReadFrame()
		require.NoError(r.p.t, err, "reading stream %d: got %q so far; want %d bytes", r.sid, r.buf, n)
		if id != r.sid {
			continue
		}
		switch cmd {
		case CmdPSH:
			r.buf = append(r.buf, payload...)
		case CmdFIN, CmdRST:
			r.p.t.Fatalf("stream %d ended (command %#x) after %q; want %d bytes", r.sid, cmd, r.buf, n)
		}
	}
	out := r.buf[:n:n]
	r.buf = r.buf[n:]
	return out
}

// Message reads one protocol message from the stream.
func (r *StreamReader) Message() wire.Message {
	r.p.t.Helper()
	h := r.Read(wire.HeaderSize)
	m := wire.Message{Type: wire.MsgType(h[0])}
	if n := int(binary.BigEndian.Uint16(h[1:])); n > 0 {
		m.Payload = r.Read(n)
	}
	return m
}

// AcceptStream reads frames until another end opens a stream (SYN) and
// returns its ID and the opening message, as a qbee-v1 device does. Frames
// of other streams are skipped.
func (p *RawPeer) AcceptStream() (uint32, *StreamReader) {
	p.t.Helper()
	for {
		cmd, id, _, err := p.ReadFrame()
		require.NoError(p.t, err, "waiting for a stream")
		if cmd == CmdSYN {
			return id, p.Stream(id)
		}
	}
}

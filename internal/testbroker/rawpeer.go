package testbroker

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/transport/wire"
)

// smux v2 commands, as a RawPeer writes them, and CmdRST, the stream reset
// of our extension (docs/protocol.md, "Stream reset").
const (
	CmdSYN = 0
	CmdFIN = 1
	CmdPSH = 2
	CmdNOP = 3
	CmdUPD = 4
	CmdRST = 0x81
)

// UpgradeRequest is the exact request an existing qbee-v1 dialer sends;
// %s is the path.
const UpgradeRequest = "GET %s HTTP/1.1\r\nHost: edge\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: qbee-v1\r\n\r\n"

// Answer101 is the exact answer an existing qbee-v1 edge sends.
const Answer101 = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: qbee-v1\r\n\r\n"

// RawPeer drives one end of a qbee-v1 connection by hand: the test writes
// the upgrade, smux frames and messages as bytes, malformed ones included,
// and reads what the other end sends.
type RawPeer struct {
	t testing.TB
	// Conn is the connection; Reader buffers what is read from it (read
	// through Reader, never Conn).
	Conn   net.Conn
	Reader *bufio.Reader
}

// NewRawPeer drives c, which it closes when the test ends. Every read and
// write must be done within WaitLong.
func NewRawPeer(t testing.TB, c net.Conn) *RawPeer {
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(WaitLong))
	return &RawPeer{t: t, Conn: c, Reader: bufio.NewReader(c)}
}

// RawDial opens a TLS connection to addr as a client of pki's edge.
func RawDial(t testing.TB, addr string, pki *certstest.PKI) *RawPeer {
	t.Helper()
	c, err := tls.Dial("tcp", addr, pki.ClientTLS())
	require.NoError(t, err)
	return NewRawPeer(t, c)
}

// Write writes bs as one write and fails the test if it fails.
func (p *RawPeer) Write(bs ...[]byte) {
	p.t.Helper()
	var all []byte
	for _, b := range bs {
		all = append(all, b...)
	}
	_, err := p.Conn.Write(all)
	require.NoError(p.t, err)
}

// Upgrade sends the standard upgrade request for path and checks the 101.
func (p *RawPeer) Upgrade(path string) http.Header {
	p.t.Helper()
	p.Write(fmt.Appendf(nil, UpgradeRequest, path))
	return p.Expect101()
}

// Expect101 reads the answer to an upgrade and checks that it carries
// everything the protocol requires. It returns the answer's headers.
func (p *RawPeer) Expect101() http.Header {
	p.t.Helper()
	resp, err := http.ReadResponse(p.Reader, nil)
	require.NoError(p.t, err)
	require.Equal(p.t, http.StatusSwitchingProtocols, resp.StatusCode)
	require.Equal(p.t, "Upgrade", resp.Header.Get("Connection"))
	require.Equal(p.t, "websocket", resp.Header.Get("Upgrade"))
	require.Equal(p.t, "qbee-v1", resp.Header.Get("Sec-WebSocket-Protocol"))
	return resp.Header
}

// ReadFrame reads one smux frame.
func (p *RawPeer) ReadFrame() (cmd byte, sid uint32, payload []byte, err error) {
	var h [8]byte
	if _, err = io.ReadFull(p.Reader, h[:]); err != nil {
		return
	}
	payload = make([]byte, binary.LittleEndian.Uint16(h[2:]))
	if _, err = io.ReadFull(p.Reader, payload); err != nil {
		return
	}
	return h[1], binary.LittleEndian.Uint32(h[4:]), payload, nil
}

// ReadStream collects the data frames of stream sid until its FIN,
// skipping other frames, and returns the data.
func (p *RawPeer) ReadStream(sid uint32) []byte {
	p.t.Helper()
	var data []byte
	for {
		cmd, id, payload, err := p.ReadFrame()
		require.NoError(p.t, err, "reading stream %d", sid)
		if id != sid {
			continue
		}
		switch cmd {
		case CmdPSH:
			data = append(data, payload...)
		case CmdFIN:
			return data
		}
	}
}

// ExpectClosed reads until the connection ends and fails if it does not.
func (p *RawPeer) ExpectClosed() {
	p.t.Helper()
	_, err := io.Copy(io.Discard, p.Reader)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		p.t.Fatal("the connection was not closed")
	}
}

// Frame builds one smux frame: version, command, payload length (2 bytes,
// little endian), stream ID (4 bytes, little endian), payload.
func Frame(ver, cmd byte, sid uint32, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	b[0], b[1] = ver, cmd
	binary.LittleEndian.PutUint16(b[2:], uint16(len(payload)))
	binary.LittleEndian.PutUint32(b[4:], sid)
	return append(b, payload...)
}

// Msg builds one protocol message without checking it: type, payload
// length (2 bytes, big endian), payload.
func Msg(t wire.MsgType, payload []byte) []byte {
	b := []byte{byte(t), 0, 0}
	binary.BigEndian.PutUint16(b[1:], uint16(len(payload)))
	return append(b, payload...)
}

// RawEdge accepts device connections by hand, for tests of a device
// against hand-built frames.
type RawEdge struct {
	// URL is the device endpoint to dial.
	URL   string
	conns chan net.Conn
}

// NewRawEdge listens on 127.0.0.1 with pki's edge certificate. Its
// listener and the connections nobody took are closed when the test ends.
func NewRawEdge(t testing.TB, pki *certstest.PKI) *RawEdge {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", pki.EdgeTLS())
	require.NoError(t, err)
	e := &RawEdge{URL: "https://" + ln.Addr().String() + "/device", conns: make(chan net.Conn, 16)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.conns <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		close(e.conns)
		for c := range e.conns {
			c.Close()
		}
	})
	return e
}

// Accept takes the next device connection, reads its upgrade request and
// answers Answer101. It returns the raw peer and the request.
func (e *RawEdge) Accept(t testing.TB) (*RawPeer, *http.Request) {
	t.Helper()
	var c net.Conn
	select {
	case c = <-e.conns:
	case <-time.After(WaitLong):
		t.Fatal("the device never dialed")
	}
	p := NewRawPeer(t, c)
	req, err := http.ReadRequest(p.Reader)
	require.NoError(t, err)
	p.Write([]byte(Answer101))
	return p, req
}

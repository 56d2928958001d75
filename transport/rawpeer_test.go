package transport_test

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
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// smux v2 commands, as the raw peer writes them.
const (
	cmdSYN = 0
	cmdFIN = 1
	cmdPSH = 2
	cmdNOP = 3
	cmdUPD = 4
)

// upgradeRequest is the exact request an existing qbee-v1 dialer sends.
const upgradeRequest = "GET %s HTTP/1.1\r\nHost: edge\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: qbee-v1\r\n\r\n"

// answer101 is the exact answer an existing qbee-v1 edge sends.
const answer101 = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: qbee-v1\r\n\r\n"

// rawPeer drives one end of a qbee-v1 connection by hand: the test writes
// the upgrade, smux frames and messages as bytes, malformed ones included.
type rawPeer struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

func newRawPeer(t testing.TB, c net.Conn) *rawPeer {
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(waitLong))
	return &rawPeer{t: t, conn: c, br: bufio.NewReader(c)}
}

// rawDial opens a TLS connection to addr as a client.
func rawDial(t testing.TB, addr string, pki *certstest.PKI) *rawPeer {
	t.Helper()
	c, err := tls.Dial("tcp", addr, pki.ClientTLS())
	require.NoError(t, err)
	return newRawPeer(t, c)
}

func (p *rawPeer) write(bs ...[]byte) {
	p.t.Helper()
	var all []byte
	for _, b := range bs {
		all = append(all, b...)
	}
	_, err := p.conn.Write(all)
	require.NoError(p.t, err)
}

// upgrade sends the standard upgrade request for path and checks the 101.
func (p *rawPeer) upgrade(path string) http.Header {
	p.t.Helper()
	p.write([]byte(fmt.Sprintf(upgradeRequest, path)))
	return p.expect101()
}

// expect101 reads the answer to an upgrade and checks that it carries
// everything the protocol requires. It returns the answer's headers.
func (p *rawPeer) expect101() http.Header {
	p.t.Helper()
	resp, err := http.ReadResponse(p.br, nil)
	require.NoError(p.t, err)
	require.Equal(p.t, http.StatusSwitchingProtocols, resp.StatusCode)
	require.Equal(p.t, "Upgrade", resp.Header.Get("Connection"))
	require.Equal(p.t, "websocket", resp.Header.Get("Upgrade"))
	require.Equal(p.t, "qbee-v1", resp.Header.Get("Sec-WebSocket-Protocol"))
	return resp.Header
}

// frame builds one smux frame.
func frame(ver, cmd byte, sid uint32, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	b[0], b[1] = ver, cmd
	binary.LittleEndian.PutUint16(b[2:], uint16(len(payload)))
	binary.LittleEndian.PutUint32(b[4:], sid)
	return append(b, payload...)
}

// msg builds one protocol message.
func msg(t wire.MsgType, payload []byte) []byte {
	b := []byte{byte(t), 0, 0}
	binary.BigEndian.PutUint16(b[1:], uint16(len(payload)))
	return append(b, payload...)
}

// readFrame reads one smux frame.
func (p *rawPeer) readFrame() (cmd byte, sid uint32, payload []byte, err error) {
	var h [8]byte
	if _, err = io.ReadFull(p.br, h[:]); err != nil {
		return
	}
	payload = make([]byte, binary.LittleEndian.Uint16(h[2:]))
	if _, err = io.ReadFull(p.br, payload); err != nil {
		return
	}
	return h[1], binary.LittleEndian.Uint32(h[4:]), payload, nil
}

// readStream collects the data frames of stream sid until its FIN, skipping
// other frames, and returns the data.
func (p *rawPeer) readStream(sid uint32) []byte {
	p.t.Helper()
	var data []byte
	for {
		cmd, id, payload, err := p.readFrame()
		require.NoError(p.t, err, "reading stream %d", sid)
		if id != sid {
			continue
		}
		switch cmd {
		case cmdPSH:
			data = append(data, payload...)
		case cmdFIN:
			return data
		}
	}
}

// expectClosed reads until the connection ends and fails if it does not.
func (p *rawPeer) expectClosed() {
	p.t.Helper()
	_, err := io.Copy(io.Discard, p.br)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		p.t.Fatal("the connection was not closed")
	}
}

// upgradeServer serves Upgrade on 127.0.0.1 over TLS and hands every
// session to the test. Sessions are closed when the test ends.
type upgradeServer struct {
	addr     string
	sessions chan *transport.Session
	refused  chan error
}

func newUpgradeServer(t testing.TB, cfg *transport.Config) (*upgradeServer, *certstest.PKI) {
	t.Helper()
	pki := certstest.New(t)
	return serveUpgrade(t, cfg, pki.EdgeTLS()), pki
}

// serveUpgrade is newUpgradeServer with the server's TLS configuration.
func serveUpgrade(t testing.TB, cfg *transport.Config, tc *tls.Config) *upgradeServer {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tc)
	require.NoError(t, err)
	us := &upgradeServer{addr: ln.Addr().String(), sessions: make(chan *transport.Session, 16), refused: make(chan error, 16)}
	var (
		mu   sync.Mutex
		all  []*transport.Session
		done bool
	)
	srv := &http.Server{ErrorLog: quietLog, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := transport.Upgrade(w, r, cfg)
		if err != nil {
			us.refused <- err
			return
		}
		mu.Lock()
		if done {
			s.Close()
		}
		all = append(all, s)
		mu.Unlock()
		us.sessions <- s
	})}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		wg.Wait()
		mu.Lock()
		done = true
		for _, s := range all {
			s.Close()
		}
		mu.Unlock()
	})
	return us
}

func (us *upgradeServer) session(t testing.TB) *transport.Session {
	t.Helper()
	select {
	case s := <-us.sessions:
		return s
	case <-time.After(waitLong):
		t.Fatal("no session was upgraded")
		return nil
	}
}

// rawEdge accepts one device connection by hand: it reads the upgrade
// request, answers 101 and returns the raw peer and the request.
type rawEdge struct {
	url   string
	conns chan net.Conn
}

func newRawEdge(t testing.TB, pki *certstest.PKI) *rawEdge {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", pki.EdgeTLS())
	require.NoError(t, err)
	e := &rawEdge{url: "https://" + ln.Addr().String() + "/device", conns: make(chan net.Conn, 16)}
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

// accept takes the next device connection and completes its upgrade.
func (e *rawEdge) accept(t testing.TB) (*rawPeer, *http.Request) {
	t.Helper()
	var c net.Conn
	select {
	case c = <-e.conns:
	case <-time.After(waitLong):
		t.Fatal("the device never dialed")
	}
	p := newRawPeer(t, c)
	req, err := http.ReadRequest(p.br)
	require.NoError(t, err)
	p.write([]byte(answer101))
	return p, req
}

// newRawEdgeAnswer serves one fixed answer to every request and returns
// the URL to dial.
func newRawEdgeAnswer(t testing.TB, pki *certstest.PKI, answer string) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", pki.EdgeTLS())
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(waitLong))
			if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
				_, _ = c.Write([]byte(answer))
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return "https://" + ln.Addr().String() + "/device"
}

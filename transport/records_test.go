package transport_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/transport"
)

// countConn counts the writes that reach the socket.
type countConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestLargeFrameIsOneSocketWrite: crypto/tls writes each record of a
// frame on its own; under GatherRecords a whole 64 KiB frame, five
// records or more, reaches the socket in one write, intact.
func TestLargeFrameIsOneSocketWrite(t *testing.T) {
	pki := certstest.New(t)
	raw, sraw := transport.TCPPair(t)
	counted := &countConn{Conn: raw}
	conf := pki.ClientTLS()
	conf.ServerName = "127.0.0.1"
	cc := tls.Client(transport.GatherRecords(counted), conf)
	sc := tls.Server(sraw, pki.EdgeTLS())
	hs := make(chan error, 1)
	go func() { hs <- sc.Handshake() }()
	require.NoError(t, cc.Handshake())
	require.NoError(t, <-hs)

	cli, err := transport.NewClientSession(cc, nil)
	require.NoError(t, err)
	defer cli.Close()
	srv, err := transport.NewServerSession(sc, nil)
	require.NoError(t, err)
	defer srv.Close()
	st, peer := openAccepted(t, cli, srv)

	frame := pattern(7, transport.DefaultMaxFrameSize)
	before := counted.writes.Load()
	_, err = st.Write(frame)
	require.NoError(t, err)
	got := make([]byte, len(frame))
	_, err = io.ReadFull(peer, got)
	require.NoError(t, err)
	require.True(t, bytes.Equal(frame, got), "the frame arrived changed")
	require.Equal(t, int64(1), counted.writes.Load()-before, "socket writes for one 64 KiB frame")

	// Small writes pass straight through, one socket write each.
	before = counted.writes.Load()
	_, err = st.Write([]byte("small"))
	require.NoError(t, err)
	_, err = io.ReadFull(peer, got[:5])
	require.NoError(t, err)
	require.Equal(t, "small", string(got[:5]))
	require.Equal(t, int64(1), counted.writes.Load()-before)
}

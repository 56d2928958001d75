package edge_test

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/wire"
)

// countingListener counts the socket writes of the connections it
// accepts.
type countingListener struct {
	net.Listener
	writes *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, writes: l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestEdgeWritesAFrameInOneSocketWrite: what the edge relays to a device
// goes out a frame to a socket write, not a TLS record to a write (four
// or more per 64 KiB frame).
func TestEdgeWritesAFrameInOneSocketWrite(t *testing.T) {
	pki := certstest.New(t)
	srv := &edge.Server{DeviceCA: pki.Pool(), Policy: edge.AllowAll{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var writes atomic.Int64
	hs := srv.HTTPServer(pki.EdgeTLS())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = hs.Serve(srv.Listener(countingListener{Listener: ln, writes: &writes}, hs.TLSConfig))
	}()
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
		<-served
	})
	url := "https://" + ln.Addr().String()

	const size = 4 << 20
	got := make(chan int64, 1)
	dc := &device.Client{URL: url + "/device", TLSConfig: pki.DeviceTLS(pki.Device("gw-1"))}
	dc.Handle(wire.MsgTCP, func(ctx context.Context, st *transport.Stream, _ []byte) error {
		_ = wire.WriteOK(st, nil)
		n, _ := io.Copy(io.Discard, st)
		got <- n
		return st.Close()
	})
	require.NoError(t, dc.Start(ctxT(t)))
	t.Cleanup(func() { dc.Close() })
	require.Eventually(t, func() bool { return len(srv.Devices()) == 1 }, 20*time.Second, 5*time.Millisecond)
	cl, err := (&client.Dialer{Edge: url, Token: "any", TLSConfig: pki.ClientTLS()}).Dial(ctxT(t), "gw-1")
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	st, _, err := cl.OpenStream(ctxT(t), wire.MsgTCP, []byte("127.0.0.1:1"))
	require.NoError(t, err)
	defer st.Close()

	before := writes.Load()
	_, err = st.Write(make([]byte, size))
	require.NoError(t, err)
	require.NoError(t, st.CloseWrite())
	require.Equal(t, int64(size), <-got)
	frames := int64(size / transport.DefaultMaxFrameSize)
	n := writes.Load() - before
	t.Logf("%d socket writes for %d bytes in frames of %d", n, size, transport.DefaultMaxFrameSize)
	require.Less(t, n, 2*frames, "the edge wrote a frame's TLS records one by one")
}

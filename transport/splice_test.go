package transport_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/transport"
)

// A client that closes its stream entirely while the target keeps talking:
// smux has no reset, so every hop sees only the FIN. Without a bound, the
// device would write into a window that never reopens, for ever, holding
// the target connection and a stream slot. Splice bounds it.
func TestSpliceEndsWhenThePeerIsGone(t *testing.T) {
	b, pki := newBroker(t, nil)
	startDevice(t, b, pki, nil, map[transport.MsgType]transport.Handler{transport.MsgTCP: tcpHandler})
	cl := dialClient(t, b, pki, nil)

	ended := make(chan error, 1)
	target := testutil.TCPServer(t, func(c *net.TCPConn) {
		// Talk until the tunnel gives up on us.
		chunk := make([]byte, 64<<10)
		for {
			_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.Write(chunk); err != nil {
				ended <- err
				return
			}
		}
	})
	conn, err := cl.DialTCP(testCtx(t), target)
	require.NoError(t, err)
	buf := make([]byte, 1024)
	_, err = conn.Read(buf) // the target is talking
	require.NoError(t, err)
	require.NoError(t, conn.Close())

	select {
	case err := <-ended:
		var ne net.Error
		require.False(t, errors.As(err, &ne) && ne.Timeout(), "the target's own deadline fired: the tunnel never let go (%v)", err)
	case <-time.After(25 * time.Second):
		t.Fatal("the tunnel kept the target's connection open after the client closed its stream")
	}
}

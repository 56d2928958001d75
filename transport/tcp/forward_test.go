package tcp_test

import (
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/testbroker"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/transport/tcp"
)

// TestForward forwards local connections through the device, like ssh -L,
// and Close stops it.
func TestForward(t *testing.T) {
	cl := rig(t, nil)
	target := testutil.TCPServer(t, testbroker.PatternAfterEOF)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	fw := &tcp.Forward{Listener: ln, Opener: cl, Remote: target}
	require.NoError(t, fw.Start(testbroker.Ctx(t)))
	for i := range 3 {
		c, err := net.Dial("tcp", fw.Addr().String())
		require.NoError(t, err)
		_, err = c.Write([]byte{0, 0, 0x10, 0, byte(i)})
		require.NoError(t, err)
		require.NoError(t, c.(*net.TCPConn).CloseWrite())
		got, err := io.ReadAll(c)
		require.NoError(t, err)
		require.Equal(t, testbroker.Pattern(byte(i), 0x1000), got)
		c.Close()
	}
	require.NoError(t, fw.Close())
	<-fw.Done()
	require.NoError(t, fw.Err())
	_, err = net.Dial("tcp", fw.Addr().String())
	require.Error(t, err, "the listener is closed")
}

// flakyListener fails its first Accept calls with EMFILE, as a process out
// of descriptors does, then accepts from the real listener.
type flakyListener struct {
	net.Listener
	fails atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestForwardSurvivesAcceptErrors: a transient Accept error (out of file
// descriptors) pauses the forward; it does not end it.
func TestForwardSurvivesAcceptErrors(t *testing.T) {
	cl := rig(t, nil)
	target := testutil.TCPServer(t, testutil.EchoAfterEOF)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	fl := &flakyListener{Listener: ln}
	fl.fails.Store(3)
	f := &tcp.Forward{Listener: fl, Opener: cl, Remote: target, Logger: testbroker.Logger(t)}
	require.NoError(t, f.Start(testbroker.Ctx(t)))
	defer f.Close()

	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("after emfile"))
	require.NoError(t, err)
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	require.Equal(t, "echo:AFTER EMFILE", string(got))
	require.NoError(t, f.Err())
}

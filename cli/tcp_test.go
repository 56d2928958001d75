//go:build linux

package cli

import (
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tetherhq/tether/internal/testutil"
)

// TestTCPBusyPortClosesTheOthers: every listener is bound before anything
// is printed; one that cannot be bound fails the command and the ones
// already bound are closed.
func TestTCPBusyPortClosesTheOthers(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	free := testutil.FreeAddr(t)
	out, errOut, code := runMain(t, "", env{EnvEdge: "https://127.0.0.1:1", EnvToken: "t"},
		"tcp", "d1", free+":127.0.0.1:80", busy.Addr().String()+":127.0.0.1:22")
	require.Equal(t, ExitError, code, errOut)
	require.Equal(t, "tether: cannot listen on "+busy.Addr().String()+": address already in use; pick another local port (0 picks a free one)\n", errOut)
	require.Empty(t, out)
	ln, err := net.Listen("tcp", free)
	require.NoError(t, err, "the first forward's listener outlived the command")
	ln.Close()
}

// TestTCPSignals: Ctrl-C and SIGTERM close the forwards and exit 130.
func TestTCPSignals(t *testing.T) {
	f := newFleet(t)
	f.addAgent("d1", "")
	echo := testutil.TCPServer(t, testutil.EchoAfterEOF)
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			fwd := f.startTether(false, "tcp", "d1", "0:"+echo, "0:"+echo)
			locals := forwardLines(t, fwd, 2)
			got, err := roundTrip(locals[1], "ping")
			require.NoError(t, err)
			require.Equal(t, "echo:PING", got)
			require.NoError(t, fwd.Cmd.Process.Signal(sig))
			require.Equal(t, ExitInterrupted, exitCode(t, fwd), fwd.Stderr())
			require.Equal(t, "tether: interrupted\n", fwd.Stderr())
			for _, l := range locals {
				_, err = net.Dial("tcp", l)
				require.Error(t, err, "the listener on %s outlived the command", l)
			}
		})
	}
}

// TestListenError: an address that is not this machine's gets its own
// advice (192.0.2.1 is TEST-NET-1, never assigned).
func TestListenError(t *testing.T) {
	_, err := net.Listen("tcp", "192.0.2.1:8080")
	require.Error(t, err)
	require.EqualError(t, listenError("192.0.2.1:8080", err),
		"cannot listen on 192.0.2.1:8080: cannot assign requested address; that address is not one of this machine's; use 127.0.0.1, or * for every interface")
}

//go:build linux

package cli

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// amplifier is a UDP service on loopback that answers every datagram with
// size bytes.
func amplifier(t *testing.T, size int) string {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	done := make(chan struct{})
	t.Cleanup(func() { c.Close(); <-done })
	answer := bytes.Repeat([]byte{'A'}, size)
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			_, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteToUDP(answer, from)
		}
	}()
	return c.LocalAddr().String()
}

// TestUDPForwardShowsDeviceClose: when the agent ends a flow because the
// remote's replies exceed its cap (by default 10x the requests over 10 s),
// `tether udp` says so, naming the peer, the forward and the reason.
func TestUDPForwardShowsDeviceClose(t *testing.T) {
	f := newFleet(t)
	f.addAgent("d1", "")
	remote := amplifier(t, 4096)
	fwd := f.startTether(false, "udp", "d1", "0:"+remote)
	local := forwardLines(t, fwd, 1)[0]
	c, err := net.Dial("udp", local)
	require.NoError(t, err)
	defer c.Close()

	// 40-byte queries answered with 4 KiB: about 100x. Each round sends a
	// burst, so the cap is passed within one window however slow the
	// machine.
	query := bytes.Repeat([]byte{'q'}, 40)
	const want = "closed by the device: reply traffic exceeded 10x the requests over 10s"
	require.Eventually(t, func() bool {
		for i := 0; i < 10; i++ {
			_, _ = c.Write(query)
		}
		return strings.Contains(fwd.Stderr(), want)
	}, 60*time.Second, 50*time.Millisecond, "no notice of the closed flow:\n%s", fwd.Stderr())

	var line string
	for _, l := range strings.Split(fwd.Stderr(), "\n") {
		if strings.Contains(l, want) {
			line = l
			break
		}
	}
	wantPrefix := "tether: udp flow from " + c.LocalAddr().String() + " via " + local + " -> d1 " + remote + " " + want
	require.True(t, strings.HasPrefix(line, wantPrefix), "got %q; want it to start with %q", line, wantPrefix)
	require.Contains(t, line, "the peer's next datagram opens a new flow")
}

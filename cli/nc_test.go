//go:build linux

package cli

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tetherhq/tether/internal/testutil"
)

// TestNCSignals: ssh ends its ProxyCommand with SIGHUP after every
// session, which is no failure; Ctrl-C is an interruption.
func TestNCSignals(t *testing.T) {
	f := newFleet(t)
	f.addAgent("d1", "")
	echo := testutil.TCPServer(t, testutil.LineEcho)
	tests := []struct {
		name       string
		sig        os.Signal
		wantCode   int
		wantStderr string
	}{
		{"SIGHUP ends it quietly", syscall.SIGHUP, ExitOK, ""},
		{"SIGINT interrupts it", os.Interrupt, ExitInterrupted, "tether: interrupted\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc := f.startTether(true, "nc", "d1", echo)
			_, err := io.WriteString(nc.Stdin, "hello\n")
			require.NoError(t, err)
			require.Eventually(t, func() bool { return nc.Stdout() == "hello\n" }, 30*time.Second, 10*time.Millisecond, nc.Stderr())
			require.NoError(t, nc.Cmd.Process.Signal(tt.sig))
			require.Equal(t, tt.wantCode, exitCode(t, nc), nc.Stderr())
			require.Equal(t, tt.wantStderr, nc.Stderr())
			nc.Stdin.Close()
		})
	}
}

// TestNCClosedStdout: when whatever reads nc's output goes away, nc ends
// quietly with 0, even while stdin stays open.
func TestNCClosedStdout(t *testing.T) {
	f := newFleet(t)
	f.addAgent("d1", "")
	chatty := testutil.TCPServer(t, func(c *net.TCPConn) {
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		line := []byte(strings.Repeat("x", 1023) + "\n")
		for {
			if _, err := c.Write(line); err != nil {
				return
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath("tether"), f.args(f.token, "nc", "d1", chatty)...)
	cmd.Env = baseEnv(t)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	defer stdin.Close()
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var errOut testutil.Buffer
	cmd.Stderr = &errOut
	require.NoError(t, cmd.Start())
	// Read some output, then go away as `| head` would.
	_, err = io.ReadFull(out, make([]byte, 4096))
	require.NoError(t, err, errOut.String())
	require.NoError(t, out.Close())
	err = cmd.Wait()
	require.NoError(t, err, "tether nc: %s", errOut.String())
	require.Empty(t, errOut.String())
}

// TestNCRemoteEndsFirst: the remote side answers, ends its output and
// closes while nc still sends. nc has ended as its help says, when the
// remote side ended its output: with 0, the answer whole, and no message,
// though the rest of its input was refused.
func TestNCRemoteEndsFirst(t *testing.T) {
	f := newFleet(t)
	f.addAgent("d1", "")
	bye := testutil.TCPServer(t, func(c *net.TCPConn) {
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 6)); err != nil {
			return
		}
		_, _ = c.Write([]byte("bye\n"))
		_ = c.CloseWrite()
		// More input arrives: the close answers it with a reset, which
		// the device passes on after its FIN.
		time.Sleep(100 * time.Millisecond)
		_ = c.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath("tether"), f.args(f.token, "nc", "d1", bye)...)
	cmd.Env = baseEnv(t)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	var out, errOut testutil.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	require.NoError(t, cmd.Start())
	go func() {
		defer stdin.Close()
		if _, err := io.WriteString(stdin, "hello\n"); err != nil {
			return
		}
		line := []byte(strings.Repeat("m", 1023) + "\n")
		for ctx.Err() == nil {
			if _, err := stdin.Write(line); err != nil {
				return
			}
		}
	}()
	err = cmd.Wait()
	require.NoError(t, err, "tether nc: %s", errOut.String())
	require.Equal(t, "bye\n", out.String())
	require.Empty(t, errOut.String())
}

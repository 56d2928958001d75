//go:build linux

package cli

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

func TestExec(t *testing.T) {
	f := newFleet(t)
	f.addAgent("d1", "")

	t.Run("stdout and stderr apart, and the exit code", func(t *testing.T) {
		out, errOut, code := f.tether("", "exec", "d1", "--", "echo to-out; echo to-err >&2; exit 3")
		require.Equal(t, 3, code, errOut)
		require.Equal(t, "to-out\n", out)
		require.Equal(t, "to-err\n", errOut)
	})
	t.Run("100,000 random bytes through cat", func(t *testing.T) {
		in := make([]byte, 100_000)
		_, _ = rand.Read(in)
		out, errOut, code := f.tether(string(in), "exec", "d1", "--", "cat")
		require.Equal(t, 0, code, errOut)
		require.Equal(t, len(in), len(out))
		require.True(t, string(in) == out, "the bytes that came back differ from those sent")
	})
	t.Run("the command line goes through the shell", func(t *testing.T) {
		out, errOut, code := f.tether("", "exec", "d1", "--", "echo a | tr a b")
		require.Equal(t, 0, code, errOut)
		require.Equal(t, "b\n", out)
		// Words are joined with spaces, as ssh does.
		out, errOut, code = f.tether("", "exec", "d1", "--", "echo", "x", "|", "tr", "x", "y")
		require.Equal(t, 0, code, errOut)
		require.Equal(t, "y\n", out)
	})
	t.Run("the end of stdin reaches the command", func(t *testing.T) {
		out, errOut, code := f.tether("12345", "exec", "d1", "--", "wc -c")
		require.Equal(t, 0, code, errOut)
		require.Equal(t, "5", strings.TrimSpace(out))
	})
	t.Run("128+N for a signal", func(t *testing.T) {
		_, errOut, code := f.tether("", "exec", "d1", "--", "kill -KILL $$")
		require.Equal(t, 128+9, code, errOut)
	})
	t.Run("a command is required", func(t *testing.T) {
		_, errOut, code := f.tether("", "exec", "d1")
		require.Equal(t, ExitUsage, code)
		require.Contains(t, errOut, "tether exec DEVICE -- COMMAND")
	})
}

func TestExecRefused(t *testing.T) {
	f := newFleet(t)
	f.addAgent("lab-1", "")
	f.addAgent("d2", "exec: {enabled: false}")

	t.Run("at the edge without the exec right", func(t *testing.T) {
		_, errOut, code := runTether(t, baseEnv(t), "", f.args(f.limited, "exec", "lab-1", "--", "true")...)
		require.Equal(t, ExitRemote, code, errOut)
		require.Contains(t, errOut, "not allowed: exec on device lab-1 for client lab")
	})
	t.Run("at the agent when exec is not enabled", func(t *testing.T) {
		_, errOut, code := f.tether("", "exec", "d2", "--", "true")
		require.Equal(t, ExitRemote, code, errOut)
		require.Contains(t, errOut, "set exec.enabled in the agent configuration")
	})
	t.Run("a piped shell says how to get a terminal instead", func(t *testing.T) {
		_, errOut, code := f.tether("echo hi\n", "shell", "d2")
		require.Equal(t, ExitRemote, code, errOut)
		require.Contains(t, errOut, "exec.enabled")
		require.Contains(t, errOut, "pass -t")
		out, errOut, code := f.tether("echo hi\n", "shell", "-t", "d2")
		require.Equal(t, 0, code, errOut)
		require.Contains(t, out, "hi")
	})
}

// rawDevice is a device that speaks qbee-v1 only, as a qbee agent does: a
// PTY stream prints a line and ends, the exit-status command is answered
// with an Error, and exec streams without a command are closed without an
// answer. An exec stream with a command is answered and then ends without
// an exit frame.
type rawDevice struct {
	mu   sync.Mutex
	ptys []wire.PTYCommand // the PTY opening messages received
}

func (f *fleet) addRawDevice(t *testing.T, id string) *rawDevice {
	t.Helper()
	rd := &rawDevice{}
	kp := f.pki.Device(id)
	dc := &device.Client{URL: "https://" + f.addr + "/device", TLSConfig: f.pki.DeviceTLS(kp)}
	dc.Handle(wire.MsgPTY, func(_ context.Context, st *transport.Stream, payload []byte) error {
		cmd, err := wire.DecodePTYCommand(payload)
		if err != nil {
			return err
		}
		rd.mu.Lock()
		rd.ptys = append(rd.ptys, cmd)
		rd.mu.Unlock()
		if err := wire.WriteOK(st, []byte("qbee-session-1")); err != nil {
			return err
		}
		_, err = st.Write([]byte("raw-device-output\r\n"))
		return err
	})
	dc.Handle(wire.MsgPTYCommand, func(_ context.Context, st *transport.Stream, payload []byte) error {
		cmd, err := wire.DecodePTYCommand(payload)
		if err != nil {
			return err
		}
		return fmt.Errorf("unsupported PTY command: %d", cmd.Type)
	})
	dc.Handle(wire.MsgExec, func(_ context.Context, st *transport.Stream, payload []byte) error {
		req, err := wire.DecodeExecRequest(payload)
		if err != nil || req.Command == "" {
			return nil // closed without an answer, as by a qbee agent
		}
		// A command whose stream ends without its exit frame.
		if err := wire.WriteOK(st, nil); err != nil {
			return err
		}
		frame, err := wire.AppendExecFrame(nil, wire.ExecStdout, []byte("partial\n"))
		if err != nil {
			return err
		}
		// Input the client sends after this end is answered with a
		// reset, which must not cut the output before it.
		_, err = st.Write(frame)
		return err
	})
	require.NoError(t, dc.Start(context.Background()))
	t.Cleanup(func() { dc.Close() })
	f.waitListed(id)
	return rd
}

func (rd *rawDevice) opened() []wire.PTYCommand {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	return append([]wire.PTYCommand(nil), rd.ptys...)
}

func TestShellOnRawDevice(t *testing.T) {
	f := newFleet(t)
	rd := f.addRawDevice(t, "q1")

	// Without a terminal tether asks for an exec stream; the device does
	// not answer, so it falls back to a terminal of 80x24. The device
	// answers the status query with an Error: the status is unknown.
	out, errOut, code := f.tether("", "shell", "q1")
	require.Equal(t, ExitStatusUnknown, code, errOut)
	require.Contains(t, out, "raw-device-output")
	require.Contains(t, errOut, "does not run commands without a terminal")
	require.Contains(t, errOut, "tether: exit status unknown: device q1 did not report it (it answered: unsupported PTY command: 1)")
	got := rd.opened()
	require.Len(t, got, 1)
	require.Equal(t, [2]int{80, 24}, [2]int{got[0].Cols, got[0].Rows}, "the first PTY message of a pipe-mode shell")

	// An exec stream that ends without its exit frame.
	out, errOut, code = f.tether("", "exec", "q1", "--", "anything")
	require.Equal(t, ExitStatusUnknown, code, errOut)
	require.Equal(t, "partial\n", out)
	require.Contains(t, errOut, "tether: exit status unknown: the remote command ended without an exit status")

	// With -T there is no fallback.
	_, errOut, code = f.tether("", "shell", "-T", "q1")
	require.Equal(t, ExitRemote, code, errOut)
	require.Contains(t, errOut, "closed the stream without answering")
	require.Len(t, rd.opened(), 1)
}

// TestShellEscape runs tether shell on a real terminal: ~? lists the
// escapes, and ~. ends the session at once on an edge that is frozen
// (SIGSTOP), where Ctrl-C and Ctrl-D only reach the stalled stream.
func TestShellEscape(t *testing.T) {
	f := newFleet(t)
	f.addAgent("d1", "")
	m, dir := shellInTmux(t, f)

	_, err := m.run("send-keys", "-t", "s", "Enter")
	require.NoError(t, err)
	_, err = m.run("send-keys", "-t", "s", "-l", "~?")
	require.NoError(t, err)
	m.wait("~? did not list the escapes", func(p string) bool { return strings.Contains(p, "close the session at once") })

	require.NoError(t, syscall.Kill(f.edge.Pid(), syscall.SIGSTOP))
	t.Cleanup(func() { _ = syscall.Kill(f.edge.Pid(), syscall.SIGCONT) })
	_, err = m.run("send-keys", "-t", "s", "C-c", "C-d", "Enter")
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(dir, "code"))
	require.ErrorIs(t, err, os.ErrNotExist, "tether exited on Ctrl-C or Ctrl-D")
	_, err = m.run("send-keys", "-t", "s", "-l", "~.")
	require.NoError(t, err)
	require.Equal(t, "255", finished(t, m, dir))
	m.wait("no message for ~.", func(p string) bool { return strings.Contains(p, "closed with the escape ~.") })
}

// With -e none, ~. is sent to the device like any other bytes.
func TestShellEscapeNone(t *testing.T) {
	f := newFleet(t)
	f.addAgent("d1", "")
	m, dir := shellInTmux(t, f, "shell", "-e", "none", "d1")
	_, err := m.run("send-keys", "-t", "s", "-l", "~.")
	require.NoError(t, err)
	_, err = m.run("send-keys", "-t", "s", "Enter", "echo still-$((6*7))", "Enter")
	require.NoError(t, err)
	m.wait("the shell did not go on after ~.", func(p string) bool { return strings.Contains(p, "still-42") })
	m.wait("~. did not reach the device", func(p string) bool { return strings.Contains(p, "~.: not found") })
	_, err = m.run("send-keys", "-t", "s", "exit 4", "Enter")
	require.NoError(t, err)
	require.Equal(t, "4", finished(t, m, dir))
}

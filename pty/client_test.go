//go:build linux

package pty_test

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/internal/testbroker"
	"github.com/tetherhq/tether/pty"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// The tests of the client half (Open, Resize, SendEOF, WaitExit) run
// against a device with hand-written PTY handlers, on the shared test
// broker: they check what reaches the device, byte for byte, and how the
// client copes with devices that answer otherwise than ours.

// fakePTYDevice is a device whose PTY handlers record what they receive.
type fakePTYDevice struct {
	mu sync.Mutex
	// mu guards the following.
	opened   []wire.PTYCommand
	commands []wire.PTYCommand
	input    []byte
	// statuses are answered to status commands in turn; the last repeats.
	statuses []string
}

func (d *fakePTYDevice) handlers() map[wire.MsgType]device.Handler {
	return map[wire.MsgType]device.Handler{
		wire.MsgPTY: func(_ context.Context, st *transport.Stream, payload []byte) error {
			c, err := wire.DecodePTYCommand(payload)
			if err != nil {
				_ = wire.WriteError(st, err.Error())
				return nil
			}
			d.mu.Lock()
			d.opened = append(d.opened, c)
			d.mu.Unlock()
			_ = wire.WriteOK(st, []byte("0123456789abcdef0123456789abcdef"))
			_, _ = st.Write([]byte("$ "))
			in, _ := io.ReadAll(st)
			d.mu.Lock()
			d.input = in
			d.mu.Unlock()
			return nil
		},
		wire.MsgPTYCommand: func(_ context.Context, st *transport.Stream, payload []byte) error {
			c, err := wire.DecodePTYCommand(payload)
			if err != nil {
				_ = wire.WriteError(st, err.Error())
				return nil
			}
			d.mu.Lock()
			defer d.mu.Unlock()
			d.commands = append(d.commands, c)
			if c.Type == wire.PTYStatus {
				s := d.statuses[0]
				if len(d.statuses) > 1 {
					d.statuses = d.statuses[1:]
				}
				_ = wire.WriteOK(st, []byte(s))
				return nil
			}
			_ = wire.WriteOK(st, nil)
			return nil
		},
	}
}

func TestPTYClient(t *testing.T) {
	b := testbroker.New(t, nil)
	dev := &fakePTYDevice{statuses: []string{`{"exited":false,"code":0,"signal":""}`, `{"exited":false,"code":0,"signal":""}`, `{"exited":true,"code":3,"signal":""}`}}
	b.StartDevice(t, nil, dev.handlers())
	cl := b.DialClient(t, nil)
	ctx := testbroker.Ctx(t)

	p, err := pty.Open(ctx, cl, pty.Request{Cols: 100, Rows: 30, Command: "sh", Args: []string{"-c", "x"}, Term: "screen"})
	require.NoError(t, err)
	require.Equal(t, "0123456789abcdef0123456789abcdef", p.ID)
	prompt := make([]byte, 2)
	_, err = io.ReadFull(p, prompt)
	require.NoError(t, err)
	require.Equal(t, "$ ", string(prompt))

	require.NoError(t, pty.Resize(ctx, cl, p.ID, 90, 20))
	_, err = p.Write([]byte("ls"))
	require.NoError(t, err)
	require.NoError(t, p.SendEOF()) // after a partial line: two EOF characters
	_, err = p.Write([]byte("\n"))
	require.NoError(t, err)
	require.NoError(t, p.SendEOF()) // after a newline: one
	require.NoError(t, p.CloseWrite())
	_, err = io.ReadAll(p)
	require.NoError(t, err)
	p.Close()

	es, err := pty.WaitExit(ctx, cl, p.ID)
	require.NoError(t, err)
	require.Equal(t, wire.ExitStatus{Exited: true, Code: 3}, es)

	dev.mu.Lock()
	defer dev.mu.Unlock()
	require.Equal(t, []wire.PTYCommand{{Cols: 100, Rows: 30, Command: "sh", CommandArgs: []string{"-c", "x"}, Term: "screen"}}, dev.opened)
	require.Equal(t, "ls\x04\x04\n\x04", string(dev.input))
	require.Len(t, dev.commands, 4, "one resize and three status queries (two while running)")
	require.Equal(t, wire.PTYCommand{SID: p.ID, Type: wire.PTYResize, Cols: 90, Rows: 20, CommandArgs: []string{}}, dev.commands[0])
	for _, c := range dev.commands[1:] {
		require.Equal(t, wire.PTYStatus, c.Type)
		require.Equal(t, p.ID, c.SID)
	}
}

// TestPTYExitStatusOldDevices checks how the client copes with devices that
// do not know the exit-status extension.
func TestPTYExitStatusOldDevices(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler device.Handler // nil: no 0x13 handler at all
		check   func(t *testing.T, err error)
	}{
		{"closes without answering", func(context.Context, *transport.Stream, []byte) error { return nil },
			func(t *testing.T, err error) { require.ErrorIs(t, err, pty.ErrExitStatusUnsupported) }},
		{"answers OK without a status", func(_ context.Context, st *transport.Stream, _ []byte) error {
			_ = wire.WriteOK(st, nil)
			return nil
		},
			func(t *testing.T, err error) { require.ErrorIs(t, err, pty.ErrExitStatusUnsupported) }},
		{"answers Error", func(_ context.Context, st *transport.Stream, _ []byte) error {
			_ = wire.WriteError(st, "unknown command type")
			return nil
		},
			func(t *testing.T, err error) {
				var re *wire.RemoteError
				require.ErrorAs(t, err, &re)
				require.Equal(t, "unknown command type", re.Reason)
			}},
		{"answers OK with junk", func(_ context.Context, st *transport.Stream, _ []byte) error {
			_ = wire.WriteOK(st, []byte("ok"))
			return nil
		},
			func(t *testing.T, err error) { require.ErrorIs(t, err, wire.ErrInvalidExitStatus) }},
		{"has no PTY command handler", nil,
			func(t *testing.T, err error) {
				var re *wire.RemoteError
				require.ErrorAs(t, err, &re)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := testbroker.New(t, nil)
			handlers := map[wire.MsgType]device.Handler{}
			if tc.handler != nil {
				handlers[wire.MsgPTYCommand] = tc.handler
			}
			b.StartDevice(t, nil, handlers)
			cl := b.DialClient(t, nil)
			_, err := pty.WaitExit(testbroker.Ctx(t), cl, "0123456789abcdef0123456789abcdef")
			require.Error(t, err)
			tc.check(t, err)
		})
	}
}

func TestOpenPTYRejectsBadRequests(t *testing.T) {
	b := testbroker.New(t, nil)
	dev := &fakePTYDevice{}
	b.StartDevice(t, nil, dev.handlers())
	cl := b.DialClient(t, nil)
	ctx := testbroker.Ctx(t)
	for name, req := range map[string]pty.Request{
		"bad TERM":          {Term: "x;rm -rf"},
		"too wide":          {Cols: 70000, Rows: 1},
		"args, no command":  {Args: []string{"x"}},
		"NUL in an arg":     {Command: "sh", Args: []string{"a\x00"}},
		"does not fit 64 K": {Command: "sh", Args: []string{strings.Repeat("a", 70000)}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := pty.Open(ctx, cl, req)
			require.ErrorIs(t, err, wire.ErrInvalidPTYCommand)
		})
	}
	require.ErrorIs(t, pty.Resize(ctx, cl, "sid", 0, 10), wire.ErrInvalidPTYCommand)
	require.ErrorIs(t, pty.Resize(ctx, cl, "", 10, 10), wire.ErrInvalidPTYCommand)
	_, err := pty.Status(ctx, cl, "")
	require.ErrorIs(t, err, wire.ErrInvalidPTYCommand)
	dev.mu.Lock()
	defer dev.mu.Unlock()
	require.Empty(t, dev.opened, "nothing invalid reaches the device")
	require.Empty(t, dev.commands)
}

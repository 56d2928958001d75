package transport_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/transport"
)

func TestPTYCommandWireForm(t *testing.T) {
	for _, tc := range []struct {
		name string
		cmd  transport.PTYCommand
		want string
	}{
		{"open a shell", transport.PTYCommand{Cols: 120, Rows: 40},
			`{"sid":"","type":0,"cols":120,"rows":40,"command":"","command_args":[]}`},
		{"open a command with TERM", transport.PTYCommand{Cols: 80, Rows: 24, Command: "top", CommandArgs: []string{"-d", "1"}, Term: "vt100"},
			`{"sid":"","type":0,"cols":80,"rows":24,"command":"top","command_args":["-d","1"],"term":"vt100"}`},
		{"status", transport.PTYCommand{SID: "ab12", Type: transport.PTYStatus},
			`{"sid":"ab12","type":1,"cols":0,"rows":0,"command":"","command_args":[]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.cmd.Encode()
			require.NoError(t, err)
			require.Equal(t, tc.want, string(b))
			back, err := transport.DecodePTYCommand(b)
			require.NoError(t, err)
			if tc.cmd.CommandArgs == nil {
				tc.cmd.CommandArgs = []string{}
			}
			require.Equal(t, tc.cmd, back)
		})
	}
}

func TestDecodePTYCommand(t *testing.T) {
	got, err := transport.DecodePTYCommand([]byte(`{"sid":"s","type":0,"cols":1,"rows":2,"future":{"x":1}}`))
	require.NoError(t, err, "unknown fields are ignored")
	require.Equal(t, transport.PTYCommand{SID: "s", Cols: 1, Rows: 2}, got)

	for name, in := range map[string]string{
		"not JSON":          `{"sid":`,
		"wrong field type":  `{"cols":"wide"}`,
		"negative cols":     `{"cols":-1}`,
		"too many rows":     `{"rows":65536}`,
		"negative type":     `{"type":-1}`,
		"sid with spaces":   `{"sid":"a b"}`,
		"long sid":          `{"sid":"` + strings.Repeat("a", 129) + `"}`,
		"NUL in command":    `{"command":"sh\u0000"}`,
		"args without cmd":  `{"command_args":["x"]}`,
		"TERM with a space": `{"term":"xterm 256"}`,
		"TERM with newline": `{"term":"xterm\n"}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := transport.DecodePTYCommand([]byte(in))
			require.ErrorIs(t, err, transport.ErrInvalidPTYCommand)
		})
	}
}

func FuzzDecodePTYCommand(f *testing.F) {
	f.Add([]byte(`{"sid":"","type":0,"cols":120,"rows":40,"command":"","command_args":[]}`))
	f.Add([]byte(`{"sid":"ab","type":1,"term":"vt100","command":"ls","command_args":["-l"]}`))
	f.Add([]byte(`{"cols":1e9}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := transport.DecodePTYCommand(b)
		if err != nil {
			return
		}
		enc, err := c.Encode()
		if err != nil {
			if errors.Is(err, transport.ErrInvalidPTYCommand) {
				return // a valid command may not fit a message once re-encoded
			}
			t.Fatalf("encode %+v: %v", c, err)
		}
		back, err := transport.DecodePTYCommand(enc)
		require.NoError(t, err)
		if c.CommandArgs == nil {
			c.CommandArgs = []string{}
		}
		require.Equal(t, c, back)
	})
}

func TestExitStatusWireForm(t *testing.T) {
	for _, tc := range []struct {
		es   transport.ExitStatus
		want string
		text string
	}{
		{transport.ExitStatus{Exited: true, Code: 7}, `{"exited":true,"code":7,"signal":""}`, "exit code 7"},
		{transport.ExitStatus{Exited: true, Code: 137, Signal: "KILL"}, `{"exited":true,"code":137,"signal":"KILL"}`, "killed by signal KILL"},
		{transport.ExitStatus{}, `{"exited":false,"code":0,"signal":""}`, "running"},
	} {
		b, err := tc.es.Encode()
		require.NoError(t, err)
		require.Equal(t, tc.want, string(b))
		require.Equal(t, tc.text, tc.es.String())
		back, err := transport.DecodeExitStatus(b)
		require.NoError(t, err)
		require.Equal(t, tc.es, back)
	}
	for _, bad := range []string{`{"exited":true,"code":256}`, `{"exited":true,"code":-1}`,
		`{"exited":true,"signal":"kill"}`, `{"exited":false,"code":3}`, `nope`, `{"exited":"yes"}`} {
		_, err := transport.DecodeExitStatus([]byte(bad))
		require.ErrorIs(t, err, transport.ErrInvalidExitStatus, bad)
	}
}

func FuzzDecodeExitStatus(f *testing.F) {
	f.Add([]byte(`{"exited":true,"code":7,"signal":""}`))
	f.Add([]byte(`{"exited":true,"code":137,"signal":"KILL"}`))
	f.Add([]byte(`{"exited":false}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := transport.DecodeExitStatus(b)
		if err != nil {
			return
		}
		enc, err := s.Encode()
		require.NoError(t, err)
		back, err := transport.DecodeExitStatus(enc)
		require.NoError(t, err)
		require.Equal(t, s, back)
	})
}

// fakePTYDevice is a device whose PTY handlers record what they receive.
type fakePTYDevice struct {
	mu sync.Mutex
	// mu guards the following.
	opened   []transport.PTYCommand
	commands []transport.PTYCommand
	input    []byte
	// statuses are answered to status commands in turn; the last repeats.
	statuses []string
}

func (d *fakePTYDevice) handlers() map[transport.MsgType]transport.Handler {
	return map[transport.MsgType]transport.Handler{
		transport.MsgPTY: func(_ context.Context, st *transport.Stream, payload []byte) {
			c, err := transport.DecodePTYCommand(payload)
			if err != nil {
				_ = transport.WriteError(st, err.Error())
				return
			}
			d.mu.Lock()
			d.opened = append(d.opened, c)
			d.mu.Unlock()
			_ = transport.WriteOK(st, []byte("0123456789abcdef0123456789abcdef"))
			_, _ = st.Write([]byte("$ "))
			in, _ := io.ReadAll(st)
			d.mu.Lock()
			d.input = in
			d.mu.Unlock()
		},
		transport.MsgPTYCommand: func(_ context.Context, st *transport.Stream, payload []byte) {
			c, err := transport.DecodePTYCommand(payload)
			if err != nil {
				_ = transport.WriteError(st, err.Error())
				return
			}
			d.mu.Lock()
			defer d.mu.Unlock()
			d.commands = append(d.commands, c)
			if c.Type == transport.PTYStatus {
				s := d.statuses[0]
				if len(d.statuses) > 1 {
					d.statuses = d.statuses[1:]
				}
				_ = transport.WriteOK(st, []byte(s))
				return
			}
			_ = transport.WriteOK(st, nil)
		},
	}
}

func TestPTYClient(t *testing.T) {
	b, pki := newBroker(t, nil)
	dev := &fakePTYDevice{statuses: []string{`{"exited":false,"code":0,"signal":""}`, `{"exited":false,"code":0,"signal":""}`, `{"exited":true,"code":3,"signal":""}`}}
	startDevice(t, b, pki, nil, dev.handlers())
	cl := dialClient(t, b, pki, nil)
	ctx := testCtx(t)

	p, err := cl.OpenPTY(ctx, transport.PTYRequest{Cols: 100, Rows: 30, Command: "sh", Args: []string{"-c", "x"}, Term: "screen"})
	require.NoError(t, err)
	require.Equal(t, "0123456789abcdef0123456789abcdef", p.ID)
	prompt := make([]byte, 2)
	_, err = io.ReadFull(p, prompt)
	require.NoError(t, err)
	require.Equal(t, "$ ", string(prompt))

	require.NoError(t, cl.ResizePTY(ctx, p.ID, 90, 20))
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

	es, err := cl.PTYExitStatus(ctx, p.ID)
	require.NoError(t, err)
	require.Equal(t, transport.ExitStatus{Exited: true, Code: 3}, es)

	dev.mu.Lock()
	defer dev.mu.Unlock()
	require.Equal(t, []transport.PTYCommand{{Cols: 100, Rows: 30, Command: "sh", CommandArgs: []string{"-c", "x"}, Term: "screen"}}, dev.opened)
	require.Equal(t, "ls\x04\x04\n\x04", string(dev.input))
	require.Len(t, dev.commands, 4, "one resize and three status queries (two while running)")
	require.Equal(t, transport.PTYCommand{SID: p.ID, Type: transport.PTYResize, Cols: 90, Rows: 20, CommandArgs: []string{}}, dev.commands[0])
	for _, c := range dev.commands[1:] {
		require.Equal(t, transport.PTYStatus, c.Type)
		require.Equal(t, p.ID, c.SID)
	}
}

// TestPTYExitStatusOldDevices checks how the client copes with devices that
// do not know the exit-status extension.
func TestPTYExitStatusOldDevices(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler transport.Handler // nil: no 0x13 handler at all
		check   func(t *testing.T, err error)
	}{
		{"closes without answering", func(context.Context, *transport.Stream, []byte) {},
			func(t *testing.T, err error) { require.ErrorIs(t, err, transport.ErrExitStatusUnsupported) }},
		{"answers OK without a status", func(_ context.Context, st *transport.Stream, _ []byte) { _ = transport.WriteOK(st, nil) },
			func(t *testing.T, err error) { require.ErrorIs(t, err, transport.ErrExitStatusUnsupported) }},
		{"answers Error", func(_ context.Context, st *transport.Stream, _ []byte) {
			_ = transport.WriteError(st, "unknown command type")
		},
			func(t *testing.T, err error) {
				var re *transport.RemoteError
				require.ErrorAs(t, err, &re)
				require.Equal(t, "unknown command type", re.Reason)
			}},
		{"answers OK with junk", func(_ context.Context, st *transport.Stream, _ []byte) { _ = transport.WriteOK(st, []byte("ok")) },
			func(t *testing.T, err error) { require.ErrorIs(t, err, transport.ErrInvalidExitStatus) }},
		{"has no PTY command handler", nil,
			func(t *testing.T, err error) {
				var re *transport.RemoteError
				require.ErrorAs(t, err, &re)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, pki := newBroker(t, nil)
			handlers := map[transport.MsgType]transport.Handler{}
			if tc.handler != nil {
				handlers[transport.MsgPTYCommand] = tc.handler
			}
			startDevice(t, b, pki, nil, handlers)
			cl := dialClient(t, b, pki, nil)
			_, err := cl.PTYExitStatus(testCtx(t), "0123456789abcdef0123456789abcdef")
			require.Error(t, err)
			tc.check(t, err)
		})
	}
}

func TestOpenPTYRejectsBadRequests(t *testing.T) {
	b, pki := newBroker(t, nil)
	dev := &fakePTYDevice{}
	startDevice(t, b, pki, nil, dev.handlers())
	cl := dialClient(t, b, pki, nil)
	ctx := testCtx(t)
	for name, req := range map[string]transport.PTYRequest{
		"bad TERM":          {Term: "x;rm -rf"},
		"too wide":          {Cols: 70000, Rows: 1},
		"args, no command":  {Args: []string{"x"}},
		"NUL in an arg":     {Command: "sh", Args: []string{"a\x00"}},
		"does not fit 64 K": {Command: "sh", Args: []string{strings.Repeat("a", 70000)}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := cl.OpenPTY(ctx, req)
			require.ErrorIs(t, err, transport.ErrInvalidPTYCommand)
		})
	}
	require.ErrorIs(t, cl.ResizePTY(ctx, "sid", 0, 10), transport.ErrInvalidPTYCommand)
	require.ErrorIs(t, cl.ResizePTY(ctx, "", 10, 10), transport.ErrInvalidPTYCommand)
	_, err := cl.PTYStatus(ctx, "")
	require.ErrorIs(t, err, transport.ErrInvalidPTYCommand)
	dev.mu.Lock()
	defer dev.mu.Unlock()
	require.Empty(t, dev.opened, "nothing invalid reaches the device")
	require.Empty(t, dev.commands)
}

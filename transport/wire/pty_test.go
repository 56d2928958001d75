package wire_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tetherhq/tether/transport/wire"
)

func TestPTYCommandWireForm(t *testing.T) {
	for _, tc := range []struct {
		name string
		cmd  wire.PTYCommand
		want string
	}{
		{"open a shell", wire.PTYCommand{Cols: 120, Rows: 40},
			`{"sid":"","type":0,"cols":120,"rows":40,"command":"","command_args":[]}`},
		{"open a command with TERM", wire.PTYCommand{Cols: 80, Rows: 24, Command: "top", CommandArgs: []string{"-d", "1"}, Term: "vt100"},
			`{"sid":"","type":0,"cols":80,"rows":24,"command":"top","command_args":["-d","1"],"term":"vt100"}`},
		{"status", wire.PTYCommand{SID: "ab12", Type: wire.PTYStatus},
			`{"sid":"ab12","type":1,"cols":0,"rows":0,"command":"","command_args":[]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.cmd.Encode()
			require.NoError(t, err)
			require.Equal(t, tc.want, string(b))
			back, err := wire.DecodePTYCommand(b)
			require.NoError(t, err)
			if tc.cmd.CommandArgs == nil {
				tc.cmd.CommandArgs = []string{}
			}
			require.Equal(t, tc.cmd, back)
		})
	}
}

func TestDecodePTYCommand(t *testing.T) {
	got, err := wire.DecodePTYCommand([]byte(`{"sid":"s","type":0,"cols":1,"rows":2,"future":{"x":1}}`))
	require.NoError(t, err, "unknown fields are ignored")
	require.Equal(t, wire.PTYCommand{SID: "s", Cols: 1, Rows: 2}, got)

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
			_, err := wire.DecodePTYCommand([]byte(in))
			require.ErrorIs(t, err, wire.ErrInvalidPTYCommand)
		})
	}
}

func FuzzDecodePTYCommand(f *testing.F) {
	f.Add([]byte(`{"sid":"","type":0,"cols":120,"rows":40,"command":"","command_args":[]}`))
	f.Add([]byte(`{"sid":"ab","type":1,"term":"vt100","command":"ls","command_args":["-l"]}`))
	f.Add([]byte(`{"cols":1e9}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := wire.DecodePTYCommand(b)
		if err != nil {
			return
		}
		enc, err := c.Encode()
		if err != nil {
			if errors.Is(err, wire.ErrInvalidPTYCommand) {
				return // a valid command may not fit a message once re-encoded
			}
			t.Fatalf("encode %+v: %v", c, err)
		}
		back, err := wire.DecodePTYCommand(enc)
		require.NoError(t, err)
		if c.CommandArgs == nil {
			c.CommandArgs = []string{}
		}
		require.Equal(t, c, back)
	})
}

func TestExitStatusWireForm(t *testing.T) {
	for _, tc := range []struct {
		es   wire.ExitStatus
		want string
		text string
	}{
		{wire.ExitStatus{Exited: true, Code: 7}, `{"exited":true,"code":7,"signal":""}`, "exit code 7"},
		{wire.ExitStatus{Exited: true, Code: 137, Signal: "KILL"}, `{"exited":true,"code":137,"signal":"KILL"}`, "killed by signal KILL"},
		{wire.ExitStatus{}, `{"exited":false,"code":0,"signal":""}`, "running"},
	} {
		b, err := tc.es.Encode()
		require.NoError(t, err)
		require.Equal(t, tc.want, string(b))
		require.Equal(t, tc.text, tc.es.String())
		back, err := wire.DecodeExitStatus(b)
		require.NoError(t, err)
		require.Equal(t, tc.es, back)
	}
	for _, bad := range []string{`{"exited":true,"code":256}`, `{"exited":true,"code":-1}`,
		`{"exited":true,"signal":"kill"}`, `{"exited":false,"code":3}`, `nope`, `{"exited":"yes"}`} {
		_, err := wire.DecodeExitStatus([]byte(bad))
		require.ErrorIs(t, err, wire.ErrInvalidExitStatus, bad)
	}
}

func FuzzDecodeExitStatus(f *testing.F) {
	f.Add([]byte(`{"exited":true,"code":7,"signal":""}`))
	f.Add([]byte(`{"exited":true,"code":137,"signal":"KILL"}`))
	f.Add([]byte(`{"exited":false}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := wire.DecodeExitStatus(b)
		if err != nil {
			return
		}
		enc, err := s.Encode()
		require.NoError(t, err)
		back, err := wire.DecodeExitStatus(enc)
		require.NoError(t, err)
		require.Equal(t, s, back)
	})
}

//go:build linux

package pty_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/pty"
	"github.com/tetherhq/tether/transport/wire"
)

// The zero Server works: it refuses shells, as a zero Config says, and
// answers PTY commands; one closed before its first stream refuses with
// the shutdown error.
func TestZeroServer(t *testing.T) {
	for _, tc := range []struct {
		name      string
		closeNow  bool
		wantShell string
	}{
		{"zero value", false, "disabled"},
		{"closed before use", true, "shutting down"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl, dc, _ := mock.NewEdgeMock(t)
			var srv pty.Server
			dc.Handle(wire.MsgPTY, srv.ServePTY)
			dc.Handle(wire.MsgPTYCommand, srv.ServeCommand)
			t.Cleanup(func() { require.NoError(t, srv.Close()) })
			if tc.closeNow {
				require.NoError(t, srv.Close())
			}
			_, err := pty.Open(ctxT(t), cl, pty.Request{})
			require.Contains(t, remoteErr(t, err), tc.wantShell)
			err = pty.Resize(ctxT(t), cl, "0123456789abcdef0123456789abcdef", 80, 24)
			require.Contains(t, remoteErr(t, err), "no such shell session")
			require.Zero(t, srv.NumSessions())
		})
	}
}

package transport_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/internal/testbroker"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// TestResetReasonTravels: a reset's reason reaches the reader, and a
// relay passes it on unchanged, so it crosses every hop.
func TestResetReasonTravels(t *testing.T) {
	b := testbroker.New(t, nil)
	release := make(chan struct{})
	b.StartDevice(t, nil, map[wire.MsgType]device.Handler{
		wire.MsgPTY: func(ctx context.Context, st *transport.Stream, _ []byte) error {
			_ = wire.WriteOK(st, nil)
			_, _ = st.Write([]byte("before"))
			<-release
			return st.AbortWith("lost the connection to edge edge-2")
		},
	})
	cl := b.DialClient(t, nil)
	st, _, err := cl.OpenStream(testCtx(t), wire.MsgPTY, nil)
	require.NoError(t, err)
	defer st.Close()
	close(release)
	got, err := io.ReadAll(st)
	require.Equal(t, "before", string(got))
	var re *transport.ResetError
	require.ErrorAs(t, err, &re)
	require.Equal(t, "lost the connection to edge edge-2", re.Reason)
	require.ErrorIs(t, err, transport.ErrStreamReset)
}

// TestResetReasonBounds: a reason is read whole even when it arrives in
// pieces; one longer than MaxResetReason breaks the protocol.
func TestResetReasonBounds(t *testing.T) {
	us, pki := newUpgradeServer(t, nil)
	p := rawDial(t, us.addr, pki)
	p.Upgrade("/client/d1")
	s := us.session(t)
	reason := []byte("cut on the device's side")
	rst := frame(2, cmdRST, 3, reason)
	p.Write(frame(2, cmdSYN, 3, nil), rst[:5])
	st, err := s.Accept()
	require.NoError(t, err)
	time.Sleep(20 * time.Millisecond) // the header arrives in two pieces
	p.Write(rst[5:12])
	time.Sleep(20 * time.Millisecond)
	p.Write(rst[12:])
	_, err = io.ReadAll(st)
	var re *transport.ResetError
	require.ErrorAs(t, err, &re)
	require.Equal(t, string(reason), re.Reason)
	require.NoError(t, s.Err(), "a reset with a reason is not a violation")

	p.Write(frame(2, cmdSYN, 5, nil), frame(2, cmdRST, 5, make([]byte, transport.MaxResetReason+1)))
	select {
	case <-s.Done():
	case <-time.After(waitLong):
		t.Fatal("an oversized reset reason was accepted")
	}
	require.ErrorIs(t, s.Err(), transport.ErrProtocolViolation)
}

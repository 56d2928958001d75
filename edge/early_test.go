package edge_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/tcp"
	"github.com/tetherhq/tether/transport/wire"
)

// TestOptimisticOpen: a client's first bytes go out right after the
// opening message, before the device answers (the device holds its answer
// until they are sent). Through this edge to its own device and through a
// peer edge, they reach the target intact, with a half-close right after
// them; on a refusal by the edge's policy or by the device they are
// dropped, and the client reads the refusal.
func TestOptimisticOpen(t *testing.T) {
	rig := newClusterRig(t, "e1", "e2")
	hold := make(chan struct{}, 1) // one token per tunnel the device may answer
	var reached atomic.Int64       // connections to the guarded target
	guarded := testutil.TCPServer(t, func(c *net.TCPConn) {
		reached.Add(1)
		_, _ = io.Copy(io.Discard, c)
	})
	_, guardedPort, _ := net.SplitHostPort(guarded)
	h := &tcp.Handler{Authorize: func(ctx context.Context, tg target.Target) ([]netip.Addr, error) {
		if p := tg.String(); strings.HasSuffix(p, ":"+guardedPort) {
			return nil, &wire.RemoteError{Reason: "tcp " + p + " refused by the device"}
		}
		return tcp.LoopbackOnly(ctx, tg)
	}}
	rig.device("e1", "d-1", map[wire.MsgType]device.Handler{
		wire.MsgTCP: func(ctx context.Context, st *transport.Stream, payload []byte) error {
			select {
			case <-hold:
			case <-ctx.Done():
				return nil
			}
			return h.Serve(ctx, st, payload)
		},
	})
	rig.waitEverywhere("d-1", "e1")
	echo := testutil.TCPServer(t, testutil.EchoAfterEOF)

	for _, at := range []string{"e1", "e2"} {
		cl := rig.client(at, "d-1")
		t.Run(at+"/early bytes and half-close arrive intact", func(t *testing.T) {
			st, err := cl.OpenStreamEarly(ctxT(t), wire.MsgTCP, []byte(echo), nil)
			require.NoError(t, err)
			defer st.Close()
			msg := strings.Repeat("abcdefghijklmnopqrstuvwxyz", 10_000) // 260 kB, inside the window
			_, err = io.WriteString(st, msg)
			require.NoError(t, err, "early bytes are written before the answer")
			require.NoError(t, st.CloseWrite())
			hold <- struct{}{} // only now may the device answer
			got, err := io.ReadAll(st)
			require.NoError(t, err)
			require.Equal(t, "echo:"+strings.ToUpper(msg), string(got))
			require.NoError(t, st.Failed())
			// The client's edge counts each byte once, early or not.
			require.Eventually(t, func() bool {
				for _, ev := range rig.edges[at].audit.Events() {
					if ev.Kind == edge.EventStreamClose && ev.Target == echo && ev.BytesUp == int64(len(msg)) {
						return true
					}
				}
				return false
			}, 10*time.Second, 10*time.Millisecond, "no close record with %d bytes up", len(msg))
		})
		t.Run(at+"/refused by the device: early bytes dropped", func(t *testing.T) {
			st, err := cl.OpenStreamEarly(ctxT(t), wire.MsgTCP, []byte(guarded), nil)
			require.NoError(t, err)
			defer st.Close()
			var told error
			st.OnAnswer(func(err error) { told = err })
			_, err = st.Write([]byte("must not arrive"))
			require.NoError(t, err)
			require.NoError(t, st.CloseWrite())
			hold <- struct{}{}
			_, err = io.ReadAll(st)
			var re *wire.RemoteError
			require.ErrorAs(t, err, &re)
			require.Contains(t, re.Reason, "refused by the device")
			require.ErrorAs(t, st.Failed(), &re)
			require.Equal(t, err, told)
			require.Zero(t, reached.Load(), "the refused tunnel reached its target")
		})
		t.Run(at+"/refused by the policy: early bytes dropped", func(t *testing.T) {
			st, err := cl.OpenStreamEarly(ctxT(t), wire.MsgTCP, []byte("10.1.2.3:80"), nil)
			require.NoError(t, err)
			defer st.Close()
			_, err = st.Write([]byte("must not arrive"))
			require.NoError(t, err)
			buf := make([]byte, 10)
			_, err = st.Read(buf)
			var re *wire.RemoteError
			require.ErrorAs(t, err, &re)
			require.Contains(t, re.Reason, "10.1.2.3:80")
		})
	}
}

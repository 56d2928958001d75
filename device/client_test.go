package device_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/internal/testbroker"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

func TestDeviceReconnectsAfterBrokerRestart(t *testing.T) {
	b := testbroker.New(t, nil)
	dc := b.StartDevice(t, nil, nil)
	target := testutil.TCPServer(t, testbroker.PatternAfterEOF)

	b.Restart()
	b.Device(t) // the device dialed the new broker by itself
	require.Eventually(t, dc.Connected, waitLong, 5*time.Millisecond)
	require.NoError(t, dc.Err())

	cl := b.DialClient(t, nil)
	n, err := testbroker.Exchange(testCtx(t), cl, target, 70_000, 9)
	require.NoError(t, err)
	require.Equal(t, 70_000, n)
}

// TestDeviceGoAwayDrain: after a GoAway the device reconnects at once, while
// the old session lets its open stream finish and refuses new ones.
func TestDeviceGoAwayDrain(t *testing.T) {
	b := testbroker.New(t, nil)
	pki := b.PKI()
	rec, logger := testbroker.NewLogRecorder(t)
	dc := &device.Client{URL: b.DeviceURL(), TLSConfig: pki.DeviceTLS(pki.Device("d1")), Config: nil, Logger: logger}
	dc.BackoffInitial, dc.BackoffMax, dc.DrainTimeout = 10*time.Millisecond, 50*time.Millisecond, waitLong
	dc.Handle(wire.MsgTCP, testbroker.TCPHandler)
	require.NoError(t, dc.Start(context.Background()))
	defer dc.Close()
	old := b.Device(t)
	cl := b.DialClient(t, nil)
	target := testutil.TCPServer(t, testbroker.PatternAfterEOF)

	// A stream in flight: the request is sent but not finished.
	conn, _, err := cl.OpenStream(testCtx(t), wire.MsgTCP, []byte(target))
	require.NoError(t, err)
	defer conn.Close()
	req := binary.BigEndian.AppendUint32(nil, 500_000)
	_, err = conn.Write(append(req, 5))
	require.NoError(t, err)

	b.GoAway(t)
	require.Eventually(t, func() bool { return rec.Count(slog.LevelInfo, "GoAway") == 1 }, waitLong, 5*time.Millisecond)

	// The device is back on a new session while the old one drains.
	b.Device(t)
	require.Eventually(t, func() bool { return rec.Count(slog.LevelWarn, "disconnected from edge") == 1 && dc.Connected() },
		waitLong, 5*time.Millisecond)

	// A stream opened on the draining session is refused with a reason.
	st, err := old.Open()
	require.NoError(t, err)
	defer st.Close()
	require.NoError(t, wire.WriteMessage(st, wire.MsgTCP, []byte(target)))
	_, err = wire.ExpectOK(st)
	var re *wire.RemoteError
	require.ErrorAs(t, err, &re)
	require.Contains(t, re.Reason, "reconnecting")

	// The drain lets the in-flight stream complete.
	require.NoError(t, conn.CloseWrite())
	got, err := io.ReadAll(conn)
	require.NoError(t, err)
	require.Equal(t, testbroker.Pattern(5, 500_000), got)
}

func TestDeviceAnswers(t *testing.T) {
	b := testbroker.New(t, nil)
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	handlers := map[wire.MsgType]device.Handler{
		wire.MsgReload: func(ctx context.Context, st *transport.Stream, payload []byte) error {
			panic("reload exploded")
		},
		// PTY: answers OK, then holds the stream until released.
		wire.MsgPTY: func(ctx context.Context, st *transport.Stream, payload []byte) error {
			_ = wire.WriteOK(st, []byte("sid"))
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		},
	}
	b.StartDevice(t, &transport.Config{MaxStreams: 2}, handlers)
	cl := b.DialClient(t, nil)
	ctx := testCtx(t)

	t.Run("unknown type", func(t *testing.T) {
		_, _, err := cl.OpenStream(ctx, 0x7e, nil)
		var re *wire.RemoteError
		require.ErrorAs(t, err, &re)
		require.Equal(t, "unsupported stream type 0x7e", re.Reason)
	})
	t.Run("known type without handler", func(t *testing.T) {
		_, _, err := cl.OpenStream(ctx, wire.MsgFileTransfer, []byte(`{"direction":0,"path":"/"}`))
		var re *wire.RemoteError
		require.ErrorAs(t, err, &re)
		require.Equal(t, "unsupported stream type 0x20", re.Reason)
	})
	t.Run("handler panic", func(t *testing.T) {
		err := cl.Reload(ctx)
		var re *wire.RemoteError
		require.ErrorAs(t, err, &re)
		require.Contains(t, re.Reason, "internal error in the Reload handler")
		// The device is still serving.
		_, _, err = cl.OpenStream(ctx, 0x7e, nil)
		require.ErrorAs(t, err, &re)
	})
	t.Run("stream cap", func(t *testing.T) {
		var held []*transport.Stream
		for range 2 {
			st, ok, err := cl.OpenStream(ctx, wire.MsgPTY, nil)
			require.NoError(t, err)
			require.Equal(t, "sid", string(ok))
			held = append(held, st)
		}
		_, _, err := cl.OpenStream(ctx, wire.MsgPTY, nil)
		var re *wire.RemoteError
		require.ErrorAs(t, err, &re)
		require.Equal(t, "too many streams: this device allows 2 at once", re.Reason)

		once.Do(func() { close(release) })
		for _, st := range held {
			_, err := io.ReadAll(st) // the device closes them
			require.NoError(t, err)
			st.Close()
		}
		// Capacity is back.
		require.Eventually(t, func() bool {
			st, _, err := cl.OpenStream(ctx, wire.MsgPTY, nil)
			if err == nil {
				st.Close()
			}
			return err == nil
		}, waitLong, 10*time.Millisecond)
	})
}

// TestDeviceRawEdge drives a DeviceClient from a hand-written edge.
func TestDeviceRawEdge(t *testing.T) {
	pki := certstest.New(t)
	e := testbroker.NewRawEdge(t, pki)
	dc := &device.Client{URL: e.URL, TLSConfig: pki.DeviceTLS(pki.Device("d1")), Config: nil, Logger: testbroker.Logger(t)}
	dc.Handle(wire.MsgTCP, testbroker.TCPHandler)
	require.NoError(t, dc.Start(context.Background()))
	defer dc.Close()
	p, req := e.Accept(t)
	require.Empty(t, req.Header.Get("Authorization"), "a device never sends Authorization")
	select {
	case <-dc.Ready():
	case <-time.After(waitLong):
		t.Fatal("device not ready")
	}

	t.Run("unknown type", func(t *testing.T) {
		p.Write(testbroker.Frame(2, testbroker.CmdSYN, 2, nil), testbroker.Frame(2, testbroker.CmdPSH, 2, testbroker.Msg(0x7f, []byte("??"))))
		data := p.ReadStream(2)
		m, err := wire.ReadMessage(strings.NewReader(string(data)))
		require.NoError(t, err)
		require.Equal(t, wire.MsgError, m.Type)
		require.Equal(t, "unsupported stream type 0x7f", string(m.Payload))
	})
	t.Run("truncated header", func(t *testing.T) {
		p.Write(testbroker.Frame(2, testbroker.CmdSYN, 4, nil), testbroker.Frame(2, testbroker.CmdPSH, 4, []byte{0x10, 0}), testbroker.Frame(2, testbroker.CmdFIN, 4, nil))
		require.Empty(t, p.ReadStream(4), "no answer to half a header")
	})
	t.Run("oversized length", func(t *testing.T) {
		// The length claims 65535 bytes; 10 arrive before the FIN.
		p.Write(testbroker.Frame(2, testbroker.CmdSYN, 6, nil), testbroker.Frame(2, testbroker.CmdPSH, 6, append([]byte{0x10, 0xff, 0xff}, "127.0.0.1:"...)), testbroker.Frame(2, testbroker.CmdFIN, 6, nil))
		require.Empty(t, p.ReadStream(6), "no answer to a truncated message")
	})
	t.Run("split header", func(t *testing.T) {
		// Header and payload in separate frames, as existing edges write them.
		m := testbroker.Msg(wire.MsgTCP, []byte(testutil.ClosedAddr(t)))
		p.Write(testbroker.Frame(2, testbroker.CmdSYN, 8, nil), testbroker.Frame(2, testbroker.CmdPSH, 8, m[:1]), testbroker.Frame(2, testbroker.CmdPSH, 8, m[1:3]), testbroker.Frame(2, testbroker.CmdPSH, 8, m[3:]))
		data := p.ReadStream(8)
		ans, err := wire.ReadMessage(strings.NewReader(string(data)))
		require.NoError(t, err)
		require.Equal(t, wire.MsgError, ans.Type)
		require.Contains(t, string(ans.Payload), "connection refused")
	})
}

// TestDeviceLogsFailuresOnce: a device that cannot reach the edge says so
// once, then retries quietly.
func TestDeviceLogsFailuresOnce(t *testing.T) {
	pki := certstest.New(t)
	addr := testutil.ClosedAddr(t)
	rec, logger := testbroker.NewLogRecorder(t)
	dc := &device.Client{URL: "https://" + addr + "/device", TLSConfig: pki.DeviceTLS(pki.Device("d1")), Config: nil, Logger: logger}
	dc.BackoffInitial, dc.BackoffMax = time.Millisecond, 5*time.Millisecond
	require.NoError(t, dc.Start(context.Background()))
	require.Eventually(t, func() bool { return rec.Count(slog.LevelDebug, "still cannot reach edge") >= 3 }, waitLong, 5*time.Millisecond)
	require.NoError(t, dc.Close())
	require.Equal(t, 1, rec.Count(slog.LevelWarn, "cannot reach edge"))
	require.ErrorIs(t, dc.Err(), device.ErrClosed)
	require.False(t, dc.Connected())
}

// TestDeviceCloseCutsHandlers: Close ends handler contexts, cuts their
// streams and waits for them.
func TestDeviceCloseCutsHandlers(t *testing.T) {
	b := testbroker.New(t, nil)
	entered := make(chan struct{})
	exited := make(chan struct{})
	dc := b.StartDevice(t, nil, map[wire.MsgType]device.Handler{
		wire.MsgPTY: func(ctx context.Context, st *transport.Stream, payload []byte) error {
			defer close(exited)
			_ = wire.WriteOK(st, nil)
			close(entered)
			<-ctx.Done()
			return nil
		},
	})
	cl := b.DialClient(t, nil)
	st, _, err := cl.OpenStream(testCtx(t), wire.MsgPTY, nil)
	require.NoError(t, err)
	defer st.Close()
	<-entered
	require.NoError(t, dc.Close())
	select {
	case <-exited:
	default:
		t.Fatal("Close returned before the handler")
	}
	<-dc.Done()
	require.ErrorIs(t, dc.Err(), device.ErrClosed)
	_, err = io.ReadAll(st)
	require.ErrorIs(t, err, transport.ErrStreamReset, "the client's stream ends in error, not as if the device had finished")
}

// TestDeviceReconnectsWhileATargetIsStuck: a tunnel whose target stopped
// reading holds its handler in a write to the target. When the device then
// loses its edge, it must reconnect at once, and Close must still return:
// the stuck handler belongs to the dead session and is cut with it.
func TestDeviceReconnectsWhileATargetIsStuck(t *testing.T) {
	b := testbroker.New(t, nil)
	dc := b.StartDevice(t, nil, nil)
	cl := b.DialClient(t, nil)
	conn, _, err := cl.OpenStream(testCtx(t), wire.MsgTCP, []byte(testutil.Tarpit(t)))
	require.NoError(t, err)
	defer conn.Close()

	// Fill the path until the client's writes stall: the device's handler
	// is then blocked writing to the target.
	chunk := make([]byte, 64<<10)
	for {
		_ = conn.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := conn.Write(chunk); err != nil {
			require.ErrorIs(t, err, os.ErrDeadlineExceeded)
			break
		}
	}

	b.Restart()
	b.Device(t) // the device dialed the restarted broker
	require.Eventually(t, dc.Connected, waitLong, 5*time.Millisecond)

	closed := make(chan error, 1)
	go func() { closed <- dc.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(waitLong):
		t.Fatal("Close hangs on the handler of the lost session")
	}
}

func TestDeviceClientStartErrors(t *testing.T) {
	dc := &device.Client{URL: "", TLSConfig: nil, Config: nil, Logger: nil}
	require.ErrorContains(t, dc.Start(context.Background()), "URL is empty")
	for _, u := range []string{"edge.example.com:8443", "http://edge.example.com/device", "https:///device", "://x"} {
		dc = &device.Client{URL: u}
		err := dc.Start(context.Background())
		require.ErrorContains(t, err, "is not an https:// URL with a host", u)
		select {
		case <-dc.Done():
			t.Fatalf("Done closed after a refused Start for %q: nothing was started", u)
		default:
		}
		require.NoError(t, dc.Close(), u)
	}

	dc = &device.Client{URL: "https://127.0.0.1:1/device", TLSConfig: nil, Config: nil, Logger: nil}
	require.NoError(t, dc.Close())
	require.ErrorIs(t, dc.Start(context.Background()), device.ErrClosed, "Start after Close")
}

// TestCertRefusal: the edge's refusals of a device certificate, as a TLS
// alert or as tether-edge's 403 reasons, are told apart from other
// failures.
func TestCertRefusal(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"revoked, 403", &transport.StatusError{StatusCode: 403, Reason: "device certificate rejected: serial 0a1b is revoked"}, device.ErrCertRevoked},
		{"expired, 403", &transport.StatusError{StatusCode: 403, Reason: "device certificate rejected: x509: certificate has expired or is not yet valid: current time 2026-05-01T12:00:00Z is after 2026-04-30T12:00:00Z"}, device.ErrCertExpired},
		{"not yet valid, 403", &transport.StatusError{StatusCode: 403, Reason: "device certificate rejected: x509: certificate has expired or is not yet valid: current time 2026-05-01T12:00:00Z is before 2026-05-02T12:00:00Z"}, device.ErrCertNotYetValid},
		{"expired, TLS alert", fmt.Errorf("dial: %w", &net.OpError{Op: "remote error", Err: tls.AlertError(45)}), device.ErrCertExpired},
		{"revoked, TLS alert", fmt.Errorf("dial: %w", &net.OpError{Op: "remote error", Err: tls.AlertError(44)}), device.ErrCertRevoked},
		{"other CA, 403", &transport.StatusError{StatusCode: 403, Reason: "device certificate rejected: x509: certificate signed by unknown authority"}, nil},
		{"a 403 about something else", &transport.StatusError{StatusCode: 403, Reason: "revoked"}, nil},
		{"bad certificate alert", &net.OpError{Op: "remote error", Err: tls.AlertError(42)}, nil},
		{"unreachable", errors.New("connection refused"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, device.CertRefusal(tc.err))
		})
	}
}

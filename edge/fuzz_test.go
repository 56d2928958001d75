package edge_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// FuzzOpeningMessage drives arbitrary bytes as the opening of a client
// stream through a live broker (real TLS, a real device). Whatever the
// bytes, the edge must answer or close the stream, never hang or crash, and
// a well-formed stream must still work afterwards.
func FuzzOpeningMessage(f *testing.F) {
	msg := func(t wire.MsgType, p string) []byte {
		b := []byte{byte(t), 0, 0}
		binary.BigEndian.PutUint16(b[1:], uint16(len(p)))
		return append(b, p...)
	}
	for _, seed := range [][]byte{
		msg(wire.MsgTCP, "127.0.0.1:1"),
		msg(wire.MsgTCP, "127.1:22"),
		msg(wire.MsgTCP, "10.0.0.5:25"),
		msg(wire.MsgTCP, "[::ffff:127.0.0.1]:0x16"),
		msg(wire.MsgUDP, "0:127.0.0.1:53"),
		msg(wire.MsgUDP, "99999:127.0.0.1:53"),
		msg(wire.MsgPTY, `{"cols":80,"rows":24}`),
		msg(wire.MsgReload, ""),
		msg(wire.MsgExec, `{"command":"echo a | tr a b"}`),
		msg(wire.MsgExec, `{"command":"a\u0000"}`),
		msg(wire.MsgGoAway, ""),
		msg(0xff, "junk"),
		{byte(wire.MsgTCP), 0xff, 0xff, 'a'}, // length beyond the bytes sent
		{byte(wire.MsgTCP)},
		{},
	} {
		f.Add(seed)
	}
	// f.Log may not be called while the fuzz target runs: discard logs.
	m := newEdge(f, mock.Options{Transport: openTimeoutForFuzz, Logger: slog.New(slog.DiscardHandler)})
	dev := m.DeviceClientWithID("d-1")
	answer := func(ctx context.Context, st *transport.Stream, p []byte) error {
		_ = wire.WriteError(st, "fuzz device")
		return nil
	}
	for _, t := range []wire.MsgType{wire.MsgTCP, wire.MsgUDP, wire.MsgPTY, wire.MsgPTYCommand, wire.MsgReload, wire.MsgFileTransfer, wire.MsgExec} {
		dev.Handle(t, answer)
	}
	c := m.ClientFor("d-1")

	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := c.Session().Open()
		if err != nil {
			t.Fatalf("open stream: %v", err)
		}
		defer st.Close()
		_ = st.SetDeadline(time.Now().Add(20 * time.Second))
		if len(data) > 0 {
			if _, err := st.Write(data); err != nil {
				t.Fatalf("write: %v", err)
			}
		}
		_ = st.CloseWrite()
		m, err := wire.ReadMessage(st)
		switch {
		case err == nil:
			if m.Type != wire.MsgError && m.Type != wire.MsgOK {
				t.Fatalf("edge answered %v; want OK or Error", m.Type)
			}
		case errors.Is(err, io.EOF), errors.Is(err, wire.ErrTruncated):
			// closed without an answer: a cut-short opening message
		default:
			t.Fatalf("no answer and no close: %v", err)
		}
		// The broker is still up and answers a well-formed request.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, _, err = c.OpenStream(ctx, wire.MsgReload, nil)
		var re *wire.RemoteError
		if !errors.As(err, &re) || re.Reason != "fuzz device" {
			t.Fatalf("edge stopped answering: %v", err)
		}
	})
}

var openTimeoutForFuzz = &transport.Config{OpenTimeout: 2 * time.Second}

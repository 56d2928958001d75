package mock_test

import (
	"context"
	"io"
	"testing"

	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/tcp"
	"github.com/tetherhq/tether/transport/wire"
)

// A test of device-side code against a real edge: register the handler
// under test on the device, drive it with the client.
func ExampleNewEdgeMock() {
	var t *testing.T // the test's t
	client, device, m := mock.NewEdgeMock(t)
	device.Handle(wire.MsgTCP, func(ctx context.Context, st *transport.Stream, target []byte) error {
		_ = wire.WriteOK(st, nil)
		_, _ = io.WriteString(st, "hello from "+string(target))
		return nil
	})
	conn, err := tcp.Dial(context.Background(), client, "127.0.0.1:22")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.ReadAll(conn)
	for _, e := range m.AuditEvents() {
		t.Log(e.Kind, e.Target, e.Result)
	}
}

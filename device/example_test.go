package device_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/internal/testedge"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/tcp"
	"github.com/tetherhq/tether/transport/wire"
)

// A device that serves streams with handlers of its own: TCP streams get
// an echo service, whatever their target, and reloads are refused. The
// client half runs here only to show what the handlers answer.
func ExampleClient() {
	e, err := testedge.Start() // a real edge on loopback, with a throw-away PKI
	if err != nil {
		fmt.Println(err)
		return
	}
	defer e.Close()

	dc := &device.Client{URL: e.DeviceURL(), TLSConfig: e.DeviceTLS("gw-17")}
	// A handler answers (OK or Error), then uses the stream; returning
	// ends it.
	dc.Handle(wire.MsgTCP, func(ctx context.Context, st *transport.Stream, target []byte) error {
		if err := wire.WriteOK(st, nil); err != nil {
			return err
		}
		_, err := io.Copy(st, st) // echo, until the client's CloseWrite
		return err
	})
	// An error returned before answering becomes the Error answer.
	dc.Handle(wire.MsgReload, func(ctx context.Context, st *transport.Stream, _ []byte) error {
		return errors.New("reload refused: the configuration is locked")
	})
	if err := dc.Start(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	defer dc.Close() // cuts open streams and waits for the handlers

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.WaitDevice(ctx, "gw-17"); err != nil {
		fmt.Println(err)
		return
	}

	// A client of gw-17, through the edge.
	cl, err := (&client.Dialer{Edge: e.URL, Token: e.Token, TLSConfig: e.ClientTLS()}).Dial(ctx, "gw-17")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cl.Close()
	conn, err := tcp.Dial(ctx, cl, "127.0.0.1:7")
	if err != nil {
		fmt.Println(err)
		return
	}
	io.WriteString(conn, "hello, device")
	conn.(*transport.Stream).CloseWrite()
	echo, _ := io.ReadAll(conn)
	conn.Close()
	fmt.Println(string(echo))
	fmt.Println(cl.Reload(ctx))
	// Output:
	// hello, device
	// reload refused: the configuration is locked
}

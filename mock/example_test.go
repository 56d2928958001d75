package mock_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/tcp"
	"github.com/tetherhq/tether/transport/wire"
)

// A test of a client against a device: the device serves TCP tunnels with
// tcp.Handler (to loopback targets, its default), the client reaches a
// service on the device's side through the edge.
func ExampleNewEdgeMock() {
	t := newHarness() // in a test: the test's t
	defer t.cleanup()
	upper := startUpperServer(t) // a service on the device's side

	client, device, _ := mock.NewEdgeMock(t)
	device.Handle(wire.MsgTCP, (&tcp.Handler{}).Serve)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := tcp.Dial(ctx, client, upper)
	if err != nil {
		t.Fatalf("tunnel: %v", err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "hello through the edge")
	_ = conn.(*transport.Stream).CloseWrite() // the service sees EOF, the answer still flows
	reply, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	fmt.Println(string(reply))
	// Output: HELLO THROUGH THE EDGE
}

// An edge with a policy: the client's token may reach one port on the
// device; the edge refuses any other before the device hears of it.
func ExampleNew() {
	t := newHarness() // in a test: the test's t
	defer t.cleanup()
	upper := startUpperServer(t)
	other := startUpperServer(t) // the device could reach it; the policy says no

	const token = "ops-token"
	policy, err := edge.NewStaticPolicy([]edge.ClientRule{{
		Name:        "ops",
		TokenSHA256: edge.HashToken(token),
		Devices:     []string{"sensor-*"},
		TCP:         []target.Pattern{target.MustParsePattern(upper)},
	}})
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	m := mock.New(t, mock.Options{Policy: policy, Token: token})
	device := m.DeviceClientWithID("sensor-7")
	device.Handle(wire.MsgTCP, (&tcp.Handler{}).Serve)
	client := m.ClientFor("sensor-7")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := tcp.Dial(ctx, client, upper)
	fmt.Println("allowed target:", err == nil)
	if err == nil {
		conn.Close()
	}
	_, err = tcp.Dial(ctx, client, other)
	var refusal *wire.RemoteError
	fmt.Println("other target refused:", errors.As(err, &refusal))
	// Output:
	// allowed target: true
	// other target refused: true
}

// Several devices on one edge, each reached by its own client.
func ExampleEdgeMock_DeviceClientWithID() {
	t := newHarness() // in a test: the test's t
	defer t.cleanup()
	m := mock.New(t, mock.Options{})
	for _, id := range []string{"pump-1", "pump-2"} {
		d := m.DeviceClientWithID(id)
		d.Handle(wire.MsgReload, func(ctx context.Context, st *transport.Stream, _ []byte) error {
			return wire.WriteOK(st, []byte("reloaded "+id))
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, id := range []string{"pump-1", "pump-2"} {
		st, ok, err := m.ClientFor(id).OpenStream(ctx, wire.MsgReload, nil)
		if err != nil {
			t.Fatalf("reload %s: %v", id, err)
		}
		st.Close()
		fmt.Println(string(ok))
	}
	// Output:
	// reloaded pump-1
	// reloaded pump-2
}

// harness is a minimal mock.T, for examples, which have no *testing.T:
// failures panic, and cleanup runs the registered clean-ups, last first.
type harness struct {
	mu       sync.Mutex
	cleanups []func()
}

func newHarness() *harness { return &harness{} }

func (h *harness) Errorf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (h *harness) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

func (h *harness) Cleanup(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cleanups = append(h.cleanups, f)
}

func (h *harness) cleanup() {
	for {
		h.mu.Lock()
		n := len(h.cleanups)
		if n == 0 {
			h.mu.Unlock()
			return
		}
		f := h.cleanups[n-1]
		h.cleanups = h.cleanups[:n-1]
		h.mu.Unlock()
		f()
	}
}

// startUpperServer serves, on 127.0.0.1, a service that answers what it
// read, in upper case, once the peer has finished writing. It returns the
// service's address and stops at t's clean-up.
func startUpperServer(t mock.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				b, _ := io.ReadAll(c)
				_, _ = io.WriteString(c, strings.ToUpper(string(b)))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

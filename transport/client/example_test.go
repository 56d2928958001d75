package client_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/internal/testedge"
	"github.com/tetherhq/tether/pty"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/tcp"
	"github.com/tetherhq/tether/transport/wire"
)

// A session to one device through the edge, and a typed stream on it: a
// reload, answered by the device.
func ExampleDialer() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e, err := testedge.Start() // a real edge on loopback, with a throw-away PKI
	if err != nil {
		fmt.Println(err)
		return
	}
	defer e.Close()
	dc, err := e.StartDevice(ctx, "gw-17", map[wire.MsgType]device.Handler{
		wire.MsgReload: func(ctx context.Context, st *transport.Stream, _ []byte) error {
			return wire.WriteOK(st, []byte("reloaded"))
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dc.Close()

	d := &client.Dialer{Edge: e.URL, Token: e.Token, TLSConfig: e.ClientTLS()}
	cl, err := d.Dial(ctx, "gw-17")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cl.Close()
	st, answer, err := cl.OpenStream(ctx, wire.MsgReload, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	st.Close()
	fmt.Println(string(answer))
	// Output: reloaded
}

// A shell on the device: a command on a terminal of its own, resized while
// it runs, and its exit status once it has ended. The device serves PTY
// streams with pty.Server.
func ExampleDialer_shell() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e, err := testedge.Start() // a real edge on loopback, with a throw-away PKI
	if err != nil {
		fmt.Println(err)
		return
	}
	defer e.Close()
	shells := &pty.Server{Config: pty.Config{Enabled: true}}
	defer shells.Close()
	dc, err := e.StartDevice(ctx, "gw-17", map[wire.MsgType]device.Handler{
		wire.MsgPTY:        shells.ServePTY,
		wire.MsgPTYCommand: shells.ServeCommand,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dc.Close()

	cl, err := (&client.Dialer{Edge: e.URL, Token: e.Token, TLSConfig: e.ClientTLS()}).Dial(ctx, "gw-17")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cl.Close()
	// Without Command, the device starts the user's login shell.
	sh, err := pty.Open(ctx, cl, pty.Request{Cols: 80, Rows: 24, Command: "/bin/sh", Args: []string{"-c", "read line; stty size; exit 3"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sh.Close()
	if err := sh.Resize(ctx, 100, 30); err != nil { // the program gets SIGWINCH
		fmt.Println(err)
		return
	}
	io.WriteString(sh, "go\n")  // the line the program reads
	output, _ := io.ReadAll(sh) // until the program has ended
	status, err := sh.ExitStatus(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	lines := strings.Fields(strings.ReplaceAll(string(output), "\r\n", " "))
	fmt.Println("terminal size:", strings.Join(lines[len(lines)-2:], " "))
	fmt.Println("exited:", status.Exited, "code:", status.Code)
	// Output:
	// terminal size: 30 100
	// exited: true code: 3
}

// A forward that outlives the session under it, as tether tcp keeps one:
// the Redialer redials with backoff when the session is lost, and each
// tunnel opens on the session of the moment.
func ExampleRedialer() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e, err := testedge.Start() // a real edge on loopback, with a throw-away PKI
	if err != nil {
		fmt.Println(err)
		return
	}
	defer e.Close()
	svc, err := net.Listen("tcp", "127.0.0.1:0") // a service on the device's side
	if err != nil {
		fmt.Println(err)
		return
	}
	defer svc.Close()
	go func() {
		for {
			c, err := svc.Accept()
			if err != nil {
				return
			}
			fmt.Fprint(c, "hello from the device")
			c.Close()
		}
	}()
	dc, err := e.StartDevice(ctx, "gw-17", map[wire.MsgType]device.Handler{wire.MsgTCP: (&tcp.Handler{}).Serve})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dc.Close()

	d := &client.Dialer{Edge: e.URL, Token: e.Token, TLSConfig: e.ClientTLS()}
	r := &client.Redialer{
		Dial: func(ctx context.Context) (*client.Client, error) { return d.Dial(ctx, "gw-17") },
		Notify: func(ev client.Event) {
			// Tell the person watching: Lost, RedialFailed (ev.Err), Reconnected.
		},
	}
	first, err := r.Dial(ctx) // fail fast when the edge cannot be reached at all
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := r.Start(context.Background(), first); err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	fw := &tcp.Forward{Listener: ln, Opener: r, Remote: svc.Addr().String()}
	if err := fw.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer fw.Close()
	c, err := net.Dial("tcp", fw.Addr().String())
	if err != nil {
		fmt.Println(err)
		return
	}
	answer, _ := io.ReadAll(c)
	c.Close()
	fmt.Println(string(answer))
	// Output: hello from the device
}

// The edge's device list: the devices online now, and those that left
// (kept for the edge's devices.last_seen_ttl), selected by a glob.
func ExampleDialer_Devices() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e, err := testedge.Start()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer e.Close()
	for _, id := range []string{"gw-1", "gw-2", "lab-1"} {
		// What the agent says about itself at connect; tether-agent
		// sends device.LocalAgentInfo(its version).
		dc := &device.Client{URL: e.DeviceURL(), TLSConfig: e.DeviceTLS(id),
			Agent: transport.AgentInfo{Version: "1.4.0", Platform: "linux/arm64"}}
		if err := dc.Start(ctx); err != nil {
			fmt.Println(err)
			return
		}
		defer dc.Close()
		if err := e.WaitDevice(ctx, id); err != nil {
			fmt.Println(err)
			return
		}
		if id == "gw-2" {
			dc.Close() // gw-2 leaves
		}
	}

	d := &client.Dialer{Edge: e.URL, Token: e.Token, TLSConfig: e.ClientTLS()}
	// The edge notices gw-2's departure in its own time: wait for it.
	for {
		gone, err := d.Devices(ctx, client.DevicesOptions{Status: client.StatusOffline})
		if err != nil {
			fmt.Println(err)
			return
		}
		if len(gone) == 1 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	devs, err := d.Devices(ctx, client.DevicesOptions{Status: client.StatusAll, Match: "gw-*"})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, dev := range devs {
		fmt.Println(dev.ID, dev.Status, dev.Version, dev.Platform)
	}
	// Output:
	// gw-1 online 1.4.0 linux/arm64
	// gw-2 offline 1.4.0 linux/arm64
}

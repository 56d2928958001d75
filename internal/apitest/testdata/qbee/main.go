// Command qbee is a program written against go.qbee.io/transport, the
// reference implementation of qbee-v1, with the reference's names only. It
// runs the reference's tunnel test on the reference's edge mock: a web server
// through a TCP tunnel, an echo through a stream, and an echo through a UDP
// tunnel. It prints what came back and exits non-zero on any failure.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"time"

	"go.qbee.io/transport"
)

func main() {
	t := &tester{}
	t.run(tunnels)
	t.cleanup()
	if t.failed {
		os.Exit(1)
	}
}

func tunnels(t *tester) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello world")
	}))
	t.Cleanup(web.Close)
	tcpEcho := startTCPEcho(t)
	udpEcho := startUDPEcho(t)

	client, deviceClient, edge := transport.NewEdgeMock(t)
	deviceClient.
		WithHandler(transport.MessageTypeTCPTunnel, transport.HandleTCPTunnel).
		WithHandler(transport.MessageTypeUDPTunnel, transport.HandleUDPTunnel)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)

	// A web server through a TCP tunnel.
	localListener, err := client.OpenTCPTunnel(ctx, "localhost:0", web.Listener.Addr().String())
	if err != nil {
		t.Fatalf("error opening TCP tunnel: %v", err)
	}
	t.Cleanup(func() { _ = localListener.Close() })
	httpClient := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := httpClient.Get("http://" + localListener.Addr().String())
	if err != nil {
		t.Fatalf("error sending HTTP request: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP response: status %d, %v", resp.StatusCode, err)
	}
	fmt.Println("tcp tunnel:", string(body))

	// A stream of its own, with the opening message and answer done by
	// OpenStream.
	stream, err := client.OpenStream(ctx, transport.MessageTypeTCPTunnel, []byte(tcpEcho))
	if err != nil {
		t.Fatalf("error opening stream: %v", err)
	}
	_ = stream.SetDeadline(time.Now().Add(time.Minute))
	if _, err := stream.Write([]byte("ping")); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len("echo:ping"))
	if _, err := io.ReadFull(stream, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	_ = stream.Close()
	fmt.Println("stream:", string(buf))

	// A refused stream carries the device's reason.
	if _, err := client.OpenStream(ctx, transport.MessageTypeUDPTunnel, []byte("not a request")); err == nil {
		t.Errorf("a malformed UDP tunnel request was accepted")
	}

	// A UDP tunnel, from another client of the mock.
	udpTunnel, err := edge.Client().OpenUDPTunnel(ctx, "127.0.0.1:0", udpEcho)
	if err != nil {
		t.Fatalf("error opening UDP tunnel: %v", err)
	}
	t.Cleanup(func() { _ = udpTunnel.Close() })
	conn, err := net.DialUDP("udp", nil, udpTunnel.PrimaryAddr())
	if err != nil {
		t.Fatalf("dial UDP: %v", err)
	}
	defer conn.Close()
	udpBuf := make([]byte, 2048)
	for attempt := 0; ; attempt++ {
		if _, err := conn.Write([]byte("ping")); err != nil {
			t.Fatalf("send: %v", err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		n, err := conn.Read(udpBuf)
		if err == nil {
			fmt.Println("udp tunnel:", string(udpBuf[:n]))
			break
		}
		if attempt == 60 {
			t.Fatalf("no answer through the UDP tunnel: %v", err)
		}
	}
}

// tester is the reference's Tester, for a program: Fatalf ends the test
// function, Cleanup functions run last first at its end.
type tester struct {
	mu       sync.Mutex
	failed   bool
	cleanups []func()
}

// errFatal ends a test function from Fatalf.
var errFatal = errors.New("fatal")

func (t *tester) Errorf(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed = true
	fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
}

func (t *tester) Fatalf(format string, args ...any) {
	t.Errorf(format, args...)
	panic(errFatal)
}

func (t *tester) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

func (t *tester) run(test func(*tester)) {
	defer func() {
		if r := recover(); r != nil && r != errFatal {
			panic(r)
		}
	}()
	test(t)
}

func (t *tester) cleanup() {
	for {
		t.mu.Lock()
		n := len(t.cleanups)
		if n == 0 {
			t.mu.Unlock()
			return
		}
		f := t.cleanups[n-1]
		t.cleanups = t.cleanups[:n-1]
		t.mu.Unlock()
		f()
	}
}

// startTCPEcho answers what a peer sends with "echo:" and the bytes, as they
// arrive, on 127.0.0.1.
func startTCPEcho(t *tester) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(time.Minute))
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(append([]byte("echo:"), buf[:n]...)); err != nil {
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// startUDPEcho answers every datagram with "echo:" and the datagram, on
// 127.0.0.1.
func startUDPEcho(t *tester) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(append([]byte("echo:"), buf[:n]...), from)
		}
	})
	t.Cleanup(func() { _ = pc.Close(); wg.Wait() })
	return pc.LocalAddr().String()
}

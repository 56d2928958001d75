// Package ours uses Tether's Go API as a program outside the module does:
// an edge with a static policy (mock), a device serving TCP tunnels
// (tcp.Handler) and UDP tunnels restricted by its own rule (udp.Handler), and
// a client reaching both through the edge (tcp.Forward, tcp.Dial,
// udp.Listener).
package ours_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/tcp"
	"github.com/tetherhq/tether/transport/wire"
	"github.com/tetherhq/tether/udp"
)

func TestTunnels(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tcpEcho := startTCPEcho(t)
	tcpOther := startTCPEcho(t) // the device could reach it; the policy says no
	udpEcho := startUDPEcho(t)
	udpOther := startUDPEcho(t) // the policy allows it; the device says no

	const token = "apitest-token"
	policy, err := edge.NewStaticPolicy([]edge.ClientRule{{
		Name:        "apitest",
		TokenSHA256: edge.HashToken(token),
		Devices:     []string{"gw-*"},
		TCP:         []target.Pattern{target.MustParsePattern(tcpEcho)},
		UDP:         []target.Pattern{target.MustParsePattern("127.0.0.1:*")},
	}})
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	m := mock.New(t, mock.Options{Policy: policy, Token: token})

	dev := m.DeviceClientWithID("gw-1")
	dev.Handle(wire.MsgTCP, (&tcp.Handler{}).Serve) // loopback targets
	allowed, err := target.Parse(udpEcho)
	if err != nil {
		t.Fatalf("parse %s: %v", udpEcho, err)
	}
	udpTunnels := &udp.Handler{Config: udp.DeviceConfig{
		Authorize: func(ctx context.Context, tg target.Target) (netip.Addr, error) {
			if tg != allowed {
				return netip.Addr{}, fmt.Errorf("udp %s refused: this device serves %s only", tg, allowed)
			}
			return netip.ParseAddr(tg.Host)
		},
	}}
	t.Cleanup(func() { udpTunnels.Close() })
	dev.Handle(wire.MsgUDP, udpTunnels.Serve)

	client := m.ClientFor("gw-1")

	// TCP through a local listener, as ssh -L does.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	fw := &tcp.Forward{Listener: ln, Opener: client, Remote: tcpEcho}
	if err := fw.Start(ctx); err != nil {
		t.Fatalf("forward: %v", err)
	}
	defer fw.Close()
	conn, err := net.Dial("tcp", fw.Addr().String())
	if err != nil {
		t.Fatalf("dial the forward: %v", err)
	}
	if got, want := exchange(t, conn, "through the forward"), "echo:through the forward"; got != want {
		t.Errorf("forward: got %q; want %q", got, want)
	}
	conn.Close()

	// TCP as a net.Conn.
	conn, err = tcp.Dial(ctx, client, tcpEcho)
	if err != nil {
		t.Fatalf("tcp.Dial: %v", err)
	}
	if got, want := exchange(t, conn, "dialled"), "echo:dialled"; got != want {
		t.Errorf("tcp.Dial: got %q; want %q", got, want)
	}
	conn.Close()

	// The edge's policy refuses another target.
	_, err = tcp.Dial(ctx, client, tcpOther)
	var refusal *wire.RemoteError
	if !errors.As(err, &refusal) {
		t.Errorf("tcp.Dial %s: got %v; want the edge's refusal", tcpOther, err)
	}

	// UDP through a local socket.
	l := &udp.Listener{Opener: client, Remote: udpEcho}
	if err := l.Start(ctx); err != nil {
		t.Fatalf("udp listener: %v", err)
	}
	defer l.Close()
	if got, want := udpExchange(t, l.Addr().String(), "ping"), "echo:ping"; got != want {
		t.Errorf("udp: got %q; want %q", got, want)
	}

	// The device's own rule refuses a target the policy allows.
	_, _, err = client.OpenStream(ctx, wire.MsgUDP, []byte("0:"+udpOther))
	if !errors.As(err, &refusal) || !strings.Contains(refusal.Reason, "this device serves "+udpEcho+" only") {
		t.Errorf("udp to %s: got %v; want the device's refusal", udpOther, err)
	}
}

// exchange writes msg, half-closes and reads the whole answer.
func exchange(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatalf("close write: %v", err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

// udpExchange sends msg to addr until an answer comes back.
func udpExchange(t *testing.T, addr, msg string) string {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	buf := make([]byte, 2048)
	for range 60 {
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatalf("send: %v", err)
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if n, err := c.Read(buf); err == nil {
			return string(buf[:n])
		}
	}
	t.Fatalf("no answer from %s", addr)
	return ""
}

// startTCPEcho serves "echo:" and what the peer sent, once the peer has
// finished writing, on 127.0.0.1 until the end of the test.
func startTCPEcho(t *testing.T) string {
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
				b, _ := io.ReadAll(c)
				_, _ = c.Write(append([]byte("echo:"), b...))
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// startUDPEcho answers every datagram with "echo:" and the datagram, on
// 127.0.0.1 until the end of the test.
func startUDPEcho(t *testing.T) string {
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
	t.Cleanup(func() { pc.Close(); wg.Wait() })
	return pc.LocalAddr().String()
}

//go:build unix

package tcp

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestReadyBytes: readyBytes takes what is there and never waits; at the
// application's EOF it takes nothing and the EOF stays for the next read.
func TestReadyBytes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	app, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 64)

	start := time.Now()
	if n, err := readyBytes(c, buf); n != 0 || err != nil {
		t.Fatalf("nothing sent yet: got %d bytes, %v", n, err)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Fatalf("readyBytes waited %v", waited)
	}
	if _, err := app.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for deadline := time.Now().Add(10 * time.Second); len(got) < 5 && time.Now().Before(deadline); {
		n, err := readyBytes(c, buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != "hello" {
		t.Fatalf("got %q, want hello", got)
	}
	if err := app.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if n, err := readyBytes(c, buf); n != 0 || err != nil {
		t.Fatalf("at EOF: got %d bytes, %v", n, err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("after readyBytes at EOF, Read: %d, %v; want EOF", n, err)
	}
}

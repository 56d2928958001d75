package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// exchange writes req, half-closes, and returns the whole answer.
func exchange(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(c, req)
	require.NoError(t, err)
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	out, err := io.ReadAll(c)
	require.NoError(t, err)
	return string(out)
}

func TestHandlers(t *testing.T) {
	tests := []struct {
		name   string
		handle func(*net.TCPConn)
		want   string
	}{
		{"EchoAfterEOF", EchoAfterEOF, "echo:HELLO"},
		{"LineEcho", LineEcho, "hello"},
		{"EchoThenBye", EchoThenBye, "hellobye"},
		{"CountingSink Decimal", CountingSink(Decimal), "5"},
		{"CountingSink BigEndian64", CountingSink(BigEndian64), "\x00\x00\x00\x00\x00\x00\x00\x05"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := TCPServer(t, tt.handle)
			if got := exchange(t, addr, "hello"); got != tt.want {
				t.Errorf("got %q; want %q", got, tt.want)
			}
		})
	}
}

// TestTCPServerClosesOpenConns ends a test with a handler still blocked
// on its connection: the cleanup must close it and wait.
func TestTCPServerClosesOpenConns(t *testing.T) {
	for _, name := range []string{"LineEcho", "Tarpit"} {
		t.Run(name, func(t *testing.T) {
			var addr string
			if name == "Tarpit" {
				addr = Tarpit(t)
			} else {
				addr = TCPServer(t, LineEcho)
			}
			c, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			t.Cleanup(func() { c.Close() })
			_, err = io.WriteString(c, "x")
			require.NoError(t, err)
		})
	}
}

func TestProc(t *testing.T) {
	t.Run("output and exit code", func(t *testing.T) {
		p := StartWith(t, Options{SplitOutput: true}, "/bin/sh", "-c", "echo out; echo err >&2; exit 3")
		require.Error(t, p.Wait(t, 30*time.Second))
		require.Equal(t, 3, p.ExitCode())
		require.Equal(t, "out\n", p.Stdout())
		require.Equal(t, "err\n", p.Stderr())
		require.True(t, p.Exited())
	})
	t.Run("stdin", func(t *testing.T) {
		p := StartWith(t, Options{Stdin: true}, "/bin/cat")
		_, err := io.WriteString(p.Stdin, "typed")
		require.NoError(t, err)
		require.NoError(t, p.Stdin.Close())
		require.NoError(t, p.Wait(t, 30*time.Second))
		require.Equal(t, "typed", p.Output())
	})
	t.Run("Stop", func(t *testing.T) {
		p := Start(t, "/bin/sleep", "60")
		err := p.Stop()
		require.Error(t, err)
		require.Equal(t, -1, p.ExitCode())
		require.True(t, strings.Contains(err.Error(), syscall.SIGTERM.String()), "got %v", err)
	})
	t.Run("Kill9", func(t *testing.T) {
		p := Start(t, "/bin/sleep", "60")
		p.Kill9()
		require.Contains(t, p.Err().Error(), "killed")
	})
}

func TestUDPEcho(t *testing.T) {
	c, err := net.Dial("udp", UDPEcho(t))
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(c, "ping")
	require.NoError(t, err)
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "udp:ping", string(buf[:n]))
}

func TestFreePort(t *testing.T) {
	port := FreePort(t)
	require.Less(t, port, ephemeralLow(), "outside the ephemeral range")
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	require.NoError(t, err)
	ln.Close()
}

// TestFreePortNeverTwice: ports handed out but not yet bound are not
// handed out again (600 draws at random from about 22,000 ports would
// repeat one almost surely).
func TestFreePortNeverTwice(t *testing.T) {
	seen := map[int]bool{}
	for range 600 {
		p := FreePort(t)
		require.False(t, seen[p], "port %d returned twice", p)
		seen[p] = true
	}
}

func TestClosedAddr(t *testing.T) {
	addr := ClosedAddr(t)
	_, err := net.Dial("tcp", addr)
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	_, err = net.Listen("tcp", addr)
	require.Error(t, err, "nobody else can listen there")
}

func TestNewToken(t *testing.T) {
	token, sum := NewToken(t)
	h := sha256.Sum256([]byte(token))
	require.Equal(t, hex.EncodeToString(h[:]), sum)
	other, _ := NewToken(t)
	require.NotEqual(t, token, other)
}

func TestHealthy(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	require.True(t, Healthy(srv.Client(), srv.URL))
	require.False(t, Healthy(srv.Client(), srv.URL+"/nothing"))
}

func TestGetJSON(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, `[{"id":"d1"}]`)
	}))
	defer srv.Close()
	var got []struct {
		ID string `json:"id"`
	}
	require.NoError(t, GetJSON(srv.Client(), srv.URL+"/api/devices", "tok", &got))
	require.Len(t, got, 1)
	require.Equal(t, "d1", got[0].ID)
	err := GetJSON(srv.Client(), srv.URL+"/api/devices", "wrong", &got)
	require.ErrorContains(t, err, "GET /api/devices: 401")
}

// TestFaultProxy: bytes pass, and wait while held and go out whole
// after; a proxy closed while holding bytes ends. (The e2e keep-alive
// tests use its black hole.)
func TestFaultProxy(t *testing.T) {
	p := NewFaultProxy(t, TCPServer(t, LineEcho))
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	line := func(s string) string {
		t.Helper()
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		_, err := io.WriteString(c, s+"\n")
		require.NoError(t, err)
		b := make([]byte, len(s)+1)
		_, err = io.ReadFull(c, b)
		require.NoError(t, err)
		return string(b)
	}
	require.Equal(t, "one\n", line("one"))

	p.SetMode(Hold)
	_, err = io.WriteString(c, "two\n")
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	_, err = c.Read(make([]byte, 8))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "bytes went through a held proxy")
	p.SetMode(Pass)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	b := make([]byte, 4)
	_, err = io.ReadFull(c, b)
	require.NoError(t, err)
	require.Equal(t, "two\n", string(b), "held bytes were lost")

	require.Equal(t, "three\n", line("three"))

	// A delay holds each line for its time, both ways, and keeps them in
	// order.
	p.SetDelay(150 * time.Millisecond)
	start := time.Now()
	require.Equal(t, "four\n", line("four"))
	require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "a round trip beat the delay")
	_, err = io.WriteString(c, "five\nsix\n")
	require.NoError(t, err)
	b = make([]byte, len("five\nsix\n"))
	_, err = io.ReadFull(c, b)
	require.NoError(t, err)
	require.Equal(t, "five\nsix\n", string(b))
	p.SetDelay(0)

	p.SetMode(Hold)
	_, err = io.WriteString(c, "held at close\n")
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond) // most likely held by now; either way Close must end
	p.Close()
}

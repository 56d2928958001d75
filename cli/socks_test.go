//go:build linux

package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/tcp"
	"github.com/tetherhq/tether/transport/wire"
	"golang.org/x/net/proxy"
)

// socksRequest builds a request: version 5, cmd, reserved, then addr
// (address type and address) and port.
func socksRequest(cmd byte, addr []byte, port uint16) []byte {
	b := append([]byte{socksVersion, cmd, 0}, addr...)
	return append(b, byte(port>>8), byte(port))
}

func socksName(name string) []byte { return append([]byte{socksDomain, byte(len(name))}, name...) }

func TestReadSOCKSRequest(t *testing.T) {
	ipv6 := append([]byte{socksIPv6}, net.ParseIP("fd00::1")...)
	tests := []struct {
		name     string
		in       []byte
		want     string
		wantCode socksReply
		wantErr  string
	}{
		{"IPv4", socksRequest(socksConnect, []byte{socksIPv4, 127, 0, 0, 1}, 22), "127.0.0.1:22", socksSucceeded, ""},
		{"IPv6", socksRequest(socksConnect, ipv6, 443), "[fd00::1]:443", socksSucceeded, ""},
		{"name, unresolved", socksRequest(socksConnect, socksName("Printer.LAN"), 631), "printer.lan:631", socksSucceeded, ""},
		{"name holding an address", socksRequest(socksConnect, socksName("10.0.0.5"), 80), "10.0.0.5:80", socksSucceeded, ""},
		{"BIND", socksRequest(0x02, []byte{socksIPv4, 127, 0, 0, 1}, 22), "", socksCmdNotSupported, "CONNECT (0x01) only"},
		{"UDP ASSOCIATE", socksRequest(0x03, []byte{socksIPv4, 0, 0, 0, 0}, 0), "", socksCmdNotSupported, "not supported"},
		{"unknown address type", []byte{socksVersion, socksConnect, 0, 0x05, 1, 2, 3, 4}, "", socksAddrNotSupported, "address type 0x05"},
		{"empty name", socksRequest(socksConnect, []byte{socksDomain, 0}, 80), "", socksGeneralFailure, "empty host"},
		{"bad name", socksRequest(socksConnect, socksName("a b"), 80), "", socksGeneralFailure, `"a b"`},
		{"port 0", socksRequest(socksConnect, []byte{socksIPv4, 127, 0, 0, 1}, 0), "", socksGeneralFailure, "port"},
		{"SOCKS4", []byte{0x04, 0x01, 0, 22, 127, 0, 0, 1, 0}, "", socksSucceeded, "version 0x04"},
		{"cut in the address", []byte{socksVersion, socksConnect, 0, socksIPv4, 127, 0}, "", socksSucceeded, "unexpected EOF"},
		{"cut in the name", []byte{socksVersion, socksConnect, 0, socksDomain, 9, 'a'}, "", socksSucceeded, "unexpected EOF"},
		{"no port", []byte{socksVersion, socksConnect, 0, socksIPv4, 127, 0, 0, 1}, "", socksSucceeded, "port"},
		{"empty", nil, "", socksSucceeded, "EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, code, err := readSOCKSRequest(bytes.NewReader(tt.in))
			require.Equal(t, tt.wantCode, code, "reply code")
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestSOCKSGreeting(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		answer  []byte
		wantErr string
	}{
		{"no authentication offered", []byte{5, 1, 0}, []byte{5, 0}, ""},
		{"among others", []byte{5, 3, 2, 1, 0}, []byte{5, 0}, ""},
		{"username and password only", []byte{5, 1, 2}, []byte{5, 0xFF}, "serves clients without authentication"},
		{"no method", []byte{5, 0}, nil, "no authentication method"},
		{"SOCKS4", []byte{4, 1, 0, 22}, nil, "not a SOCKS5 client"},
		{"an HTTP client", []byte("GET / HTTP/1.1\r\n"), nil, "version byte 0x47"},
		{"cut", []byte{5, 2, 0}, nil, "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := socksGreeting(struct {
				io.Reader
				io.Writer
			}{bytes.NewReader(tt.in), &out})
			require.Equal(t, tt.answer, out.Bytes())
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
		})
	}
}

func TestSOCKSReplyFor(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want socksReply
	}{
		{"edge policy", &wire.RemoteError{Reason: "not allowed: tcp 10.0.0.5:25 on device d1 for client ops"}, socksNotAllowed},
		{"device allow list", &wire.RemoteError{Reason: "refused by the device's allow list: tcp 10.0.0.5:25 (allowed: 127.0.0.1:*)"}, socksNotAllowed},
		{"loopback-only device", &wire.RemoteError{Reason: "tcp 10.0.0.5:25 refused: this device serves tunnels to loopback addresses only"}, socksNotAllowed},
		{"forbidden device", &transport.StatusError{StatusCode: http.StatusForbidden}, socksNotAllowed},
		{"refused", &wire.RemoteError{Reason: "dial tcp 127.0.0.1:5432: connect: connection refused"}, socksConnRefused},
		{"no route", &wire.RemoteError{Reason: "dial tcp 10.0.0.9:80: connect: no route to host"}, socksHostUnreachable},
		{"unknown name", &wire.RemoteError{Reason: "lookup nas.lan on 127.0.0.53:53: no such host"}, socksHostUnreachable},
		{"no answer", &wire.RemoteError{Reason: "dial tcp 10.0.0.9:80: no answer within 10s"}, socksHostUnreachable},
		{"network", &wire.RemoteError{Reason: "dial tcp 10.0.0.9:80: connect: network is unreachable"}, socksNetworkUnreachable},
		{"device offline", &transport.StatusError{StatusCode: http.StatusNotFound}, socksGeneralFailure},
		{"other reason", &wire.RemoteError{Reason: "too many streams"}, socksGeneralFailure},
		{"session lost", fmt.Errorf("open: %w", transport.ErrConnLost), socksGeneralFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, socksReplyFor(tt.err))
		})
	}
}

func TestParseListenAddr(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
	}{
		{"1080", "127.0.0.1:1080", ""},
		{"0", "127.0.0.1:0", ""},
		{"0.0.0.0:1080", "0.0.0.0:1080", ""},
		{"*:1080", ":1080", ""},
		{"[::1]:1080", "[::1]:1080", ""},
		{"localhost:1080", "localhost:1080", ""},
		{":1080", "", "empty bind address"},
		{"65536", "", "0-65535"},
		{"+80", "", "0-65535"},
		{"socks", "", "0-65535"},
		{"::1:1080", "", "[BIND:]PORT"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseListenAddr(tt.in)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

// FuzzReadSOCKSRequest: any input is answered with a target that parses,
// a reply code, or an error, and never more than a request's 262 bytes
// are read.
func FuzzReadSOCKSRequest(f *testing.F) {
	f.Add(socksRequest(socksConnect, []byte{socksIPv4, 127, 0, 0, 1}, 22))
	f.Add(socksRequest(socksConnect, append([]byte{socksIPv6}, net.IPv6loopback...), 22))
	f.Add(socksRequest(socksConnect, socksName("localhost"), 80))
	f.Add(socksRequest(0x02, socksName(strings.Repeat("a", 255)), 80))
	f.Add([]byte{socksVersion, socksConnect, 0, 0x09})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		tgt, code, err := readSOCKSRequest(r)
		if read := len(in) - r.Len(); read > 4+1+255+2 {
			t.Fatalf("read %d bytes of a request", read)
		}
		if err != nil {
			if tgt != "" {
				t.Fatalf("error %v with target %q", err, tgt)
			}
			return
		}
		if code != socksSucceeded {
			t.Fatalf("no error but reply code %d", code)
		}
		parsed, perr := target.Parse(tgt)
		if perr != nil || parsed.String() != tgt {
			t.Fatalf("target %q is not canonical: %v", tgt, perr)
		}
	})
}

// TestSOCKSProxy runs tether socks against a real edge and agent, with
// curl and Go's SOCKS5 client.
func TestSOCKSProxy(t *testing.T) {
	f := newFleet(t)
	f.addAgent("d1", "")
	p := f.startTether(false, "socks", "d1", "0")
	addr := forwardLines(t, p, 1)[0]
	require.True(t, strings.HasPrefix(addr, "127.0.0.1:"), addr)
	require.Contains(t, p.Stdout(), addr+" -> d1 (SOCKS5)\n")
	require.NotContains(t, p.Stderr(), "reachable from other machines")

	// curl passes the host name to the proxy; the device resolves it.
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", r.Host)
	}))
	t.Cleanup(web.Close)
	_, port, err := net.SplitHostPort(web.Listener.Addr().String())
	require.NoError(t, err)
	if curl, err := exec.LookPath("curl"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, curl, "-sS", "--max-time", "30", "--socks5-hostname", addr,
			"http://localhost:"+port+"/").CombinedOutput()
		require.NoError(t, err, "curl: %s\n%s", out, p.Stderr())
		require.Equal(t, "hello from localhost:"+port, string(out))
	} else {
		t.Log("curl not found: the proxy is tested with Go's client only")
	}

	// Go's client sends IPv4 and IPv6 addresses as such.
	d, err := proxy.SOCKS5("tcp", addr, nil, proxy.Direct)
	require.NoError(t, err)
	echo := testutil.TCPServer(t, testutil.EchoThenBye)
	c, err := d.Dial("tcp", echo)
	require.NoError(t, err)
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	_, err = io.WriteString(c, "through socks")
	require.NoError(t, err)
	require.NoError(t, c.(*net.TCPConn).CloseWrite(), "half-close")
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	require.Equal(t, "through socksbye", string(got))
	c.Close()

	// Refusals get the closest reply, and the reason on stderr.
	_, eport, _ := net.SplitHostPort(echo)
	_, err = d.Dial("tcp", "[::1]:"+eport)
	require.ErrorContains(t, err, "connection not allowed by ruleset")
	closed := testutil.ClosedAddr(t)
	_, err = d.Dial("tcp", closed)
	require.ErrorContains(t, err, "connection refused")
	require.Eventually(t, func() bool {
		return strings.Contains(p.Stderr(), "-> d1 [::1]:"+eport+": not allowed") &&
			strings.Contains(p.Stderr(), "-> d1 "+closed+": dial tcp "+closed)
	}, 30*time.Second, 20*time.Millisecond, "no reasons for the refusals:\n%s", p.Stderr())

	// A client that wants authentication, and one that asks for BIND.
	require.Equal(t, []byte{5, 0xFF}, socksExchange(t, addr, []byte{5, 1, 2}, 2))
	bind := append([]byte{5, 1, 0}, socksRequest(0x02, []byte{socksIPv4, 127, 0, 0, 1}, 80)...)
	require.Equal(t, []byte{5, 0, 5, byte(socksCmdNotSupported), 0, socksIPv4, 0, 0, 0, 0, 0, 0}, socksExchange(t, addr, bind, 12))

	// Ctrl-C closes the listener and exits 130.
	require.NoError(t, p.Cmd.Process.Signal(os.Interrupt))
	require.Equal(t, ExitInterrupted, exitCode(t, p), p.Stderr())
	_, err = net.Dial("tcp", addr)
	require.Error(t, err, "the listener outlived the command")
}

// socksExchange sends in to a SOCKS proxy and reads the n bytes of its
// answer, then expects the proxy to close the connection.
func socksExchange(t *testing.T, addr string, in []byte, n int) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	_, err = c.Write(in)
	require.NoError(t, err)
	got := make([]byte, n)
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	_, err = c.Read(make([]byte, 1))
	require.True(t, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET), "the proxy kept the connection open: %v", err)
	return got
}

// TestSOCKSOnEveryInterface warns that others can use the proxy.
func TestSOCKSOnEveryInterface(t *testing.T) {
	f := newFleet(t)
	f.addAgent("d1", "")
	p := f.startTether(false, "socks", "d1", "*:0")
	addr := forwardLines(t, p, 1)[0]
	require.Contains(t, p.Stderr(), "warning: the SOCKS proxy on "+addr+" is reachable from other machines")
	port, err := strconv.Atoi(addr[strings.LastIndexByte(addr, ':')+1:])
	require.NoError(t, err)
	require.NotZero(t, port)
}

// TestSOCKSServerClose: ending Serve's context closes the listener, a
// client still in its handshake and a spliced connection, and Serve waits
// for them (goleak in TestMain sees any goroutine left).
func TestSOCKSServerClose(t *testing.T) {
	cl, dev, _ := mock.NewEdgeMock(t)
	dev.Handle(wire.MsgTCP, (&tcp.Handler{}).Serve)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var refused []string
	s := &socksServer{Listener: ln, Opener: cl,
		Refused:   func(_ net.Addr, tgt string, err error) { refused = append(refused, tgt+": "+err.Error()) },
		BadClient: func(net.Addr, error) {}}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx) }()

	d, err := proxy.SOCKS5("tcp", ln.Addr().String(), nil, proxy.Direct)
	require.NoError(t, err)
	echo := testutil.TCPServer(t, testutil.LineEcho)
	spliced, err := d.Dial("tcp", echo)
	require.NoError(t, err)
	defer spliced.Close()
	_ = spliced.SetDeadline(time.Now().Add(30 * time.Second))
	_, err = io.WriteString(spliced, "ping")
	require.NoError(t, err)
	got := make([]byte, 4)
	_, err = io.ReadFull(spliced, got)
	require.NoError(t, err)
	require.Equal(t, "ping", string(got))
	silent, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer silent.Close()

	cancel()
	require.NoError(t, <-served)
	for _, c := range []net.Conn{spliced, silent} {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		_, err := c.Read(make([]byte, 1))
		require.Error(t, err, "a connection outlived Serve")
	}
	_, err = net.Dial("tcp", ln.Addr().String())
	require.Error(t, err, "the listener outlived Serve")
	require.Empty(t, refused)
}

// FuzzSOCKSHandshake: whatever a client sends, the proxy answers with a
// method choice and at most one reply, and accepts only canonical
// targets.
func FuzzSOCKSHandshake(f *testing.F) {
	f.Add(append([]byte{5, 1, 0}, socksRequest(socksConnect, socksName("localhost"), 22)...))
	f.Add(append([]byte{5, 2, 2, 0}, socksRequest(0x02, []byte{socksIPv4, 10, 0, 0, 1}, 80)...))
	f.Add([]byte{5, 1, 2})
	f.Add([]byte{4, 1, 0, 80, 127, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		tgt, err := socksHandshake(struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(in), &out})
		ans := out.Bytes()
		switch {
		case len(ans) == 0, bytes.Equal(ans, []byte{5, 0xFF}):
			if err == nil {
				t.Fatalf("accepted %q without choosing a method", tgt)
			}
			return
		case len(ans) != 2 && len(ans) != 12, !bytes.Equal(ans[:2], []byte{5, 0}):
			t.Fatalf("answered % x", ans)
		}
		if len(ans) == 12 && (err == nil || ans[3] == byte(socksSucceeded)) {
			t.Fatalf("reply % x with error %v", ans[2:], err)
		}
		if err == nil {
			if p, perr := target.Parse(tgt); perr != nil || p.String() != tgt {
				t.Fatalf("target %q is not canonical: %v", tgt, perr)
			}
		}
	})
}

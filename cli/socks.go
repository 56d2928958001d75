package cli

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/wire"
)

type socksOptions struct {
	g      *globalOptions
	device string
	listen string
}

func newSOCKSCommand(g *globalOptions) *cobra.Command {
	o := &socksOptions{g: g}
	cmd := &cobra.Command{
		Use:   "socks DEVICE [BIND:]PORT",
		Short: "A local SOCKS5 proxy whose connections are made by a device, like ssh -D",
		Long: `A local SOCKS5 proxy whose connections are made by a device, like ssh -D.

It listens on BIND:PORT (BIND defaults to 127.0.0.1; * is every interface;
PORT 0 picks a free port) and prints one line once it listens:

  127.0.0.1:1080 -> d1 (SOCKS5)

Each CONNECT request becomes a TCP stream to the requested host and port,
dialled by the device and allowed or refused by the edge's and the device's
rules like any tether tcp forward. Host names are passed to the device
unresolved, so they are resolved by the device's DNS (use
--socks5-hostname with curl, socks5h:// elsewhere). Only SOCKS5 without
authentication and only CONNECT are served: other methods are refused
(0xFF), other commands answered "command not supported" (0x07). A refusal
is answered with the closest SOCKS reply (not allowed by ruleset,
connection refused, host unreachable...) and its reason printed on stderr.

Anyone who can reach the proxy uses the device with your token: it warns
when BIND is not a loopback address. The command serves until Ctrl-C; when
the connection to the edge is lost, the listener stays open and the
session is redialled with backoff.`,
		Example: `  # A SOCKS proxy on 127.0.0.1:1080; names are resolved by the device
  tether socks d1 1080
  curl --socks5-hostname 127.0.0.1:1080 http://localhost:8080/

  # Listen on every interface of this machine (a warning says so)
  tether socks d1 0.0.0.0:1080`,
		ValidArgsFunction: completeDevice(g),
		Args:              argsUsage(cobra.ExactArgs(2), "tether socks DEVICE [BIND:]PORT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.device = args[0]
			l, err := parseListenAddr(args[1])
			if err != nil {
				return &usageError{err.Error()}
			}
			o.listen = l
			return o.run(cmd.Context())
		},
	}
	return cmd
}

// parseListenAddr parses [BIND:]PORT: "1080" listens on 127.0.0.1:1080,
// "*:1080" on every interface; IPv6 addresses go in brackets.
func parseListenAddr(s string) (string, error) {
	host, port := defaultBind, s
	if strings.Contains(s, ":") {
		h, p, err := net.SplitHostPort(s)
		if err != nil {
			return "", fmt.Errorf("listen address %q: want [BIND:]PORT, such as 1080 or 127.0.0.1:1080 ([::1]:1080 for IPv6)", s)
		}
		host, port = h, p
		switch host {
		case "*":
			host = ""
		case "":
			return "", fmt.Errorf("listen address %q: empty bind address (use * for every interface)", s)
		}
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || port == "" || port[0] == '+' {
		return "", fmt.Errorf("listen address %q: port %q must be a number 0-65535 (0 picks a free port)", s, port)
	}
	return net.JoinHostPort(host, strconv.Itoa(int(p))), nil
}

func (o *socksOptions) run(ctx context.Context) error {
	conn, err := o.g.prepare(o.device)
	if err != nil {
		return err
	}
	// Listen first, so that a busy port fails before the edge is dialled.
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", o.listen)
	if err != nil {
		return listenError(o.listen, err)
	}
	defer ln.Close()
	r, err := conn.redial(ctx, o.g.notice)
	if err != nil {
		return err
	}
	defer r.Close()

	if a, ok := ln.Addr().(*net.TCPAddr); ok && !a.IP.IsLoopback() {
		o.g.notice("warning: the SOCKS proxy on %s is reachable from other machines, and whoever reaches it uses device %s with your token; listen on 127.0.0.1 unless you mean it", ln.Addr(), o.device)
	}
	fmt.Fprintf(o.g.io.Out, "%s -> %s (SOCKS5)\n", ln.Addr(), o.device)
	s := &socksServer{
		Listener: ln,
		Opener:   r,
		Logger:   o.g.debugLogger(),
		Refused: func(client net.Addr, tgt string, err error) {
			_, msg := describe(err, o.g.msg)
			o.g.notice("SOCKS %s -> %s %s: %s", client, o.device, tgt, msg)
		},
		BadClient: func(client net.Addr, err error) {
			o.g.notice("SOCKS client %s: %v", client, err)
		},
	}
	if err := s.Serve(ctx); err != nil {
		return fmt.Errorf("SOCKS proxy on %s stopped: %w", ln.Addr(), err)
	}
	return ctx.Err()
}

// socksHandshakeTimeout bounds a client's greeting and request, and the
// opening of its stream.
const socksHandshakeTimeout = 30 * time.Second

// socksServer serves SOCKS5 CONNECT requests on Listener, each as a TCP
// stream opened with Opener.
type socksServer struct {
	Listener net.Listener
	Opener   transport.Opener
	// Logger receives closed connections at Debug; nil discards them.
	Logger *slog.Logger
	// Refused is told of a request the edge or the device refused.
	Refused func(client net.Addr, target string, err error)
	// BadClient is told of a client that does not speak SOCKS5 as served.
	BadClient func(client net.Addr, err error)

	mu sync.Mutex
	// mu guards the following.
	conns  map[net.Conn]struct{}
	closed bool
}

// Serve accepts connections until ctx ends, then closes the listener and
// every connection and waits for their goroutines. It returns nil when
// ctx ended, or why accepting failed.
func (s *socksServer) Serve(ctx context.Context) error {
	s.conns = make(map[net.Conn]struct{})
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	closeAll := func() {
		s.Listener.Close()
		s.mu.Lock()
		s.closed = true
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	}
	stop := context.AfterFunc(ctx, closeAll)
	defer func() {
		if stop() {
			// Accepting failed: close here what ctx would have.
			closeAll()
		}
		cancel()
		wg.Wait()
	}()
	var delay time.Duration // after a transient Accept error, as net/http does
	for {
		c, err := s.Listener.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("accept: %w", err)
			}
			// EMFILE and the like pass: wait and go on.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			continue
		}
		delay = 0
		if !s.track(c, true) {
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.track(c, false)
			defer c.Close()
			s.handle(ctx, c)
		}()
	}
}

// track adds or removes c; adding fails once the server is closing.
func (s *socksServer) track(c net.Conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.conns, c)
		return true
	}
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *socksServer) handle(ctx context.Context, c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(socksHandshakeTimeout))
	tgt, err := socksHandshake(c)
	if err != nil {
		if ctx.Err() == nil && s.BadClient != nil {
			s.BadClient(c.RemoteAddr(), err)
		}
		return
	}
	octx, cancel := context.WithTimeout(ctx, socksHandshakeTimeout)
	st, _, err := s.Opener.OpenStream(octx, wire.MsgTCP, []byte(tgt))
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		_ = writeSOCKSReply(c, socksReplyFor(err))
		if s.Refused != nil {
			s.Refused(c.RemoteAddr(), tgt, err)
		}
		return
	}
	if err := writeSOCKSReply(c, socksSucceeded); err != nil {
		st.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	up, down, err := transport.Splice(ctx, c, st, nil)
	if s.Logger != nil {
		s.Logger.Debug("SOCKS stream closed", "target", tgt, "sent", up, "received", down, "err", err)
	}
}

// SOCKS5 (RFC 1928) as served here: no authentication, CONNECT only.
//
//	greeting: version 5 | n methods (1 byte) | n method bytes
//	choice:   version 5 | method (0x00 no authentication, 0xFF none acceptable)
//	request:  version 5 | command | 0x00 | address type | address | port (2 bytes, big endian)
//	          address: 4 bytes (type 0x01), 16 bytes (0x04), or a length byte and a name (0x03)
//	reply:    version 5 | reply code | 0x00 | 0x01 | 0.0.0.0 | port 0
const (
	socksVersion      = 0x05
	socksNoAuth       = 0x00
	socksNoAcceptable = 0xFF
	socksConnect      = 0x01
	socksIPv4         = 0x01
	socksDomain       = 0x03
	socksIPv6         = 0x04
)

// socksReply is a SOCKS5 reply code.
type socksReply byte

const (
	socksSucceeded          socksReply = 0x00
	socksGeneralFailure     socksReply = 0x01
	socksNotAllowed         socksReply = 0x02 // connection not allowed by ruleset
	socksNetworkUnreachable socksReply = 0x03
	socksHostUnreachable    socksReply = 0x04
	socksConnRefused        socksReply = 0x05
	socksCmdNotSupported    socksReply = 0x07
	socksAddrNotSupported   socksReply = 0x08
)

// socksHandshake reads the greeting and the request from c and answers
// them, up to the reply to a CONNECT. It returns the target, "host:port",
// of a CONNECT; any other request is answered with its reply code and
// returned as an error.
func socksHandshake(c io.ReadWriter) (string, error) {
	if err := socksGreeting(c); err != nil {
		return "", err
	}
	tgt, code, err := readSOCKSRequest(c)
	if err != nil {
		if code != socksSucceeded {
			_ = writeSOCKSReply(c, code)
		}
		return "", err
	}
	return tgt, nil
}

// socksGreeting reads the client's methods and chooses no
// authentication, or answers 0xFF when the client does not offer it.
func socksGreeting(rw io.ReadWriter) error {
	var hdr [2]byte
	if _, err := io.ReadFull(rw, hdr[:]); err != nil {
		return fmt.Errorf("read the SOCKS greeting: %w", err)
	}
	if hdr[0] != socksVersion {
		return fmt.Errorf("not a SOCKS5 client (version byte 0x%02x): point it at this proxy as SOCKS5, such as curl --socks5-hostname", hdr[0])
	}
	if hdr[1] == 0 {
		return errors.New("the SOCKS greeting offers no authentication method")
	}
	methods := make([]byte, hdr[1]) // at most 255
	if _, err := io.ReadFull(rw, methods); err != nil {
		return fmt.Errorf("read the SOCKS greeting: %w", err)
	}
	for _, m := range methods {
		if m == socksNoAuth {
			_, err := rw.Write([]byte{socksVersion, socksNoAuth})
			return err
		}
	}
	_, _ = rw.Write([]byte{socksVersion, socksNoAcceptable})
	return fmt.Errorf("the client offers only SOCKS authentication methods % x; this proxy serves clients without authentication (method 00)", methods)
}

// readSOCKSRequest reads one request and returns its target, "host:port"
// in canonical form, with a domain name unresolved. A request that cannot
// be served returns an error and the reply code to answer it with
// (socksSucceeded when the request is malformed and gets no reply). It
// reads at most 262 bytes (a 255-byte name).
func readSOCKSRequest(r io.Reader) (tgt string, code socksReply, err error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return "", socksSucceeded, fmt.Errorf("read the SOCKS request: %w", err)
	}
	if hdr[0] != socksVersion {
		return "", socksSucceeded, fmt.Errorf("SOCKS request with version 0x%02x, want 0x05", hdr[0])
	}
	var host string
	switch hdr[3] {
	case socksIPv4, socksIPv6:
		b := make([]byte, 4)
		if hdr[3] == socksIPv6 {
			b = make([]byte, 16)
		}
		if _, err := io.ReadFull(r, b); err != nil {
			return "", socksSucceeded, fmt.Errorf("read the SOCKS request's address: %w", err)
		}
		a, _ := netip.AddrFromSlice(b)
		host = a.Unmap().String()
	case socksDomain:
		var n [1]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return "", socksSucceeded, fmt.Errorf("read the SOCKS request's address: %w", err)
		}
		if n[0] == 0 {
			return "", socksGeneralFailure, errors.New("the SOCKS request names an empty host")
		}
		b := make([]byte, n[0])
		if _, err := io.ReadFull(r, b); err != nil {
			return "", socksSucceeded, fmt.Errorf("read the SOCKS request's address: %w", err)
		}
		host = string(b)
	default:
		return "", socksAddrNotSupported, fmt.Errorf("SOCKS address type 0x%02x is not supported (IPv4 0x01, name 0x03, IPv6 0x04 are)", hdr[3])
	}
	var port [2]byte
	if _, err := io.ReadFull(r, port[:]); err != nil {
		return "", socksSucceeded, fmt.Errorf("read the SOCKS request's port: %w", err)
	}
	if hdr[1] != socksConnect {
		return "", socksCmdNotSupported, fmt.Errorf("SOCKS command 0x%02x is not supported; this proxy serves CONNECT (0x01) only", hdr[1])
	}
	t, err := target.Parse(target.JoinHostPort(host, int(binary.BigEndian.Uint16(port[:]))))
	if err != nil {
		return "", socksGeneralFailure, fmt.Errorf("SOCKS request for %q: %w", host, err)
	}
	return t.String(), socksSucceeded, nil
}

// writeSOCKSReply answers a request with code. The bound address is
// 0.0.0.0:0: the device's end of the connection is not known here.
func writeSOCKSReply(w io.Writer, code socksReply) error {
	_, err := w.Write([]byte{socksVersion, byte(code), 0, socksIPv4, 0, 0, 0, 0, 0, 0})
	return err
}

// socksReplyFor maps the failure to open a stream to the closest SOCKS
// reply. The edge's and the device's Error answers carry only a reason
// for a person (docs/protocol.md), so the phrases of our edge's and
// agent's refusals and of the dialer's errors are matched here; anything
// else is a general failure.
func socksReplyFor(err error) socksReply {
	var (
		se *transport.StatusError
		re *wire.RemoteError
	)
	switch {
	case errors.As(err, &se):
		if se.StatusCode == http.StatusForbidden {
			return socksNotAllowed
		}
		return socksGeneralFailure
	case errors.As(err, &re):
		return socksReplyForReason(re.Reason)
	}
	return socksGeneralFailure
}

func socksReplyForReason(reason string) socksReply {
	has := func(phrases ...string) bool {
		for _, p := range phrases {
			if strings.Contains(reason, p) {
				return true
			}
		}
		return false
	}
	switch {
	case strings.HasPrefix(reason, "not allowed"),
		has("refused by the device's allow list", "serves tunnels to loopback addresses only", "not a loopback address; refused"):
		return socksNotAllowed
	case has("connection refused"):
		return socksConnRefused
	case has("network is unreachable"):
		return socksNetworkUnreachable
	case has("no route to host", "host is unreachable", "no such host", "no answer within", "i/o timeout"):
		return socksHostUnreachable
	}
	return socksGeneralFailure
}

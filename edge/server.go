// Package edge is the broker where devices and people meet. It
// authenticates devices by their certificates and clients by bearer tokens,
// decides stream by stream what each client may do on each device, splices
// the allowed streams with backpressure, and records an audit trail.
//
// A Server is an http.Handler: the caller owns the listener and the
// http.Server (HTTPServer builds one with the Server's limits), and the
// Server owns the sessions it hijacked from it. Shutdown drains them and
// Close ends them.
//
// Registry, Policy and Auditor are interfaces so that a registry shared by
// several edges, other policy sources and other audit sinks can replace the
// in-memory ones.
package edge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/internal/target"
	"github.com/tetherhq/tether/transport"
)

// Server is the edge broker. The zero value is a working edge that refuses
// every device (no DeviceCA) and every client (no Policy); fill in the
// fields before the first request and do not change them afterwards, except
// through Reload.
type Server struct {
	// DeviceCA verifies device certificates. Nil refuses every device.
	DeviceCA *x509.CertPool
	// Policy authenticates and authorizes clients. Nil denies everything.
	Policy Policy
	// Revoked lists revoked device certificate serials.
	Revoked Revocations
	// Registry tracks connected devices. Nil means a MemoryRegistry.
	Registry Registry
	// Auditor records audit events. Nil discards them.
	Auditor Auditor
	// Metrics records Prometheus metrics. Nil records none.
	Metrics *Metrics
	// Transport tunes the smux sessions. Nil means transport defaults.
	Transport *transport.Config
	// Limits bound every peer; zero fields take their defaults.
	Limits Limits
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger

	initOnce sync.Once
	lim      Limits
	tcfg     *transport.Config
	log      *slog.Logger
	reg      Registry
	audit    Auditor
	rate     *rateLimiter
	auth     atomic.Pointer[authState]
	active   atomic.Int64 // client streams being opened or spliced
	wg       sync.WaitGroup

	mu sync.Mutex
	// mu guards the following.
	sessions map[*transport.Session]struct{}
	draining bool
	closed   bool
}

// authState is what Reload swaps as one value.
type authState struct {
	policy  Policy
	revoked Revocations
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.tcfg = s.Transport
		if s.tcfg == nil {
			s.tcfg = transport.DefaultConfig()
		}
		maxStreams := s.tcfg.MaxStreams
		if maxStreams <= 0 {
			maxStreams = transport.DefaultMaxStreams
		}
		s.lim = s.Limits.withDefaults(maxStreams)
		s.log = s.Logger
		if s.log == nil {
			s.log = slog.New(slog.DiscardHandler)
		}
		s.reg = s.Registry
		if s.reg == nil {
			s.reg = &MemoryRegistry{}
		}
		s.audit = s.Auditor
		if s.audit == nil {
			s.audit = discardAuditor{}
		}
		s.rate = newRateLimiter(s.lim.UpgradeRate, s.lim.UpgradeBurst)
		p := s.Policy
		if p == nil {
			p = denyAll{}
		}
		s.auth.Store(&authState{policy: p, revoked: s.Revoked})
		s.sessions = make(map[*transport.Session]struct{})
	})
}

// Reload replaces the policy and the revocation list without dropping
// sessions. A connected device whose serial is now revoked is disconnected.
// A nil policy denies everything.
func (s *Server) Reload(p Policy, revoked Revocations) {
	s.init()
	if p == nil {
		p = denyAll{}
	}
	s.auth.Store(&authState{policy: p, revoked: revoked})
	for _, d := range s.reg.List() {
		if revoked.Has(d.Serial) {
			s.log.Warn("device certificate revoked; closing its session", "device", d.ID, "serial", d.Serial)
			d.close("certificate revoked")
		}
	}
	s.log.Info("policy and revocation list reloaded", "revoked", len(revoked))
}

// Devices returns the connected devices.
func (s *Server) Devices() []*Device {
	s.init()
	return s.reg.List()
}

// TLSConfig returns a copy of base fit for the edge: TLS 1.2 at least,
// client certificates requested but not required (one port serves devices
// and clients), and session tickets off, so that every connection presents
// its certificate afresh and the revocation check sees it.
func (s *Server) TLSConfig(base *tls.Config) *tls.Config {
	c := base.Clone()
	if c == nil {
		c = &tls.Config{}
	}
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	if c.ClientAuth == tls.NoClientCert {
		c.ClientAuth = tls.RequestClientCert
	}
	c.SessionTicketsDisabled = true
	if len(c.NextProtos) == 0 {
		c.NextProtos = []string{"http/1.1"}
	}
	return c
}

// HTTPServer returns an http.Server that serves s with its limits: header
// and TLS handshake timeouts and the maximum header size. The caller owns
// it: it serves a listener with it and shuts it down before s.
func (s *Server) HTTPServer(tlsConf *tls.Config) *http.Server {
	s.init()
	return &http.Server{
		Handler:           s,
		TLSConfig:         s.TLSConfig(tlsConf),
		ReadHeaderTimeout: s.lim.HandshakeTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    s.lim.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
}

// ServeHTTP routes the edge's endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.init()
	switch {
	case r.URL.Path == "/healthz":
		fmt.Fprintln(w, "ok")
	case r.URL.Path == "/readyz":
		if s.isDraining() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	case r.URL.Path == "/api/devices":
		s.serveDeviceList(w, r)
	case r.URL.Path == "/device":
		s.serveDevice(w, r)
	case strings.HasPrefix(r.URL.Path, "/client/"):
		s.serveClient(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining || s.closed
}

// track adds sess to the live sessions and the wait group; it fails once
// the server is closed, so no session escapes Close.
func (s *Server) track(sess *transport.Session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.sessions[sess] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(sess *transport.Session) {
	s.mu.Lock()
	delete(s.sessions, sess)
	s.mu.Unlock()
	s.wg.Done()
}

// refuse answers an upgrade with an HTTP error, counts it and logs it.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code int, reason, msg string, attrs ...any) {
	s.Metrics.upgradeFailure(reason)
	level := slog.LevelWarn
	if code == http.StatusTooManyRequests {
		// A flood must not become a log flood: the metric counts them.
		level = slog.LevelDebug
		w.Header().Set("Retry-After", "1")
	}
	s.log.Log(context.Background(), level, "upgrade refused: "+msg, append([]any{"remote", r.RemoteAddr, "path", r.URL.Path, "status", code}, attrs...)...)
	http.Error(w, msg, code)
}

func (s *Server) admit(w http.ResponseWriter, r *http.Request) bool {
	if s.isDraining() {
		s.refuse(w, r, http.StatusServiceUnavailable, "draining", "the edge is shutting down; reconnect to reach another edge")
		return false
	}
	if !s.rate.allow(r.RemoteAddr, time.Now()) {
		s.refuse(w, r, http.StatusTooManyRequests, "rate_limited", "too many connections from your address; retry later")
		return false
	}
	if !transport.IsUpgradeRequest(r) {
		s.Metrics.upgradeFailure("not_upgrade")
		_, _ = transport.Upgrade(w, r, s.tcfg) // answers 426
		return false
	}
	return true
}

// serveDevice authenticates a device by its certificate and runs its
// session.
func (s *Server) serveDevice(w http.ResponseWriter, r *http.Request) {
	if !s.admit(w, r) {
		return
	}
	var chain []*x509.Certificate
	if r.TLS != nil {
		chain = r.TLS.PeerCertificates
	}
	if len(chain) == 0 {
		s.audit.Audit(Event{Time: time.Now(), Kind: EventDeviceRejected, RemoteAddr: r.RemoteAddr, Result: "no_certificate"})
		s.refuse(w, r, http.StatusUnauthorized, "no_certificate", "a device certificate is required on /device")
		return
	}
	serial := certs.SerialHex(chain[0])
	if s.DeviceCA == nil {
		s.refuse(w, r, http.StatusForbidden, "bad_certificate", "this edge accepts no devices (no device CA configured)", "serial", serial)
		return
	}
	id, err := certs.VerifyDevice(chain, s.DeviceCA, time.Now())
	if err != nil {
		msg := "device certificate rejected: " + err.Error()
		s.audit.Audit(Event{Time: time.Now(), Kind: EventDeviceRejected, Device: chain[0].Subject.CommonName,
			RemoteAddr: r.RemoteAddr, Serial: serial, Result: "bad_certificate", Reason: err.Error()})
		s.refuse(w, r, http.StatusForbidden, "bad_certificate", msg, "serial", serial, "cn", chain[0].Subject.CommonName)
		return
	}
	if s.auth.Load().revoked.Has(serial) {
		s.audit.Audit(Event{Time: time.Now(), Kind: EventDeviceRejected, Device: id, RemoteAddr: r.RemoteAddr,
			Serial: serial, Result: "revoked"})
		s.refuse(w, r, http.StatusForbidden, "revoked", "device certificate rejected: serial "+serial+" is revoked", "device", id, "serial", serial)
		return
	}
	sess, err := transport.Upgrade(w, r, s.tcfg)
	if err != nil {
		s.Metrics.upgradeFailure("upgrade_error")
		s.log.Warn("device upgrade failed", "device", id, "remote", r.RemoteAddr, "err", err)
		return
	}
	if !s.track(sess) {
		sess.Close()
		return
	}
	// A fresh goroutine holds the session: the handler's goroutine, whose
	// stack grew through TLS and HTTP, ends here, which keeps an idle
	// session small.
	d := &Device{ID: id, Serial: serial, Since: time.Now(), RemoteAddr: sess.RemoteAddr(), sess: sess, notAfter: chain[0].NotAfter}
	go func() {
		defer s.untrack(sess)
		s.runDevice(d)
	}()
}

func (s *Server) runDevice(d *Device) {
	s.audit.Audit(Event{Time: d.Since, Kind: EventDeviceConnect, Device: d.ID, RemoteAddr: addrString(d.RemoteAddr),
		Serial: d.Serial, Result: "ok"})
	if old := s.reg.Register(d); old != nil {
		s.log.Info("device reconnected; replacing its older session", "device", d.ID,
			"old_remote", addrString(old.RemoteAddr), "new_remote", addrString(d.RemoteAddr))
		old.close("replaced by a newer connection from " + addrString(d.RemoteAddr))
	}
	// A Reload that ran between the revocation check and Register did not
	// see this device: check again now that it is registered.
	if s.auth.Load().revoked.Has(d.Serial) {
		d.close("certificate revoked")
	}
	// The certificate's validity bounds the session too.
	expiry := time.AfterFunc(time.Until(d.notAfter), func() {
		s.log.Warn("device certificate expired; closing its session", "device", d.ID, "serial", d.Serial)
		d.close("certificate expired")
	})
	defer expiry.Stop()
	s.Metrics.deviceDelta(1)
	s.log.Info("device connected", "device", d.ID, "remote", addrString(d.RemoteAddr), "serial", d.Serial)

	// Devices never open streams: accept promptly (so smux's backlog never
	// fills) and close each one.
	refused := 0
	for {
		st, err := d.sess.AcceptStream()
		if err != nil {
			break
		}
		refused++
		if refused == 1 {
			s.log.Warn("device opened a stream; devices may not, so it was refused", "device", d.ID)
			s.audit.Audit(Event{Time: time.Now(), Kind: EventDeviceStream, Device: d.ID, Serial: d.Serial, Result: "refused"})
		}
		st.Close()
	}
	d.sess.Close()
	reason := d.reason()
	s.log.Info("device disconnected", "device", d.ID, "reason", reason)
	s.audit.Audit(Event{Time: time.Now(), Kind: EventDeviceDisconnect, Device: d.ID, RemoteAddr: addrString(d.RemoteAddr),
		Serial: d.Serial, Reason: reason, DurationMS: time.Since(d.Since).Milliseconds()})
	s.reg.Unregister(d)
	s.Metrics.deviceDelta(-1)
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// bearer returns the token of an "Authorization: Bearer <token>" header.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// authenticate checks the bearer token; on failure it has answered 401.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (Identity, Policy, bool) {
	pol := s.auth.Load().policy
	tok := bearer(r)
	if tok == "" {
		s.audit.Audit(Event{Time: time.Now(), Kind: EventClientRejected, RemoteAddr: r.RemoteAddr, Result: "no_token"})
		s.refuse(w, r, http.StatusUnauthorized, "no_token", "missing bearer token: pass --token or --token-file")
		return Identity{}, nil, false
	}
	id, ok := pol.Authenticate(tok)
	if !ok {
		s.audit.Audit(Event{Time: time.Now(), Kind: EventClientRejected, RemoteAddr: r.RemoteAddr, Result: "bad_token"})
		s.refuse(w, r, http.StatusUnauthorized, "bad_token", "unknown bearer token: check the token you were given")
		return Identity{}, nil, false
	}
	return id, pol, true
}

// deviceInfo is one entry of GET /api/devices.
type deviceInfo struct {
	ID             string    `json:"id"`
	ConnectedSince time.Time `json:"connected_since"`
	RemoteAddr     string    `json:"remote_addr"`
	Streams        int       `json:"streams"`
}

func (s *Server) serveDeviceList(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	if !s.rate.allow(r.RemoteAddr, time.Now()) {
		s.refuse(w, r, http.StatusTooManyRequests, "rate_limited", "too many requests from your address; retry later")
		return
	}
	id, pol, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	out := []deviceInfo{}
	for _, d := range s.reg.List() {
		if !pol.DeviceAllowed(id, d.ID) {
			continue
		}
		out = append(out, deviceInfo{ID: d.ID, ConnectedSince: d.Since.UTC(), RemoteAddr: addrString(d.RemoteAddr), Streams: d.Streams()})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// clientSession is one client's session, bound to one device ID.
type clientSession struct {
	id     Identity
	device string
	remote string
	sess   *transport.Session
	active atomic.Int64
}

func (s *Server) serveClient(w http.ResponseWriter, r *http.Request) {
	if !s.admit(w, r) {
		return
	}
	raw := strings.TrimPrefix(r.URL.EscapedPath(), "/client/")
	deviceID, err := url.PathUnescape(raw)
	if err != nil || certs.ValidDeviceID(deviceID) != nil {
		s.refuse(w, r, http.StatusBadRequest, "bad_device_id", "invalid device ID in the path: use /client/{deviceID}")
		return
	}
	id, _, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	if !s.auth.Load().policy.DeviceAllowed(id, deviceID) {
		s.audit.Audit(Event{Time: time.Now(), Kind: EventClientRejected, Client: id.Name, Device: deviceID,
			RemoteAddr: r.RemoteAddr, Result: "forbidden"})
		s.refuse(w, r, http.StatusForbidden, "forbidden", fmt.Sprintf("client %s may not reach device %s", id.Name, deviceID), "client", id.Name)
		return
	}
	if _, ok := s.reg.Lookup(deviceID); !ok {
		s.audit.Audit(Event{Time: time.Now(), Kind: EventClientRejected, Client: id.Name, Device: deviceID,
			RemoteAddr: r.RemoteAddr, Result: "offline"})
		s.refuse(w, r, http.StatusNotFound, "offline", fmt.Sprintf("device %s is not connected to this edge", deviceID), "client", id.Name)
		return
	}
	sess, err := transport.Upgrade(w, r, s.tcfg)
	if err != nil {
		s.Metrics.upgradeFailure("upgrade_error")
		s.log.Warn("client upgrade failed", "client", id.Name, "remote", r.RemoteAddr, "err", err)
		return
	}
	if !s.track(sess) {
		sess.Close()
		return
	}
	cs := &clientSession{id: id, device: deviceID, remote: r.RemoteAddr, sess: sess}
	go func() {
		defer s.untrack(sess)
		s.runClient(cs)
	}()
}

func (s *Server) runClient(cs *clientSession) {
	since := time.Now()
	s.Metrics.clientDelta(1)
	s.log.Info("client session opened", "client", cs.id.Name, "device", cs.device, "remote", cs.remote)
	s.audit.Audit(Event{Time: since, Kind: EventClientOpen, Client: cs.id.Name, Device: cs.device, RemoteAddr: cs.remote, Result: "ok"})
	var wg sync.WaitGroup
	for {
		st, err := cs.sess.AcceptStream()
		if err != nil {
			break
		}
		wg.Add(1)
		s.active.Add(1) // counted before it runs, so a drain cannot miss it
		go func() {
			defer wg.Done()
			defer s.active.Add(-1)
			s.serveStream(cs, st)
		}()
	}
	cs.sess.Close()
	wg.Wait()
	s.Metrics.clientDelta(-1)
	s.log.Info("client session closed", "client", cs.id.Name, "device", cs.device)
	s.audit.Audit(Event{Time: time.Now(), Kind: EventClientClose, Client: cs.id.Name, Device: cs.device,
		RemoteAddr: cs.remote, DurationMS: time.Since(since).Milliseconds()})
}

// canonical validates and canonicalizes an opening message. It returns the
// request for the policy and the payload to send to the device.
func canonical(m transport.Message) (Request, []byte, error) {
	req := Request{Type: m.Type}
	switch m.Type {
	case transport.MsgTCP:
		t, err := target.Parse(string(m.Payload))
		if err != nil {
			return req, nil, fmt.Errorf("bad tcp target: %v", err)
		}
		req.Target = t
		return req, []byte(t.String()), nil
	case transport.MsgUDP:
		src, rest, ok := strings.Cut(string(m.Payload), ":")
		if !ok {
			return req, nil, fmt.Errorf("bad udp request %q: want <source port>:<host>:<port>", m.Payload)
		}
		sp := 0
		if src != "0" {
			p, err := target.ParsePort(src)
			if err != nil {
				return req, nil, fmt.Errorf("bad udp source port: %v", err)
			}
			sp = p
		}
		t, err := target.Parse(rest)
		if err != nil {
			return req, nil, fmt.Errorf("bad udp target: %v", err)
		}
		req.Target = t
		return req, []byte(strconv.Itoa(sp) + ":" + t.String()), nil
	case transport.MsgPTY, transport.MsgPTYCommand, transport.MsgFileTransfer:
		return req, m.Payload, nil
	case transport.MsgReload:
		return req, nil, nil
	}
	return req, nil, fmt.Errorf("unknown stream type 0x%02x", uint8(m.Type))
}

// serveStream handles one client stream: opening message, policy, device
// stream, answer, splice.
func (s *Server) serveStream(cs *clientSession, st *transport.Stream) {
	defer st.Close()
	start := time.Now()
	ev := Event{Kind: EventStreamDeny, Client: cs.id.Name, Device: cs.device}
	// Every decision is audited before the client hears of it.
	deny := func(result, reason string) {
		ev.Time, ev.Result, ev.Reason = time.Now(), result, reason
		s.audit.Audit(ev)
		s.Metrics.stream(ev.Type, result)
		_ = st.SetWriteDeadline(time.Now().Add(s.lim.OpenTimeout))
		_ = transport.WriteError(st, reason)
	}

	if n := cs.active.Add(1); n > int64(s.lim.MaxStreamsPerClient) {
		cs.active.Add(-1)
		ev.Type = "unknown"
		deny("limit", fmt.Sprintf("too many streams: this session may have %d open at once", s.lim.MaxStreamsPerClient))
		return
	}
	defer cs.active.Add(-1)

	_ = st.SetReadDeadline(time.Now().Add(s.lim.OpenTimeout))
	m, err := transport.ReadMessage(st)
	if err != nil {
		s.log.Debug("client stream ended before its opening message", "client", cs.id.Name, "err", err)
		return
	}
	_ = st.SetReadDeadline(time.Time{})
	ev.Type = typeWord(m.Type)
	if s.isDraining() {
		deny("draining", "the edge is shutting down; reconnect to reach another edge")
		return
	}
	req, payload, err := canonical(m)
	if err != nil {
		deny("invalid", err.Error())
		return
	}
	if req.Target.Host != "" {
		ev.Target = req.Target.String()
	}
	if err := s.auth.Load().policy.Authorize(cs.id, cs.device, req); err != nil {
		s.log.Info("stream denied", "client", cs.id.Name, "device", cs.device, "type", ev.Type, "target", ev.Target)
		deny("denied", err.Error())
		return
	}
	dev, ok := s.reg.Lookup(cs.device)
	if !ok {
		deny("offline", fmt.Sprintf("device %s is not connected to this edge; retry when it is back", cs.device))
		return
	}
	if n := dev.streams.Add(1); n > int64(s.lim.MaxStreamsPerDevice) {
		dev.streams.Add(-1)
		deny("limit", fmt.Sprintf("too many streams: device %s has %d open, the most this edge allows", cs.device, s.lim.MaxStreamsPerDevice))
		return
	}
	defer dev.streams.Add(-1)

	ds, err := dev.sess.OpenStream()
	if err != nil {
		deny("device_error", fmt.Sprintf("cannot open a stream to device %s: %v", cs.device, err))
		return
	}
	defer ds.Close()
	_ = ds.SetDeadline(time.Now().Add(s.lim.OpenTimeout))
	if err := transport.WriteMessage(ds, m.Type, payload); err != nil {
		deny("device_error", fmt.Sprintf("cannot send the request to device %s: %v", cs.device, err))
		return
	}
	ans, err := transport.ReadMessage(ds)
	switch {
	case err != nil && isTimeout(err):
		deny("device_error", fmt.Sprintf("device %s did not answer the %s request within %v", cs.device, ev.Type, s.lim.OpenTimeout))
		return
	case err != nil:
		// Relay "closed without an answer" as it is: the client turns it
		// into a clear error of its own.
		ev.Time, ev.Result, ev.Reason = time.Now(), "no_answer", "the device closed the stream without answering"
		s.audit.Audit(ev)
		s.Metrics.stream(ev.Type, "device_error")
		return
	case ans.Type == transport.MsgError:
		ev.Time, ev.Result, ev.Reason = time.Now(), "device_refused", string(ans.Payload)
		ev.Kind = EventStreamOpen
		s.audit.Audit(ev)
		s.Metrics.stream(ev.Type, "device_error")
		_ = st.SetWriteDeadline(time.Now().Add(s.lim.OpenTimeout))
		_ = transport.WriteMessage(st, transport.MsgError, ans.Payload)
		return
	case ans.Type != transport.MsgOK:
		deny("device_error", fmt.Sprintf("device %s answered with an unexpected %v message", cs.device, ans.Type))
		return
	}
	_ = ds.SetDeadline(time.Time{})
	ev.Kind, ev.Time, ev.Result = EventStreamOpen, time.Now(), "ok"
	s.audit.Audit(ev)
	s.Metrics.stream(ev.Type, "ok")
	_ = st.SetWriteDeadline(time.Now().Add(s.lim.OpenTimeout))
	if err := transport.WriteMessage(st, transport.MsgOK, ans.Payload); err != nil {
		ev.Kind, ev.Time, ev.Result, ev.Reason = EventStreamClose, time.Now(), "error", "the client went away before the answer: "+err.Error()
		s.audit.Audit(ev)
		return
	}
	_ = st.SetWriteDeadline(time.Time{})
	s.Metrics.activeDelta(ev.Type, 1)
	up, down, err := transport.Splice(context.Background(), &stallGuard{Stream: st, timeout: s.lim.StallTimeout}, &stallGuard{Stream: ds, timeout: s.lim.StallTimeout}, nil)
	s.Metrics.activeDelta(ev.Type, -1)
	s.Metrics.addBytes(up, down)

	ev.Kind, ev.Time, ev.Result, ev.Reason = EventStreamClose, time.Now(), "ok", ""
	if err != nil {
		ev.Result, ev.Reason = "error", err.Error()
		if isTimeout(err) {
			ev.Result = "reset_stalled"
			ev.Reason = fmt.Sprintf("no progress for %v while data was waiting", s.lim.StallTimeout)
			s.Metrics.stalledReset()
			s.log.Info("stalled stream reset", "client", cs.id.Name, "device", cs.device, "type", ev.Type, "target", ev.Target)
		}
	}
	ev.BytesUp, ev.BytesDown = up, down
	ev.DurationMS = time.Since(start).Milliseconds()
	s.audit.Audit(ev)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// stallGuard bounds how long a write to a spliced stream may go without
// progress: a write that cannot proceed because the reader on the other end
// stopped (its window is full) fails within timeout, and Splice then closes
// both ends, so a stalled stream holds its share of the session only for a
// bounded time. A write starts with at least 3/4 of timeout ahead: the
// deadline is moved only every timeout/4, which spares a deadline update on
// every frame of a busy stream. Only Splice's one copy loop in each
// direction writes to a stallGuard, so last needs no lock.
type stallGuard struct {
	*transport.Stream
	timeout time.Duration
	last    time.Time // when the write deadline was last moved
}

func (g *stallGuard) Write(p []byte) (int, error) {
	if now := time.Now(); now.Sub(g.last) > g.timeout/4 {
		_ = g.Stream.SetWriteDeadline(now.Add(g.timeout))
		g.last = now
	}
	return g.Stream.Write(p)
}

// Shutdown drains the edge: new upgrades and streams are refused, every
// device is sent GoAway (so it reconnects, through the load balancer, to
// another edge), and Shutdown waits for the open client streams to end
// until ctx is done. Then it closes every session as Close does. It
// returns ctx's error if the streams did not drain in time.
//
// The caller shuts its http.Server down first so that the listener stops.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	already := s.draining || s.closed
	s.draining = true
	s.mu.Unlock()
	if !already {
		s.sendGoAways()
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var err error
	for s.active.Load() > 0 {
		select {
		case <-ctx.Done():
			err = ctx.Err()
			s.log.Warn("drain timeout: closing the remaining streams", "streams", s.active.Load())
		case <-tick.C:
			continue
		}
		break
	}
	s.Close()
	return err
}

// sendGoAways asks every connected device to leave, in parallel.
func (s *Server) sendGoAways() {
	devs := s.reg.List()
	s.log.Info("sending GoAway to every device", "devices", len(devs))
	var wg sync.WaitGroup
	for _, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.goAway(d); err != nil {
				s.log.Warn("cannot send GoAway; the device will be cut at the end of the drain", "device", d.ID, "err", err)
			}
		}()
	}
	wg.Wait()
}

func (s *Server) goAway(d *Device) error {
	d.streams.Add(1)
	defer d.streams.Add(-1)
	st, err := d.sess.OpenStream()
	if err != nil {
		return err
	}
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(s.lim.GoAwayTimeout))
	return transport.WriteMessage(st, transport.MsgGoAway, nil)
}

// Close closes every session at once and waits for their goroutines. It is
// idempotent.
func (s *Server) Close() error {
	s.init()
	s.mu.Lock()
	s.closed = true
	sessions := make([]*transport.Session, 0, len(s.sessions))
	for sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	for _, d := range s.reg.List() {
		d.close("edge shutting down")
	}
	for _, sess := range sessions {
		sess.Close()
	}
	s.wg.Wait()
	return nil
}

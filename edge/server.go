package edge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/internal/logx"
	"github.com/tetherhq/tether/internal/ratelimit"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/labels"
	"github.com/tetherhq/tether/transport/wire"
)

// Server is the edge broker. The zero value is a working edge that refuses
// every device (no DeviceCA) and every client (no Policy); fill in the
// fields before the first request and do not change them afterwards, except
// through Reload, ReloadAuth and ReloadDeviceCA.
type Server struct {
	// DeviceCA verifies device certificates. Nil refuses every device.
	// ReloadDeviceCA replaces it.
	DeviceCA *x509.CertPool
	// Policy authenticates and authorizes clients. Nil denies everything.
	Policy Policy
	// Revoked lists revoked device certificate serials.
	Revoked Revocations
	// Registry tracks connected devices. Nil means a MemoryRegistry.
	Registry Registry
	// Auditor records audit events. Nil discards them. If it is a
	// WaitAuditor, PTY and file-transfer opens wait for their record to
	// be written (Limits.AuditTimeout) and are refused when it is not.
	Auditor Auditor
	// Metrics records Prometheus metrics. Nil records none.
	Metrics *Metrics
	// Transport tunes the sessions, client and device alike; nil means
	// the transport defaults. Beyond the session itself, the edge takes
	// from it: HandshakeTimeout, which also bounds the TLS handshake and
	// the reading of the request head (against slowloris); OpenTimeout,
	// which bounds a client's opening message and, separately, the
	// device's answer; and MaxStreams, the ceiling of the stream caps of
	// Limits.
	Transport *transport.Config
	// Limits bound every peer; zero fields take their defaults.
	Limits Limits
	// Cluster, when set, makes this edge one of a cluster: devices on
	// other edges are reached through peer sessions (see Cluster). Nil is
	// a single edge, which runs no cluster code.
	Cluster *Cluster
	// LastSeen keeps the devices that disconnected, for the device list
	// (GET /api/devices?status=offline): a MemoryLastSeen for a single
	// edge, edge/cluster's Presence for a cluster. Nil keeps none: the
	// list shows connected devices only.
	LastSeen LastSeen
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger
	// EdgeID names a single edge in the /edge/<edge ID>/device/<device
	// ID> client path of qbee-v1 clients. Empty: a single edge refuses
	// that prefix (404). A clustered edge ignores it and takes the IDs of
	// its cluster (Cluster.EdgeID and the live edges of Presence).
	EdgeID string
	// Web, when set, serves the web terminal under /web/ (WebConfig). Nil
	// serves none: /web answers 404.
	Web *WebConfig
	// Recording records shells at this edge; nil records none.
	Recording *RecordingConfig
	// Auth signs people in by SSO and accepts user certificates and
	// JWTs (sso.go); nil accepts static tokens only.
	Auth *AuthConfig

	initOnce    sync.Once
	lim         Limits
	tcfg        *transport.Config // Transport with its defaults
	log         *slog.Logger
	reg         Registry
	audit       Auditor
	rec         recordings       // the shells' recordings (record.go)
	rate        *ratelimit.Keyed // upgrades per source IP
	rejectAudit *auditLimiter
	auth        atomic.Pointer[authState]
	deviceCA    atomic.Pointer[x509.CertPool] // DeviceCA, then what ReloadDeviceCA set
	active      atomic.Int64                  // client streams being opened or spliced
	leftovers   atomic.Bool                   // a device's record may have outlived it: its withdrawal was skipped or failed (clustered.go)
	ctx         context.Context
	cancel      context.CancelCauseFunc // ends ctx: the edge is closing
	wg          sync.WaitGroup
	// recIndex indexes the recording directory for the recordings API;
	// see recordings. recIndexMu guards it.
	recIndexMu sync.Mutex
	recIndex   *recordingIndex

	mu sync.Mutex
	// mu guards the following.
	sessions map[*transport.Session]struct{}
	clients  map[*clientSession]struct{}
	peers    *peerSet  // the peer sessions of a clustered edge
	web      *webState // nil without Server.Web; set by init
	draining bool
	closed   bool
	// offRT is the sign-in runtime from before a reload turned sign-in
	// off: turned on again, it keeps what that one remembered (the ID
	// tokens exchanged, the issuers' keys).
	offRT *authRuntime
}

// authState is what Reload swaps as one value. gen numbers the states,
// starting at 1; a client session records the one it was last checked
// under.
type authState struct {
	policy  Policy
	revoked Revocations
	rt      *authRuntime // Server.Auth made ready; nil without one
	gen     uint64
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.tcfg = s.Transport.WithDefaults()
		s.lim = s.Limits.withDefaults(s.tcfg.MaxStreams)
		s.log = logx.Or(s.Logger)
		s.reg = s.Registry
		if s.reg == nil {
			s.reg = &MemoryRegistry{}
		}
		s.audit = s.Auditor
		if s.audit == nil {
			s.audit = discardAuditor{}
		}
		s.rate = &ratelimit.Keyed{Rate: s.lim.UpgradeRate, Burst: float64(s.lim.UpgradeBurst)}
		s.rejectAudit = &auditLimiter{b: ratelimit.Bucket{Rate: s.lim.RejectAuditRate, Burst: float64(s.lim.RejectAuditBurst)}}
		p := s.Policy
		if p == nil {
			p = denyAll{}
		}
		var rt *authRuntime
		if s.Auth != nil {
			rt = newAuthRuntime(s.Auth, nil)
		}
		s.auth.Store(&authState{policy: p, revoked: s.Revoked, rt: rt, gen: 1})
		s.deviceCA.Store(s.DeviceCA)
		s.ctx, s.cancel = context.WithCancelCause(context.Background())
		s.sessions = make(map[*transport.Session]struct{})
		s.clients = make(map[*clientSession]struct{})
		if s.Web != nil {
			s.web = newWebState(s.Web)
			s.watchWebRevocations()
		}
		if s.Cluster != nil {
			s.startCluster()
		}
		s.initRecordings()
	})
}

// Reload replaces the policy and the revocation list. A connected device
// whose serial is now revoked is disconnected. Every client session is
// checked again under the new policy: one whose token the policy no longer
// knows, or now gives to another client, or whose client may no longer
// reach its device, is closed; so is every open stream that the new policy
// would refuse. Each closing is audited. The other sessions and streams go
// on. A nil policy denies everything. Sign-in (Server.Auth) stays as it
// is; ReloadAuth replaces it too.
func (s *Server) Reload(p Policy, revoked Revocations) {
	s.init()
	s.reload(p, revoked, func(rt *authRuntime) *authRuntime { return rt })
}

// ReloadAuth is Reload with a new sign-in configuration: the user CA,
// the identity provider and the JWT issuers (nil: none). Sign-ins from
// then on use it, and every session of a person or of automation is
// checked again under it: one whose user certificate no longer verifies
// against the user CA, or whose JWT the issuers no longer accept, is
// closed, as is a web session signed in by SSO once SSO is gone. The ID
// tokens already exchanged for certificates stay used, also when auth is
// turned off and on again. An auth that CheckAuthConfig refuses changes
// nothing, and its error says why.
func (s *Server) ReloadAuth(p Policy, revoked Revocations, auth *AuthConfig) error {
	s.init()
	if err := CheckAuthConfig(auth); err != nil {
		return err
	}
	s.reload(p, revoked, func(old *authRuntime) *authRuntime {
		if auth == nil {
			return nil
		}
		if old == nil {
			old = s.offRT // under mu
		}
		return newAuthRuntime(auth, old)
	})
	return nil
}

// reload swaps in the policy p, the revocations and the sign-in runtime
// that auth makes of the running one, and checks every session again.
func (s *Server) reload(p Policy, revoked Revocations, auth func(*authRuntime) *authRuntime) {
	if p == nil {
		p = denyAll{}
	}
	// Reloads are rare: a lock keeps the generations in order.
	s.mu.Lock()
	old := s.auth.Load()
	st := &authState{policy: p, revoked: revoked, rt: auth(old.rt), gen: old.gen + 1}
	if st.rt == nil && old.rt != nil {
		s.offRT = old.rt
	}
	s.auth.Store(st)
	clients := make([]*clientSession, 0, len(s.clients))
	for cs := range s.clients {
		clients = append(clients, cs)
	}
	s.mu.Unlock()
	for _, d := range s.reg.List() {
		if revoked.Has(d.Serial) {
			s.log.Warn("device certificate revoked; closing its session", "device", d.ID, "serial", d.Serial)
			d.close("certificate revoked")
		}
	}
	closed := 0
	for _, cs := range clients {
		if !s.recheck(cs, st) {
			closed++
		}
	}
	webClosed := s.recheckWebTerminals(st)
	s.log.Info("policy and revocation list reloaded", "revoked", len(revoked), "client_sessions", len(clients), "client_sessions_closed", closed, "web_terminals_closed", webClosed)
}

// ReloadDeviceCA replaces the CA pool that verifies device certificates
// (nil refuses every device from then on). Devices connect from then on
// if their certificates verify against pool, and a connected device whose
// certificate no longer does is disconnected, audited with the reason.
// It returns how many were. A pool equal to the running one changes
// nothing, so that a reload of the same file verifies no device again.
func (s *Server) ReloadDeviceCA(pool *x509.CertPool) int {
	s.init()
	if old := s.deviceCA.Load(); old == pool || old != nil && pool != nil && old.Equal(pool) {
		return 0
	}
	s.deviceCA.Store(pool)
	closed := 0
	for _, d := range s.reg.List() {
		if reason := deviceUntrusted(d, pool); reason != "" {
			s.log.Warn("the new device CA does not trust a connected device's certificate; closing its session", "device", d.ID, "serial", d.Serial, "err", reason)
			d.close(reason)
			closed++
		}
	}
	s.log.Info("device CA reloaded", "devices_closed", closed)
	return closed
}

// deviceUntrusted checks d's certificate against the device CA pool, and
// returns why a session must end on it, or "".
func deviceUntrusted(d *Device, pool *x509.CertPool) string {
	if pool == nil {
		return "the edge no longer accepts devices (no device CA)"
	}
	if _, err := certs.VerifyDevice(d.chain, pool, time.Now()); err != nil {
		return "certificate no longer trusted: " + err.Error()
	}
	return ""
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
		ReadHeaderTimeout: s.tcfg.HandshakeTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    s.lim.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ConnContext:       connContext,
		// Every request reaches ServeHTTP, OPTIONS * included, so that
		// the heads Listener watches stay in step with the requests.
		DisableGeneralOptionsHandler: true,
	}
}

// ServeHTTP routes the edge's endpoints. A request whose credentials or
// framing could be read in two ways is refused with 400 first (see
// ambiguity).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.init()
	folded := false
	if hc := headConnOf(r); hc != nil {
		folded = hc.nextHead()
		if r.TLS == nil || !r.TLS.HandshakeComplete {
			// net/http fills Request.TLS in from ConnectionState,
			// which completes the handshake; should a version of it
			// not, do it here.
			st := hc.ConnectionState()
			r.TLS = &st
		}
	}
	if s.web != nil && (r.URL.Path == "/web" || strings.HasPrefix(r.URL.Path, "/web/")) {
		s.serveWeb(w, r, folded)
		return
	}
	if strings.HasPrefix(r.URL.Path, authPrefix) {
		s.serveAuth(w, r, folded) // takes a body: sso.go
		return
	}
	if msg := ambiguity(r, folded); msg != "" {
		s.refuseAmbiguous(w, r, msg)
		return
	}
	switch {
	case r.URL.Path == "/healthz":
		fmt.Fprintln(w, "ok")
	case r.URL.Path == "/readyz":
		if s.isDraining() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
		if c := s.Cluster; c != nil {
			// Ready either way: local devices keep working without the
			// cluster state, and a balancer that took every edge out for
			// it would stop them all.
			state := "ok"
			if err := c.Presence.Health(); err != nil {
				state = err.Error()
			}
			fmt.Fprintf(w, "cluster: %s; edge %s; %d edges live; %d peer sessions; presence view %v old\n",
				state, c.EdgeID, len(c.Presence.Edges()), s.peers.up(), c.Presence.Age().Round(time.Millisecond))
		}
	case r.URL.Path == "/api/devices":
		s.serveDeviceList(w, r)
	case r.URL.Path == "/api/recordings" || strings.HasPrefix(r.URL.Path, "/api/recordings/"):
		s.serveRecordings(w, r)
	case r.URL.Path == "/device":
		if s.admit(w, r) {
			s.serveDevice(w, r, "")
		}
	case isClientPath(r.URL.Path):
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

// track1 counts a goroutine (a handler, a session's close) that the
// edge's Close waits for; false once the edge is closed.
func (s *Server) track1() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
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

// ambiguity returns why r could be read in two ways, or "". A proxy in
// front of the edge may resolve such a request differently from net/http
// (which takes the first Authorization header, lets Transfer-Encoding
// override Content-Length, and joins folded lines), so the edge takes none
// of them. The edge's endpoints take no request body.
func ambiguity(r *http.Request, folded bool) string {
	switch {
	case folded:
		return "a header line of the request is folded onto the previous one (it starts with a space or a tab); send each header on one line"
	case len(r.Header.Values("Authorization")) > 1:
		return "the request has more than one Authorization header; send exactly one"
	case len(r.TransferEncoding) > 0:
		return "the request has a Transfer-Encoding header; this edge takes no request body, so send none (and no Content-Length)"
	case r.ContentLength != 0:
		return "the request has a body; this edge takes none, so send no Content-Length or body"
	}
	return ""
}

// refuseAmbiguous answers 400 and closes the connection: after a request
// whose framing is in doubt, what follows on it is in doubt too.
func (s *Server) refuseAmbiguous(w http.ResponseWriter, r *http.Request, msg string) {
	w.Header().Set("Connection", "close")
	switch {
	case r.URL.Path == "/device":
		s.auditRejected(Event{Kind: EventDeviceRejected, RemoteAddr: r.RemoteAddr, Result: "ambiguous_request", Reason: msg})
	case isClientPath(r.URL.Path):
		s.auditRejected(Event{Kind: EventClientRejected, RemoteAddr: r.RemoteAddr, Result: "ambiguous_request", Reason: msg})
	}
	s.refuse(w, r, http.StatusBadRequest, "ambiguous_request", msg)
}

// auditRejected records a refused upgrade, at the bounded rate of
// Limits.RejectAuditRate: peers without any credential can cause refusals
// at will.
func (s *Server) auditRejected(e Event) {
	now := time.Now()
	ok, suppressed := s.rejectAudit.take(now)
	if !ok {
		s.Metrics.auditSuppressed()
		return
	}
	e.Time, e.Suppressed = now, suppressed
	s.audit.Audit(e)
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
	if !s.allowFrom(r.RemoteAddr) {
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

// allowFrom takes a token of the upgrade rate limit (Limits.UpgradeRate)
// for the IP of remoteAddr ("ip:port").
func (s *Server) allowFrom(remoteAddr string) bool {
	ip := remoteAddr
	if h, _, err := net.SplitHostPort(remoteAddr); err == nil {
		ip = h
	}
	return s.rate.Allow(ip, time.Now())
}

// serveDevice authenticates a device by its certificate and runs its
// session; the caller has admitted the request. pathID, when set, is the
// device ID of a /device/<id> path, which must be the certificate's.
func (s *Server) serveDevice(w http.ResponseWriter, r *http.Request, pathID string) {
	var chain []*x509.Certificate
	if r.TLS != nil {
		chain = r.TLS.PeerCertificates
	}
	if len(chain) == 0 {
		s.auditRejected(Event{Kind: EventDeviceRejected, RemoteAddr: r.RemoteAddr, Result: "no_certificate"})
		s.refuse(w, r, http.StatusUnauthorized, "no_certificate", "a device certificate is required on /device")
		return
	}
	serial := certs.SerialHex(chain[0])
	ca := s.deviceCA.Load()
	if ca == nil {
		s.refuse(w, r, http.StatusForbidden, "bad_certificate", "this edge accepts no devices (no device CA configured)", "serial", serial)
		return
	}
	id, err := certs.VerifyDevice(chain, ca, time.Now())
	if err != nil {
		msg := "device certificate rejected: " + err.Error()
		s.auditRejected(Event{Kind: EventDeviceRejected, Device: chain[0].Subject.CommonName,
			RemoteAddr: r.RemoteAddr, Serial: serial, Result: "bad_certificate", Reason: err.Error()})
		s.refuse(w, r, http.StatusForbidden, "bad_certificate", msg, "serial", serial, "cn", chain[0].Subject.CommonName)
		return
	}
	if pathID != "" && pathID != id {
		msg := fmt.Sprintf("the path names device %s but the certificate is device %s's; a device dials /device", pathID, id)
		s.auditRejected(Event{Kind: EventDeviceRejected, Device: id, RemoteAddr: r.RemoteAddr, Serial: serial, Result: "path_mismatch", Reason: msg})
		s.refuse(w, r, http.StatusForbidden, "path_mismatch", msg, "device", id)
		return
	}
	certLabels, err := labels.FromURIs(chain[0].URIs)
	if err != nil {
		msg := "device certificate rejected: its labels: " + err.Error() + "; issue it again with tether certs device --label key=value"
		s.auditRejected(Event{Kind: EventDeviceRejected, Device: id, RemoteAddr: r.RemoteAddr, Serial: serial, Result: "bad_certificate", Reason: msg})
		s.refuse(w, r, http.StatusForbidden, "bad_certificate", msg, "device", id)
		return
	}
	if s.auth.Load().revoked.Has(serial) {
		s.auditRejected(Event{Kind: EventDeviceRejected, Device: id, RemoteAddr: r.RemoteAddr,
			Serial: serial, Result: "revoked"})
		s.refuse(w, r, http.StatusForbidden, "revoked", "device certificate rejected: serial "+serial+" is revoked", "device", id, "serial", serial)
		return
	}
	if reason := s.takeoverRefusal(id); reason != "" {
		s.auditRejected(Event{Kind: EventDeviceRejected, Device: id, RemoteAddr: r.RemoteAddr, Serial: serial, Result: "takeover_hold", Reason: reason})
		s.refuse(w, r, http.StatusConflict, "takeover_hold", reason, "device", id)
		return
	}
	sess, err := s.upgrade(w, r)
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
	d := &Device{ID: id, Serial: serial, Since: time.Now(), RemoteAddr: sess.RemoteAddr(), Agent: transport.ParseAgentInfo(r.Header),
		Labels: certLabels, sess: sess, notAfter: chain[0].NotAfter, chain: chain, ca: ca}
	d.maxStreams, d.share = s.deviceCaps(sess.PeerMaxStreams())
	d.nonce = newNonce()
	go func() {
		defer s.untrack(sess)
		s.runDevice(d)
	}()
}

func (s *Server) runDevice(d *Device) {
	s.audit.Audit(Event{Time: d.Since, Kind: EventDeviceConnect, Device: d.ID, RemoteAddr: addrString(d.RemoteAddr),
		Serial: d.Serial, Result: "ok"})
	// takeover is set before the device is registered, so that readers
	// (takeoverRefusal) never see it change.
	if _, ok := s.reg.Lookup(d.ID); ok {
		d.takeover = true
	}
	if s.Cluster != nil {
		if rec, ok := s.Cluster.Presence.Lookup(d.ID); ok && rec.Edge != s.Cluster.EdgeID {
			d.takeover = true // a live session on another edge: this one replaces it
		}
	}
	if old := s.reg.Register(d); old != nil {
		s.log.Info("device reconnected; replacing its older session", "device", d.ID,
			"old_remote", addrString(old.RemoteAddr), "new_remote", addrString(d.RemoteAddr))
		old.close("replaced by a newer connection from " + addrString(d.RemoteAddr))
	}
	s.announce(d)
	// A Reload that ran between the revocation check and Register did not
	// see this device: check again now that it is registered.
	if s.auth.Load().revoked.Has(d.Serial) {
		d.close("certificate revoked")
	}
	if ca := s.deviceCA.Load(); ca != d.ca {
		if reason := deviceUntrusted(d, ca); reason != "" {
			d.close(reason)
		}
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
		st, err := d.sess.Accept()
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
	if s.reg.Unregister(d) {
		s.withdraw(d)
		s.recordLastSeen(d)
	}
	s.Metrics.deviceDelta(-1)
}

// upgrade answers 101 and returns the session. What follows the request
// on the connection is the session's, not HTTP: Listener's scanning ends.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request) (*transport.Session, error) {
	if hc := headConnOf(r); hc != nil {
		hc.stop()
	}
	return transport.Upgrade(w, r, s.tcfg)
}

// deviceCaps returns the stream cap of a device that serves announced
// streams at once (0: it did not say) and one client's share of it: the
// share defaults to half of what the device itself serves, so that one
// client cannot fill a device that serves fewer streams than the edge
// allows.
func (s *Server) deviceCaps(announced int) (maxStreams, share int) {
	maxStreams = s.lim.MaxStreamsPerDevice
	if announced > 0 {
		maxStreams = min(maxStreams, announced)
	}
	share = max(1, maxStreams/2)
	if set := s.Limits.MaxStreamsPerClientPerDevice; set > 0 {
		share = min(set, maxStreams)
	}
	return maxStreams, share
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
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
	var devs []*Device
	if !already {
		devs = s.sendGoAways()
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
	if err == nil {
		err = s.awaitMoved(ctx, devs)
	}
	s.Close()
	return err
}

// sendGoAways asks every connected device to leave, in parallel, and
// returns them.
func (s *Server) sendGoAways() []*Device {
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
	return devs
}

func (s *Server) goAway(d *Device) error {
	d.streams.Add(1)
	defer d.streams.Add(-1)
	ctx, cancel := context.WithTimeout(context.Background(), s.lim.GoAwayTimeout)
	defer cancel()
	st, err := d.sess.OpenContext(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	deadline, _ := ctx.Deadline()
	_ = st.SetDeadline(deadline)
	return wire.WriteMessage(st, wire.MsgGoAway, nil)
}

// closingErr is why streams end when the edge closes; their resets carry
// it to the clients.
func (s *Server) closingErr() error {
	if s.Cluster != nil {
		return fmt.Errorf("edge %s is shutting down", s.Cluster.EdgeID)
	}
	return errors.New("the edge is shutting down")
}

// Close closes every session at once and waits for their goroutines. It is
// idempotent.
func (s *Server) Close() error {
	s.init()
	s.cancel(s.closingErr())
	s.mu.Lock()
	s.closed = true
	sessions := make([]*transport.Session, 0, len(s.sessions))
	for sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	// Client and peer sessions go first: a stream that a peer edge spliced
	// to one of our devices then ends at that edge with the loss of its
	// session with us, which names this edge, rather than with the reset
	// that our end of the device's stream would send it.
	devices := s.reg.List()
	own := make(map[*transport.Session]bool, len(devices))
	for _, d := range devices {
		own[d.sess] = true
	}
	for _, sess := range sessions {
		if !own[sess] {
			sess.Close()
		}
	}
	for _, d := range devices {
		d.close("edge shutting down")
	}
	for _, sess := range sessions {
		sess.Close()
	}
	s.wg.Wait()
	s.stopRecordings()
	return nil
}

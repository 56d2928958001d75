package edge

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetherhq/tether/internal/workers"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/labels"
	"github.com/tetherhq/tether/transport/target"
	"github.com/tetherhq/tether/transport/wire"
)

// credential is what a client authenticated with: the identity, the
// SHA-256 of its token and the policy state that accepted it.
type credential struct {
	id   Identity
	hash [sha256.Size]byte
	auth *authState
	// notAfter and serial are a user certificate's expiry and serial, or
	// (notAfter only) a JWT's expiry; zero for a token (identity.go).
	notAfter time.Time
	serial   string
	// chain (a user certificate's) or jwt is the credential itself, held
	// in memory only, for ReloadAuth to verify again.
	chain []*x509.Certificate
	jwt   string
}

// authenticate checks the client's token, sent as "Authorization: Bearer
// <token>" or as the bare token (clientToken); on failure it has answered
// 401.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (credential, bool) {
	st := s.auth.Load()
	if cred, handled, ok := s.authenticatePersonal(w, r, st); handled {
		return cred, ok
	}
	tok, problem := clientToken(r.Header.Get("Authorization"))
	if problem != "" {
		s.auditRejected(Event{Kind: EventClientRejected, RemoteAddr: r.RemoteAddr, Result: "no_token", Reason: problem})
		s.refuse(w, r, http.StatusUnauthorized, "no_token", problem)
		return credential{}, false
	}
	id, ok := st.policy.Authenticate(tok)
	if !ok {
		s.auditRejected(Event{Kind: EventClientRejected, RemoteAddr: r.RemoteAddr, Result: "bad_token"})
		s.refuse(w, r, http.StatusUnauthorized, "bad_token", "unknown token: check the token you were given")
		return credential{}, false
	}
	return credential{id: id, hash: HashToken(tok), auth: st}, true
}

// deviceInfo is one entry of GET /api/devices (docs/api.md).
type deviceInfo struct {
	ID string `json:"id"`
	// Status is "online" or "offline".
	Status string `json:"status"`
	// ConnectedSince is when the session began; online devices only.
	ConnectedSince *time.Time `json:"connected_since,omitempty"`
	// LastSeen is when the session ended; offline devices only.
	LastSeen *time.Time `json:"last_seen,omitempty"`
	// RemoteAddr is the device's address (then, for an offline one).
	RemoteAddr string `json:"remote_addr"`
	// Streams is the device's open streams, known for the devices of the
	// edge that answers; zero for the others of a cluster.
	Streams int `json:"streams"`
	// Edge is the ID of the edge that holds (or held) the device, in a
	// cluster.
	Edge string `json:"edge,omitempty"`
	transport.AgentInfo
	// Labels are the device's labels: its certificate's, and the edge's
	// labels file's on top.
	Labels map[string]string `json:"labels,omitempty"`
}

// Device list statuses (the status query parameter).
const (
	statusOnline  = "online"
	statusOffline = "offline"
	statusAll     = "all"
)

// maxMatchPattern bounds the match query parameter.
const maxMatchPattern = 256

// deviceQuery is a checked GET /api/devices query.
type deviceQuery struct {
	online, offline bool
	match           string // a path.Match pattern; "" matches every ID
	labels          labels.Selector
}

// parseDeviceQuery checks the query of GET /api/devices; the error says
// what is wrong and what to send.
func parseDeviceQuery(q url.Values) (deviceQuery, error) {
	for k := range q {
		if k != "status" && k != "match" && k != "labels" {
			return deviceQuery{}, fmt.Errorf("unknown query parameter %q: use status, match and labels", k)
		}
	}
	var dq deviceQuery
	if len(q["status"]) > 1 || len(q["match"]) > 1 || len(q["labels"]) > 1 {
		return deviceQuery{}, errors.New("status, match and labels may each be given once")
	}
	sel, err := labels.ParseSelector(q.Get("labels"))
	if err != nil {
		return deviceQuery{}, fmt.Errorf("labels: %v", err)
	}
	dq.labels = sel
	switch st := q.Get("status"); st {
	case "", statusOnline:
		dq.online = true
	case statusOffline:
		dq.offline = true
	case statusAll:
		dq.online, dq.offline = true, true
	default:
		return deviceQuery{}, fmt.Errorf("status %q: use online (the default), offline or all", st)
	}
	dq.match = q.Get("match")
	if len(dq.match) > maxMatchPattern {
		return deviceQuery{}, fmt.Errorf("match pattern is %d bytes; the most is %d", len(dq.match), maxMatchPattern)
	}
	if _, err := path.Match(dq.match, ""); err != nil {
		return deviceQuery{}, fmt.Errorf("match pattern %q: %v: use * for any run of characters, ? for one, [a-z] for a class, and \\ to escape one", dq.match, err)
	}
	return dq, nil
}

func (q deviceQuery) matches(dev DeviceRef) bool {
	if !q.labels.Matches(dev.Labels) {
		return false
	}
	if q.match == "" {
		return true
	}
	ok, _ := path.Match(q.match, dev.ID)
	return ok
}

func (s *Server) serveDeviceList(w http.ResponseWriter, r *http.Request) {
	if !s.admitAPI(w, r, http.MethodGet) {
		return
	}
	cred, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	q, err := parseDeviceQuery(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	visible := func(dev DeviceRef) bool { return q.matches(dev) && cred.auth.policy.DeviceAllowed(cred.id, dev) }
	out := s.listDevices(r.Context(), q, visible, w.Header())
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// listDevices returns the devices of q that visible accepts, sorted by
// ID: this edge's, the cluster's, and the last seen. A part it cannot
// list is named in a Tether-Cluster or Tether-Last-Seen header of hdr.
// visible sees each device with its labels (LabelDevice).
func (s *Server) listDevices(ctx context.Context, q deviceQuery, visible func(DeviceRef) bool, hdr http.Header) []deviceInfo {
	out := []deviceInfo{}
	pol := s.auth.Load().policy
	ref := func(id string, certLabels map[string]string) DeviceRef {
		return LabelDevice(pol, DeviceRef{ID: id, Labels: certLabels})
	}
	online := make(map[string]bool)
	self := ""
	if s.Cluster != nil {
		self = s.Cluster.EdgeID
	}
	for _, d := range s.reg.List() {
		online[d.ID] = true
		dr := ref(d.ID, d.Labels)
		if !q.online || !visible(dr) {
			continue
		}
		since := d.Since.UTC()
		out = append(out, deviceInfo{ID: d.ID, Status: statusOnline, ConnectedSince: &since, RemoteAddr: addrString(d.RemoteAddr),
			Streams: d.Streams(), Edge: self, AgentInfo: d.Agent, Labels: dr.Labels})
	}
	if s.Cluster != nil {
		for _, rec := range s.Cluster.Presence.List() {
			if online[rec.ID] || rec.Edge == self {
				continue
			}
			online[rec.ID] = true
			dr := ref(rec.ID, rec.Labels)
			if !q.online || !visible(dr) {
				continue
			}
			since := rec.Since.UTC()
			out = append(out, deviceInfo{ID: rec.ID, Status: statusOnline, ConnectedSince: &since, RemoteAddr: rec.RemoteAddr,
				Edge: rec.Edge, AgentInfo: rec.AgentInfo, Labels: dr.Labels})
		}
		if err := s.Cluster.Presence.Health(); err != nil {
			hdr.Set("Tether-Cluster", "unavailable: "+err.Error())
		}
	}
	if q.offline && s.LastSeen != nil {
		ctx, cancel := context.WithTimeout(ctx, lastSeenTimeout)
		recs, err := s.LastSeen.ListLastSeen(ctx)
		cancel()
		if err != nil {
			// The online part stands; the header says what is missing.
			hdr.Set("Tether-Last-Seen", "unavailable: "+err.Error())
		}
		for _, rec := range recs {
			if online[rec.ID] {
				continue
			}
			dr := ref(rec.ID, rec.Labels)
			if !visible(dr) {
				continue
			}
			seen := rec.LastSeen.UTC()
			out = append(out, deviceInfo{ID: rec.ID, Status: statusOffline, LastSeen: &seen, RemoteAddr: rec.RemoteAddr,
				Edge: rec.Edge, AgentInfo: rec.AgentInfo, Labels: dr.Labels})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// clientSession is one client's session, bound to one device ID, to the
// credential it authenticated with and to the policy generation it was
// last checked under.
type clientSession struct {
	id   Identity
	cred [sha256.Size]byte // SHA-256 of its token
	// notAfter, serial, chain and jwt: see credential.
	notAfter time.Time
	serial   string
	chain    []*x509.Certificate
	jwt      string
	device   string
	remote   string
	sess     *transport.Session
	ctx      context.Context // ends when the session ends (errSessionEnded) or the edge closes
	cancel   context.CancelCauseFunc
	active   atomic.Int64
	first    atomic.Int32 // firstWaiting, firstOpened or firstTimedOut

	checkMu sync.Mutex
	// checkMu guards the following.
	gen     uint64       // the policy generation it was last checked under
	rt      *authRuntime // the sign-in runtime its credential passed under
	revoked bool         // a check closed it

	mu sync.Mutex
	// mu guards the following.
	streams     map[*streamGrant]struct{}
	closeResult string
	closeReason string
}

// The states of clientSession.first.
const (
	firstWaiting  = iota // no stream yet
	firstOpened          // a stream was accepted in time
	firstTimedOut        // FirstStreamTimeout passed first
)

// streamGrant is an open stream as the policy allowed it; a Reload that
// no longer allows it cancels it.
type streamGrant struct {
	req    Request
	cancel context.CancelCauseFunc
}

// errStreamRevoked is the cause of a stream cancelled by a Reload.
var errStreamRevoked = errors.New("the reloaded policy no longer allows this stream")

// errSessionEnded is why a client session's context ends when the session
// itself does.
var errSessionEnded = errors.New("the client's session ended")

// close ends the session, recording the first result and reason given
// for the audit record.
func (cs *clientSession) close(result, reason string) {
	cs.mu.Lock()
	if cs.closeResult == "" {
		cs.closeResult, cs.closeReason = result, reason
	}
	cs.mu.Unlock()
	cs.sess.Close()
}

func (cs *clientSession) closing() (result, reason string) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.closeResult, cs.closeReason
}

// addStream registers an open stream and returns its context, which a
// Reload cancels if it no longer allows req.
func (cs *clientSession) addStream(req Request) (context.Context, *streamGrant) {
	ctx, cancel := context.WithCancelCause(cs.ctx)
	g := &streamGrant{req: req, cancel: cancel}
	cs.mu.Lock()
	cs.streams[g] = struct{}{}
	cs.mu.Unlock()
	return ctx, g
}

func (cs *clientSession) removeStream(g *streamGrant) {
	cs.mu.Lock()
	delete(cs.streams, g)
	cs.mu.Unlock()
	g.cancel(nil)
}

// recheck checks cs again under st, unless it already was under st or a
// later state. It closes the session if its credential is gone or now
// names another client, or its client may no longer reach the device, and
// cancels the streams that st no longer allows. It reports whether the
// session may go on.
func (s *Server) recheck(cs *clientSession, st *authState) bool {
	cs.checkMu.Lock()
	defer cs.checkMu.Unlock()
	if cs.gen >= st.gen || cs.revoked {
		return !cs.revoked
	}
	cs.gen = st.gen
	var reason string
	dev := s.deviceRef(st.policy, cs.device)
	ha, ok := st.policy.(HashAuthenticator)
	if personal(cs.id) {
		// A person's identity is not a token of the policy: its rule and
		// credential are checked here, its name and groups against the
		// new roles below.
		reason = recheckPersonal(cs, st)
	} else if !ok {
		reason = "the reloaded policy cannot check live sessions again"
	} else if id, ok := ha.AuthenticateHash(cs.cred); !ok {
		reason = "the token it authenticated with was removed or replaced"
	} else if id.Name != cs.id.Name {
		reason = fmt.Sprintf("the token it authenticated with now belongs to client %s", id.Name)
	}
	if reason == "" && !st.policy.DeviceAllowed(cs.id, dev) {
		reason = fmt.Sprintf("client %s may no longer reach device %s", cs.id.Name, cs.device)
	}
	if reason != "" {
		s.log.Warn("closing a client session after a reload: "+reason, "client", cs.id.Name, "device", cs.device, "remote", cs.remote)
		s.Metrics.sessionClosed("revoked")
		cs.revoked = true
		cs.close("revoked", reason)
		return false
	}
	cs.mu.Lock()
	var revoked []*streamGrant
	for g := range cs.streams {
		if st.policy.Authorize(cs.id, dev, g.req) != nil {
			revoked = append(revoked, g)
		}
	}
	cs.mu.Unlock()
	for _, g := range revoked {
		g.cancel(errStreamRevoked)
	}
	return true
}

// isClientPath reports whether path is one of the client endpoints:
// /client/<id>, /device/<id> or /edge/<edge ID>/device/<id>.
func isClientPath(path string) bool {
	return strings.HasPrefix(path, clientPrefix) || strings.HasPrefix(path, qbeeDevicePath) || strings.HasPrefix(path, qbeeEdgePrefix)
}

// serveClient serves the client endpoints. /client/<id> is always a
// client. On the qbee-v1 paths, /device/<id> and /edge/<edge
// ID>/device/<id>, a request with a client certificate and no
// Authorization header is a device (as on /device), one with a credential
// and no certificate is a client, and one with both is refused: neither
// reading of it can be told to be the one meant.
func (s *Server) serveClient(w http.ResponseWriter, r *http.Request) {
	if !s.admit(w, r) {
		return
	}
	p, ok, err := parseClientPath(r.URL.EscapedPath())
	if !ok {
		s.refuse(w, r, http.StatusNotFound, "bad_path", "no such endpoint: clients dial /client/{deviceID}, /device/{deviceID} or /edge/{edgeID}/device/{deviceID}")
		return
	}
	if err != nil {
		s.refuse(w, r, http.StatusBadRequest, "bad_device_id", err.Error())
		return
	}
	_, hasAuth := r.Header["Authorization"]
	if p.qbee && hasDeviceCert(r) {
		if hasAuth {
			msg := "the request carries both a client certificate and an Authorization header: a device presents only its certificate (on /device), a client only its token; drop one"
			s.auditRejected(Event{Kind: EventClientRejected, Device: p.device, RemoteAddr: r.RemoteAddr, Result: "both_credentials", Reason: msg})
			s.refuse(w, r, http.StatusBadRequest, "both_credentials", msg)
			return
		}
		if p.edge != "" && !s.knownEdge(p.edge) {
			s.refuse(w, r, http.StatusNotFound, "unknown_edge", s.unknownEdgeText(p.edge))
			return
		}
		s.serveDevice(w, r, p.device)
		return
	}
	if p.qbee && !hasAuth {
		msg := "no credential: a client sends \"Authorization: <token>\" (or \"Bearer <token>\"); a device presents its certificate"
		s.auditRejected(Event{Kind: EventClientRejected, Device: p.device, RemoteAddr: r.RemoteAddr, Result: "no_token", Reason: msg})
		s.refuse(w, r, http.StatusUnauthorized, "no_token", msg)
		return
	}
	cred, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	if p.edge != "" && !s.knownEdge(p.edge) {
		s.auditRejected(Event{Kind: EventClientRejected, Client: cred.id.Name, Auth: cred.id.method(), Device: p.device,
			RemoteAddr: r.RemoteAddr, Result: "unknown_edge"})
		s.refuse(w, r, http.StatusNotFound, "unknown_edge", s.unknownEdgeText(p.edge), "client", cred.id.Name)
		return
	}
	s.serveClientSession(w, r, cred, p.device)
}

// serveClientSession runs the session of an authenticated client with
// deviceID.
func (s *Server) serveClientSession(w http.ResponseWriter, r *http.Request, cred credential, deviceID string) {
	id := cred.id
	if dev := s.deviceRef(cred.auth.policy, deviceID); !cred.auth.policy.DeviceAllowed(id, dev) {
		s.auditRejected(Event{Kind: EventClientRejected, Client: id.Name, Auth: id.method(), Device: deviceID,
			RemoteAddr: r.RemoteAddr, Result: "forbidden"})
		s.refuse(w, r, http.StatusForbidden, "forbidden", deviceDenial(cred.auth.policy, id, dev), "client", id.Name)
		return
	}
	if code, result, msg := s.locate(deviceID); code != 0 {
		s.auditRejected(Event{Kind: EventClientRejected, Client: id.Name, Auth: id.method(), Device: deviceID,
			RemoteAddr: r.RemoteAddr, Result: result})
		s.refuse(w, r, code, result, msg, "client", id.Name)
		return
	}
	sess, err := s.upgrade(w, r)
	if err != nil {
		s.Metrics.upgradeFailure("upgrade_error")
		s.log.Warn("client upgrade failed", "client", id.Name, "remote", r.RemoteAddr, "err", err)
		return
	}
	cs := &clientSession{id: id, cred: cred.hash, notAfter: cred.notAfter, serial: cred.serial, chain: cred.chain, jwt: cred.jwt,
		device: deviceID, remote: r.RemoteAddr, sess: sess, streams: make(map[*streamGrant]struct{})}
	cs.gen, cs.rt = cred.auth.gen, cred.auth.rt
	cs.ctx, cs.cancel = context.WithCancelCause(s.ctx)
	if !s.trackClient(cs) {
		cs.cancel(errSessionEnded)
		sess.Close()
		return
	}
	go func() {
		defer s.untrack(sess)
		defer s.untrackClient(cs)
		s.runClient(cs)
	}()
}

// locate checks, before a client session is upgraded, that its device is
// reachable from here: held by this edge, or by another edge of the
// cluster. It returns the refusal otherwise (code 0: reachable).
func (s *Server) locate(device string) (code int, result, msg string) {
	if _, ok := s.reg.Lookup(device); ok {
		return 0, "", ""
	}
	if s.Cluster == nil {
		return http.StatusNotFound, "offline", fmt.Sprintf("device %s is not connected to this edge", device)
	}
	if err := s.Cluster.Presence.Health(); err != nil {
		return http.StatusServiceUnavailable, "cluster_unavailable",
			fmt.Sprintf("cluster state unavailable (%v); device %s is not on this edge", err, device)
	}
	if _, ok := s.Cluster.Presence.Lookup(device); ok || s.peers.lostSince(rehomeWindow) {
		// Shortly after an edge was lost, its devices may be on another
		// edge before presence shows it: the opens ask the peers.
		return 0, "", ""
	}
	return http.StatusNotFound, "offline", fmt.Sprintf("device %s is not connected to any edge of this cluster", device)
}

// trackClient adds cs to the live sessions. A Reload that ran since cs
// authenticated did not see it: cs is checked again under the policy of
// now.
func (s *Server) trackClient(cs *clientSession) bool {
	if !s.track(cs.sess) {
		return false
	}
	s.mu.Lock()
	s.clients[cs] = struct{}{}
	s.mu.Unlock()
	s.recheck(cs, s.auth.Load())
	return true
}

func (s *Server) untrackClient(cs *clientSession) {
	s.mu.Lock()
	delete(s.clients, cs)
	s.mu.Unlock()
}

func (s *Server) runClient(cs *clientSession) {
	defer cs.cancel(errSessionEnded)
	since := time.Now()
	s.Metrics.clientDelta(1)
	s.log.Info("client session opened", "client", cs.id.Name, "device", cs.device, "remote", cs.remote)
	s.audit.Audit(Event{Time: since, Kind: EventClientOpen, Client: cs.id.Name, Auth: cs.id.method(), Device: cs.device, RemoteAddr: cs.remote, Result: "ok"})
	// A session that never opens a stream holds a connection and memory
	// for nothing: it gets FirstStreamTimeout to open one.
	idle := time.AfterFunc(s.lim.FirstStreamTimeout, func() {
		if cs.first.CompareAndSwap(firstWaiting, firstTimedOut) {
			reason := fmt.Sprintf("no stream opened within %v of the upgrade", s.lim.FirstStreamTimeout)
			s.log.Info("closing an idle client session: "+reason, "client", cs.id.Name, "device", cs.device, "remote", cs.remote)
			s.Metrics.sessionClosed("no_stream")
			cs.close("no_stream", reason)
		}
	})
	defer idle.Stop()
	defer s.expireAt(cs)()
	// A client (a tether tcp forward) opens stream after stream: they run
	// on goroutines that serve one after another (workers.Pool).
	streams := &workers.Pool[*transport.Stream]{Run: func(st *transport.Stream) {
		defer s.active.Add(-1)
		s.serveStream(cs, st)
	}}
	for {
		st, err := cs.sess.Accept()
		if err != nil {
			break
		}
		if cs.first.Load() != firstOpened && !cs.first.CompareAndSwap(firstWaiting, firstOpened) {
			st.Close() // the session timed out as this stream arrived
			break
		}
		s.active.Add(1) // counted before it runs, so a drain cannot miss it
		streams.Go(st)
	}
	cs.sess.Close()
	cs.cancel(errSessionEnded)
	streams.Close()
	s.Metrics.clientDelta(-1)
	result, reason := cs.closing()
	s.log.Info("client session closed", "client", cs.id.Name, "device", cs.device)
	s.audit.Audit(Event{Time: time.Now(), Kind: EventClientClose, Client: cs.id.Name, Auth: cs.id.method(), Device: cs.device,
		RemoteAddr: cs.remote, Result: result, Reason: reason, DurationMS: time.Since(since).Milliseconds()})
}

// canonical validates and canonicalizes an opening message. It returns the
// request for the policy and the payload to send to the device.
func canonical(m wire.Message) (Request, []byte, error) {
	req := Request{Type: m.Type}
	switch m.Type {
	case wire.MsgTCP:
		t, err := target.Parse(string(m.Payload))
		if err != nil {
			return req, nil, fmt.Errorf("bad tcp target: %v", err)
		}
		req.Target = t
		return req, []byte(t.String()), nil
	case wire.MsgUDP:
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
	case wire.MsgFileTransfer:
		// The payload goes on unchanged (it may carry extensions); its path
		// must already be canonical, so that the policy sees what the
		// device opens.
		f, err := wire.DecodeFileRequest(m.Payload)
		if err != nil {
			return req, nil, fmt.Errorf("bad file transfer request: %s", strings.TrimPrefix(err.Error(), wire.ErrBadFileRequest.Error()+": "))
		}
		req.File = &f
		return req, m.Payload, nil
	case wire.MsgPTY, wire.MsgPTYCommand:
		return req, m.Payload, nil
	case wire.MsgReload:
		return req, nil, nil
	case wire.MsgExec:
		r, err := wire.DecodeExecRequest(m.Payload)
		if err != nil {
			return req, nil, fmt.Errorf("bad exec request: %v", err)
		}
		b, err := r.Encode()
		return req, b, err
	}
	if relayable(m.Type) {
		// A type Tether does not define: the policy decides, and the
		// payload goes to the device unchanged.
		return req, m.Payload, nil
	}
	return req, nil, fmt.Errorf("unknown stream type 0x%02x", uint8(m.Type))
}

// auditRequired reports whether streams of type t must not reach the
// device before their request is recorded: shells and commands, file
// transfers, and relayed types, whose effect the edge cannot know.
func auditRequired(t wire.MsgType) bool {
	return t == wire.MsgPTY || t == wire.MsgExec || t == wire.MsgFileTransfer || relayable(t)
}

// auditWait records e and waits until it is written, for at most
// Limits.AuditTimeout.
func (s *Server) auditWait(ctx context.Context, e Event) error {
	wa, ok := s.audit.(WaitAuditor)
	if !ok {
		s.audit.Audit(e)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.lim.AuditTimeout)
	defer cancel()
	return wa.AuditWait(ctx, e)
}

// serveStream handles one client stream: opening message, policy, then
// the open path (open) and the splice (relay).
func (s *Server) serveStream(cs *clientSession, st *transport.Stream) {
	defer st.Close()
	start := time.Now()
	ev := Event{Kind: EventStreamDeny, Client: cs.id.Name, Auth: cs.id.method(), Device: cs.device}
	// Every decision is audited before the client hears of it.
	deny := func(result, reason string) {
		s.answerRefusal(st, ev, &refusal{result: result, reason: reason}, false)
	}

	if n := cs.active.Add(1); n > int64(s.lim.MaxStreamsPerClientSession) {
		cs.active.Add(-1)
		ev.Type = "unknown"
		deny("limit", fmt.Sprintf("too many streams: this session may have %d open at once", s.lim.MaxStreamsPerClientSession))
		return
	}
	defer cs.active.Add(-1)

	_ = st.SetReadDeadline(time.Now().Add(s.tcfg.OpenTimeout))
	m, err := wire.ReadMessage(st)
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
	if err := describeRequest(&ev, req, m); err != nil {
		deny("invalid", err.Error())
		return
	}
	// Registered before the policy check: a Reload from here on sees the
	// stream and cancels it if the new policy refuses it.
	ctx, grant := cs.addStream(req)
	defer cs.removeStream(grant)
	auth := s.auth.Load()
	if !s.recheck(cs, auth) {
		deny("revoked", "this session's credential or rights were changed by a reload; reconnect")
		return
	}
	dev := s.deviceRef(auth.policy, cs.device)
	if err := auth.policy.Authorize(cs.id, dev, req); err != nil {
		s.log.Info("stream denied", "client", cs.id.Name, "device", cs.device, "type", ev.Type, "target", ev.Target)
		deny("denied", err.Error())
		return
	}
	ev.Role = grantingRole(auth.policy, cs.id, dev, req)
	o, ref := s.open(ctx, &openRequest{id: cs.id, device: cs.device, req: req, msg: wire.Message{Type: m.Type, Payload: payload}, ev: &ev, from: st})
	if ref != nil {
		s.answerRefusal(st, ev, ref, false)
		return
	}
	s.relay(ctx, st, o, ev, start)
}

// describeRequest fills the audit record of a stream from its request:
// the target of a tunnel, the command of a shell. A shell request the
// audit cannot name does not run.
func describeRequest(ev *Event, req Request, m wire.Message) error {
	if req.Target.Host != "" {
		ev.Target = req.Target.String()
	}
	if f := req.File; f != nil {
		ev.Direction, ev.Path = fileDirection(f.Direction), f.Path
		ev.Offset = fileOffset(m.Payload)
	}
	if m.Type == wire.MsgPTY {
		c, err := wire.DecodePTYCommand(m.Payload)
		if err != nil {
			return fmt.Errorf("bad pty request: %v", err)
		}
		ev.Command = c.Command
		if len(c.CommandArgs) > 0 {
			ev.Args = c.CommandArgs
		}
	}
	if m.Type == wire.MsgExec {
		// The command line is recorded as sent, as for a shell's command:
		// it is what the device runs. Secrets do not belong on it.
		c, err := wire.DecodeExecRequest(m.Payload)
		if err != nil {
			return fmt.Errorf("bad exec request: %v", err)
		}
		ev.Command = c.Command
	}
	return nil
}

// fileOffset is the resume offset of a file transfer request that
// carries our extension ({"tether":{"offset":N}}), for the audit; 0
// otherwise.
func fileOffset(payload []byte) int64 {
	var x struct {
		Tether *struct {
			Offset int64 `json:"offset"`
		} `json:"tether"`
	}
	if json.Unmarshal(payload, &x) != nil || x.Tether == nil || x.Tether.Offset < 0 {
		return 0
	}
	return x.Tether.Offset
}

// admitAPI lets an HTTP request through to an API handler: its method
// must be one of methods (any, when none are given), and its address
// within the rate of upgrades. Otherwise it answers 405 or 429 and
// reports false.
func (s *Server) admitAPI(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	if len(methods) > 0 && !slices.Contains(methods, r.Method) {
		w.Header().Set("Allow", strings.Join(methods, ", "))
		http.Error(w, "use "+methods[0], http.StatusMethodNotAllowed)
		return false
	}
	if !s.allowFrom(r.RemoteAddr) {
		s.refuse(w, r, http.StatusTooManyRequests, "rate_limited", "too many requests from your address; retry later")
		return false
	}
	return true
}

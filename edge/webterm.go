package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// The terminal's WebSocket (/web/ws). The page's first message is a text
// message, webHello, with its ticket. Then keystrokes go up and output
// comes down as binary messages; control goes as JSON text messages,
// webControl: up, "resize" and "ack" (bytes of output rendered); down,
// "open", "taken" (bytes of keystrokes written to the device), "exit" and
// "error".
const (
	webReadLimit = 64 << 10
	webPing      = 20 * time.Second
	webHelloWait = 10 * time.Second
	webChunk     = 32 << 10
	// webMessageMax bounds an output message: what the page and most
	// WebSocket clients read by default (32 KiB); the page acknowledges a
	// message once it has rendered all of it, so many share the window.
	webMessageMax = 32 << 10
	webExitWait   = 5 * time.Second
	webCloseWait  = 5 * time.Second
	webWriteLimit = 30 * time.Second
	// webMaxUnacked is how much output may be sent and not yet rendered;
	// past it the edge stops reading the device's stream, and the
	// stream's window pushes back to the device.
	webMaxUnacked = 1 << 20
	// webMaxInput is how much of its keystrokes the page may have sent
	// before the edge reports them taken: written to the device's stream.
	// The page holds the rest of a large paste itself, so the edge always
	// reads the page's messages, acks among them, however long the device
	// takes to read its input.
	webMaxInput = 1 << 20
	// webTakenEvery is how many bytes of keystrokes the edge reports taken
	// at once; a lone keystroke is reported with the next ones.
	webTakenEvery = 32 << 10
)

// webHello is the page's first message.
type webHello struct {
	Ticket string `json:"ticket"`
	Device string `json:"device"` // must be the ticket's
	Cols   int    `json:"cols"`
	Rows   int    `json:"rows"`
	Term   string `json:"term"`
}

// pageGone is why a terminal ends whose page read err: nil when the page
// closed the WebSocket as it should (it was closed or left).
func pageGone(err error) error {
	switch websocket.CloseStatus(err) {
	case websocket.StatusNormalClosure, websocket.StatusGoingAway:
		return nil
	}
	return fmt.Errorf("the page went away: %w", err)
}

// webRead is one read of the page's messages.
type webRead struct {
	typ websocket.MessageType
	b   []byte
	err error
}

// webControl is a control message, either way.
type webControl struct {
	T      string `json:"t"`
	Cols   int    `json:"cols,omitempty"`
	Rows   int    `json:"rows,omitempty"`
	N      int64  `json:"n,omitempty"`
	Code   *int   `json:"code,omitempty"`
	Signal string `json:"signal,omitempty"`
	Msg    string `json:"msg,omitempty"`
}

// decodeWebHello checks the page's first message.
func decodeWebHello(b []byte) (webHello, error) {
	var h webHello
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return h, fmt.Errorf("the first message must be JSON {ticket, device, cols, rows, term}: %v", err)
	}
	if h.Ticket == "" {
		return h, errors.New("the first message carries no ticket")
	}
	if h.Cols < 0 || h.Rows < 0 || h.Cols > 10000 || h.Rows > 10000 || len(h.Term) > 64 {
		return h, errors.New("the first message's size or TERM is out of range")
	}
	return h, nil
}

// decodeWebControl checks a control message from the page.
func decodeWebControl(b []byte) (webControl, error) {
	var c webControl
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("a text message must be a JSON control message: %v", err)
	}
	switch c.T {
	case "ack":
		if c.N < 0 {
			return c, errors.New("ack of a negative count")
		}
	case "resize":
		if c.Cols < 1 || c.Rows < 1 || c.Cols > 10000 || c.Rows > 10000 {
			return c, fmt.Errorf("resize to %dx%d: want 1 to 10000 columns and rows", c.Cols, c.Rows)
		}
	default:
		return c, fmt.Errorf("unknown control message %q", c.T)
	}
	return c, nil
}

// webTerm is one open terminal.
type webTerm struct {
	session string // the browser session's ID
	client  string
	method  string // the session's sign-in method and credential, checked again on Reload
	cred    string
	device  string
	file    *wire.FileRequest // a file transfer's request; nil for a terminal
	cancel  context.CancelCauseFunc

	mu sync.Mutex
	// mu guards the following.
	unacked int64         // read from the device, not yet acknowledged
	unseen  int64         // of unacked, what went to the page
	more    chan struct{} // closed and replaced when acks arrive
}

// ack takes n bytes rendered off the count; a page cannot ack more than
// it was sent. Output read but still waiting to go out stays counted: an
// ack of it, from a page that never saw it, would let the edge read on
// and gather the device's output without bound.
func (t *webTerm) ack(n int64) {
	t.mu.Lock()
	n = min(n, t.unseen)
	t.unseen -= n
	t.unacked -= n
	close(t.more)
	t.more = make(chan struct{})
	t.mu.Unlock()
}

// room waits until less than webMaxUnacked is unacknowledged.
func (t *webTerm) room(ctx context.Context) error {
	for {
		t.mu.Lock()
		if t.unacked < webMaxUnacked {
			t.mu.Unlock()
			return nil
		}
		more := t.more
		t.mu.Unlock()
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-more:
		}
	}
}

func (t *webTerm) sent(n int) {
	t.mu.Lock()
	t.unacked += int64(n)
	t.mu.Unlock()
}

// shown counts n bytes of output as going to the page, before they do:
// the page may acknowledge them as soon as they leave.
func (t *webTerm) shown(n int) {
	t.mu.Lock()
	t.unseen += int64(n)
	t.mu.Unlock()
}

// webQueue is bytes on their way through the bridge: the device's output
// gathered between the bridge's messages to the page, or the page's
// keystrokes on their way to the device.
type webQueue struct {
	mu sync.Mutex
	// mu guards the following.
	buf   []byte
	err   error         // the read's error, after buf
	ready chan struct{} // has a value when buf or err is new
}

func newWebQueue() *webQueue { return &webQueue{ready: make(chan struct{}, 1)} }

// add queues b and returns how many bytes are queued.
func (o *webQueue) add(b []byte) int {
	o.mu.Lock()
	o.buf = append(o.buf, b...)
	n := len(o.buf)
	o.mu.Unlock()
	o.signal()
	return n
}

func (o *webQueue) finish(err error) {
	o.mu.Lock()
	o.err = err
	o.mu.Unlock()
	o.signal()
}

func (o *webQueue) signal() {
	select {
	case o.ready <- struct{}{}:
	default:
	}
}

// take waits until bytes are queued or the queue is finished, and appends
// up to limit queued bytes to dst. It returns finish's error once all the
// bytes before it are taken, or ctx's cause when ctx ends first.
func (o *webQueue) take(ctx context.Context, dst []byte, limit int) ([]byte, error) {
	for {
		o.mu.Lock()
		if len(o.buf) > 0 {
			n := min(len(o.buf), limit)
			dst = append(dst, o.buf[:n]...)
			o.buf = o.buf[:copy(o.buf, o.buf[n:])]
			if len(o.buf) > 0 {
				o.signal()
			}
			o.mu.Unlock()
			return dst, nil
		}
		err := o.err
		o.mu.Unlock()
		if err != nil {
			return dst, err
		}
		select {
		case <-ctx.Done():
			return dst, context.Cause(ctx)
		case <-o.ready:
		}
	}
}

// errWebSignedOut ends the terminals of a session that signed out.
var errWebSignedOut = errors.New("the web session signed out")

// errWebSessionExpired ends the terminals of a session that expired.
var errWebSessionExpired = errors.New("the web session expired")

// webSessionEnd is when sess stops being valid: its lifetime after the
// sign-in, or for method "oidc" when its identity expires, if sooner.
func (s *Server) webSessionEnd(sess webSession) time.Time {
	end := time.Unix(sess.Issued, 0).Add(s.web.lifetime)
	if sess.Method == webMethodOIDC {
		var c webOIDCCred
		if json.Unmarshal([]byte(sess.Cred), &c) == nil && time.Unix(c.Expires, 0).Before(end) {
			end = time.Unix(c.Expires, 0)
		}
	}
	return end
}

// addWebTerm counts t against the caps; it returns the refusal, or "".
func (s *Server) addWebTerm(t *webTerm) string {
	ws := s.web
	ws.termCount.Lock()
	defer ws.termCount.Unlock()
	if ws.bySession[t.session] >= ws.perSess {
		return fmt.Sprintf("too many terminals: this browser session has %d open, the most it may; close one", ws.perSess)
	}
	if ws.byID[t.client] >= ws.perID {
		return fmt.Sprintf("too many terminals: client %s has %d open on this edge, the most it may; close one", t.client, ws.perID)
	}
	ws.bySession[t.session]++
	ws.byID[t.client]++
	ws.terms[t] = struct{}{}
	return ""
}

func (s *Server) removeWebTerm(t *webTerm) {
	ws := s.web
	ws.termCount.Lock()
	defer ws.termCount.Unlock()
	delete(ws.terms, t)
	if ws.bySession[t.session]--; ws.bySession[t.session] <= 0 {
		delete(ws.bySession, t.session)
	}
	if ws.byID[t.client]--; ws.byID[t.client] <= 0 {
		delete(ws.byID, t.client)
	}
}

// leaseWebTerm takes the cluster's leases of t: its browser session's,
// then its identity's. It returns their release, or the refusal's result
// and reason.
func (s *Server) leaseWebTerm(ctx context.Context, t *webTerm) (release func(), result, reason string) {
	ctx, cancel := context.WithTimeout(ctx, webStateTimeout)
	defer cancel()
	l := s.web.leases
	session, ok, err := l.AcquireSession(ctx, t.session, s.web.perSess)
	switch {
	case err != nil:
		return nil, "cluster_unavailable", fmt.Sprintf("cannot count this browser session's terminals on the cluster (%v); retry", err)
	case !ok:
		return nil, "limit", fmt.Sprintf("too many terminals: this browser session has %d open on the edges of the cluster, the most it may; close one", s.web.perSess)
	}
	identity, ok, err := l.Acquire(ctx, t.client, s.web.perID)
	switch {
	case err != nil:
		session()
		return nil, "cluster_unavailable", fmt.Sprintf("cannot count client %s's terminals on the cluster (%v); retry", t.client, err)
	case !ok:
		session()
		return nil, "limit", fmt.Sprintf("too many terminals: client %s has %d open on the edges of the cluster, the most it may; close one", t.client, s.web.perID)
	}
	return func() {
		identity()
		session()
	}, "", ""
}

// endWebTerminals closes the terminals of browser session id.
func (s *Server) endWebTerminals(id, why string) {
	ws := s.web
	ws.termCount.Lock()
	defer ws.termCount.Unlock()
	for t := range ws.all() {
		if t.session == id {
			t.cancel(fmt.Errorf("%w: %s", errWebSignedOut, why))
		}
	}
}

// all is the terminals and the file transfers. ws.termCount must be held.
func (ws *webState) all() iter.Seq[*webTerm] {
	return func(yield func(*webTerm) bool) {
		for _, set := range [...]map[*webTerm]struct{}{ws.terms, ws.transfers} {
			for t := range set {
				if !yield(t) {
					return
				}
			}
		}
	}
}

// request is what t needs the policy to allow: a shell, or its file
// transfer.
func (t *webTerm) request() Request {
	if t.file != nil {
		return Request{Type: wire.MsgFileTransfer, File: t.file}
	}
	return Request{Type: wire.MsgPTY}
}

// recheckWebTerminals closes the terminals that st no longer allows: their
// session's credential is gone or names another client, or the client may
// no longer open a shell on the device.
func (s *Server) recheckWebTerminals(st *authState) int {
	ws := s.web
	if ws == nil {
		return 0
	}
	ws.termCount.Lock()
	defer ws.termCount.Unlock()
	closed := 0
	for t := range ws.all() {
		reason := ""
		method := webMethods[t.method]
		if id, ok := method(st, t.cred); !ok && t.method == webMethodOIDC {
			reason = "the edge no longer takes sign-ins by SSO at the provider it signed in with, or no longer admits the identity"
		} else if !ok {
			reason = "the token it signed in with was removed or replaced"
		} else if id.Name != t.client {
			reason = "the token it signed in with now belongs to client " + id.Name
		} else if dev := s.deviceRef(st.policy, t.device); !st.policy.DeviceAllowed(id, dev) || st.policy.Authorize(id, dev, t.request()) != nil {
			reason = fmt.Sprintf("client %s may no longer open a shell on device %s", id.Name, t.device)
			if t.file != nil {
				reason = fmt.Sprintf("client %s may no longer %s %s on device %s", id.Name, fileDirection(t.file.Direction), t.file.Path, t.device)
			}
		}
		if reason != "" {
			s.log.Warn("closing a web terminal after a reload: "+reason, "client", t.client, "device", t.device)
			t.cancel(fmt.Errorf("%w: %s", errStreamRevoked, reason))
			closed++
		}
	}
	return closed
}

// serveWebSocket runs a terminal: the session cookie and the origin
// before the upgrade, the ticket in the first message, then the PTY
// stream through the open path and the bridge.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	webHeaders(w, "")
	if !s.checkOrigin(w, r) {
		return
	}
	me, err := s.webSessionFrom(nil, r)
	if errors.Is(err, errWebUnchecked) {
		webUnchecked(w, err)
		return
	}
	if err != nil {
		s.refuse(w, r, http.StatusUnauthorized, "no_session", "not signed in, or the session ended: sign in again")
		return
	}
	if s.isDraining() {
		s.refuse(w, r, http.StatusServiceUnavailable, "draining", "the edge is shutting down; reload the page to reach another edge")
		return
	}
	if hc := headConnOf(r); hc != nil {
		hc.stop()
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: []string{s.web.host}})
	if err != nil {
		s.log.Info("web terminal upgrade failed", "client", me.id.Name, "remote", r.RemoteAddr, "err", err)
		return
	}
	if !s.track1() {
		c.Close(websocket.StatusGoingAway, "the edge is shutting down")
		return
	}
	defer s.wg.Done()
	s.active.Add(1)
	defer s.active.Add(-1)
	c.SetReadLimit(webReadLimit)
	s.runWebTerminal(c, r.RemoteAddr, me)
}

func (s *Server) runWebTerminal(c *websocket.Conn, remote string, me webIdentity) {
	ctx, cancel := context.WithCancelCause(s.ctx)
	defer cancel(nil)
	stop := context.AfterFunc(ctx, func() { c.CloseNow() })
	defer stop()
	closeWith := func(code websocket.StatusCode, msg string) {
		cctx, ccancel := context.WithTimeout(ctx, webCloseWait)
		_ = c.Write(cctx, websocket.MessageText, mustJSON(webControl{T: "error", Msg: msg}))
		ccancel()
		// The reason of a close frame is at most 123 bytes; the error
		// message above says it all.
		_ = c.Close(code, "")
	}

	hctx, hcancel := context.WithTimeout(ctx, webHelloWait)
	typ, b, err := c.Read(hctx)
	hcancel()
	if err != nil {
		s.log.Debug("web terminal ended before its first message", "client", me.id.Name, "err", err)
		c.CloseNow()
		return
	}
	hello, err := decodeWebHello(b)
	if err == nil && typ != websocket.MessageText {
		err = errors.New("the first message must be a text message")
	}
	ev := Event{Kind: EventStreamDeny, Client: me.id.Name, Auth: me.id.method(), RemoteAddr: remote, Type: "pty", Method: "web"}
	deny := func(result, reason string) {
		ev.Time, ev.Result, ev.Reason = time.Now(), result, reason
		s.audit.Audit(ev)
		s.Metrics.stream(ev.Type, result)
		closeWith(websocket.StatusPolicyViolation, reason)
	}
	if err != nil {
		deny("invalid", err.Error())
		return
	}
	t, err := s.redeemTicket(ctx, hello.Ticket, me.sess.ID)
	if err != nil {
		s.log.Info("web terminal refused: "+err.Error(), "client", me.id.Name, "remote", remote)
		deny("bad_ticket", err.Error())
		return
	}
	ev.Device = t.Device
	if hello.Device != t.Device {
		deny("bad_ticket", fmt.Sprintf("%v: it is for another device", ErrWebTicket))
		return
	}
	// A sign-out or a reload ends the terminal through tctx; the
	// WebSocket's calls keep ctx, so that the page still hears why. Those
	// from now on find the terminal; those before are seen by the checks
	// below.
	tctx, tcancel := context.WithCancelCause(ctx)
	defer tcancel(nil)
	term := &webTerm{session: me.sess.ID, client: me.id.Name, method: me.sess.Method, cred: me.sess.Cred, device: t.Device,
		cancel: tcancel, more: make(chan struct{})}
	if msg := s.addWebTerm(term); msg != "" {
		deny("limit", msg)
		return
	}
	defer s.removeWebTerm(term)
	if s.web.leases != nil {
		release, result, msg := s.leaseWebTerm(ctx, term)
		if result != "" {
			deny(result, msg)
			return
		}
		defer release()
	}
	// The terminal ends with its session, as a CLI session ends with its
	// credential.
	end := s.webSessionEnd(me.sess)
	expire := time.AfterFunc(time.Until(end), func() {
		tcancel(fmt.Errorf("%w at %s; sign in again", errWebSessionExpired, end.UTC().Format(time.RFC3339)))
	})
	defer expire.Stop()
	// The session may have signed out since the upgrade, with the
	// WebSocket waiting for its first message.
	rctx, rcancel := context.WithTimeout(ctx, webStateTimeout)
	revoked, err := s.web.revoked.Revoked(rctx, me.sess.ID)
	rcancel()
	switch {
	case err != nil:
		deny("revoked", fmt.Sprintf("cannot check the session (%v); retry", err))
		return
	case revoked:
		deny("revoked", "the session signed out; sign in again")
		return
	}
	// The policy of now: the session may have changed since the ticket.
	me.auth = s.auth.Load()
	id, ok := webMethods[me.sess.Method](me.auth, me.sess.Cred)
	if !ok || id.Name != me.id.Name {
		deny("revoked", "the session's credential is no longer valid; sign in again")
		return
	}
	req := Request{Type: wire.MsgPTY}
	dev := s.deviceRef(me.auth.policy, t.Device)
	if !me.auth.policy.DeviceAllowed(id, dev) {
		deny("denied", deviceDenial(me.auth.policy, id, dev))
		return
	}
	if err := me.auth.policy.Authorize(id, dev, req); err != nil {
		deny("denied", err.Error())
		return
	}
	ev.Role = grantingRole(me.auth.policy, id, dev, req)

	payload, err := wire.PTYCommand{Type: wire.PTYResize, Cols: hello.Cols, Rows: hello.Rows, Term: hello.Term}.Encode()
	if err != nil {
		deny("invalid", err.Error())
		return
	}
	start := time.Now()
	// The page's next message is read while the device opens the shell, so
	// that a page that goes away meanwhile ends the open (the device stops
	// starting a shell for nobody); the bridge takes that message first.
	first := make(chan webRead, 1)
	go func() {
		typ, b, err := c.Read(ctx)
		if err != nil {
			tcancel(pageGone(err))
		}
		first <- webRead{typ, b, err}
	}()
	o, ref := s.open(tctx, &openRequest{id: id, device: t.Device, req: req, msg: wire.Message{Type: wire.MsgPTY, Payload: payload}, ev: &ev})
	if ref != nil {
		ev.Kind = EventStreamDeny
		if ref.relay != nil || ref.silent {
			ev.Kind = EventStreamOpen
		}
		ev.Time, ev.Result, ev.Reason = time.Now(), ref.result, ref.reason
		s.audit.Audit(ev)
		s.Metrics.stream(ev.Type, ref.result)
		closeWith(websocket.StatusTryAgainLater, ref.reason)
		c.CloseNow() // ends the read above, if the close did not
		<-first
		return
	}
	defer o.release()
	defer o.st.Close()
	sid := string(bytes.TrimSpace(o.answer))
	ev.Kind, ev.Time, ev.Result = EventStreamOpen, time.Now(), "ok"
	s.audit.Audit(ev)
	s.Metrics.stream(ev.Type, "ok")
	s.Metrics.activeDelta(ev.Type, 1)
	s.log.Info("web terminal opened", "client", id.Name, "device", t.Device, "remote", remote)

	up, down, status, err := s.bridgeWeb(ctx, tctx, c, first, s.recordWeb(o, tcancel), term, t.Device, id, sid)
	s.Metrics.activeDelta(ev.Type, -1)
	s.Metrics.addBytes(up, down)
	ev.Kind, ev.Time, ev.Result, ev.Reason = EventStreamClose, time.Now(), "ok", ""
	ev.BytesUp, ev.BytesDown, ev.DurationMS = up, down, time.Since(start).Milliseconds()
	if status.Exited {
		code := status.Code
		ev.ExitCode = &code
		ev.Signal = status.Signal
	}
	s.finishRecording(o, &ev)
	switch {
	case err == nil:
	case errors.Is(err, transport.ErrStoppedReading):
		ev.Reason = reasonRefusedRest
	default:
		ev.Result, ev.Reason = "error", err.Error()
		if errors.Is(err, errWebSignedOut) || errors.Is(err, errStreamRevoked) {
			ev.Result = "revoked"
		}
		if errors.Is(err, errWebSessionExpired) {
			ev.Result = "expired"
		}
	}
	s.audit.Audit(ev)
	s.log.Info("web terminal closed", "client", id.Name, "device", t.Device, "status", status.String())
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v) // plain structs: cannot fail
	return b
}

// bridgeWeb carries the terminal both ways until the device's stream ends
// (it then asks the device how the shell ended) or the page goes away,
// and closes the WebSocket, with the exit status or the reason first. It
// returns the error that ended the terminal, or one matching
// transport.ErrStoppedReading when the device refused keystrokes that
// came after the shell's end (a normal end, which the audit notes).
// Keystrokes go to the device as they come, never behind output, and
// wait for the device as long as its session lives; output waits while
// more than webMaxUnacked is not yet rendered.
//
// The WebSocket closes when a context given to one of its calls ends, so
// its calls take ctx (the edge's), never the bridge's own bctx, which
// ends with stop (a sign-out, a reload) too.
func (s *Server) bridgeWeb(ctx, stop context.Context, c *websocket.Conn, first <-chan webRead, st ptyStream, term *webTerm, device string, id Identity, sid string) (up, down int64, status wire.ExitStatus, err error) {
	bctx, cancel := context.WithCancelCause(stop)
	defer cancel(nil)
	var wg sync.WaitGroup
	stopSt := context.AfterFunc(bctx, func() { st.Abort() })
	defer stopSt()
	wctx, wcancel := context.WithTimeout(ctx, webWriteLimit)
	_ = c.Write(wctx, websocket.MessageText, mustJSON(webControl{T: "open"}))
	wcancel()

	resize := make(chan [2]int, 1)
	var upN sync.Mutex // guards up and refused
	// refused is the write error of keys that the device refused after
	// the shell's stream ended (transport.ErrStoppedReading).
	var refused error
	// The page: keystrokes, acks and resizes. Keystrokes are queued for
	// the writer below, so that this loop goes on to the acks that follow
	// them while the device is not reading its input: a paste into cat,
	// echoed, needs its output rendered and acknowledged to go on.
	in := newWebQueue()
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer in.finish(io.EOF)
		for {
			var r webRead
			if first != nil {
				r, first = <-first, nil
			} else {
				r.typ, r.b, r.err = c.Read(ctx)
			}
			typ, b, err := r.typ, r.b, r.err
			if err != nil {
				cancel(pageGone(err))
				return
			}
			if typ == websocket.MessageBinary {
				if in.add(b) > webMaxInput {
					cancel(fmt.Errorf("the page sent more than %d KiB of keystrokes that the device has not taken yet; reload the page", webMaxInput>>10))
					return
				}
				continue
			}
			m, err := decodeWebControl(b)
			if err != nil {
				cancel(err)
				return
			}
			switch m.T {
			case "ack":
				term.ack(m.N)
			case "resize":
				select {
				case <-resize:
				default:
				}
				resize <- [2]int{m.Cols, m.Rows}
			}
		}
	}()
	// Keystrokes to the device, in order, with no deadline: the device's
	// session ends a stream that a dead device stops reading, and the end
	// of the bridge aborts it. What went is reported to the page, which
	// holds back what would be more than webMaxInput ahead.
	wg.Add(1)
	go func() {
		defer wg.Done()
		var keys []byte
		var taken int64
		for {
			var err error
			if keys, err = in.take(bctx, keys[:0], webChunk); err != nil {
				return
			}
			if _, err := st.Write(keys); err != nil {
				if errors.Is(err, transport.ErrStoppedReading) {
					// The shell ended, and its stream with it, while keys
					// were on their way: they are dropped, as a terminal
					// drops what is typed after its program exits. The
					// output ends by itself, with the exit status.
					upN.Lock()
					refused = err
					upN.Unlock()
					for err == nil {
						_, err = in.take(bctx, keys[:0], webChunk)
					}
					return
				}
				cancel(fmt.Errorf("write to device %s: %w", device, err))
				return
			}
			upN.Lock()
			up += int64(len(keys))
			upN.Unlock()
			if taken += int64(len(keys)); taken >= webTakenEvery {
				wctx, wcancel := context.WithTimeout(ctx, webWriteLimit)
				err := c.Write(wctx, websocket.MessageText, mustJSON(webControl{T: "taken", N: taken}))
				wcancel()
				if err != nil {
					cancel(fmt.Errorf("write to the page: %w", err))
					return
				}
				taken = 0
			}
		}
	}()
	// Resizes, one at a time, the latest winning.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-bctx.Done():
				return
			case sz := <-resize:
				p, _ := wire.PTYCommand{SID: sid, Type: wire.PTYResize, Cols: sz[0], Rows: sz[1]}.Encode()
				if _, err := s.ptyCommand(bctx, id, device, p); err != nil {
					s.log.Info("web terminal resize failed", "client", id.Name, "device", device, "err", err)
				}
			}
		}
	}()
	// Pings keep the connection alive through proxies and find a page
	// that vanished.
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(webPing)
		defer tk.Stop()
		for {
			select {
			case <-bctx.Done():
				return
			case <-tk.C:
				pctx, pcancel := context.WithTimeout(ctx, webPing)
				err := c.Ping(pctx)
				pcancel()
				if err != nil {
					cancel(fmt.Errorf("the page stopped answering pings: %w", err))
					return
				}
			}
		}
	}()

	// The device's output: one goroutine reads it as it comes, this one
	// sends what has gathered since the last message. A lone echo goes
	// out at once; a flood that outruns the page goes in fewer, larger
	// messages, each one a term.write and an ack for the page.
	out := newWebQueue()
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, webChunk)
		for {
			if err := term.room(bctx); err != nil {
				out.finish(err)
				return
			}
			n, err := st.Read(buf)
			if n > 0 {
				// Counted when read: the bytes gathered and the bytes
				// sent but not yet rendered share one bound.
				term.sent(n)
				out.add(buf[:n])
			}
			if err != nil {
				out.finish(err)
				return
			}
		}
	}()
	var msg []byte
	for {
		var rerr error
		msg, rerr = out.take(bctx, msg[:0], webMessageMax)
		if len(msg) > 0 {
			term.shown(len(msg))
			wctx, wcancel := context.WithTimeout(ctx, webWriteLimit)
			werr := c.Write(wctx, websocket.MessageBinary, msg)
			wcancel()
			if werr != nil {
				cancel(fmt.Errorf("write to the page: %w", werr))
				break
			}
			down += int64(len(msg))
		}
		if rerr != nil {
			if bctx.Err() == nil {
				// The shell ended: ask how.
				sctx, scancel := context.WithTimeout(bctx, webExitWait)
				status = s.webExitStatus(sctx, id, device, sid)
				scancel()
			}
			break
		}
	}
	cause := context.Cause(bctx)
	if bctx.Err() == nil || errors.Is(cause, context.Canceled) {
		cause = nil
	}
	cancel(nil)
	st.Abort()
	// The last word, then the close, which ends the reader.
	fctx, fcancel := context.WithTimeout(ctx, webCloseWait)
	switch {
	case status.Exited:
		code := status.Code
		_ = c.Write(fctx, websocket.MessageText, mustJSON(webControl{T: "exit", Code: &code, Signal: status.Signal}))
		_ = c.Close(websocket.StatusNormalClosure, "exited")
	case cause != nil:
		_ = c.Write(fctx, websocket.MessageText, mustJSON(webControl{T: "error", Msg: cause.Error()}))
		_ = c.Close(websocket.StatusGoingAway, "")
	default:
		_ = c.Close(websocket.StatusNormalClosure, "")
	}
	fcancel()
	wg.Wait()
	upN.Lock()
	defer upN.Unlock()
	if cause == nil && refused != nil {
		cause = refused // a normal end, which the audit record notes
	}
	return up, down, status, cause
}

// ptyCommand opens a PTY command stream through the open path and returns
// the device's answer.
func (s *Server) ptyCommand(ctx context.Context, id Identity, device string, payload []byte) ([]byte, error) {
	req := Request{Type: wire.MsgPTYCommand}
	pol := s.auth.Load().policy
	if err := pol.Authorize(id, s.deviceRef(pol, device), req); err != nil {
		return nil, err
	}
	ev := Event{Client: id.Name, Auth: id.method(), Device: device, Type: typeWord(wire.MsgPTYCommand), Method: "web"}
	o, ref := s.open(ctx, &openRequest{id: id, device: device, req: req, msg: wire.Message{Type: wire.MsgPTYCommand, Payload: payload}, ev: &ev})
	if ref != nil {
		return nil, errors.New(ref.reason)
	}
	o.st.Close()
	o.release()
	return o.answer, nil
}

// webExitStatus asks the device how session sid ended, again while it
// says the process runs, until ctx ends.
func (s *Server) webExitStatus(ctx context.Context, id Identity, device, sid string) wire.ExitStatus {
	p, err := wire.PTYCommand{SID: sid, Type: wire.PTYStatus}.Encode()
	if err != nil {
		return wire.ExitStatus{}
	}
	delay := 20 * time.Millisecond
	for {
		ans, err := s.ptyCommand(ctx, id, device, p)
		if err != nil || len(ans) == 0 {
			return wire.ExitStatus{}
		}
		st, err := wire.DecodeExitStatus(ans)
		if err != nil || st.Exited {
			return st
		}
		select {
		case <-ctx.Done():
			return st
		case <-time.After(delay):
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}

// watchWebRevocations closes the terminals of the sessions that sign out
// on other edges, when the revocations are shared and can be watched.
func (s *Server) watchWebRevocations() {
	w, ok := s.web.revoked.(WebRevocationWatcher)
	if !ok || s.web.broken != nil {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		w.WatchRevocations(s.ctx, func(id string) { s.endWebTerminals(id, "the session signed out") })
	}()
}

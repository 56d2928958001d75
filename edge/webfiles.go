package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/files"
	"github.com/tetherhq/tether/transport/wire"
)

// This file is the web terminal's file transfers: a device's files page
// (/web/files/{device}) downloads a file or a directory from it (GET
// /web/download, the file as an attachment) and uploads a file to it (PUT
// /web/upload, the file as the body). Each is one file transfer stream
// through the open path, as `tether cp` opens, under the same rights
// (the file transfer type and its path rules), audit records, limits and
// checksums; a sign-out or a reload that takes the right away ends it.

// maxWebTransfers bounds the file transfers of one browser session at
// once, on this edge.
const maxWebTransfers = 4

// webTransfer is the part of a request that a web file transfer's
// handlers share, once it is allowed.
type webTransfer struct {
	me     webIdentity
	device string
	req    Request
	ev     Event
}

// serveWebFilesPage is a device's files page.
func (s *Server) serveWebFilesPage(w http.ResponseWriter, r *http.Request) {
	webHeaders(w, "")
	me, ok := s.webPageSession(w, r)
	if !ok {
		return
	}
	device := r.URL.Path[len("/web/files/"):]
	if certs.ValidDeviceID(device) != nil {
		http.Error(w, "not a device ID: 1 to 128 letters, digits, '.', '-', '_' and ':'", http.StatusBadRequest)
		return
	}
	pol := me.auth.policy
	if dev := s.deviceRef(pol, device); !pol.DeviceAllowed(me.id, dev) {
		http.Error(w, deviceDenial(pol, me.id, dev), http.StatusForbidden)
		return
	}
	s.renderFilesPage(w, http.StatusOK, me, device, "", "")
}

// renderFilesPage renders device's files page with code, the download
// form's path and an error to show.
func (s *Server) renderFilesPage(w http.ResponseWriter, code int, me webIdentity, device, file, msg string) {
	s.render(w, code, "files.html", map[string]any{"Device": device, "CSRF": s.web.signer.csrf(me.sess.ID), "Path": file, "Error": msg})
}

// transferReply answers a file transfer's refusals. A browser's download
// (a GET that accepts HTML: the files page's form, followed) gets the
// files page again, with the reason and the path it asked for, so that
// the form is still there; anything else gets the reason in plain text.
type transferReply struct {
	s    *Server
	w    http.ResponseWriter
	r    *http.Request
	page bool
	me   *webIdentity // once the session is known
}

func (s *Server) transferReply(w http.ResponseWriter, r *http.Request) *transferReply {
	page := r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html") &&
		certs.ValidDeviceID(r.URL.Query().Get("device")) == nil
	return &transferReply{s: s, w: w, r: r, page: page}
}

func (a *transferReply) fail(code int, msg string) {
	if a.page && a.me != nil {
		q := a.r.URL.Query()
		a.s.renderFilesPage(a.w, code, *a.me, q.Get("device"), q.Get("path"), msg)
		return
	}
	http.Error(a.w, msg, code)
}

// startWebTransfer checks a file transfer's request: the session, an
// upload's CSRF token, the device and path, the edge's state and the
// policy. It answers a refusal itself and returns nil.
//
// A download needs no CSRF token: it is a GET that changes nothing on the
// device, which a page of another origin can make a browser send but not
// read. Even so, it is refused when the browser says that another site,
// or another origin of the same site (whose requests carry the session
// cookie, SameSite=Strict as it is), sent it (Sec-Fetch-Site): it would
// still make the device read a file, and the audit log record it.
func (s *Server) startWebTransfer(a *transferReply, dir int, device, file string) *webTransfer {
	w, r := a.w, a.r
	me, err := s.webSessionFrom(w, r)
	switch {
	case errors.Is(err, errWebUnchecked):
		webUnchecked(w, err)
		return nil
	case err != nil && a.page:
		http.Redirect(w, r, "/web/login", http.StatusSeeOther)
		return nil
	case err != nil:
		s.refuse(w, r, http.StatusUnauthorized, "no_session", "not signed in, or the session ended: sign in again")
		return nil
	}
	a.me = &me
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		s.refuse(w, r, http.StatusForbidden, "bad_origin", "cross-origin request refused: a file transfer must come from a page of "+s.web.origin,
			"client", me.id.Name, "sec_fetch_site", truncate(site, 20))
		return nil
	}
	if dir == 1 && !checkToken(r.Header.Get("X-CSRF-Token"), s.web.signer.csrf(me.sess.ID)) {
		s.refuse(w, r, http.StatusForbidden, "bad_csrf", "the request carries no valid CSRF token; reload the page", "client", me.id.Name)
		return nil
	}
	if certs.ValidDeviceID(device) != nil {
		a.fail(http.StatusBadRequest, "the device parameter must be a device ID")
		return nil
	}
	file = wire.TrimFilePath(file)
	if err := wire.CheckFilePath(file); err != nil {
		a.fail(http.StatusBadRequest, fmt.Sprintf("the path must be absolute and canonical, such as /var/log/syslog: %v", err))
		return nil
	}
	if s.isDraining() {
		a.fail(http.StatusServiceUnavailable, "the edge is shutting down; retry to reach another edge")
		return nil
	}
	req := Request{Type: wire.MsgFileTransfer, File: &wire.FileRequest{Direction: dir, Path: file}}
	ev := Event{Kind: EventStreamDeny, Client: me.id.Name, Auth: me.id.method(), RemoteAddr: r.RemoteAddr, Device: device,
		Type: typeWord(wire.MsgFileTransfer), Method: "web", Direction: fileDirection(dir), Path: file}
	pol := me.auth.policy
	dev := s.deviceRef(pol, device)
	deny := func(code int, result, reason string) *webTransfer {
		ev.Time, ev.Result, ev.Reason = time.Now(), result, reason
		s.audit.Audit(ev)
		s.Metrics.stream(ev.Type, result)
		a.fail(code, reason)
		return nil
	}
	if !pol.DeviceAllowed(me.id, dev) {
		return deny(http.StatusForbidden, "denied", deviceDenial(pol, me.id, dev))
	}
	if err := pol.Authorize(me.id, dev, req); err != nil {
		return deny(http.StatusForbidden, "denied", err.Error())
	}
	ev.Role = grantingRole(pol, me.id, dev, req)
	return &webTransfer{me: me, device: device, req: req, ev: ev}
}

// runWebTransfer runs do, the transfer, on a stream that an opener gives
// it, within the edge's life and the session's: a sign-out, a reload that
// takes the right away, the session's end or the edge's close ends it. It audits the
// outcome and reports do's error, or the refusal of the open.
func (s *Server) runWebTransfer(ctx context.Context, t *webTransfer, do func(context.Context, transport.Opener) (*files.Result, error)) (*files.Result, *refusal, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(s.ctx, func() { cancel(errors.New("the edge is closing")) })
	defer stop()
	end := s.webSessionEnd(t.me.sess)
	expire := time.AfterFunc(time.Until(end), func() {
		cancel(fmt.Errorf("%w at %s; sign in again", errWebSessionExpired, end.UTC().Format(time.RFC3339)))
	})
	defer expire.Stop()
	// Its entry among the web terminals, for sign-outs and reloads.
	entry := &webTerm{session: t.me.sess.ID, client: t.me.id.Name, method: t.me.sess.Method, cred: t.me.sess.Cred, device: t.device,
		file: t.req.File, cancel: cancel}
	op := &webOpener{s: s, t: t}
	var res *files.Result
	var err error
	if s.addWebTransfer(entry) {
		defer s.removeWebTransfer(entry)
		res, err = do(ctx, op)
	} else {
		op.ref = &refusal{result: "limit", reason: fmt.Sprintf("too many file transfers: this browser session has %d under way, the most it may; wait for one to end", maxWebTransfers)}
	}
	if op.o == nil {
		if op.ref == nil {
			// do failed before it opened: nothing reached the device.
			op.ref = &refusal{result: "invalid", reason: fmt.Sprint(err)}
		}
		ev := t.ev
		ev.Time, ev.Result, ev.Reason = time.Now(), op.ref.result, op.ref.reason
		if op.ref.relay != nil || op.ref.silent {
			ev.Kind = EventStreamOpen // the device itself answered (or not)
		}
		s.audit.Audit(ev)
		s.Metrics.stream(ev.Type, op.ref.result)
		return nil, op.ref, err
	}
	op.o.st.Close()
	op.o.release()
	s.Metrics.activeDelta(t.ev.Type, -1)
	ev := t.ev
	ev.Kind, ev.Time, ev.Result = EventStreamClose, time.Now(), "ok"
	ev.DurationMS = time.Since(op.opened).Milliseconds()
	if res != nil {
		if t.req.File.Direction == 1 {
			ev.BytesUp = res.Bytes
		} else {
			ev.BytesDown = res.Bytes
		}
		s.Metrics.addBytes(ev.BytesUp, ev.BytesDown)
		ev.SHA256, ev.Offset = res.SHA256, res.Offset
		if res.Raw {
			ev.FileSize = res.Size
		}
	}
	if err != nil {
		ev.Result, ev.Reason = "error", err.Error()
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			if errors.Is(cause, context.Canceled) {
				cause = errors.New("the browser went away")
			}
			ev.Reason = cause.Error()
			switch {
			case errors.Is(cause, errWebSignedOut), errors.Is(cause, errStreamRevoked):
				ev.Result = "revoked"
			case errors.Is(cause, errWebSessionExpired):
				ev.Result = "expired"
			}
			err = cause
		}
	}
	s.audit.Audit(ev)
	return res, nil, err
}

// webOpener is the transport.Opener of one web file transfer: its one
// stream goes through the open path with the request the policy allowed.
type webOpener struct {
	s      *Server
	t      *webTransfer
	o      *opened
	opened time.Time // when o was
	ref    *refusal
}

func (op *webOpener) OpenStream(ctx context.Context, typ wire.MsgType, payload []byte) (*transport.Stream, []byte, error) {
	t := op.t
	f, err := wire.DecodeFileRequest(payload)
	if op.o != nil || op.ref != nil || typ != wire.MsgFileTransfer || err != nil || f != *t.req.File {
		return nil, nil, errors.New("edge: a web file transfer opens one stream, for the file it was allowed")
	}
	t.ev.Offset = fileOffset(payload)
	o, ref := op.s.open(ctx, &openRequest{id: t.me.id, device: t.device, req: t.req, msg: wire.Message{Type: typ, Payload: payload}, ev: &t.ev})
	if ref != nil {
		op.ref = ref
		return nil, nil, errors.New(ref.reason)
	}
	op.o, op.opened = o, time.Now()
	ev := t.ev
	ev.Kind, ev.Time, ev.Result = EventStreamOpen, time.Now(), "ok"
	op.s.audit.Audit(ev)
	op.s.Metrics.stream(ev.Type, "ok")
	op.s.Metrics.activeDelta(ev.Type, 1)
	return o.st, o.answer, nil
}

// refusalStatus is the HTTP status of a refused open.
func refusalStatus(ref *refusal) int {
	switch {
	case ref.relay != nil || ref.silent:
		return http.StatusBadGateway // the device's own answer
	case ref.result == "offline":
		return http.StatusNotFound
	case ref.result == "denied" || ref.result == "revoked":
		return http.StatusForbidden
	case ref.result == "limit":
		return http.StatusTooManyRequests
	case ref.result == "invalid":
		return http.StatusBadRequest
	}
	return http.StatusServiceUnavailable
}

// serveWebDownload sends a device's file (or a directory, as a tar
// archive) as an attachment: GET /web/download?device=D&path=P. A
// transfer that fails once the body started ends the response without
// its end, so that the browser marks the download failed; a file's last
// byte goes out only once its checksum checked out.
func (s *Server) serveWebDownload(w http.ResponseWriter, r *http.Request) {
	webHeaders(w, "")
	q := r.URL.Query()
	a := s.transferReply(w, r)
	t := s.startWebTransfer(a, 0, q.Get("device"), q.Get("path"))
	if t == nil {
		return
	}
	if !s.track1() {
		a.fail(http.StatusServiceUnavailable, "the edge is shutting down; retry to reach another edge")
		return
	}
	defer s.wg.Done()
	s.active.Add(1) // a drain waits for it
	defer s.active.Add(-1)
	started := false
	body := &heldTail{w: w, rc: http.NewResponseController(w)}
	res, ref, err := s.runWebTransfer(r.Context(), t, func(ctx context.Context, o transport.Opener) (*files.Result, error) {
		return files.Download(ctx, o, t.req.File.Path, body, &files.DownloadOptions{Start: func(info files.Info) error {
			name, ctype := path.Base(t.req.File.Path), "application/octet-stream"
			if !info.Raw {
				name, ctype = name+".tar", "application/x-tar"
			} else {
				w.Header().Set("Content-Length", strconv.FormatInt(info.Size, 10))
			}
			w.Header().Set("Content-Type", ctype)
			w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusOK)
			started = true
			return nil
		}})
	})
	switch {
	case ref != nil:
		a.fail(refusalStatus(ref), ref.reason)
	case err != nil && !started:
		a.fail(http.StatusBadGateway, "the download failed: "+err.Error())
	case err != nil:
		s.log.Info("web download failed", "client", t.me.id.Name, "device", t.device, "path", t.req.File.Path, "err", err)
		panic(http.ErrAbortHandler) // the browser sees a cut response, not a whole file
	case body.flush() != nil:
		panic(http.ErrAbortHandler) // the browser went away
	default:
		s.log.Info("web download", "client", t.me.id.Name, "device", t.device, "path", t.req.File.Path, "bytes", res.Bytes)
	}
}

// webUploadResult is the answer to a finished upload.
type webUploadResult struct {
	Path   string `json:"path"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256,omitempty"`
}

// serveWebUpload stores the request's body as a file on a device: PUT
// /web/upload?device=D&path=P&name=N, with the CSRF token in
// X-CSRF-Token and the file's size in Content-Length. P may be a
// directory, where the file is stored as N. The device stores the file
// atomically once its SHA-256 checks out, and the answer is JSON: the
// bytes and the checksum.
func (s *Server) serveWebUpload(w http.ResponseWriter, r *http.Request) {
	webHeaders(w, "")
	if !s.checkOrigin(w, r) {
		return
	}
	q := r.URL.Query()
	t := s.startWebTransfer(s.transferReply(w, r), 1, q.Get("device"), q.Get("path"))
	if t == nil {
		return
	}
	if r.ContentLength < 0 {
		http.Error(w, "an upload must give its size in Content-Length", http.StatusLengthRequired)
		return
	}
	name := q.Get("name")
	if name == "" {
		name = path.Base(t.req.File.Path)
	}
	if name == "." || name == ".." || len(name) > 255 || !validName(name) {
		http.Error(w, "the name must be one path component, without '/' or NUL", http.StatusBadRequest)
		return
	}
	if !s.track1() {
		http.Error(w, "the edge is shutting down; retry to reach another edge", http.StatusServiceUnavailable)
		return
	}
	defer s.wg.Done()
	s.active.Add(1) // a drain waits for it
	defer s.active.Add(-1)
	if hc := headConnOf(r); hc != nil {
		hc.stop() // the body is not a request head; the connection ends with this request
	}
	res, ref, err := s.runWebTransfer(r.Context(), t, func(ctx context.Context, o transport.Opener) (*files.Result, error) {
		body := &webBody{r: r.Body, rc: http.NewResponseController(w)}
		stop := context.AfterFunc(ctx, body.cancel)
		defer stop()
		return files.Upload(ctx, o, t.req.File.Path, body, &files.UploadOptions{Size: r.ContentLength, Name: name})
	})
	switch {
	case ref != nil:
		http.Error(w, ref.reason, refusalStatus(ref))
	case err != nil:
		http.Error(w, "the upload failed: "+err.Error(), http.StatusBadGateway)
	default:
		s.log.Info("web upload", "client", t.me.id.Name, "device", t.device, "path", t.req.File.Path, "bytes", res.Bytes)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(webUploadResult{Path: t.req.File.Path, Bytes: res.Bytes, SHA256: res.SHA256})
	}
}

// webBody is an upload's request body, read with a deadline: a browser
// that sends nothing for files.DefaultIdleTimeout ends the upload, and so
// does the transfer's end (cancel), even while a read waits.
type webBody struct {
	r  io.Reader
	rc *http.ResponseController

	mu sync.Mutex
	// mu guards the following.
	canceled bool
}

func (b *webBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.canceled {
		b.mu.Unlock()
		return 0, errors.New("the transfer ended")
	}
	_ = b.rc.SetReadDeadline(time.Now().Add(files.DefaultIdleTimeout))
	b.mu.Unlock()
	return b.r.Read(p)
}

// cancel ends the read under way, and every later one.
func (b *webBody) cancel() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.canceled = true
	_ = b.rc.SetReadDeadline(time.Now())
}

// heldTail passes on all but the last byte written to it until flush: a
// download's response stays short of its Content-Length, and so is not a
// whole file to the browser, until the transfer checked out. With rc set,
// each write has files.DefaultIdleTimeout to go out: a browser that
// stops taking the body ends the download.
type heldTail struct {
	w    io.Writer
	rc   *http.ResponseController
	tail [1]byte
	held bool
}

func (h *heldTail) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := h.flush(); err != nil {
		return 0, err
	}
	if err := h.write(p[:len(p)-1]); err != nil {
		return 0, err
	}
	h.tail[0], h.held = p[len(p)-1], true
	return len(p), nil
}

// flush passes on the byte held back.
func (h *heldTail) flush() error {
	if !h.held {
		return nil
	}
	h.held = false
	return h.write(h.tail[:])
}

func (h *heldTail) write(p []byte) error {
	if h.rc != nil {
		_ = h.rc.SetWriteDeadline(time.Now().Add(files.DefaultIdleTimeout))
	}
	_, err := h.w.Write(p)
	return err
}

// validName reports whether name is one path component.
func validName(name string) bool {
	for i := range len(name) {
		if name[i] == '/' || name[i] == 0 {
			return false
		}
	}
	return true
}

// addWebTransfer registers a file transfer, so that a sign-out or a
// reload finds it, within maxWebTransfers per browser session.
func (s *Server) addWebTransfer(t *webTerm) bool {
	ws := s.web
	ws.termCount.Lock()
	defer ws.termCount.Unlock()
	n := 0
	for o := range ws.transfers {
		if o.session == t.session {
			n++
		}
	}
	if n >= maxWebTransfers {
		return false
	}
	ws.transfers[t] = struct{}{}
	return true
}

func (s *Server) removeWebTransfer(t *webTerm) {
	ws := s.web
	ws.termCount.Lock()
	defer ws.termCount.Unlock()
	delete(ws.transfers, t)
}

package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// This file serves the recordings to those with the right to read them:
// GET /api/recordings (the list, across the cluster) and GET
// /api/recordings/{id} (one file, from whichever edge holds it), and the
// peer side of both (wire.MsgPeerRecordings).

// RecordingsReader is a Policy that can grant the right to read
// recordings ("recordings: read"). A Policy that lacks it grants it to no
// one. StaticPolicy and AllowAll implement it.
type RecordingsReader interface {
	// RecordingsAllowed reports whether id may list and read the
	// recordings of the devices it may reach (DeviceAllowed).
	RecordingsAllowed(id Identity) bool
}

// RecordingsAllowed always allows.
func (AllowAll) RecordingsAllowed(Identity) bool { return true }

// EventRecordingRead is the audit record of a recording's file served to
// a client (Path is the recording's ID; Method "web" for the browser
// player; Peer the edge that holds it, when another).
const EventRecordingRead = "recording_read"

// The bounds of listing and fetching recordings.
const (
	defaultRecordingsLimit = 100
	// recordingsPeerTimeout bounds a list's wait for the other edges, and
	// a fetch's wait for the answer of the edge that holds the file.
	recordingsPeerTimeout = 5 * time.Second
	// recordingsPeerIdle bounds a fetch's wait for each further read or
	// write of the file's bytes between edges.
	recordingsPeerIdle = 15 * time.Second
)

// canReadRecordings reports whether pol grants id the right to read
// recordings.
func canReadRecordings(pol Policy, id Identity) bool {
	rr, ok := pol.(RecordingsReader)
	return ok && rr.RecordingsAllowed(id)
}

// recordingsRefusal is the 403 text for a client without the right.
func recordingsRefusal(name string) string {
	return fmt.Sprintf("client %s may not read recordings: its entry under clients in edge.yaml needs \"recordings: read\"", name)
}

// recordingQuery is a checked GET /api/recordings query.
type recordingQuery struct {
	device, client string
	since          time.Time // zero: all
	limit          int
}

// parseRecordingQuery checks the query of GET /api/recordings; the error
// says what is wrong and what to send.
func parseRecordingQuery(q url.Values, now time.Time) (recordingQuery, error) {
	rq := recordingQuery{limit: defaultRecordingsLimit}
	for k, v := range q {
		switch k {
		case "device", "client", "since", "limit":
		default:
			return rq, fmt.Errorf("unknown query parameter %q: use device, client, since and limit", truncate(k, 64))
		}
		if len(v) > 1 {
			return rq, fmt.Errorf("%s may be given once", k)
		}
	}
	rq.device, rq.client = q.Get("device"), q.Get("client")
	if rq.device != "" && certs.ValidDeviceID(rq.device) != nil {
		return rq, errors.New("device: not a device ID (1 to 128 letters, digits, '.', '-', '_' and ':')")
	}
	if len(rq.client) > 256 {
		return rq, errors.New("client: at most 256 bytes")
	}
	if s := q.Get("since"); s != "" {
		if t, err := time.Parse(time.RFC3339, s); err == nil {
			rq.since = t
		} else if d, err := time.ParseDuration(s); err == nil && d >= 0 {
			rq.since = now.Add(-d)
		} else {
			return rq, fmt.Errorf("since %q: give an RFC 3339 time (2026-12-02T09:00:00Z) or a duration ago (24h, 30m)", truncate(s, 64))
		}
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > wire.MaxPeerRecordingsLimit {
			return rq, fmt.Errorf("limit %q: a number from 1 to %d", truncate(s, 64), wire.MaxPeerRecordingsLimit)
		}
		rq.limit = n
	}
	return rq, nil
}

func (q recordingQuery) matches(r recordingInfo) bool {
	return (q.device == "" || r.Device == q.device) && (q.client == "" || r.Client == q.client) &&
		(q.since.IsZero() || !r.Start.Before(q.since))
}

// recordings returns the index of this edge's recording directory, as
// the configuration now names it (SetRecording); nil without one.
func (s *Server) recordings() *recordingIndex {
	rc := s.rec.cfg.Load()
	if rc == nil || rc.Dir == "" {
		return nil
	}
	s.recIndexMu.Lock()
	defer s.recIndexMu.Unlock()
	if s.recIndex == nil || s.recIndex.dir != rc.Dir {
		s.recIndex = newRecordingIndex(rc.Dir, s.log)
	}
	return s.recIndex
}

// selfEdge is this edge's ID: its cluster ID, or EdgeID.
func (s *Server) selfEdge() string {
	if s.Cluster != nil {
		return s.Cluster.EdgeID
	}
	return s.EdgeID
}

// localRecordings lists this edge's recordings of q that id may read
// under pol, newest first.
func (s *Server) localRecordings(pol Policy, id Identity, q recordingQuery) []recordingInfo {
	var out []recordingInfo
	for _, r := range s.recordings().scan(q.since) {
		if q.matches(r) && s.mayReadRecordingsOf(pol, id, r.Device) {
			out = append(out, r)
		}
	}
	return newestFirst(out, q.limit)
}

// newestFirst sorts recs by start, newest first (the ID breaks ties), and
// keeps limit of them.
func newestFirst(recs []recordingInfo, limit int) []recordingInfo {
	slices.SortFunc(recs, func(a, b recordingInfo) int {
		if c := b.Start.Compare(a.Start); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	if len(recs) > limit {
		recs = recs[:limit]
	}
	return recs
}

// recordingList is the answer of GET /api/recordings.
type recordingList struct {
	Recordings []recordingInfo `json:"recordings"`
	// Unavailable names the edges of the cluster that did not answer:
	// their recordings are missing from the list.
	Unavailable []string `json:"unavailable"`
}

// listRecordings lists the recordings of q that id may read under pol:
// this edge's and, in a cluster, every other live edge's, asked in
// parallel within recordingsPeerTimeout.
func (s *Server) listRecordings(ctx context.Context, pol Policy, id Identity, q recordingQuery) recordingList {
	out := recordingList{Recordings: s.localRecordings(pol, id, q), Unavailable: []string{}}
	if s.Cluster == nil {
		if out.Recordings == nil {
			out.Recordings = []recordingInfo{}
		}
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, recordingsPeerTimeout)
	defer cancel()
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for _, e := range s.Cluster.Presence.Edges() {
		if e.ID == s.Cluster.EdgeID {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			recs, err := s.peerListRecordings(ctx, e.ID, id, q)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				s.log.Warn("recordings: an edge of the cluster did not list its recordings", "edge", e.ID, "err", err)
				out.Unavailable = append(out.Unavailable, e.ID)
				return
			}
			out.Recordings = append(out.Recordings, recs...)
		}()
	}
	wg.Wait()
	// The other edges filtered under their policy; this one filters again
	// under its own, and drops a recording listed twice (a shared
	// directory).
	seen := map[string]bool{}
	all := out.Recordings
	out.Recordings = []recordingInfo{}
	for _, r := range all {
		if !seen[r.ID] && q.matches(r) && s.mayReadRecordingsOf(pol, id, r.Device) {
			seen[r.ID] = true
			out.Recordings = append(out.Recordings, r)
		}
	}
	out.Recordings = newestFirst(out.Recordings, q.limit)
	slices.Sort(out.Unavailable)
	return out
}

// serveRecordings serves GET /api/recordings and GET /api/recordings/{id}.
func (s *Server) serveRecordings(w http.ResponseWriter, r *http.Request) {
	if !s.admitAPI(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	cred, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	pol := cred.auth.policy
	if !canReadRecordings(pol, cred.id) {
		http.Error(w, recordingsRefusal(cred.id.Name), http.StatusForbidden)
		return
	}
	if id, ok := strings.CutPrefix(r.URL.Path, "/api/recordings/"); ok {
		s.serveRecordingFile(w, r, pol, cred.id, id, "")
		return
	}
	q, err := parseRecordingQuery(r.URL.Query(), time.Now())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	out := s.listRecordings(r.Context(), pol, cred.id, q)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// errNoRecording is the answer for a recording that does not exist or
// that the client may not read: the two are not told apart.
var errNoRecording = errors.New("no such recording")

// serveRecordingFile answers the file of recording id, from this edge or
// from the edge of the cluster that holds it; 404 when there is none that
// id may read. method is the audit's ("web" for the browser player).
func (s *Server) serveRecordingFile(w http.ResponseWriter, r *http.Request, pol Policy, id Identity, recID, method string) {
	if !wire.ValidRecordingID(recID) {
		http.Error(w, "not a recording ID (<edge>-<16 hex digits>); list the recordings with GET /api/recordings", http.StatusNotFound)
		return
	}
	notFound := func() {
		http.Error(w, fmt.Sprintf("no recording %s that client %s may read; list them with GET /api/recordings", recID, id.Name), http.StatusNotFound)
	}
	ev := Event{Kind: EventRecordingRead, Client: id.Name, RemoteAddr: r.RemoteAddr, Path: recID, Method: method, Result: "ok"}
	if info, p, ok := s.recordings().find(recID); ok {
		if !s.mayReadRecordingsOf(pol, id, info.Device) {
			notFound()
			return
		}
		f, err := os.Open(p)
		if err != nil {
			notFound()
			return
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil || !st.Mode().IsRegular() {
			notFound()
			return
		}
		ev.Time, ev.Device = time.Now(), info.Device
		s.audit.Audit(ev)
		w.Header().Set("Content-Type", "application/x-asciicast")
		w.Header().Set("Content-Disposition", `attachment; filename="`+recID+`.cast"`)
		http.ServeContent(w, r, "", st.ModTime(), f)
		return
	}
	holder := recordingEdge(recID)
	if s.Cluster == nil || holder == s.Cluster.EdgeID || !s.knownPeer(holder) {
		notFound()
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), recordingsPeerTimeout)
	defer cancel()
	st, size, device, err := s.peerFetchRecording(ctx, holder, id, recID)
	if errors.Is(err, errNoRecording) {
		notFound()
		return
	}
	var re *wire.RemoteError
	if errors.As(err, &re) {
		// The edge that holds it refused under its own policy.
		http.Error(w, fmt.Sprintf("edge %s, which holds recording %s, refused it: %s", holder, recID, re.Reason), http.StatusForbidden)
		return
	}
	if err != nil {
		s.log.Warn("recordings: cannot fetch a recording from the edge that holds it", "edge", holder, "id", recID, "err", err)
		http.Error(w, fmt.Sprintf("recording %s is on edge %s, which did not send it (%v); retry in a moment", recID, holder, err), http.StatusBadGateway)
		return
	}
	defer st.Close()
	if !s.mayReadRecordingsOf(pol, id, device) {
		notFound()
		return
	}
	ev.Time, ev.Device, ev.Peer = time.Now(), device, holder
	s.audit.Audit(ev)
	w.Header().Set("Content-Type", "application/x-asciicast")
	w.Header().Set("Content-Disposition", `attachment; filename="`+recID+`.cast"`)
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	if r.Method == http.MethodHead {
		return
	}
	if n, err := io.Copy(w, &idleReader{st: st, idle: recordingsPeerIdle, left: size}); err != nil || n != size {
		s.log.Warn("recordings: a recording from another edge was cut short", "edge", holder, "id", recID, "bytes", n, "of", size, "err", err)
	}
}

// knownPeer reports whether id is a live edge of the cluster other than
// this one.
func (s *Server) knownPeer(id string) bool {
	for _, e := range s.Cluster.Presence.Edges() {
		if e.ID == id && id != s.Cluster.EdgeID {
			return true
		}
	}
	return false
}

// idleReader reads at most left bytes of a peer stream, each read within
// idle of the last.
type idleReader struct {
	st   *transport.Stream
	idle time.Duration
	left int64
}

func (r *idleReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	_ = r.st.SetReadDeadline(time.Now().Add(r.idle))
	n, err := r.st.Read(p)
	r.left -= int64(n)
	if errors.Is(err, io.EOF) && r.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// peerRequest opens a stream to edge, sends req and reads the answer: the
// stream, positioned after the OK, and the OK's payload. An Error answer
// is a *wire.RemoteError.
func (s *Server) peerRequest(ctx context.Context, edge string, req wire.PeerRecordings) (*transport.Stream, []byte, error) {
	sess := s.peers.await(ctx, edge)
	if sess == nil {
		return nil, nil, fmt.Errorf("no session with edge %s", edge)
	}
	b, err := req.Encode()
	if err != nil {
		return nil, nil, err
	}
	st, err := sess.OpenContext(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("open a stream to edge %s: %w", edge, err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(recordingsPeerTimeout)
	}
	_ = st.SetDeadline(deadline)
	if err := wire.WriteMessage(st, wire.MsgPeerRecordings, b); err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("send the request to edge %s: %w", edge, err)
	}
	ans, err := wire.ExpectOK(st)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return st, ans, nil
}

// peerListRecordings asks edge for its recordings of q that id may read.
func (s *Server) peerListRecordings(ctx context.Context, edge string, id Identity, q recordingQuery) ([]recordingInfo, error) {
	req := wire.PeerRecordings{Op: wire.PeerRecordingsList, Via: s.Cluster.EdgeID, Client: id.Name,
		Device: q.device, Of: q.client, Limit: q.limit}
	if !q.since.IsZero() {
		req.Since = max(0, q.since.Unix())
	}
	st, _, err := s.peerRequest(ctx, edge, req)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	body, err := io.ReadAll(io.LimitReader(st, wire.MaxPeerRecordingList+1))
	if err != nil {
		return nil, fmt.Errorf("read the list: %w", err)
	}
	if len(body) > wire.MaxPeerRecordingList {
		return nil, fmt.Errorf("the list is larger than %d bytes", wire.MaxPeerRecordingList)
	}
	var recs []recordingInfo
	if err := json.Unmarshal(body, &recs); err != nil {
		return nil, fmt.Errorf("the list is not JSON: %w", err)
	}
	for _, r := range recs {
		if recordingEdge(r.ID) == "" || !wire.ValidRecordingID(r.ID) {
			return nil, fmt.Errorf("the list holds a malformed recording ID %q", truncate(r.ID, 160))
		}
	}
	return recs, nil
}

// peerFetchRecording asks edge for recording recID on behalf of id. It
// returns the stream positioned at the file's first byte, its size and
// its device; errNoRecording when edge has none that id may read.
func (s *Server) peerFetchRecording(ctx context.Context, edge string, id Identity, recID string) (*transport.Stream, int64, string, error) {
	req := wire.PeerRecordings{Op: wire.PeerRecordingsFetch, Via: s.Cluster.EdgeID, Client: id.Name, ID: recID}
	st, ans, err := s.peerRequest(ctx, edge, req)
	var re *wire.RemoteError
	if errors.As(err, &re) && strings.HasPrefix(re.Reason, errNoRecording.Error()) {
		return nil, 0, "", errNoRecording
	}
	if err != nil {
		return nil, 0, "", err
	}
	var hdr peerFetchAnswer
	if json.Unmarshal(ans, &hdr) != nil || hdr.Bytes < 0 || certs.ValidDeviceID(hdr.Device) != nil {
		st.Close()
		return nil, 0, "", fmt.Errorf("edge %s answered the fetch with a malformed header", edge)
	}
	_ = st.SetDeadline(time.Time{})
	return st, hdr.Bytes, hdr.Device, nil
}

// peerFetchAnswer is the payload of the OK that answers a fetch.
type peerFetchAnswer struct {
	Bytes  int64  `json:"bytes"`
	Device string `json:"device"`
}

// servePeerRecordings answers another edge's MsgPeerRecordings for one of
// its clients, under this edge's own policy.
func (s *Server) servePeerRecordings(peer string, st *transport.Stream, payload []byte) {
	_ = st.SetWriteDeadline(time.Now().Add(s.tcfg.OpenTimeout))
	req, err := wire.DecodePeerRecordings(payload)
	if err != nil {
		_ = wire.WriteError(st, err.Error())
		return
	}
	if req.Via != peer {
		_ = wire.WriteError(st, fmt.Sprintf("edge %s sent a request on behalf of edge %s", peer, req.Via))
		return
	}
	id := Identity{Name: req.Client}
	pol := s.auth.Load().policy
	if !canReadRecordings(pol, id) {
		_ = wire.WriteError(st, recordingsRefusal(id.Name)+" (edge "+s.Cluster.EdgeID+")")
		return
	}
	switch req.Op {
	case wire.PeerRecordingsList:
		q := recordingQuery{device: req.Device, client: req.Of, limit: cmpOr(req.Limit, defaultRecordingsLimit)}
		if req.Since > 0 {
			q.since = time.Unix(req.Since, 0)
		}
		recs := s.localRecordings(pol, id, q)
		if recs == nil {
			recs = []recordingInfo{}
		}
		body, _ := json.Marshal(recs)
		if len(body) > wire.MaxPeerRecordingList {
			_ = wire.WriteError(st, "the list is too large; ask for fewer recordings (limit)")
			return
		}
		if wire.WriteOK(st, nil) == nil {
			_ = st.SetWriteDeadline(time.Now().Add(recordingsPeerIdle))
			_, _ = st.Write(body)
		}
	case wire.PeerRecordingsFetch:
		s.servePeerFetch(st, pol, id, req.ID)
	}
}

// servePeerFetch sends recording recID to another edge: its size and
// device in the OK, then exactly that many bytes.
func (s *Server) servePeerFetch(st *transport.Stream, pol Policy, id Identity, recID string) {
	noRecording := func() {
		_ = wire.WriteError(st, fmt.Sprintf("%v: %s on edge %s", errNoRecording, recID, s.Cluster.EdgeID))
	}
	info, p, ok := s.recordings().find(recID)
	if !ok || !s.mayReadRecordingsOf(pol, id, info.Device) {
		noRecording()
		return
	}
	f, err := os.Open(p)
	if err != nil {
		noRecording()
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		noRecording()
		return
	}
	ans, _ := json.Marshal(peerFetchAnswer{Bytes: fi.Size(), Device: info.Device})
	if wire.WriteOK(st, ans) != nil {
		return
	}
	w := &idleWriter{st: st, idle: recordingsPeerIdle}
	if _, err := io.CopyN(w, f, fi.Size()); err != nil {
		s.log.Debug("recordings: a fetch by another edge ended early", "id", recID, "err", err)
		st.Abort()
	}
}

// idleWriter writes to a peer stream, each write within idle.
type idleWriter struct {
	st   *transport.Stream
	idle time.Duration
}

func (w *idleWriter) Write(p []byte) (int, error) {
	_ = w.st.SetWriteDeadline(time.Now().Add(w.idle))
	return w.st.Write(p)
}

// mayReadRecordingsOf reports whether pol lets id read the recordings of
// device: a role of id that covers the device grants recordings: read
// (RecordingPolicy), or, for a Policy without roles, id may reach it.
func (s *Server) mayReadRecordingsOf(pol Policy, id Identity, device string) bool {
	dev := s.deviceRef(pol, device)
	if !pol.DeviceAllowed(id, dev) {
		return false
	}
	if _, ok := pol.(RecordingPolicy); ok {
		return PolicyRecordingsAllowed(pol, id, dev)
	}
	return true
}

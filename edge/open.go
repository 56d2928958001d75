package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// openRequest is one stream to open on a device, whoever asked for it: a
// client of this edge, or another edge on behalf of its client. The
// policy has already allowed it.
type openRequest struct {
	id     Identity
	device string
	req    Request
	msg    wire.Message // the canonical opening message
	ev     *Event       // the stream's audit record, filled in as it goes
	hops   int          // edges the stream crossed before this one
	// from is the opener's stream, whose first bytes, when they came with
	// the opening message (optimistic open), go to the device with the
	// request; early holds them, taken once, for every edge tried.
	from      *transport.Stream
	early     []byte
	tookEarly bool
	// audited: the record of the request is written; an open that tries
	// more than one edge writes it once.
	audited bool
}

// refusal is why a stream was not opened, and how to answer it.
type refusal struct {
	result string // the audit result and the metric's label
	reason string // what the client is told
	// relay, when set, is the device's own answer, passed on verbatim.
	relay []byte
	// silent: the device closed the stream without an answer; the client
	// sees the same.
	silent bool
	// moved: the device is not (or no longer) where it was looked for; a
	// peer answers GoAway, and the client's edge looks again.
	moved bool
}

// opened is a stream open on the device's side, answered OK: the device's
// own stream, or a peer edge's stream that leads to it.
type opened struct {
	st      *transport.Stream
	answer  []byte
	peer    string // the edge it goes through; empty for a local device
	early   int64  // the opener's bytes that went with the request
	release func() // gives back the device's stream slots

	rec *recorder // the shell's recording, if it is recorded (record.go)
}

// Open's bounds on the detour a moved device may cause, and how long
// after a peer session ended an open that finds no device asks the live
// peers: the lost edge's devices re-home faster than presence can show
// it while NATS elects new leaders.
const (
	maxOpenAttempts = 3
	movedWait       = 10 * time.Second
	rehomeWindow    = 30 * time.Second
)

// open opens r's stream: on the device's session when this edge holds the
// device, or through the edge that holds it (presence). A device that
// moved while the stream was on its way is looked up again.
func (s *Server) open(ctx context.Context, r *openRequest) (o *opened, ref *refusal) {
	rec, ref := s.startRecording(r)
	if ref != nil {
		return nil, ref
	}
	defer func() { o, ref = s.recordOpened(r, rec, o, ref) }()
	var last *refusal
	for range maxOpenAttempts {
		if dev, ok := s.reg.Lookup(r.device); ok {
			return s.openLocal(ctx, r, dev)
		}
		if s.Cluster == nil || r.hops > 0 {
			return nil, &refusal{result: "offline", moved: r.hops > 0,
				reason: fmt.Sprintf("device %s is not connected to this edge; retry when it is back", r.device)}
		}
		if err := s.Cluster.Presence.Health(); err != nil {
			return nil, &refusal{result: "cluster_unavailable",
				reason: fmt.Sprintf("cluster state unavailable (%v); device %s is not on this edge", err, r.device)}
		}
		rec, ok := s.Cluster.Presence.Lookup(r.device)
		if !ok || rec.Edge == s.Cluster.EdgeID {
			if last == nil {
				last = &refusal{result: "offline",
					reason: fmt.Sprintf("device %s is not connected to any edge of this cluster; retry when it is back", r.device)}
			}
			if s.peers.lostSince(rehomeWindow) {
				if o, ref := s.probe(ctx, r, ""); ref == nil {
					return o, nil
				}
			}
			return nil, last
		}
		o, ref := s.openRemote(ctx, r, rec)
		if ref != nil && ref.result == "peer_unreachable" {
			// The edge presence names is gone; its devices may already
			// be on another edge.
			if po, pref := s.probe(ctx, r, rec.Edge); pref == nil {
				return po, nil
			}
			return nil, ref
		}
		if ref == nil || !ref.moved {
			return o, ref
		}
		last = &refusal{result: "offline", reason: ref.reason}
		s.log.Debug("device moved while a stream was on its way; looking again", "device", r.device, "edge", rec.Edge, "reason", ref.reason)
		if !s.waitMoved(ctx, r.device, rec) {
			break
		}
	}
	return nil, last
}

// probe asks every live peer edge but skip, in turn, to open r's stream,
// for a device that presence does not (yet) show where it is. An edge
// that does not hold the device answers GoAway at once. The first that
// opens the stream wins; the refusal is the last one seen.
func (s *Server) probe(ctx context.Context, r *openRequest, skip string) (*opened, *refusal) {
	last := &refusal{result: "offline", reason: fmt.Sprintf("device %s is not connected to any edge of this cluster; retry when it is back", r.device)}
	for _, id := range s.probeEdges(skip) {
		o, ref := s.openRemote(ctx, r, PresenceRecord{ID: r.device, Edge: id})
		if ref == nil {
			s.log.Debug("found a device that presence does not show yet", "device", r.device, "edge", id)
			return o, nil
		}
		if !ref.moved && ref.result != "peer_unreachable" {
			return nil, ref
		}
	}
	r.ev.Peer = ""
	return nil, last
}

// probeEdges lists the edges a probe asks, but for skip and this one: those
// with a live session, and the live edges of presence, whose session may
// not be up yet (openRemote waits for it, unless it was lost).
func (s *Server) probeEdges(skip string) []string {
	ids := s.peers.live(skip)
	for _, e := range s.Cluster.Presence.Edges() {
		if e.ID != skip && e.ID != s.Cluster.EdgeID && !slices.Contains(ids, e.ID) {
			ids = append(ids, e.ID)
		}
	}
	return ids
}

// waitMoved waits, within ctx and movedWait, until the device is no
// longer where rec says: presence shows it elsewhere, or this edge holds
// it. It reports whether it moved.
func (s *Server) waitMoved(ctx context.Context, device string, rec PresenceRecord) bool {
	ctx, cancel := context.WithTimeout(ctx, movedWait)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if _, ok := s.reg.Lookup(device); ok {
			return true
		}
		if now, ok := s.Cluster.Presence.Lookup(device); ok && now.Nonce != rec.Nonce {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// openLocal opens r's stream on a device this edge holds: the device's
// stream caps, the audit record a shell needs before it runs, then the
// request and the device's answer.
func (s *Server) openLocal(ctx context.Context, r *openRequest, dev *Device) (*opened, *refusal) {
	if n := dev.streams.Add(1); n > int64(dev.maxStreams) {
		dev.streams.Add(-1)
		return nil, &refusal{result: "limit", reason: fmt.Sprintf("too many streams: device %s has %d open, the most it serves", r.device, dev.maxStreams)}
	}
	if !dev.takeClientSlot(r.id.Name, dev.share) {
		dev.streams.Add(-1)
		return nil, &refusal{result: "limit", reason: fmt.Sprintf("too many streams: client %s already has %d open to device %s, its share of the device; close some and retry",
			r.id.Name, dev.share, r.device)}
	}
	release := func() {
		dev.releaseClientSlot(r.id.Name)
		dev.streams.Add(-1)
	}
	ok := false
	defer func() {
		if !ok {
			release()
		}
	}()
	if ref := s.auditBeforeOpen(ctx, r); ref != nil {
		return nil, ref
	}
	ds, err := dev.sess.OpenContext(ctx)
	if err != nil {
		return nil, &refusal{result: "device_error", reason: fmt.Sprintf("cannot open a stream to device %s: %v", r.device, err)}
	}
	ans, ref := s.request(ctx, ds, r, "device "+r.device)
	if ref != nil {
		ds.Close()
		return nil, ref
	}
	ok = true
	return &opened{st: ds, answer: ans, release: release, early: int64(len(r.early))}, nil
}

// openRemote opens r's stream through the edge that holds the device.
func (s *Server) openRemote(ctx context.Context, r *openRequest, rec PresenceRecord) (*opened, *refusal) {
	sess := s.peers.await(ctx, rec.Edge)
	if sess == nil {
		return nil, &refusal{result: "peer_unreachable",
			reason: fmt.Sprintf("device %s is on edge %s, which this edge cannot reach now; retry in a moment", r.device, rec.Edge)}
	}
	r.ev.Peer = rec.Edge
	if ref := s.auditBeforeOpen(ctx, r); ref != nil {
		return nil, ref
	}
	ps, err := sess.OpenContext(ctx)
	if err != nil {
		return nil, &refusal{result: "peer_unreachable", reason: fmt.Sprintf("cannot open a stream to edge %s, which holds device %s: %v", rec.Edge, r.device, err)}
	}
	hdr, err := wire.PeerOpen{Device: r.device, Client: r.id.Name, Remote: r.ev.RemoteAddr, Via: s.Cluster.EdgeID, Hops: r.hops + 1,
		Method: r.id.Method, Groups: r.id.Groups}.Encode()
	if err == nil {
		hdr, err = wire.AppendMessage(nil, wire.MsgPeerOpen, hdr)
	}
	if err != nil {
		ps.Close()
		return nil, &refusal{result: "invalid", reason: err.Error()}
	}
	// The peer open and the request go out in one write: one frame.
	ans, ref := s.request(ctx, ps, r, "edge "+rec.Edge+", which holds device "+r.device+",", hdr...)
	if ref != nil {
		ps.Close()
		return nil, ref
	}
	return &opened{st: ps, answer: ans, peer: rec.Edge, release: func() {}, early: int64(len(r.early))}, nil
}

// auditBeforeOpen writes, for the stream types that must not run
// unrecorded, the record of the request before it reaches the device, and
// refuses the stream when the audit log cannot take it. It also refuses a
// stream whose session or grant ended meanwhile.
func (s *Server) auditBeforeOpen(ctx context.Context, r *openRequest) *refusal {
	if auditRequired(r.msg.Type) && !r.audited {
		rec := *r.ev
		rec.Kind, rec.Time, rec.Result = EventStreamRequest, time.Now(), "authorized"
		if err := s.auditWait(ctx, rec); err != nil {
			s.log.Warn("stream refused: its audit record could not be written", "client", r.id.Name, "device", r.device, "type", r.ev.Type, "err", err)
			return &refusal{result: "audit_unavailable", reason: err.Error() + "; this edge runs no " + r.ev.Type + " stream it cannot record, retry later"}
		}
		r.audited = true
	}
	return ended(ctx)
}

// ended is the refusal of an open whose opener went away (ctx ended: its
// session or peer session closed, or a reload revoked it), or nil.
func ended(ctx context.Context) *refusal {
	if err := context.Cause(ctx); err != nil {
		if errors.Is(err, errStreamRevoked) {
			return &refusal{result: "revoked", reason: err.Error()}
		}
		return &refusal{result: "closed", reason: "the session is closing"}
	}
	return nil
}

// request sends r's opening message on st, after prefix in the same
// write, and reads the answer. who names the other end in errors
// ("device d1", "edge e2, which holds device d1,"). When ctx ends first
// (the opener went away), st is reset, so that the device stops working
// on a request nobody waits for.
func (s *Server) request(ctx context.Context, st *transport.Stream, r *openRequest, who string, prefix ...byte) ([]byte, *refusal) {
	_ = st.SetDeadline(time.Now().Add(s.tcfg.OpenTimeout))
	stop := context.AfterFunc(ctx, func() { _ = st.AbortWith("the client went away before the answer") })
	defer stop()
	if !r.tookEarly && r.from != nil && r.msg.Type == wire.MsgTCP {
		r.early, r.tookEarly = takeEarly(r.from), true
	}
	msg, err := wire.AppendMessage(prefix, r.msg.Type, r.msg.Payload)
	if err == nil {
		_, err = st.Write(append(msg, r.early...))
	}
	if err != nil {
		return nil, &refusal{result: "device_error", reason: fmt.Sprintf("cannot send the request to %s: %v", who, err)}
	}
	ans, err := wire.ReadMessage(st)
	if err != nil && ctx.Err() != nil {
		return nil, ended(ctx) // the reset above ended the read
	}
	switch {
	case err != nil && isTimeout(err):
		return nil, &refusal{result: "device_error", reason: fmt.Sprintf("%s did not answer the %s request within %v", who, r.ev.Type, s.tcfg.OpenTimeout)}
	case err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, transport.ErrStreamReset):
		// The session ended under the stream (the connection broke, or
		// the other end went silent past its keep-alive).
		return nil, &refusal{result: "device_error", reason: fmt.Sprintf("lost the connection to %s before it answered", who)}
	case err != nil:
		// Relay "closed without an answer" as it is: the client turns it
		// into a clear error of its own.
		return nil, &refusal{result: "no_answer", reason: "the device closed the stream without answering", silent: true}
	case ans.Type == wire.MsgError:
		return nil, &refusal{result: "device_refused", reason: string(ans.Payload), relay: ans.Payload}
	case ans.Type == wire.MsgGoAway:
		return nil, &refusal{result: "offline", reason: string(ans.Payload), moved: true}
	case ans.Type != wire.MsgOK:
		return nil, &refusal{result: "device_error", reason: fmt.Sprintf("%s answered with an unexpected %v message", who, ans.Type)}
	}
	_ = st.SetDeadline(time.Time{})
	return ans.Payload, nil
}

// unlessSessionEnded returns a context that ctx's end ends too, unless
// its cause is the end of the client's session (errSessionEnded): Splice
// watches each stream's session itself, and lets a stream whose both
// directions had already finished (a client that got its answer and
// exited at once) end cleanly rather than cut. A revocation, a failed
// recording or the edge's shutdown still ends it. stop releases the
// watch.
func unlessSessionEnded(ctx context.Context) (context.Context, func()) {
	out, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		if cause := context.Cause(ctx); !errors.Is(cause, errSessionEnded) {
			cancel(cause)
		}
	})
	return out, func() {
		stop()
		cancel(nil)
	}
}

// maxEarly bounds the opener's first bytes that go with the request.
const maxEarly = 8 << 10

// takeEarly returns the bytes that already arrived on st after its
// opening message, without waiting for any: an optimistic opener's first
// bytes (docs/protocol.md, "Optimistic open"). They go to the device with
// the request, one frame, so that it has them when it answers; a
// refusal drops them there, as here. The rest, and the end of st, come
// through the splice.
func takeEarly(st *transport.Stream) []byte {
	bp := earlyBufs.Get().(*[]byte)
	defer earlyBufs.Put(bp)
	n := st.ReadArrived(*bp)
	if n == 0 {
		return nil
	}
	return bytes.Clone((*bp)[:n])
}

var earlyBufs = sync.Pool{New: func() any {
	b := make([]byte, maxEarly)
	return &b
}}

// answerRefusal audits a refused stream and tells its opener: the device's
// own Error verbatim, GoAway to a peer edge when the device is not here,
// nothing when the device gave no answer, our Error otherwise.
func (s *Server) answerRefusal(st *transport.Stream, ev Event, ref *refusal, toPeer bool) {
	ev.Time, ev.Result, ev.Reason = time.Now(), ref.result, ref.reason
	if ref.moved && toPeer {
		// The device is not here: the client's edge looks elsewhere and
		// audits the outcome.
		s.log.Debug("peer stream for a device not here", "edge", ev.Peer, "device", ev.Device, "reason", ref.reason)
		s.Metrics.stream(ev.Type, ref.result)
		_ = st.SetWriteDeadline(time.Now().Add(s.tcfg.OpenTimeout))
		_ = wire.WriteMessage(st, wire.MsgGoAway, []byte(ref.reason))
		return
	}
	ev.Kind = EventStreamDeny
	if ref.relay != nil || ref.silent {
		ev.Kind = EventStreamOpen // the device itself answered (or not)
	}
	s.audit.Audit(ev)
	metric := ref.result
	if ref.relay != nil || ref.silent {
		metric = "device_error"
	}
	s.Metrics.stream(ev.Type, metric)
	if ref.silent {
		return
	}
	_ = st.SetWriteDeadline(time.Now().Add(s.tcfg.OpenTimeout))
	switch {
	case ref.relay != nil:
		_ = wire.WriteMessage(st, wire.MsgError, ref.relay)
	default:
		_ = wire.WriteError(st, ref.reason)
	}
}

// reasonRefusedRest is the audit reason of a stream that closed normally
// after one end finished and refused what the other still sent: a shell
// that exited with keystrokes or input on their way.
const reasonRefusedRest = "one end finished while the other was still sending; the rest was refused"

// relay answers the opener OK with the device's answer, splices the two
// streams until both directions end, and audits the close.
func (s *Server) relay(ctx context.Context, st *transport.Stream, o *opened, ev Event, start time.Time) {
	defer o.st.Close()
	defer o.release()
	ev.Kind, ev.Time, ev.Result = EventStreamOpen, time.Now(), "ok"
	s.audit.Audit(ev)
	s.Metrics.stream(ev.Type, "ok")
	_ = st.SetWriteDeadline(time.Now().Add(s.tcfg.OpenTimeout))
	if err := wire.WriteMessage(st, wire.MsgOK, o.answer); err != nil {
		ev.Kind, ev.Time, ev.Result, ev.Reason = EventStreamClose, time.Now(), "error", "the client went away before the answer: "+err.Error()
		o.st.Abort()
		s.finishRecording(o, &ev)
		s.audit.Audit(ev)
		return
	}
	_ = st.SetWriteDeadline(time.Time{})
	s.Metrics.activeDelta(ev.Type, 1)
	var dev io.ReadWriteCloser = o.st
	tap := newFileTap(o.st, o.answer)
	if tap != nil {
		dev, ev.Offset = tap, answerOffset(o.answer)
	}
	ctx, dev = s.recordRelay(ctx, o, dev)
	ctx, stop := unlessSessionEnded(ctx)
	up, down, err := transport.Splice(ctx, st, dev, &transport.SpliceOptions{StallTimeout: s.lim.StallTimeout})
	stop()
	up += o.early
	s.Metrics.activeDelta(ev.Type, -1)
	s.Metrics.addBytes(up, down)

	ev.Kind, ev.Time, ev.Result, ev.Reason = EventStreamClose, time.Now(), "ok", ""
	switch {
	case err == nil:
	case errors.Is(err, transport.ErrStalled):
		ev.Result = "reset_stalled"
		ev.Reason = fmt.Sprintf("no progress for %v while data was waiting", s.lim.StallTimeout)
		s.Metrics.stalledReset()
		s.log.Info("stalled stream reset", "client", ev.Client, "device", ev.Device, "type", ev.Type, "target", ev.Target)
	case errors.Is(err, errStreamRevoked):
		ev.Result, ev.Reason = "revoked", err.Error()
		s.log.Warn("stream closed after a reload: the policy no longer allows it", "client", ev.Client, "device", ev.Device, "type", ev.Type, "target", ev.Target)
	case errors.Is(err, transport.ErrStoppedReading):
		// One end finished, and then refused what the other still sent: a
		// shell that exited with keystrokes or input on their way.
		ev.Reason = reasonRefusedRest
	case errors.Is(err, context.Canceled):
		ev.Result, ev.Reason = "error", "the session or the edge closed"
	default:
		ev.Result, ev.Reason = "error", err.Error()
	}
	ev.BytesUp, ev.BytesDown = up, down
	ev.DurationMS = time.Since(start).Milliseconds()
	if tap != nil {
		tap.record(&ev)
	}
	s.finishRecording(o, &ev)
	s.audit.Audit(ev)
}

package transport

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Flow-control policing. A smux receiver keeps every inbound data frame in
// its own buffer until the application reads it, and its session budget
// (MaxReceiveBuffer) counts payload bytes only. A peer that ignores its
// stream window, or that sends 1-byte frames to a stream nobody reads, can
// therefore pin far more memory than the budget suggests (measured: 58×
// MaxReceiveBuffer, about 232 MiB per session with the reference settings).
// The frame layer checks both.
const (
	// frameCharge is what one unread inbound frame costs beyond its payload
	// (smux's buffer, its pool header and a ring slot: about 58 bytes,
	// measured for a 1-byte frame), rounded up.
	frameCharge = 64
	// smuxInitialWindow is the window a smux v2 sender assumes before the
	// receiver's first window update.
	smuxInitialWindow = 262144
	// maxFrameSlack is the room left beyond a window: one largest frame.
	maxFrameSlack = 65535
	// maxClosedEarly bounds the streams remembered as closed by this side
	// before the peer finished them (see policer.closedEarly).
	maxClosedEarly = 1024
)

// policer tracks, per stream, the payload the peer delivered, the bytes we
// told the peer we consumed (the "consumed" field of our outbound window
// updates) and the bytes the application actually read.
//
// Window: a smux v2 sender may send up to the right edge of its window,
// the consumed count plus the window of the last update it heard. The
// policer chooses each stream's window as the update leaves (advertise)
// and never moves the edge back, so
//
//	delivered > highest edge advertised + one frame
//
// proves that the peer ignores its window: the session is closed. The
// edge is recorded here before the update leaves, so no race can make an
// honest peer look guilty.
//
// Window sizing (advertise): a stream starts at MaxStreamBuffer and grows,
// once per measured round trip, to twice the bytes it carried in the last
// round trip, at most MaxStreamWindow: a long fat link fills, and a stream
// whose reader is slow keeps the window it needs. The windows of all open
// streams together stay within MaxReceiveBuffer less smux's initial window
// (256 KiB) for each stream the session may still open, so that stalled
// streams never spend the budget that the others need; under that
// pressure a stream gets less than MaxStreamBuffer, never less than that
// initial window. The round trip is the session's smallest sample of the
// time from a window update leaving to the first byte beyond the edge it
// replaced arriving: the peer cannot send those bytes before it has the
// update.
//
// Tiny frames: smux sends an update only every eighth of a window, so the
// advertised count says little about memory. A frame stays charged
// (frameCharge) until the application has read past its end, which the
// Stream reports. A stream whose unread frames cost more than twice its
// window is reset, and so is the stream with the most unread frames when
// the session's unread frames cost more than MaxReceiveBuffer. Only that
// stream ends: a relay (the edge) passes frames on one for one, so an
// honest peer may be carrying one client's flood, and the other streams of
// its session must not pay for it. A peer that keeps its window and whose
// frames average 32 bytes or more never trips it, however slow the reader.
type policer struct {
	base       uint32 // the window a stream starts with (MaxStreamBuffer)
	maxWindow  uint32 // the largest window of one stream (MaxStreamWindow)
	budget     int64  // all windows together (MaxReceiveBuffer)
	maxStreams int    // streams the session may have open (MaxStreams)
	sessBudget int    // frame-charge budget of the session, in bytes
	rst        func(sid uint32)
	now        func() time.Time // time.Now; tests replace it

	mu sync.Mutex
	// mu guards the following, and the fields of every recvState but the
	// atomics.
	streams   map[uint32]*recvState
	frames    int           // unread frames over all streams
	committed int64         // the windows of all open streams together
	rtt       time.Duration // smallest round-trip sample; 0 until one
	// closedEarly holds streams this side closed before the peer ended
	// them. Data that still arrives for one is answered with a reset, once,
	// as TCP answers data after close.
	closedEarly map[uint32]struct{}
}

// recvState is the receive accounting of one stream.
type recvState struct {
	app       atomic.Uint32          // bytes the application read; set by Stream without mu
	fin       atomic.Bool            // the peer's FIN (or RST) arrived; read by Stream without mu
	reset     atomic.Bool            // the peer reset the stream
	ended     atomic.Bool            // the peer's FIN arrived before any reset: every byte it sent is here
	reason    atomic.Pointer[string] // the reason of the peer's reset; set before reset
	violation atomic.Pointer[error]  // why this side reset the stream, or nil

	delivered uint32   // payload bytes received, modulo 2^32 like smux's counters
	consumed  uint32   // consumed count of our last window update
	window    uint32   // window of our last update (smux's initial one before)
	edge      uint32   // highest consumed + window advertised
	target    uint32   // the window the stream has grown to
	ends      []uint32 // delivered offset at the end of each unread frame, from head
	head      int

	// A round-trip probe: the time an update moved the edge, and the edge
	// it replaced; the first byte beyond it ends the probe.
	probing    bool
	probeEdge  uint32
	probeAt    time.Time
	epochAt    time.Time // start of the current growth epoch
	epochBytes uint32    // consumed count at its start
	// onKill resets the stream for a violation. The Stream sets it once
	// the application holds the stream; it must not block.
	onKill func()
	// A stream we opened, whose SYN went out at synAt (zero until then),
	// and that no Stream has bound yet: smux may have given up on its open
	// (reapUnbound).
	ours  bool
	bound bool
	synAt time.Time

	// The send side, for the Stream's writer, which sends its data frames
	// itself: peerWin is the peer's last window update for our data
	// (consumed<<32 | window; smux's initial window before), and sent what
	// the writer sent, touched by the writer alone (under Stream.wmu).
	// sendWake is closed, and replaced, by every update, and by whatever
	// else a waiting writer must see: the peer's reset, a violation, the
	// stream's close, a new write deadline.
	peerWin  atomic.Uint64
	sent     uint32
	sendWake chan struct{}
}

func newPolicer(d *Config, rst func(sid uint32)) *policer {
	return &policer{
		base:        uint32(d.MaxStreamBuffer),
		maxWindow:   uint32(d.MaxStreamWindow),
		budget:      int64(d.MaxReceiveBuffer),
		maxStreams:  d.MaxStreams,
		sessBudget:  max(d.MaxReceiveBuffer, 2*max(d.MaxStreamBuffer, smuxInitialWindow)),
		rst:         rst,
		now:         time.Now,
		streams:     make(map[uint32]*recvState),
		closedEarly: make(map[uint32]struct{}),
	}
}

// opened starts accounting for a stream (a SYN either way; ours when we
// sent it). Until our first update, its peer works from smux's initial
// window.
func (p *policer) opened(sid uint32, ours bool) {
	p.mu.Lock()
	if _, ok := p.streams[sid]; !ok {
		st := &recvState{window: smuxInitialWindow, edge: smuxInitialWindow, target: p.base, sendWake: make(chan struct{})}
		st.peerWin.Store(smuxInitialWindow)
		st.ours = ours
		p.streams[sid] = st
		p.committed += smuxInitialWindow
	}
	p.mu.Unlock()
}

// finished records the peer's FIN or reset (with its reason) for a
// stream, before smux sees it.
func (p *policer) finished(sid uint32, reset bool, reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.closedEarly, sid)
	st, ok := p.streams[sid]
	if !ok {
		return
	}
	if !reset && !st.fin.Load() {
		st.ended.Store(true)
	}
	if reset {
		st.reason.Store(&reason)
		st.reset.Store(true)
		st.wakeSenderLocked()
	}
	st.fin.Store(true)
}

// peerUpdate records the peer's window update for our data on stream sid
// (its 8-byte payload: consumed count, window) and wakes a writer waiting
// for it.
func (p *policer) peerUpdate(sid uint32, upd []byte) {
	consumed := binary.LittleEndian.Uint32(upd[0:4])
	window := binary.LittleEndian.Uint32(upd[4:8])
	p.mu.Lock()
	defer p.mu.Unlock()
	if st, ok := p.streams[sid]; ok {
		st.peerWin.Store(uint64(consumed)<<32 | uint64(window))
		st.wakeSenderLocked()
	}
}

// sendWaiter returns the channel that the next change for st's writer
// closes.
func (p *policer) sendWaiter(st *recvState) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return st.sendWake
}

// wakeSender wakes st's writer, if waiting, to look at its stream again.
func (p *policer) wakeSender(st *recvState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st.wakeSenderLocked()
}

// wakeSenderLocked is wakeSender; the caller holds the policer's mu.
func (st *recvState) wakeSenderLocked() {
	close(st.sendWake)
	st.sendWake = make(chan struct{})
}

// unread reports whether a stream holds bytes that arrived and that the
// application has not read.
func (p *policer) unread() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, st := range p.streams {
		if st.delivered != st.app.Load() {
			return true
		}
	}
	return false
}

// bind hands the policer the Stream's callback, once the application
// holds the stream, and returns its accounting (nil when the session is
// already gone). A stream reset for a violation before that is reset now.
func (p *policer) bind(sid uint32, onKill func()) *recvState {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.streams[sid]
	if st == nil {
		return nil
	}
	st.onKill, st.bound = onKill, true
	if st.violation.Load() != nil {
		onKill()
	}
	return st
}

// synSent notes that our SYN for stream sid went out, or is held to go
// out before any later frame.
func (p *policer) synSent(sid uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st, ok := p.streams[sid]; ok && st.ours {
		st.synAt = p.now()
	}
}

// reapUnbound stops accounting for the streams of ours whose SYN went out
// at least grace ago and that no Stream has bound: smux gave up on their
// opens (see abandon.go). It returns them, with whether the peer has yet
// to end each, and how long until the youngest other unbound one of ours
// is grace old (0 when there is none).
func (p *policer) reapUnbound(grace time.Duration) (reaped []reapedStream, next time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	for sid, st := range p.streams {
		if !st.ours || st.bound || st.synAt.IsZero() {
			continue
		}
		if age := now.Sub(st.synAt); age < grace {
			if left := grace - age; next == 0 || left < next {
				next = left
			}
			continue
		}
		p.frames -= len(st.ends) - st.head
		p.committed -= int64(st.window)
		delete(p.streams, sid)
		reaped = append(reaped, reapedStream{sid: sid, open: !st.fin.Load()})
	}
	return reaped, next
}

// reapedStream is a stream reapUnbound dropped; open when the peer has not
// ended it.
type reapedStream struct {
	sid  uint32
	open bool
}

// closed stops accounting for a stream the application closed. It
// reports whether the peer is still sending and bytes it sent were left
// unread: the caller resets the stream at once, since a peer blocked on a
// full window would otherwise send nothing more that could be answered
// with a reset. A stream closed with everything read is answered with a
// reset only if more data arrives (closedEarly).
func (p *policer) closed(sid uint32) (unread bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, ok := p.streams[sid]
	if !ok {
		return false
	}
	p.frames -= len(st.ends) - st.head
	p.committed -= int64(st.window)
	st.wakeSenderLocked()
	delete(p.streams, sid)
	if st.fin.Load() {
		return false
	}
	if st.delivered != st.app.Load() {
		return true
	}
	if len(p.closedEarly) < maxClosedEarly {
		p.closedEarly[sid] = struct{}{}
	}
	return false
}

// advertise records an outbound window update, whose 8-byte payload is
// upd (consumed count, window), and writes the stream's window into it.
func (p *policer) advertise(sid uint32, upd []byte) {
	consumed := binary.LittleEndian.Uint32(upd[0:4])
	p.mu.Lock()
	defer p.mu.Unlock()
	st, ok := p.streams[sid]
	if !ok {
		// Closed: smux discards what arrives for it. Still, never offer
		// less than the starting window.
		binary.LittleEndian.PutUint32(upd[4:8], p.base)
		return
	}
	now := p.now()
	st.consumed = consumed
	p.grow(st, consumed, now)

	// The stream's window: what it has grown to, within the room the other
	// open streams and those that may still open leave; never less than
	// the initial window, nor an edge behind the last one.
	open := len(p.streams)
	room := p.budget - (p.committed - int64(st.window)) - int64(max(p.maxStreams-open, 0))*smuxInitialWindow
	w := int64(st.target)
	if room < w {
		w = max(room, min(int64(p.base), smuxInitialWindow))
	}
	if ahead := int64(int32(st.edge - consumed)); w < ahead {
		w = ahead
	}
	p.committed += w - int64(st.window)
	st.window = uint32(w)
	binary.LittleEndian.PutUint32(upd[4:8], st.window)

	edge := consumed + st.window
	if int32(edge-st.edge) > 0 {
		if !st.probing {
			st.probing, st.probeEdge, st.probeAt = true, st.edge, now
		}
		st.edge = edge
	}
}

// grow raises the stream's target window, once per round trip, to twice
// the bytes consumed in the last one. The caller holds mu.
func (p *policer) grow(st *recvState, consumed uint32, now time.Time) {
	if st.epochAt.IsZero() {
		st.epochAt, st.epochBytes = now, consumed
		return
	}
	elapsed := now.Sub(st.epochAt)
	if p.rtt <= 0 || elapsed < p.rtt {
		return
	}
	carried := float64(consumed - st.epochBytes)
	want := 2 * carried * float64(p.rtt) / float64(elapsed)
	if want > float64(st.target) {
		st.target = uint32(min(want, float64(p.maxWindow)))
	}
	st.epochAt, st.epochBytes = now, consumed
}

// probe ends a stream's round-trip probe when delivered passed the edge
// it watches. The caller holds mu.
func (p *policer) probe(st *recvState) {
	if !st.probing || int32(st.delivered-st.probeEdge) <= 0 {
		return
	}
	st.probing = false
	if rtt := p.now().Sub(st.probeAt); rtt > 0 && (p.rtt == 0 || rtt < p.rtt) {
		p.rtt = rtt
	}
}

// roundTrip returns the session's measured round trip, or 0 before the
// first sample.
func (p *policer) roundTrip() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rtt
}

// received accounts for an inbound data frame of n bytes. It returns an
// error, which closes the session, when the peer ignored its window; a
// tiny-frame flood resets the stream that holds it instead. Frames for
// streams we do not track (closed, or never opened) are not buffered by
// smux; a stream closed early answers with a reset.
func (p *policer) received(sid uint32, n uint32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, ok := p.streams[sid]
	if !ok {
		if _, early := p.closedEarly[sid]; early {
			delete(p.closedEarly, sid)
			p.rst(sid)
		}
		return nil
	}
	st.delivered += n
	if beyond := int64(int32(st.delivered - st.edge)); beyond > maxFrameSlack {
		return fmt.Errorf("%w: stream %d has %d bytes in flight beyond what we acknowledged, %d more than its %d-byte window", ErrProtocolViolation, sid, int32(st.delivered-st.consumed), beyond, st.window)
	}
	p.probe(st)
	if st.violation.Load() != nil {
		return nil // reset already; smux drops its frames once it is closed
	}
	p.frames -= st.release()
	st.ends = append(st.ends, st.delivered)
	p.frames++
	if frames := len(st.ends) - st.head; frames*frameCharge > 2*int(max(st.window, p.base, smuxInitialWindow)) {
		p.killLocked(st, fmt.Errorf("%w: stream %d has %d unread frames; the peer floods tiny frames, so this stream was reset", ErrProtocolViolation, sid, frames))
		return nil
	}
	if p.frames*frameCharge > p.sessBudget {
		// Other streams may have been read since their last frame.
		for _, o := range p.streams {
			p.frames -= o.release()
		}
	}
	if p.frames*frameCharge > p.sessBudget {
		var (
			worst    *recvState
			worstSID uint32
		)
		for id, o := range p.streams {
			if o.violation.Load() == nil && (worst == nil || len(o.ends)-o.head > len(worst.ends)-worst.head) {
				worst, worstSID = o, id
			}
		}
		if worst != nil {
			p.killLocked(worst, fmt.Errorf("%w: %d unread frames on the session, %d of them on stream %d; the peer floods tiny frames, so this stream was reset", ErrProtocolViolation, p.frames, len(worst.ends)-worst.head, worstSID))
		}
	}
	return nil
}

// killLocked resets a stream for a violation: its frames stop counting
// and its Stream is aborted. The caller holds mu.
func (p *policer) killLocked(st *recvState, err error) {
	st.violation.Store(&err)
	p.frames -= len(st.ends) - st.head
	st.ends, st.head = nil, 0
	st.wakeSenderLocked()
	if st.onKill != nil {
		st.onKill()
	}
}

// release forgets the frames the application has read past and returns how
// many. The caller holds the policer's mu.
func (st *recvState) release() int {
	read := st.app.Load()
	if int32(st.consumed-read) > 0 {
		read = st.consumed
	}
	h := st.head
	for h < len(st.ends) && int32(st.ends[h]-read) <= 0 {
		h++
	}
	n := h - st.head
	switch {
	case h == len(st.ends):
		st.ends, st.head = st.ends[:0], 0
	case h >= 1024 && 2*h >= len(st.ends):
		k := copy(st.ends, st.ends[h:])
		st.ends, st.head = st.ends[:k], 0
	default:
		st.head = h
	}
	return n
}

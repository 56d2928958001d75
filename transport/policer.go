package transport

import (
	"fmt"
	"sync"
	"sync/atomic"
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
// Window: a smux v2 sender may have at most one window in flight beyond the
// last consumed count it heard, so
//
//	delivered - advertised consumed > window + one frame
//
// proves that the peer ignores its window: the session is closed. Counting
// against the advertised figure rather than the application's reads keeps
// the check exact: it is the very number the peer works from, and it is
// recorded here before the update leaves, so no race can make an honest
// peer look guilty.
//
// Tiny frames: smux sends an update only every half window, so the
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
	window       uint32 // bytes a sender may have unread on one stream
	streamBudget int    // frame-charge budget of one stream, in bytes
	sessBudget   int    // frame-charge budget of the session, in bytes
	rst          func(sid uint32)

	mu sync.Mutex
	// mu guards the following, and the fields of every recvState but the
	// atomics.
	streams map[uint32]*recvState
	frames  int // unread frames over all streams
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
	reason    atomic.Pointer[string] // the reason of the peer's reset; set before reset
	violation atomic.Pointer[error]  // why this side reset the stream, or nil

	delivered uint32   // payload bytes received, modulo 2^32 like smux's counters
	consumed  uint32   // consumed count of our last window update
	ends      []uint32 // delivered offset at the end of each unread frame, from head
	head      int
	// onKill resets the stream for a violation; onReset wakes its writers
	// after the peer's reset. Both are set by the Stream once the
	// application holds it, and must not block.
	onKill, onReset func()
}

func newPolicer(d *Config, rst func(sid uint32)) *policer {
	w := uint32(max(d.MaxStreamBuffer, smuxInitialWindow))
	return &policer{
		window:       w,
		streamBudget: 2 * int(w),
		sessBudget:   max(d.MaxReceiveBuffer, 2*int(w)),
		rst:          rst,
		streams:      make(map[uint32]*recvState),
		closedEarly:  make(map[uint32]struct{}),
	}
}

// opened starts accounting for a stream (a SYN either way).
func (p *policer) opened(sid uint32) {
	p.mu.Lock()
	if _, ok := p.streams[sid]; !ok {
		p.streams[sid] = &recvState{}
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
	if reset {
		st.reason.Store(&reason)
		st.reset.Store(true)
		if st.onReset != nil {
			st.onReset()
		}
	}
	st.fin.Store(true)
}

// bind hands the policer the Stream's callbacks, once the application
// holds the stream, and returns its accounting (nil when the session is
// already gone). A stream reset for a violation before that is reset now.
func (p *policer) bind(sid uint32, onKill, onReset func()) *recvState {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.streams[sid]
	if st == nil {
		return nil
	}
	st.onKill, st.onReset = onKill, onReset
	if st.violation.Load() != nil {
		onKill()
	}
	if st.reset.Load() {
		onReset()
	}
	return st
}

// closed stops accounting for a stream the application closed.
func (p *policer) closed(sid uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, ok := p.streams[sid]
	if !ok {
		return
	}
	p.frames -= len(st.ends) - st.head
	delete(p.streams, sid)
	if !st.fin.Load() && len(p.closedEarly) < maxClosedEarly {
		p.closedEarly[sid] = struct{}{}
	}
}

// consumed records the consumed count of an outbound window update.
func (p *policer) consumed(sid uint32, n uint32) {
	p.mu.Lock()
	if st, ok := p.streams[sid]; ok {
		st.consumed = n
	}
	p.mu.Unlock()
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
	unread := int64(int32(st.delivered - st.consumed))
	if unread > int64(p.window)+maxFrameSlack {
		return fmt.Errorf("%w: stream %d has %d bytes in flight beyond what we acknowledged, more than its %d-byte window", ErrProtocolViolation, sid, unread, p.window)
	}
	if st.violation.Load() != nil {
		return nil // reset already; smux drops its frames once it is closed
	}
	p.frames -= st.release()
	st.ends = append(st.ends, st.delivered)
	p.frames++
	if frames := len(st.ends) - st.head; frames*frameCharge > p.streamBudget {
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

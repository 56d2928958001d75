package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/xtaci/smux"
)

// smux v2 frame layout, as seen on the wire between TLS and smux:
//
//	| version 1B | cmd 1B | length 2B LE | stream id 4B LE | payload |
//
// A window update (UPD) carries 8 bytes: bytes consumed (4B LE) and the
// receiver's window (4B LE).
const (
	smuxVersion    = 2
	smuxHeaderSize = 8
	smuxCmdSYN     = 0
	smuxCmdFIN     = 1
	smuxCmdPSH     = 2
	smuxCmdNOP     = 3
	smuxCmdUPD     = 4
	smuxUPDSize    = 8
)

// Flow-control policing. A smux receiver keeps every inbound data frame in
// its own buffer until the application reads it, and its session budget
// (MaxReceiveBuffer) counts payload bytes only. A peer that ignores its
// stream window, or that sends 1-byte frames to a stream nobody reads, can
// therefore pin far more memory than the budget suggests (measured: 58×
// MaxReceiveBuffer, about 232 MiB per session with the reference settings).
// The frame layer checks both and closes the session on a violation.
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
)

// frameConn is the frame-aware layer between the TLS connection and smux.
//
// Write side: it gives smux a WriteBuffers method, so smux skips its 64 KiB
// per-session copy buffer; each frame is assembled in a pooled buffer only
// while it is written, as one write (one TLS record run). It also carries
// our lossless half-close: Stream.CloseWrite sends the stream's FIN frame
// from here, without telling smux, so smux never runs its own half-close
// clean-up (which, in some smux releases, discards received bytes that were
// not yet read). When smux later sends its own FIN for that stream on
// Close, it is dropped, so the peer sees exactly one FIN per stream; a data
// frame that would follow our FIN is dropped too.
//
// Read side: it parses the frame headers as they pass to smux and polices
// the peer (see policer). A violation closes the session; every later read
// fails with an error wrapping ErrProtocolViolation.
type frameConn struct {
	net.Conn
	r io.Reader // the connection, after any bytes buffered by the upgrade

	// Only smux's receive loop calls Read, so the parser state needs no lock.
	hdr  [smuxHeaderSize]byte
	hdrN int // header bytes collected so far
	left int // payload bytes of the current frame still to pass through
	pol  *policer

	violation atomic.Pointer[error]
	sess      atomic.Pointer[smux.Session] // closed on a violation; set by attach

	ctx      context.Context // done once the connection can deliver nothing more
	markDead context.CancelFunc
	dead     <-chan struct{} // ctx.Done()

	wmu sync.Mutex
	// wmu guards the following.
	finSent map[uint32]struct{} // streams whose FIN was sent by CloseWrite
	werr    error               // first write error; every later write fails with it
}

func newFrameConn(c net.Conn, r io.Reader, cfg *Config) *frameConn {
	if r == nil {
		r = c
	}
	d := cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &frameConn{Conn: c, r: r, finSent: make(map[uint32]struct{}), pol: newPolicer(d), ctx: ctx, markDead: cancel, dead: ctx.Done()}
}

// Close closes the connection; smux calls it from Session.Close.
func (c *frameConn) Close() error {
	c.markDead()
	return c.Conn.Close()
}

// Read passes bytes from the connection to smux, parsing the frame headers
// on the way.
func (c *frameConn) Read(p []byte) (int, error) {
	if err := c.violationErr(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	if n > 0 {
		if verr := c.inspect(p[:n]); verr != nil {
			c.fail(verr)
			// Deliver nothing of this read: smux must not act on a frame
			// that broke the rules.
			c.markDead()
			return 0, verr
		}
	}
	if err != nil {
		c.markDead()
	}
	return n, err
}

// inspect advances the frame parser over b.
func (c *frameConn) inspect(b []byte) error {
	for len(b) > 0 {
		if c.left > 0 {
			k := min(c.left, len(b))
			c.left -= k
			b = b[k:]
			continue
		}
		k := copy(c.hdr[c.hdrN:], b)
		c.hdrN += k
		b = b[k:]
		if c.hdrN < smuxHeaderSize {
			return nil
		}
		c.hdrN = 0
		if err := c.onFrame(); err != nil {
			return err
		}
	}
	return nil
}

// onFrame checks one complete inbound header.
func (c *frameConn) onFrame() error {
	h := c.hdr
	length := int(binary.LittleEndian.Uint16(h[2:4]))
	sid := binary.LittleEndian.Uint32(h[4:8])
	if h[0] != smuxVersion {
		return fmt.Errorf("%w: smux version %d, want %d", ErrProtocolViolation, h[0], smuxVersion)
	}
	c.left = length
	switch h[1] {
	case smuxCmdPSH:
		if length > 0 {
			return c.pol.received(sid, uint32(length))
		}
	case smuxCmdSYN:
		c.pol.opened(sid)
	case smuxCmdFIN:
		c.pol.finished(sid)
	case smuxCmdNOP, smuxCmdUPD:
		// smux checks their lengths itself.
	default:
		return fmt.Errorf("%w: unknown smux command %d", ErrProtocolViolation, h[1])
	}
	return nil
}

// fail records the first violation and closes the session. It runs in
// smux's receive loop, which smux's Close does not wait for.
func (c *frameConn) fail(err error) {
	if !c.violation.CompareAndSwap(nil, &err) {
		return
	}
	if s := c.sess.Load(); s != nil {
		_ = s.Close()
		return
	}
	// The session is still being set up: cut the connection now; attach
	// closes the session.
	_ = c.Close()
}

// attach names the session that a violation closes.
func (c *frameConn) attach(s *smux.Session) {
	c.sess.Store(s)
	if c.violationErr() != nil {
		_ = s.Close()
	}
}

// violationErr returns the violation that closed the session, or nil.
func (c *frameConn) violationErr() error {
	if p := c.violation.Load(); p != nil {
		return *p
	}
	return nil
}

// frameBufs holds buffers of a full frame (header and a max-size payload).
var frameBufs = sync.Pool{New: func() any {
	b := make([]byte, smuxHeaderSize+65535)
	return &b
}}

// WriteBuffers writes one smux frame given as header and payload. smux calls
// it from its single send loop, one frame per call.
func (c *frameConn) WriteBuffers(v [][]byte) (int, error) {
	total := 0
	for _, b := range v {
		total += len(b)
	}
	bp := frameBufs.Get().(*[]byte)
	defer frameBufs.Put(bp)
	buf := *bp
	if total > len(buf) {
		buf = make([]byte, total)
	}
	n := 0
	for _, b := range v {
		n += copy(buf[n:], b)
	}
	return c.writeFrame(buf[:n])
}

// Write writes one whole smux frame (smux uses it only without WriteBuffers).
func (c *frameConn) Write(p []byte) (int, error) { return c.writeFrame(p) }

// writeFrame writes one outbound frame. It notes the streams we open and
// the window updates we send before the bytes leave, so the read side never
// sees the peer react to a frame it has not accounted for.
func (c *frameConn) writeFrame(p []byte) (int, error) {
	var (
		cmd byte = 0xff
		sid uint32
	)
	if len(p) >= smuxHeaderSize {
		cmd = p[1]
		sid = binary.LittleEndian.Uint32(p[4:8])
		switch {
		case cmd == smuxCmdSYN:
			c.pol.opened(sid)
		case cmd == smuxCmdUPD && len(p) >= smuxHeaderSize+smuxUPDSize:
			c.pol.consumed(sid, binary.LittleEndian.Uint32(p[smuxHeaderSize:]))
		}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	if len(c.finSent) > 0 && (cmd == smuxCmdFIN || cmd == smuxCmdPSH) {
		if _, ok := c.finSent[sid]; ok {
			if cmd == smuxCmdFIN && len(p) == smuxHeaderSize {
				// smux's own FIN on Close: the peer already has ours.
				delete(c.finSent, sid)
			}
			return len(p), nil
		}
	}
	n, err := c.Conn.Write(p)
	if err != nil {
		c.werr = err
	}
	return n, err
}

// isWriteErr reports whether err is the error that failed the connection's
// writes.
func (c *frameConn) isWriteErr(err error) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.werr != nil && errors.Is(err, c.werr)
}

// sendFIN writes a FIN frame for stream sid on behalf of Stream.CloseWrite.
// Frames the stream wrote before have already been written: smux returns
// from Stream.Write only after its frames reached this layer.
func (c *frameConn) sendFIN(sid uint32) error {
	var hdr [smuxHeaderSize]byte
	hdr[0] = smuxVersion
	hdr[1] = smuxCmdFIN
	binary.LittleEndian.PutUint32(hdr[4:8], sid)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	if _, err := c.Conn.Write(hdr[:]); err != nil {
		c.werr = err
		return err
	}
	c.finSent[sid] = struct{}{}
	return nil
}

// forget drops the policing state of a stream that the application closed:
// smux discards whatever arrives for it from now on.
func (c *frameConn) forget(sid uint32) { c.pol.closed(sid) }

// policer tracks, per stream, the payload the peer delivered, the bytes we
// told the peer we consumed (the "consumed" field of our outbound window
// updates) and the bytes the application actually read.
//
// Window: a smux v2 sender may have at most one window in flight beyond the
// last consumed count it heard, so
//
//	delivered - advertised consumed > window + one frame
//
// proves that the peer ignores its window. Counting against the advertised
// figure rather than the application's reads keeps the check exact: it is
// the very number the peer works from, and it is recorded here before the
// update leaves, so no race can make an honest peer look guilty.
//
// Tiny frames: smux sends an update only every half window, so the
// advertised count says little about memory. A frame stays charged
// (frameCharge) until the application has read past its end, which the
// Stream reports. A stream whose unread frames cost more than twice its
// window, or a session whose unread frames cost more than
// MaxReceiveBuffer, is a flood. A peer that keeps its window and whose
// frames average 32 bytes or more never trips it, however slow the reader.
type policer struct {
	window       uint32 // bytes a sender may have unread on one stream
	streamBudget int    // frame-charge budget of one stream, in bytes
	sessBudget   int    // frame-charge budget of the session, in bytes

	mu sync.Mutex
	// mu guards the following, and the fields of every recvState but app.
	streams map[uint32]*recvState
	frames  int // unread frames over all streams
}

// recvState is the receive accounting of one stream.
type recvState struct {
	app       atomic.Uint32 // bytes the application read; set by Stream without mu
	fin       atomic.Bool   // the peer's FIN arrived; read by Stream without mu
	delivered uint32        // payload bytes received, modulo 2^32 like smux's counters
	consumed  uint32        // consumed count of our last window update
	ends      []uint32      // delivered offset at the end of each unread frame, from head
	head      int
}

func newPolicer(d *Config) *policer {
	w := uint32(max(d.MaxStreamBuffer, smuxInitialWindow))
	return &policer{
		window:       w,
		streamBudget: 2 * int(w),
		sessBudget:   max(d.MaxReceiveBuffer, 2*int(w)),
		streams:      make(map[uint32]*recvState),
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

// finished records the peer's FIN for a stream, before smux sees it.
func (p *policer) finished(sid uint32) {
	p.mu.Lock()
	if st, ok := p.streams[sid]; ok {
		st.fin.Store(true)
	}
	p.mu.Unlock()
}

// state returns the accounting of a stream, or nil.
func (p *policer) state(sid uint32) *recvState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.streams[sid]
}

// closed stops accounting for a stream the application closed.
func (p *policer) closed(sid uint32) {
	p.mu.Lock()
	if st, ok := p.streams[sid]; ok {
		p.frames -= len(st.ends) - st.head
		delete(p.streams, sid)
	}
	p.mu.Unlock()
}

// consumed records the consumed count of an outbound window update.
func (p *policer) consumed(sid uint32, n uint32) {
	p.mu.Lock()
	if st, ok := p.streams[sid]; ok {
		st.consumed = n
	}
	p.mu.Unlock()
}

// received accounts for an inbound data frame of n bytes and reports a
// violation. Frames for streams we do not track (closed, or never opened)
// are ignored: smux discards them without buffering.
func (p *policer) received(sid uint32, n uint32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, ok := p.streams[sid]
	if !ok {
		return nil
	}
	p.frames -= st.release()
	st.delivered += n
	st.ends = append(st.ends, st.delivered)
	p.frames++
	unread := int64(int32(st.delivered - st.consumed))
	if unread > int64(p.window)+maxFrameSlack {
		return fmt.Errorf("%w: stream %d has %d bytes in flight beyond what we acknowledged, more than its %d-byte window", ErrProtocolViolation, sid, unread, p.window)
	}
	if frames := len(st.ends) - st.head; frames*frameCharge > p.streamBudget {
		return fmt.Errorf("%w: stream %d has %d unread frames; the peer floods tiny frames", ErrProtocolViolation, sid, frames)
	}
	if p.frames*frameCharge > p.sessBudget {
		// Other streams may have been read since their last frame.
		for _, o := range p.streams {
			p.frames -= o.release()
		}
	}
	if p.frames*frameCharge > p.sessBudget {
		return fmt.Errorf("%w: %d unread frames on the session; the peer floods tiny frames", ErrProtocolViolation, p.frames)
	}
	return nil
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

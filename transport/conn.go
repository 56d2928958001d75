package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xtaci/smux"
)

// smux v2 frame layout, as seen on the wire between TLS and smux:
//
//	| version 1B | cmd 1B | length 2B LE | stream id 4B LE | payload |
//
// A window update (UPD) carries 8 bytes: bytes consumed (4B LE) and the
// receiver's window (4B LE). RST is our extension (docs/protocol.md,
// "Stream reset"): sent only to peers that announced it, and turned into a
// FIN before smux sees it.
const (
	smuxVersion    = 2
	smuxHeaderSize = 8
	smuxCmdSYN     = 0
	smuxCmdFIN     = 1
	smuxCmdPSH     = 2
	smuxCmdNOP     = 3
	smuxCmdUPD     = 4
	smuxUPDSize    = 8
	cmdRST         = 0x81
	// MaxResetReason bounds the reason a RST carries, in bytes.
	MaxResetReason = 1024
)

// frameConn is the frame-aware layer between the TLS connection and smux.
//
// Write side: it gives smux a WriteBuffers method, so smux skips its 64 KiB
// per-session copy buffer; a frame's header and the start of its payload
// are assembled in a pooled buffer, one TLS record's worth, and the rest
// of the payload goes to TLS as it is, under one lock (writeLocked). It
// also carries our lossless half-close: Stream.CloseWrite sends the
// stream's FIN frame from here, without telling smux, so smux never runs
// its own half-close clean-up (which, in some smux releases, discards
// received bytes that were not yet read). When smux later sends its own FIN for that stream on
// Close, it is dropped, so the peer sees exactly one FIN per stream; a data
// frame that would follow our FIN is dropped too. Stream resets (RST) go
// out from here as well.
//
// Read side: it parses the frame headers as they pass to smux, polices the
// peer (see policer) and turns an inbound RST into a FIN for smux while
// noting the reset for the Stream. A session-level violation closes the
// session; every later read fails with an error wrapping
// ErrProtocolViolation. A stream-level violation resets that stream only.
//
// Keep-alive: smux's own keep-alive is off. The frame layer sends NOP
// frames every interval and closes the session once the peer has sent
// nothing for the receive timeout while smux was waiting to read, measured
// from the last byte (not on a coarse tick, so the bound is exact).
type frameConn struct {
	net.Conn
	r io.Reader // the connection, after any bytes buffered by the upgrade

	// Only smux's receive loop calls Read, so the parser state needs no lock.
	hdr     [smuxHeaderSize]byte // as received, before any rewrite
	hdrN    int                  // header bytes collected so far
	rst     bool                 // the header being collected is a RST, rewritten to FIN
	left    int                  // payload bytes of the current frame still to pass through
	pending *pendingReset        // a RST whose reason is still to be read
	upd     [smuxUPDSize]byte    // the payload of an inbound window update, as it passes
	updN    int                  // its bytes collected so far
	updSID  uint32               // its stream; updOn while one is being collected
	updOn   bool
	pol     *policer
	// frameSize is the largest data frame sent (Config.MaxFrameSize).
	frameSize int
	records   *recordConn // under the TLS connection, if any: gathers a frame's records

	peer     peerInfo               // what the peer announced on the upgrade
	peerName atomic.Pointer[string] // names the peer in a lost connection's errors
	closeE   atomic.Pointer[error]
	sess     atomic.Pointer[smux.Session] // closed on a failure; set by attach
	ctx      context.Context              // done once the connection can deliver nothing more
	cancel   context.CancelFunc
	dead     <-chan struct{} // ctx.Done()
	dieOnce  sync.Once
	closing  atomic.Bool // the application closed the session (closeSession)

	ka keepAlive

	amu sync.Mutex
	// amu guards the following.
	appStreams int         // streams handed to the application and not yet closed
	lateT      *time.Timer // bounds a close of smux's session put off for them (closeSession)

	// wmu is taken for every frame written, by smux's send loop, by each
	// Stream's writer and by the timers; it serves them in turn, so that
	// a stream writing frame after frame does not hold another's behind.
	wmu fairLock
	// wmu guards the following.
	finSent map[uint32]struct{} // streams whose FIN or RST was sent by us, not smux
	werr    error               // first write error; every later write fails with it
	held    []byte              // frames held back to go out with the next one (hold)
	answers map[uint32]struct{} // streams whose next data frame is held (holdAnswer)
	flushT  *time.Timer         // sends the held frames if no frame follows in time
	holdFor time.Duration       // holdFor; tests lengthen it

	// writingSince is when the write to the connection under way began,
	// in Unix nanoseconds; 0 between writes. A write that has not ended
	// after stallAfter means the connection has stopped draining (see
	// Session.OpenContext).
	writingSince atomic.Int64
	stallAfter   time.Duration

	// Opens that smux gave up on, whose SYN may still go out (abandon.go).
	abandoned   atomic.Int32
	reapGrace   time.Duration // abandonGrace; tests shorten it
	reapMu      sync.Mutex
	reapT       *time.Timer // guarded by reapMu, as are the two below
	reapArmed   bool
	reapStopped bool
}

// Frames that only open a stream (SYN) or announce the window after a
// stream's first small reads (UPD) are held back and go out in one write,
// one TLS record, with the frame that follows them: a stream's opening
// message after its SYN, an answer or the first bytes after the window
// update that reading the opening message or the answer sent. So is the
// answer to an optimistic opener, whose first bytes came with its opening
// message (Stream.ReadArrived): it goes out with the first bytes of the
// reply. That saves a write, a record and a wake-up of the peer per frame
// on the open path. Nothing waits on them: the peer's initial window
// covers every stream until the update comes, an optimistic opener
// already sent what it had, and if no frame follows within holdFor they
// go out alone.
const (
	holdFor      = time.Millisecond
	holdUPDBelow = 64 << 10 // window updates after more consumed bytes go out at once
	maxHeld      = 128      // bytes of held frames; beyond, they go out at once
)

func newFrameConn(c net.Conn, r io.Reader, cfg *Config, peer peerInfo) *frameConn {
	if r == nil {
		r = c
	}
	d := cfg.WithDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	fc := &frameConn{Conn: c, r: r, finSent: make(map[uint32]struct{}), peer: peer,
		ctx: ctx, cancel: cancel, dead: ctx.Done(), frameSize: d.MaxFrameSize, reapGrace: abandonGrace, stallAfter: stallAfter, holdFor: holdFor}
	fc.pol = newPolicer(d, fc.sendRSTAsync)
	fc.records = recordsUnder(c)
	return fc
}

// Close closes the connection; smux calls it from Session.Close.
func (c *frameConn) Close() error {
	if c.records != nil && c.closing.Load() && !c.isDead() {
		// The application closes a live session: the last bytes of its
		// streams must reach the peer.
		c.records.lingerOnClose()
	}
	c.markDead()
	if c.records != nil {
		c.records.abortFlush()
	}
	return c.Conn.Close()
}

// closeSession closes smux's session. smux's Close drops every byte its
// streams hold unread, which on a live connection is the cut the caller
// asks for. Once the connection is dead, though, nothing more arrives and
// those bytes are the last of their streams, often followed by their
// FIN: dropping them would end a stream cleanly without its last bytes.
// So when some are unread, the connection closes now (writes fail at
// once), and smux's Close waits until the application has closed every
// stream it holds, each read to its end, for at most lateCloseBound.
func (c *frameConn) closeSession(s *smux.Session) error {
	c.closing.Store(true)
	if !c.isDead() || !c.pol.unread() {
		return s.Close()
	}
	_ = c.Close()
	c.amu.Lock()
	if c.appStreams == 0 {
		c.amu.Unlock()
		return s.Close()
	}
	if c.lateT == nil {
		c.lateT = time.AfterFunc(lateCloseBound, c.lateClose)
	}
	c.amu.Unlock()
	return nil
}

// lateCloseBound bounds how long a closed session on a dead connection
// keeps its streams' unread bytes for their readers.
const lateCloseBound = 5 * time.Second

// lateClose runs the close of smux's session that closeSession put off.
func (c *frameConn) lateClose() {
	c.amu.Lock()
	t := c.lateT
	c.lateT = nil
	c.amu.Unlock()
	if t != nil {
		t.Stop()
		_ = c.sess.Load().Close()
	}
}

// holdStream counts a stream handed to the application.
func (c *frameConn) holdStream() {
	c.amu.Lock()
	c.appStreams++
	c.amu.Unlock()
}

// releaseStream counts a stream the application closed; the last one
// runs a close of smux's session that waited for it.
func (c *frameConn) releaseStream() {
	c.amu.Lock()
	c.appStreams--
	run := c.appStreams == 0 && c.lateT != nil
	c.amu.Unlock()
	if run {
		c.lateClose()
	}
}

// markDead records that the connection can deliver nothing more.
func (c *frameConn) markDead() {
	c.dieOnce.Do(func() {
		c.cancel()
		c.ka.stop()
		c.stopReap()
	})
}

// isDead reports whether the connection is gone: no frame arrives any more.
func (c *frameConn) isDead() bool {
	select {
	case <-c.dead:
		return true
	default:
		return false
	}
}

// Read passes bytes from the connection to smux, parsing the frame headers
// on the way.
func (c *frameConn) Read(p []byte) (int, error) {
	if err := c.closeErr(); err != nil {
		return 0, err
	}
	c.ka.reading()
	n, err := c.r.Read(p)
	c.ka.received(n)
	if n > 0 {
		k, verr := c.inspect(p[:n])
		if verr != nil {
			c.fail(verr)
			// Deliver nothing of this read: smux must not act on a frame
			// that broke the rules.
			c.markDead()
			return 0, verr
		}
		if k < n {
			// A RST's header ended inside this read: what follows is its
			// reason (and maybe more frames), read apart and after it.
			c.r = io.MultiReader(bytes.NewReader(bytes.Clone(p[k:n])), c.r)
			n, err = k, nil
		}
	}
	if n > 0 && c.hdrN == 0 && c.left == 0 && c.pending != nil {
		// A RST's header is complete and smux is about to act on it as a
		// FIN: read its reason first, so the stream knows why before its
		// reader wakes. The reason follows the header at once.
		if verr := c.readResetReason(); verr != nil {
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

// pendingReset is a RST whose header smux has not seen yet and whose
// reason is still to be read.
type pendingReset struct {
	sid uint32
	n   int // reason bytes
}

// readResetReason reads the reason of the pending RST from the connection
// (smux never sees it: the header it gets says length 0) and records the
// reset.
func (c *frameConn) readResetReason() error {
	r := c.pending
	c.pending = nil
	reason := make([]byte, r.n)
	for got := 0; got < r.n; {
		// The keep-alive watches these reads as it watches smux's: a
		// peer silent in the middle of a reason is silent.
		c.ka.reading()
		k, err := c.r.Read(reason[got:])
		c.ka.received(k)
		got += k
		if err != nil && got < r.n {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("%w: stream reset cut short: %v", ErrProtocolViolation, err)
		}
	}
	c.pol.finished(r.sid, true, string(reason))
	return nil
}

// inspect advances the frame parser over b and returns how many of its
// bytes go to smux. It rewrites an inbound RST's header in place, before
// smux reads it: the command becomes FIN and the length 0. Its reason is
// read apart (readResetReason), so when the header ends inside b, inspect
// stops there.
func (c *frameConn) inspect(b []byte) (int, error) {
	for i := 0; i < len(b); {
		if c.left > 0 {
			k := min(c.left, len(b)-i)
			if c.updOn {
				c.updN += copy(c.upd[c.updN:], b[i:i+k])
				if c.updN == smuxUPDSize {
					c.updOn = false
					c.pol.peerUpdate(c.updSID, c.upd[:])
				}
			}
			c.left -= k
			i += k
			continue
		}
		c.hdr[c.hdrN] = b[i]
		switch {
		case c.hdrN == 1 && b[i] == cmdRST:
			b[i] = smuxCmdFIN
			c.rst = true
		case (c.hdrN == 2 || c.hdrN == 3) && c.rst:
			b[i] = 0
		}
		c.hdrN++
		i++
		if c.hdrN < smuxHeaderSize {
			continue
		}
		c.hdrN = 0
		err := c.onFrame()
		c.rst = false
		if err != nil {
			return i, err
		}
		if c.pending != nil {
			return i, nil
		}
	}
	return len(b), nil
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
	cmd := h[1]
	if c.rst {
		cmd = smuxCmdFIN // rewritten for smux as it passed; the length is the reason's
	}
	switch cmd {
	case smuxCmdPSH:
		if length > 0 {
			return c.pol.received(sid, uint32(length))
		}
	case smuxCmdSYN:
		if length != 0 {
			return fmt.Errorf("%w: SYN with a %d-byte payload", ErrProtocolViolation, length)
		}
		c.pol.opened(sid, false)
	case smuxCmdFIN:
		switch {
		case c.rst && length > MaxResetReason:
			return fmt.Errorf("%w: stream reset with a %d-byte reason, more than %d", ErrProtocolViolation, length, MaxResetReason)
		case c.rst && length > 0:
			c.left = 0 // smux sees length 0; the reason is read apart
			c.pending = &pendingReset{sid: sid, n: length}
		case c.rst:
			c.pol.finished(sid, true, "")
		case length != 0:
			return fmt.Errorf("%w: FIN with a %d-byte payload", ErrProtocolViolation, length)
		default:
			c.pol.finished(sid, false, "")
		}
	case smuxCmdNOP:
		// smux stops reading at a bad length without closing its session,
		// which would then hang: the lengths are checked here.
		if length != 0 {
			return fmt.Errorf("%w: NOP with a %d-byte payload", ErrProtocolViolation, length)
		}
	case smuxCmdUPD:
		if length != smuxUPDSize {
			return fmt.Errorf("%w: window update with a %d-byte payload", ErrProtocolViolation, length)
		}
		// The Stream's writer sends data frames itself (writeData): it
		// needs the peer's window as much as smux does.
		c.updOn, c.updN, c.updSID = true, 0, sid
	default:
		return fmt.Errorf("%w: unknown smux command %d", ErrProtocolViolation, h[1])
	}
	return nil
}

// fail records the first reason the session ends for (a violation, a
// keep-alive timeout) and closes the session. It may run in smux's
// receive loop, which smux's Close does not wait for.
func (c *frameConn) fail(err error) {
	if !c.closeE.CompareAndSwap(nil, &err) {
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

// attach names the session that a failure closes, and starts the
// keep-alive.
func (c *frameConn) attach(s *smux.Session, cfg *Config) {
	c.sess.Store(s)
	if c.closeErr() != nil {
		_ = s.Close()
		return
	}
	d := cfg.WithDefaults()
	c.ka.start(c, d.KeepAliveInterval, c.peer.recvTimeout(d.KeepAliveTimeout))
}

// lostErr is the error of a stream cut by the loss of the connection.
func (c *frameConn) lostErr() error {
	if n := c.peerName.Load(); n != nil {
		return &ConnLostError{Peer: *n}
	}
	return ErrConnLost
}

// closeErr returns why this side closed the session (a violation or a
// keep-alive timeout), or nil.
func (c *frameConn) closeErr() error {
	if p := c.closeE.Load(); p != nil {
		return *p
	}
	return nil
}

// firstWrite bounds what writeLocked assembles for one write: one TLS
// record's plaintext (crypto/tls cuts larger writes into records of this
// size).
const firstWrite = 16 << 10

// frameBufs holds buffers for the held frames, a header and the start of
// a payload, as writeLocked assembles them.
var frameBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, maxHeld+MaxResetReason+firstWrite)
	return &b
}}

// WriteBuffers writes one smux frame given as header and payload. smux calls
// it from its single send loop, one frame per call.
func (c *frameConn) WriteBuffers(v [][]byte) (int, error) {
	if len(v) == 2 && len(v[0]) == smuxHeaderSize {
		return c.writeFrame(v[0], v[1])
	}
	return c.Write(bytes.Join(v, nil))
}

// Write writes one whole smux frame (smux uses it only without WriteBuffers).
func (c *frameConn) Write(p []byte) (int, error) {
	if len(p) < smuxHeaderSize {
		return c.writeFrame(p, nil)
	}
	return c.writeFrame(p[:smuxHeaderSize], p[smuxHeaderSize:])
}

// writeFrame writes one outbound frame, its header hdr and its payload. It
// notes the streams we open and the window updates we send before the
// bytes leave, so the read side never sees the peer react to a frame it has
// not accounted for.
func (c *frameConn) writeFrame(hdr, payload []byte) (int, error) {
	return c.writeFrameOr(hdr, payload, nil)
}

// writeFrameOr is writeFrame for a writer that may give up its wait for
// its turn (see fairLock.lockOr; nil waits as long as it takes): it then
// fails with os.ErrDeadlineExceeded, having written nothing. A frame
// whose write has begun is written whole.
func (c *frameConn) writeFrameOr(hdr, payload []byte, wait func() (<-chan struct{}, <-chan time.Time, bool)) (int, error) {
	var (
		cmd byte = 0xff
		sid uint32
	)
	if len(hdr) == smuxHeaderSize {
		cmd = hdr[1]
		sid = binary.LittleEndian.Uint32(hdr[4:8])
		switch {
		case cmd == smuxCmdSYN:
			c.pol.opened(sid, true)
			defer c.sentSYN(sid)
		case cmd == smuxCmdUPD && len(payload) >= smuxUPDSize:
			c.pol.advertise(sid, payload[:smuxUPDSize])
		}
	}
	hold := cmd == smuxCmdSYN && len(payload) == 0 ||
		cmd == smuxCmdUPD && len(payload) == smuxUPDSize &&
			binary.LittleEndian.Uint32(payload) < holdUPDBelow
	if wait == nil {
		c.wmu.Lock()
	} else if !c.wmu.lockOr(wait) {
		return 0, os.ErrDeadlineExceeded
	}
	defer c.wmu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	if len(c.answers) > 0 && (cmd == smuxCmdPSH || cmd == smuxCmdFIN) {
		if _, ok := c.answers[sid]; ok {
			delete(c.answers, sid) // the answer, or the stream's end without one
			hold = hold || cmd == smuxCmdPSH
		}
	}
	if len(c.finSent) > 0 && (cmd == smuxCmdFIN || cmd == smuxCmdPSH) {
		if _, ok := c.finSent[sid]; ok {
			if cmd == smuxCmdFIN && len(payload) == 0 {
				// smux's own FIN on Close: the peer already has ours.
				delete(c.finSent, sid)
			}
			return len(hdr) + len(payload), nil
		}
	}
	if hold && len(c.held)+len(hdr)+len(payload) <= maxHeld {
		c.holdLocked(hdr, payload)
		return len(hdr) + len(payload), nil
	}
	return c.writeLocked(hdr, payload)
}

// writeData writes one data frame of stream sid, p, for the Stream's
// writer, which may give up its wait for its turn (writeFrameOr); it
// returns how many of p's bytes went out.
func (c *frameConn) writeData(sid uint32, p []byte, wait func() (<-chan struct{}, <-chan time.Time, bool)) (int, error) {
	hdr := header(smuxCmdPSH, sid)
	binary.LittleEndian.PutUint16(hdr[2:4], uint16(len(p)))
	n, err := c.writeFrameOr(hdr[:], p, wait)
	return max(n-smuxHeaderSize, 0), err
}

// holdAnswer holds back stream sid's next data frame, its answer to an
// opener that did not wait for it: the opener sent its first bytes with
// the opening message (docs/protocol.md, "Optimistic open"), so the answer
// may as well go out with the first bytes that follow it, in one write.
func (c *frameConn) holdAnswer(sid uint32) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.answers == nil {
		c.answers = make(map[uint32]struct{})
	}
	c.answers[sid] = struct{}{}
}

// holdLocked keeps frame hdr+payload back, to go out with the next frame
// or after c.holdFor; the caller holds wmu.
func (c *frameConn) holdLocked(hdr, payload []byte) {
	if c.held == nil {
		c.held = make([]byte, 0, maxHeld)
	}
	if len(c.held) == 0 {
		if c.flushT == nil {
			c.flushT = time.AfterFunc(c.holdFor, c.flushHeld)
		} else {
			c.flushT.Reset(c.holdFor)
		}
	}
	c.held = append(append(c.held, hdr...), payload...)
}

// flushHeld sends the held frames that no frame followed in time.
func (c *frameConn) flushHeld() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if len(c.held) > 0 && c.werr == nil {
		_, _ = c.writeLocked(nil, nil)
	}
}

// writeLocked writes the held frames and then the frame hdr+payload; the
// caller holds wmu. The held frames, the header and the payload's start go
// out in one write, assembled in a pooled buffer, of at most one TLS
// record's plaintext; the rest of the payload goes straight from the
// caller's slice. That is the same records as one write of the whole, one
// TLS record or a few per write as before, without copying most of a
// large frame once more on its way into TLS. It reports the frame's bytes.
func (c *frameConn) writeLocked(hdr, payload []byte) (int, error) {
	held := len(c.held)
	if held > 0 {
		c.flushT.Stop()
	}
	bp := frameBufs.Get().(*[]byte)
	defer frameBufs.Put(bp)
	buf := append(append((*bp)[:0], c.held...), hdr...)
	k := min(len(payload), max(firstWrite-len(buf), 0))
	buf = append(buf, payload[:k]...)
	*bp = buf[:0]
	c.held = c.held[:0]
	gathered := k < len(payload) && c.records != nil
	if gathered {
		c.records.gather()
	}
	c.writingSince.Store(time.Now().UnixNano())
	defer c.writingSince.Store(0)
	w, err := c.Conn.Write(buf)
	if err == nil && k < len(payload) {
		var rest int
		rest, err = c.Conn.Write(payload[k:])
		w += rest
	}
	if gathered {
		if ferr := c.records.flush(); err == nil && ferr != nil {
			w, err = 0, ferr
		}
	}
	if err != nil {
		c.werr = err
	}
	return max(w-held, 0), err
}

// stallAfter is how long a write to the connection may take before the
// connection counts as not draining: far longer than a healthy write,
// which a full socket buffer on a slow link stretches to a few round trips.
const stallAfter = 50 * time.Millisecond

// stalled reports whether the write to the connection under way began
// more than stallAfter ago.
func (c *frameConn) stalled() bool {
	since := c.writingSince.Load()
	return since != 0 && time.Now().UnixNano()-since > int64(c.stallAfter)
}

// errSessionClosed fails the frames that smux's send loop hands over once
// the session is closed and a writer gave up on them.
var errSessionClosed = errors.New("transport: session closed")

// fenceClosed returns once smux's send loop no longer reads a frame that a
// writer gave up on because the session closed. smux returns from a
// stream's Write as soon as the session closes, while its send loop may be
// writing that frame or may still pick it up. The caller then reuses the
// buffer, or smux's WriteTo hands it back to the allocator for another
// session's reads: the bytes on the wire would be someone else's. Taking
// wmu waits out a write under way (the session's Close ends it), and werr
// makes every later frame fail before its payload is read.
func (c *frameConn) fenceClosed() {
	s := c.sess.Load()
	if s == nil || !s.IsClosed() {
		return
	}
	c.wmu.Lock()
	if c.werr == nil {
		c.werr = errSessionClosed
	}
	c.wmu.Unlock()
}

// isWriteErr reports whether err is the error that failed the connection's
// writes.
func (c *frameConn) isWriteErr(err error) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.werr != nil && errors.Is(err, c.werr)
}

// header returns a payload-less frame header.
func header(cmd byte, sid uint32) [smuxHeaderSize]byte {
	var hdr [smuxHeaderSize]byte
	hdr[0] = smuxVersion
	hdr[1] = cmd
	binary.LittleEndian.PutUint32(hdr[4:8], sid)
	return hdr
}

// sendEnd writes a FIN or RST frame for stream sid on behalf of the Stream.
// Frames the stream wrote before have already been written: smux returns
// from Stream.Write only after its frames reached this layer. smux's own
// FIN for the stream, on Close, is dropped afterwards; so is any data frame.
func (c *frameConn) sendEnd(cmd byte, sid uint32, reason string) error {
	frame := endFrame(cmd, sid, reason)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	if _, sent := c.finSent[sid]; sent && cmd == smuxCmdFIN {
		return nil
	}
	if _, err := c.writeLocked(frame, nil); err != nil {
		return err
	}
	c.finSent[sid] = struct{}{}
	return nil
}

// sendRSTAsync answers data for a stream this side closed before the peer
// finished it, as TCP answers data after close: the peer learns that
// nobody reads any more. It runs from the receive loop, which must never
// wait on the send path, so the write happens on its own goroutine, once
// per stream.
func (c *frameConn) sendRSTAsync(sid uint32) {
	if !c.peer.reset {
		return
	}
	go c.sendClosedReset(sid)
}

// sendClosedReset writes the reset of a stream that this side closed
// while the peer still sends to it (reasonClosed). Unlike sendEnd it
// leaves no mark in finSent: smux's FIN for the stream has gone already,
// so nothing would ever clear it.
func (c *frameConn) sendClosedReset(sid uint32) {
	frame := endFrame(cmdRST, sid, reasonClosed)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr == nil {
		_, _ = c.writeLocked(frame, nil)
	}
}

// endFrame is stream sid's FIN, or its RST with reason.
func endFrame(cmd byte, sid uint32, reason string) []byte {
	hdr := header(cmd, sid)
	if cmd != cmdRST || reason == "" {
		return hdr[:]
	}
	binary.LittleEndian.PutUint16(hdr[2:4], uint16(len(reason)))
	return append(hdr[:], reason...)
}

// reasonClosed is the reason of the reset that tells a peer still sending
// to a stream that this side closed it, reading no more.
const reasonClosed = "the receiver closed the stream and reads no more"

// sendNOP writes a keep-alive frame.
func (c *frameConn) sendNOP() {
	hdr := header(smuxCmdNOP, 0)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr == nil {
		_, _ = c.writeLocked(hdr[:], nil)
	}
}

// forget drops the policing state of a stream that the application closed:
// smux discards whatever arrives for it from now on. It reports whether
// the peer is still sending to a stream whose bytes were left unread.
func (c *frameConn) forget(sid uint32) (unread bool) { return c.pol.closed(sid) }

// keepAlive sends NOPs and watches for a silent peer, without a goroutine
// of its own: two timers re-arm themselves.
type keepAlive struct {
	conn     *frameConn
	interval time.Duration
	timeout  time.Duration // 0: no receive timeout

	last     atomic.Int64 // unix nanoseconds of the last byte received
	readFrom atomic.Int64 // unix nanoseconds a pending Read began; 0 when none

	mu sync.Mutex
	// mu guards the following.
	ping, check *time.Timer
	stopped     bool
}

func (k *keepAlive) start(c *frameConn, interval, timeout time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return
	}
	k.conn, k.interval, k.timeout = c, interval, timeout
	k.last.Store(time.Now().UnixNano())
	if interval > 0 {
		k.ping = time.AfterFunc(interval, k.onPing)
	}
	if timeout > 0 {
		k.check = time.AfterFunc(timeout, k.onCheck)
	}
}

func (k *keepAlive) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopped = true
	if k.ping != nil {
		k.ping.Stop()
	}
	if k.check != nil {
		k.check.Stop()
	}
}

// reading notes that smux waits for bytes from now on.
func (k *keepAlive) reading() { k.readFrom.Store(time.Now().UnixNano()) }

// received notes the end of a Read that returned n bytes.
func (k *keepAlive) received(n int) {
	if n > 0 {
		k.last.Store(time.Now().UnixNano())
	}
	k.readFrom.Store(0)
}

func (k *keepAlive) onPing() {
	k.conn.sendNOP()
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.stopped {
		k.ping.Reset(k.interval)
	}
}

// onCheck closes the session when the peer has been silent for the
// timeout while smux was waiting to read. Silence while smux does not read
// (its receive budget is spent by streams nobody reads) is not the peer's.
func (k *keepAlive) onCheck() {
	now := time.Now().UnixNano()
	next := k.timeout
	if from := k.readFrom.Load(); from != 0 {
		silent := time.Duration(now - max(from, k.last.Load()))
		if silent >= k.timeout {
			k.conn.fail(fmt.Errorf("%w: nothing received for %v", ErrKeepAliveTimeout, silent.Round(time.Millisecond)))
			return
		}
		next = k.timeout - silent
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.stopped {
		k.check.Reset(next)
	}
}

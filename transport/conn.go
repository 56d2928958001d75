package transport

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
)

// smux v2 frame layout, as seen on the wire between TLS and smux:
//
//	| version 1B | cmd 1B | length 2B LE | stream id 4B LE | payload |
const (
	smuxVersion    = 2
	smuxHeaderSize = 8
	smuxCmdSYN     = 0
	smuxCmdFIN     = 1
	smuxCmdPSH     = 2
	smuxCmdNOP     = 3
	smuxCmdUPD     = 4
)

// frameConn is the frame-aware layer between the TLS connection and smux.
//
// On the write side it gives smux a WriteBuffers method, so smux skips its
// 64 KiB per-session copy buffer; frames are assembled in pooled buffers
// instead, and only while they are written. It also carries our lossless
// half-close: Stream.CloseWrite sends the stream's FIN frame from here,
// without telling smux, so smux never runs its half-close clean-up (which,
// in some smux releases, discards received bytes that were not yet read).
// When smux later sends its own FIN for that stream on Close, it is dropped,
// so the peer sees exactly one FIN per stream.
type frameConn struct {
	net.Conn
	r io.Reader // the connection, after any bytes buffered by the upgrade

	wmu sync.Mutex
	// wmu guards the following.
	finSent map[uint32]struct{} // streams whose FIN was sent by CloseWrite
	werr    error               // first write error; every later write fails with it
}

func newFrameConn(c net.Conn, r io.Reader) *frameConn {
	if r == nil {
		r = c
	}
	return &frameConn{Conn: c, r: r, finSent: make(map[uint32]struct{})}
}

func (c *frameConn) Read(p []byte) (int, error) { return c.r.Read(p) }

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
	if len(v) > 0 && c.isDuplicateFIN(v[0], total) {
		return total, nil
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
	return c.write(buf[:n])
}

// Write writes one smux frame (smux uses it only without WriteBuffers).
func (c *frameConn) Write(p []byte) (int, error) {
	if c.isDuplicateFIN(p, len(p)) {
		return len(p), nil
	}
	return c.write(p)
}

func (c *frameConn) write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	n, err := c.Conn.Write(p)
	if err != nil {
		c.werr = err
	}
	return n, err
}

// isDuplicateFIN reports whether hdr starts a FIN frame for a stream whose
// FIN we already sent, and forgets that stream if so.
func (c *frameConn) isDuplicateFIN(hdr []byte, total int) bool {
	if total != smuxHeaderSize || len(hdr) < smuxHeaderSize || hdr[1] != smuxCmdFIN {
		return false
	}
	sid := binary.LittleEndian.Uint32(hdr[4:8])
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, ok := c.finSent[sid]; !ok {
		return false
	}
	delete(c.finSent, sid)
	return true
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

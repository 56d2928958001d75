package transport

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// gatedPeer is the far end of a session over net.Pipe. It reads as many
// data frames of stream 1 as the test allows, then stops reading: our
// writes block, as on a connection whose peer is slow to read.
type gatedPeer struct {
	conn  net.Conn
	allow chan int // more data frames of stream 1 to read

	mu   sync.Mutex
	data []byte // PSH payloads of stream 1
	done chan struct{}
}

func newGatedPeer(c net.Conn) *gatedPeer {
	p := &gatedPeer{conn: c, allow: make(chan int, 1), done: make(chan struct{})}
	go p.read()
	return p
}

func (p *gatedPeer) read() {
	defer close(p.done)
	budget := 0
	for {
		for budget == 0 {
			budget = <-p.allow
		}
		var hdr [smuxHeaderSize]byte
		if _, err := io.ReadFull(p.conn, hdr[:]); err != nil {
			return
		}
		payload := make([]byte, binary.LittleEndian.Uint16(hdr[2:4]))
		if _, err := io.ReadFull(p.conn, payload); err != nil {
			return
		}
		if hdr[1] == smuxCmdPSH && binary.LittleEndian.Uint32(hdr[4:8]) == 1 {
			p.mu.Lock()
			p.data = append(p.data, payload...)
			p.mu.Unlock()
			budget--
		}
	}
}

func (p *gatedPeer) received() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.data)
}

// waitFor polls cond, for at most 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWriteCutByAResetNeverSendsTheBufferLater: a Write that goes on
// after the peer reset the stream returns at the reset; the caller may
// then reuse its buffer at once. smux may still hold the Write's last
// frame in its queue, reading the buffer when it gets to it: what the
// caller put there since must never reach the wire.
func TestWriteCutByAResetNeverSendsTheBufferLater(t *testing.T) {
	// smux hands such a frame over or not at random, one time in two.
	for attempt := range 12 {
		if writeCutByReset(t) {
			t.Fatalf("attempt %d: bytes put into the buffer after Write returned went to the peer", attempt)
		}
	}
}

// writeCutByReset runs one attempt and reports whether the peer received
// bytes the caller put into the buffer after Write had returned.
func writeCutByReset(t *testing.T) bool {
	const (
		frameSize = DefaultMaxFrameSize
		rest      = 60000 // beyond the first window: one frame, larger than firstWrite
	)
	a, b := net.Pipe()
	sess, err := newSession(a, nil, true, nil, peerInfo{reset: true})
	if err != nil {
		t.Fatal(err)
	}
	p := newGatedPeer(b)
	defer func() {
		sess.Close()
		b.Close()
		<-p.done
	}()
	send := func(frames ...[]byte) {
		go func() { _, _ = b.Write(bytes.Join(frames, nil)) }()
	}
	frame := func(cmd byte, sid uint32, payload []byte) []byte {
		h := header(cmd, sid)
		binary.LittleEndian.PutUint16(h[2:4], uint16(len(payload)))
		return append(h[:], payload...)
	}

	send(frame(smuxCmdSYN, 1, nil))
	st, err := sess.Accept()
	if err != nil {
		t.Fatal(err)
	}
	buf := bytes.Repeat([]byte{'A'}, smuxInitialWindow+rest)
	wrote := make(chan error, 1)
	go func() {
		_, err := st.Write(buf)
		wrote <- err
	}()
	// The peer reads three frames of the first window, and while the
	// fourth waits, opens the window further and resets the stream.
	p.allow <- 3
	waitFor(t, "the first frames never arrived", func() bool { return len(p.received()) == 3*frameSize })
	var upd [smuxUPDSize]byte
	binary.LittleEndian.PutUint32(upd[0:4], 3*frameSize)
	binary.LittleEndian.PutUint32(upd[4:8], smuxInitialWindow)
	send(frame(smuxCmdUPD, 1, upd[:]), frame(cmdRST, 1, nil))
	waitFor(t, "the reset never arrived", func() bool { return st.recv.reset.Load() })
	// The rest of the first window goes; then the peer stops reading.
	p.allow <- 2

	reused := false
	select {
	case err := <-wrote:
		if err == nil {
			t.Fatal("a Write cut by a reset succeeded")
		}
		// The caller reuses its buffer.
		for i := range buf {
			buf[i] = 'Z'
		}
		reused = true
	case <-time.After(300 * time.Millisecond):
	}
	p.allow <- 1 << 30
	// Once this NOP went out, so did every frame the session took before.
	sess.conn.sendNOP()
	if !reused {
		<-wrote
	}
	return bytes.IndexByte(p.received(), 'Z') >= 0
}

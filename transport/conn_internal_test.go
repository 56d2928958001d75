package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// FuzzFrameInspect feeds arbitrary bytes, in arbitrary read sizes, through
// the frame layer's parser and checks it against a plain reading of the
// same bytes: it never panics, flags a bad version or command exactly when
// one appears, and otherwise ends in the same place.
func FuzzFrameInspect(f *testing.F) {
	hdr := func(ver, cmd byte, sid uint32, n int) []byte {
		b := []byte{ver, cmd, 0, 0, 0, 0, 0, 0}
		binary.LittleEndian.PutUint16(b[2:], uint16(n))
		binary.LittleEndian.PutUint32(b[4:], sid)
		return append(b, make([]byte, n)...)
	}
	f.Add(hdr(2, smuxCmdSYN, 3, 0), uint8(7))
	f.Add(append(hdr(2, smuxCmdSYN, 3, 0), hdr(2, smuxCmdPSH, 3, 100)...), uint8(0))
	f.Add(append(hdr(2, smuxCmdNOP, 0, 0), hdr(2, smuxCmdUPD, 3, 8)...), uint8(3))
	f.Add(hdr(1, smuxCmdPSH, 3, 1), uint8(255))
	f.Add(hdr(2, 9, 3, 0), uint8(1))
	f.Add([]byte{2, 2, 0xff}, uint8(2))
	f.Add(append(hdr(2, cmdRST, 3, 5), hdr(2, smuxCmdPSH, 3, 2)...), uint8(40))
	f.Add(hdr(2, cmdRST, 3, 2000), uint8(9))
	f.Add(hdr(2, smuxCmdFIN, 3, 1), uint8(9))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		a, b := net.Pipe()
		defer b.Close()
		c := newFrameConn(a, bytes.NewReader(data), nil, peerInfo{})
		buf := make([]byte, int(chunk)+1)
		var readErr error
		for {
			if _, err := c.Read(buf); err != nil {
				readErr = err
				break
			}
		}

		// The same bytes, read plainly.
		pos, bad := 0, false
		for pos+smuxHeaderSize <= len(data) {
			h := data[pos : pos+smuxHeaderSize]
			n := int(binary.LittleEndian.Uint16(h[2:4]))
			switch {
			case h[0] != smuxVersion || (h[1] > smuxCmdUPD && h[1] != cmdRST):
				bad = true
			case h[1] == smuxCmdFIN && n > 0, h[1] == smuxCmdSYN && n > 0, h[1] == smuxCmdNOP && n > 0:
				bad = true
			case h[1] == smuxCmdUPD && n != smuxUPDSize:
				bad = true
			case h[1] == cmdRST && (n > MaxResetReason || pos+smuxHeaderSize+n > len(data)):
				bad = true // too long, or cut short
			}
			if bad {
				break
			}
			pos += smuxHeaderSize + n
		}
		violated := errors.Is(readErr, ErrProtocolViolation)
		if bad != violated {
			t.Fatalf("violation %v (%v); a plain reading says %v", violated, readErr, bad)
		}
		if bad {
			return
		}
		if readErr != io.EOF {
			t.Fatalf("read error %v; want EOF", readErr)
		}
		wantHdr, wantLeft := 0, 0
		if pos > len(data) {
			wantLeft = pos - len(data)
		} else {
			wantHdr = len(data) - pos
		}
		if c.hdrN != wantHdr || c.left != wantLeft {
			t.Fatalf("parser ends with %d header bytes and %d payload bytes to go; want %d and %d", c.hdrN, c.left, wantHdr, wantLeft)
		}
	})
}

// writesConn records each Write as one slice.
type writesConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (w *writesConn) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, bytes.Clone(p))
	return len(p), nil
}

func (w *writesConn) got() [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.writes)
}

// testFrame is a frame of cmd on stream sid with payload.
func testFrame(cmd byte, sid uint32, payload []byte) []byte {
	h := header(cmd, sid)
	binary.LittleEndian.PutUint16(h[2:4], uint16(len(payload)))
	return append(h[:], payload...)
}

// heldRig is a frame layer whose socket writes w records; both ends of
// its pipe close with the test. It holds frames for an hour, so that a
// test descheduled for longer than holdFor still sees the next frame take
// them; a test gives holdFor back before it holds a frame that no frame
// follows.
func heldRig(t *testing.T) (*writesConn, *frameConn) {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	w := &writesConn{Conn: a}
	c := newFrameConn(w, nil, nil, peerInfo{})
	c.holdFor = time.Hour
	return w, c
}

// waitLastWrite waits until w has n writes, the last one want: a held
// frame that no frame followed, sent alone.
func waitLastWrite(t *testing.T, w *writesConn, n int, want []byte, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(w.got()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s that no frame followed was never sent", what)
		}
		time.Sleep(time.Millisecond)
	}
	if got := w.got(); !bytes.Equal(got[n-1], want) {
		t.Fatalf("last write %x; want %s %x", got[n-1], what, want)
	}
}

// TestHeldFrames: a SYN and a window update after a small read go out
// with the frame that follows them, in one write, in order; a window
// update after a large read goes out at once; held frames that no frame
// follows go out alone, soon.
func TestHeldFrames(t *testing.T) {
	w, c := heldRig(t)
	frame := testFrame
	upd := func(sid, consumed uint32) []byte {
		var p [smuxUPDSize]byte
		binary.LittleEndian.PutUint32(p[:4], consumed)
		// The window the frame layer writes into an update for a stream
		// it does not track: the starting window (policer.advertise).
		binary.LittleEndian.PutUint32(p[4:], DefaultMaxStreamBuffer)
		return frame(smuxCmdUPD, sid, p[:])
	}
	syn, msg := frame(smuxCmdSYN, 3, nil), frame(smuxCmdPSH, 3, []byte{0x10, 0, 2, 'h', 'i'})
	small, large := upd(5, 3), upd(5, 1<<20)

	for _, f := range [][]byte{syn, msg, small, msg, large} {
		n, err := c.WriteBuffers([][]byte{f[:smuxHeaderSize], f[smuxHeaderSize:]})
		if err != nil || n != len(f) {
			t.Fatalf("write: %d, %v", n, err)
		}
	}
	want := [][]byte{append(bytes.Clone(syn), msg...), append(bytes.Clone(small), msg...), large}
	if got := w.got(); !slices.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("writes %x; want %x", got, want)
	}

	c.holdFor = holdFor
	if _, err := c.Write(syn); err != nil {
		t.Fatal(err)
	}
	waitLastWrite(t, w, 4, syn, "a held SYN")
	c.Close()
}

// TestHeldAnswer: the answer to an optimistic opener goes out with the
// stream's next frame, in one write; a stream that ends without an answer
// forgets the hold; an answer that no frame follows goes out alone, soon.
func TestHeldAnswer(t *testing.T) {
	w, c := heldRig(t)
	frame := testFrame
	write := func(f []byte) {
		t.Helper()
		if n, err := c.WriteBuffers([][]byte{f[:smuxHeaderSize], f[smuxHeaderSize:]}); err != nil || n != len(f) {
			t.Fatalf("write: %d, %v", n, err)
		}
	}
	ok, reply := frame(smuxCmdPSH, 6, []byte{0x01, 0, 0}), frame(smuxCmdPSH, 6, []byte("the reply"))
	c.holdAnswer(6)
	write(ok)
	if got := w.got(); len(got) != 0 {
		t.Fatalf("the answer went out alone at once: %x", got)
	}
	write(reply)
	write(reply) // only the answer is held
	want := [][]byte{append(bytes.Clone(ok), reply...), reply}
	if got := w.got(); !slices.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("writes %x; want %x", got, want)
	}

	fin := frame(smuxCmdFIN, 8, nil)
	c.holdAnswer(8)
	write(fin)
	if got := w.got(); len(got) != 3 || !bytes.Equal(got[2], fin) {
		t.Fatalf("writes %x; want the FIN at once", got)
	}
	c.wmu.Lock()
	left := len(c.answers)
	c.wmu.Unlock()
	if left != 0 {
		t.Fatalf("%d held answers remembered after their streams ended", left)
	}

	c.holdAnswer(10)
	alone := frame(smuxCmdPSH, 10, []byte{0x01, 0, 0})
	c.holdFor = holdFor
	write(alone)
	waitLastWrite(t, w, 4, alone, "a held answer")
	c.Close()
}

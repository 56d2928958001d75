package transport_test

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"io"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/transport"
)

// upd is a window update frame for stream sid: consumed bytes, window.
func upd(sid, consumed, window uint32) []byte {
	var b [8]byte
	binary.LittleEndian.PutUint32(b[0:4], consumed)
	binary.LittleEndian.PutUint32(b[4:8], window)
	return frame(2, cmdUPD, sid, b[:])
}

// readUntil reads frames until stream marker's data frame holding "mark"
// and returns the data of stream sid that came before it.
func readUntil(t *testing.T, p *rawPeer, sid, marker uint32) []byte {
	t.Helper()
	var data []byte
	for {
		cmd, id, payload, err := p.ReadFrame()
		require.NoError(t, err)
		switch {
		case cmd == cmdPSH && id == sid:
			data = append(data, payload...)
		case cmd == cmdPSH && id == marker:
			require.Equal(t, "mark", string(payload))
			return data
		}
	}
}

// readData reads frames until n bytes of stream sid's data arrived.
func readData(t *testing.T, p *rawPeer, sid uint32, n int) []byte {
	t.Helper()
	var data []byte
	for len(data) < n {
		cmd, id, payload, err := p.ReadFrame()
		require.NoError(t, err)
		if cmd == cmdPSH && id == sid {
			data = append(data, payload...)
		}
	}
	require.Len(t, data, n, "more than the window")
	return data
}

// TestWritesKeepThePeersWindow: a Write sends up to the edge of the
// peer's window (smux's initial 256 KiB, then each update's consumed
// count plus window) and no further; it goes on as updates arrive; past
// its deadline it returns what it sent, and sends nothing after; and a
// peer that acknowledges bytes never sent breaks the protocol, which
// closes the session.
func TestWritesKeepThePeersWindow(t *testing.T) {
	us, pki := newUpgradeServer(t, nil)
	p := rawDial(t, us.addr, pki)
	p.Upgrade("/device")
	s := us.session(t)
	require.NoError(t, p.Conn.SetReadDeadline(time.Now().Add(time.Minute)))
	p.Write(frame(2, cmdSYN, 3, nil), frame(2, cmdSYN, 5, nil))
	st, err := s.Accept()
	require.NoError(t, err)
	defer st.Close()
	other, err := s.Accept()
	require.NoError(t, err)
	defer other.Close()
	mark := func() {
		_, err := other.Write([]byte("mark"))
		require.NoError(t, err)
	}

	const initial = 256 << 10
	data := make([]byte, 400<<10)
	_, _ = rand.Read(data)
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := st.Write(data)
		done <- result{n, err}
	}()
	got := readData(t, p, 3, initial)
	mark()
	require.Empty(t, readUntil(t, p, 3, 5), "data beyond the initial window")

	// An update moves the edge 32 KiB on: exactly that follows.
	p.Write(upd(3, initial, 32<<10))
	got = append(got, readData(t, p, 3, 32<<10)...)
	mark()
	require.Empty(t, readUntil(t, p, 3, 5), "data beyond the updated window")
	select {
	case r := <-done:
		t.Fatalf("Write returned (%d, %v) with its data beyond the window", r.n, r.err)
	default:
	}

	// Past its deadline the Write returns what it sent; an update after
	// that sends nothing more.
	require.NoError(t, st.SetWriteDeadline(time.Now().Add(50*time.Millisecond)))
	r := <-done
	require.ErrorIs(t, r.err, os.ErrDeadlineExceeded)
	require.Equal(t, len(got), r.n)
	p.Write(upd(3, uint32(len(got)), 1<<20))
	mark()
	require.Empty(t, readUntil(t, p, 3, 5), "a Write sent data after it returned")
	require.True(t, bytes.Equal(data[:len(got)], got), "the data sent")

	// The window is open again: the rest goes.
	require.NoError(t, st.SetWriteDeadline(time.Time{}))
	n, err := st.Write(data[len(got):])
	require.NoError(t, err)
	require.Equal(t, len(data)-len(got), n)
	got = append(got, readData(t, p, 3, n)...)
	require.True(t, bytes.Equal(data, got), "the data sent")

	// A peer that says it consumed more than was sent breaks the protocol.
	// (The data frame after it tells when the update was read.)
	p.Write(upd(3, uint32(len(data))+1000, 1<<20), frame(2, cmdPSH, 5, []byte("sync")))
	buf := make([]byte, 4)
	_, err = io.ReadFull(other, buf)
	require.NoError(t, err)
	require.Equal(t, "sync", string(buf))
	_, err = st.Write([]byte("x"))
	require.ErrorIs(t, err, transport.ErrProtocolViolation)
	require.Contains(t, err.Error(), "1000 bytes of stream 3 that were never sent")
	select {
	case <-s.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the session outlived the peer's violation")
	}
	require.ErrorIs(t, s.Err(), transport.ErrProtocolViolation)
}

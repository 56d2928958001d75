package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestWriteDeadlineBoundsTheWaitForItsTurn: on a connection that does not
// drain, one stream's frame is stuck on its way out and every other
// stream's Write waits for its turn. Their write deadlines bound that
// wait, as net.Conn promises, including a deadline set while they wait;
// a Write that gave up wrote nothing, and the session's frames stay
// whole once the connection moves again.
func TestWriteDeadlineBoundsTheWaitForItsTurn(t *testing.T) {
	a, b := net.Pipe()
	sess, err := newSession(a, nil, true, nil, peerInfo{reset: true})
	require.NoError(t, err)
	defer func() {
		sess.Close()
		b.Close()
	}()
	frame := func(cmd byte, sid uint32, payload []byte) []byte {
		h := header(cmd, sid)
		binary.LittleEndian.PutUint16(h[2:4], uint16(len(payload)))
		return append(h[:], payload...)
	}
	go func() { _, _ = b.Write(append(frame(smuxCmdSYN, 1, nil), frame(smuxCmdSYN, 3, nil)...)) }()
	stuck, err := sess.Accept()
	require.NoError(t, err)
	other, err := sess.Accept()
	require.NoError(t, err)

	// The peer takes one byte of the first stream's frame, and no more.
	big := bytes.Repeat([]byte{'B'}, 4096)
	stuckDone := make(chan error, 1)
	go func() {
		_, err := stuck.Write(big)
		stuckDone <- err
	}()
	_, err = io.ReadFull(b, make([]byte, 1))
	require.NoError(t, err)

	result := func(what string, ch <-chan error) error {
		t.Helper()
		select {
		case err := <-ch:
			return err
		case <-time.After(20 * time.Second):
			t.Fatalf("%s never returned", what)
			return nil
		}
	}
	write := func(p string) <-chan error {
		ch := make(chan error, 1)
		go func() {
			n, err := other.Write([]byte(p))
			if err == nil || n != 0 {
				err = errors.Join(err, fmt.Errorf("the Write sent %d bytes", n))
			}
			ch <- err
		}()
		return ch
	}
	timedOut := func(err error) {
		t.Helper()
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		require.True(t, ne.Timeout())
	}

	// A deadline set before the Write.
	require.NoError(t, other.SetWriteDeadline(time.Now().Add(50*time.Millisecond)))
	timedOut(result("a Write past its deadline", write("early")))

	// A deadline brought forward while the Write waits.
	require.NoError(t, other.SetWriteDeadline(time.Time{}))
	waiting := write("late")
	select {
	case err := <-waiting:
		t.Fatalf("a Write without a deadline returned while the connection was stuck: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	require.NoError(t, other.SetWriteDeadline(time.Now()))
	timedOut(result("a Write whose deadline was brought forward", waiting))

	// The connection moves again: the stuck frame goes out whole, then a
	// new Write of the other stream; nothing of the Writes that gave up.
	require.NoError(t, other.SetWriteDeadline(time.Time{}))
	got := make(chan map[uint32][]byte, 1)
	go func() {
		data := map[uint32][]byte{}
		rest := make([]byte, smuxHeaderSize-1) // the stuck frame's header, but its first byte
		if _, err := io.ReadFull(b, rest); err != nil {
			got <- nil
			return
		}
		hdr := append([]byte{smuxVersion}, rest...)
		for {
			p := make([]byte, binary.LittleEndian.Uint16(hdr[2:4]))
			if _, err := io.ReadFull(b, p); err != nil {
				got <- data
				return
			}
			if hdr[1] == smuxCmdPSH {
				sid := binary.LittleEndian.Uint32(hdr[4:8])
				data[sid] = append(data[sid], p...)
				if sid == 3 {
					got <- data
					return
				}
			}
			if _, err := io.ReadFull(b, hdr); err != nil {
				got <- data
				return
			}
		}
	}()
	require.NoError(t, result("the stuck Write", stuckDone))
	_, err = other.Write([]byte("after"))
	require.NoError(t, err)
	var data map[uint32][]byte
	select {
	case data = <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("the peer never read the other stream's frame")
	}
	require.Equal(t, big, data[1])
	require.Equal(t, "after", string(data[3]))
}

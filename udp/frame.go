package udp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Framing limits.
const (
	// FrameHeaderSize is the size of a datagram frame header: port, length.
	FrameHeaderSize = 4
	// MaxFrameData is the largest datagram a frame can carry.
	MaxFrameData = 1<<16 - 1
	// MaxCloseReason is the longest close reason, in bytes of UTF-8, that
	// a device sends and a client shows; longer ones are cut.
	MaxCloseReason = 512
)

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrShortFrame: a frame ended before its header or data was complete.
	ErrShortFrame = errors.New("udp: frame cut short")
	// ErrDatagramTooLarge: a datagram exceeds the frame or configured limit.
	ErrDatagramTooLarge = errors.New("udp: datagram too large")
	// ErrBadRequest: the payload of a UDP tunnel request is malformed.
	ErrBadRequest = errors.New("udp: bad tunnel request")
	// ErrRefused: the target is an address a tunnel may not send to.
	ErrRefused = errors.New("udp: target refused")
	// ErrClosed: the handler or listener is closed.
	ErrClosed = errors.New("udp: closed")
	// ErrClosedByDevice: the device ended a flow with a close frame; the
	// error is a *DeviceCloseError carrying the device's reason.
	ErrClosedByDevice = errors.New("udp: flow closed by the device")
)

// AppendFrame appends the frame for data sent to or from port to dst.
func AppendFrame(dst []byte, port uint16, data []byte) ([]byte, error) {
	if len(data) > MaxFrameData {
		return dst, fmt.Errorf("%w: %d bytes", ErrDatagramTooLarge, len(data))
	}
	dst = binary.BigEndian.AppendUint16(dst, port)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(data)))
	return append(dst, data...), nil
}

// DecodeFrame decodes the frame at the start of b. It returns the port, the
// data (a sub-slice of b, not a copy) and the number of bytes the frame
// took. A b too short for the header or for the data its length announces
// returns ErrShortFrame.
func DecodeFrame(b []byte) (port uint16, data []byte, n int, err error) {
	if len(b) < FrameHeaderSize {
		return 0, nil, 0, fmt.Errorf("%w: %d of %d header bytes", ErrShortFrame, len(b), FrameHeaderSize)
	}
	port = binary.BigEndian.Uint16(b[0:2])
	m := int(binary.BigEndian.Uint16(b[2:4]))
	if len(b)-FrameHeaderSize < m {
		return 0, nil, 0, fmt.Errorf("%w: %d of %d data bytes", ErrShortFrame, len(b)-FrameHeaderSize, m)
	}
	return port, b[FrameHeaderSize : FrameHeaderSize+m], FrameHeaderSize + m, nil
}

// appendCloseFrame appends the close frame that ends a tunnel from the
// device's side: port 0 (which no datagram comes from) and the reason in
// UTF-8, cut to MaxCloseReason bytes on a character boundary. The device
// closes the stream after it.
func appendCloseFrame(dst []byte, reason string) []byte {
	reason = strings.ToValidUTF8(reason, "\uFFFD")
	if len(reason) > MaxCloseReason {
		cut := MaxCloseReason
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	dst, _ = AppendFrame(dst, 0, []byte(reason)) // never over MaxFrameData
	return dst
}

// noReason stands for a close frame without text.
const noReason = "no reason given"

// closeReason returns the text of a close frame's data made safe to print
// on a terminal: invalid UTF-8 becomes U+FFFD; control and format
// characters (escape sequences, line breaks, bidirectional overrides)
// become spaces, runs of space collapse to one and the ends are trimmed;
// the result is cut to MaxCloseReason bytes on a character boundary. Empty
// text reads noReason.
func closeReason(data []byte) string {
	var b strings.Builder
	space := false
	for len(data) > 0 && b.Len() < MaxCloseReason {
		r, size := utf8.DecodeRune(data)
		data = data[size:]
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.IsSpace(r) {
			space = b.Len() > 0
			continue
		}
		need := utf8.RuneLen(r)
		if space {
			need++
		}
		if b.Len()+need > MaxCloseReason {
			break
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	if b.Len() == 0 {
		return noReason
	}
	return b.String()
}

// frameReader reads frames from a stream into one fixed buffer, so a stream
// costs the same memory whatever its peer sends.
type frameReader struct {
	r   io.Reader
	max int    // largest datagram accepted; longer ones are skipped
	buf []byte // FrameHeaderSize + max bytes
}

func newFrameReader(r io.Reader, maxData int) *frameReader {
	if maxData <= 0 || maxData > MaxFrameData {
		maxData = MaxFrameData
	}
	return &frameReader{r: r, max: maxData, buf: make([]byte, FrameHeaderSize+maxData)}
}

// next reads the next frame. The data is valid until the following call.
// A frame whose length exceeds the reader's limit is read past and
// reported as ErrDatagramTooLarge, with the stream still in step; any other
// error ends the stream. A clean end between frames returns io.EOF.
func (fr *frameReader) next() (port uint16, data []byte, err error) {
	hdr := fr.buf[:FrameHeaderSize]
	if _, err := io.ReadFull(fr.r, hdr); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, fmt.Errorf("%w: header", ErrShortFrame)
		}
		return 0, nil, err
	}
	port = binary.BigEndian.Uint16(hdr[0:2])
	m := int(binary.BigEndian.Uint16(hdr[2:4]))
	if m > fr.max {
		n, err := io.CopyN(io.Discard, fr.r, int64(m))
		if err != nil {
			return 0, nil, fmt.Errorf("%w: %d of %d data bytes: %v", ErrShortFrame, n, m, err)
		}
		return port, nil, fmt.Errorf("%w: %d bytes (limit %d) for port %d", ErrDatagramTooLarge, m, fr.max, port)
	}
	data = fr.buf[FrameHeaderSize : FrameHeaderSize+m]
	if _, err := io.ReadFull(fr.r, data); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, fmt.Errorf("%w: %d data bytes announced", ErrShortFrame, m)
		}
		return 0, nil, err
	}
	return port, data, nil
}

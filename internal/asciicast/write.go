package asciicast

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"unicode/utf8"
)

// ErrBadEvent: an event cannot be written (an unknown code, or a time
// that is negative or not a number).
var ErrBadEvent = errors.New("asciicast: bad event")

// Writer writes a recording: the header line, then one line per event,
// each encoded with encoding/json. It buffers nothing: each call is one
// Write of whole lines on the underlying writer.
type Writer struct {
	w   io.Writer
	buf bytes.Buffer
	enc *json.Encoder
}

// NewWriter writes h (with Version set) as the first line of w.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	wr := &Writer{w: w}
	wr.enc = json.NewEncoder(&wr.buf)
	// Terminal output is full of < > &: escaping them for HTML would
	// only make the file bigger.
	wr.enc.SetEscapeHTML(false)
	h.Version = Version
	if err := wr.enc.Encode(h); err != nil {
		return nil, fmt.Errorf("asciicast: encode header: %w", err)
	}
	if err := wr.flush(); err != nil {
		return nil, err
	}
	return wr, nil
}

// WriteEvent writes one event line.
func (w *Writer) WriteEvent(e Event) error {
	if _, err := AppendEvent(&w.buf, w.enc, e); err != nil {
		return err
	}
	return w.flush()
}

func (w *Writer) flush() error {
	_, err := w.w.Write(w.buf.Bytes())
	w.buf.Reset()
	if err != nil {
		return fmt.Errorf("asciicast: write: %w", err)
	}
	return nil
}

// NewEncoder returns a JSON encoder into w set up as the Writer's is
// (no HTML escaping), for EncodeEvent.
func NewEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc
}

// EncodeEvent writes e with enc (NewEncoder) as one line, [time, code,
// data] and a newline, in one Write; it writes nothing when it fails.
// Times are rounded to the microsecond. Data that is not valid UTF-8 has
// its bad bytes replaced with U+FFFD by the encoder.
func EncodeEvent(enc *json.Encoder, e Event) error {
	switch e.Code {
	case Output, Input, Resize, Marker:
	default:
		return fmt.Errorf("%w: unknown code %q", ErrBadEvent, e.Code)
	}
	if math.IsNaN(e.Time) || math.IsInf(e.Time, 0) || e.Time < 0 {
		return fmt.Errorf("%w: time %v", ErrBadEvent, e.Time)
	}
	t := math.Round(e.Time*1e6) / 1e6
	if err := enc.Encode([3]any{json.Number(formatTime(t)), e.Code, e.Data}); err != nil {
		return fmt.Errorf("%w: %v", ErrBadEvent, err)
	}
	return nil
}

// AppendEvent is EncodeEvent with an encoder into buf; it returns the
// length of the line.
func AppendEvent(buf *bytes.Buffer, enc *json.Encoder, e Event) (int, error) {
	start := buf.Len()
	if err := EncodeEvent(enc, e); err != nil {
		buf.Truncate(start)
		return 0, err
	}
	return buf.Len() - start, nil
}

// formatTime writes seconds in plain decimal notation with at most six
// decimals ("0.5", "12.000031"), never in exponent form.
func formatTime(t float64) string {
	b := strconv.AppendFloat(make([]byte, 0, 24), t, 'f', 6, 64)
	i := len(b)
	for b[i-1] == '0' {
		i--
	}
	if b[i-1] == '.' {
		i++ // keep "3.0"
	}
	return string(b[:i])
}

// UTF8Decoder turns a byte stream cut at arbitrary points into valid
// UTF-8: a character split across two calls is joined, and every byte
// that cannot be part of a character becomes U+FFFD (one per byte, as Go
// converts a string to runes). The zero value is ready to use.
type UTF8Decoder struct {
	pending [utf8.UTFMax]byte
	n       int // bytes of an incomplete character held back
}

// Pending reports how many bytes are held back, waiting for the rest of
// their character.
func (d *UTF8Decoder) Pending() int { return d.n }

// Append appends the valid UTF-8 of p to dst and returns it, holding back
// an incomplete character at the end of p for the next call.
func (d *UTF8Decoder) Append(dst, p []byte) []byte {
	if len(p) == 0 {
		return dst
	}
	if d.n > 0 {
		var buf [utf8.UTFMax]byte
		k := copy(buf[:], d.pending[:d.n])
		m := copy(buf[k:], p)
		b := buf[:k+m]
		if !utf8.FullRune(b) {
			// Still incomplete: all of p joined the held bytes.
			d.n = copy(d.pending[:], b)
			return dst
		}
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size == 1 {
			// The held bytes do not start a character after all: each
			// is a bad byte (the ones after the first are continuation
			// bytes, bad on their own).
			dst = d.Flush(dst)
		} else {
			dst = append(dst, b[:size]...)
			p = p[size-k:]
			d.n = 0
		}
	}
	tail := len(p)
	for i := len(p) - 1; i >= 0 && i > len(p)-utf8.UTFMax; i-- {
		if utf8.RuneStart(p[i]) {
			if !utf8.FullRune(p[i:]) {
				tail = i
			}
			break
		}
	}
	body := p[:tail]
	if utf8.Valid(body) {
		dst = append(dst, body...)
	} else {
		for len(body) > 0 {
			r, size := utf8.DecodeRune(body)
			if r == utf8.RuneError && size == 1 {
				dst = utf8.AppendRune(dst, utf8.RuneError)
			} else {
				dst = append(dst, body[:size]...)
			}
			body = body[size:]
		}
	}
	d.n = copy(d.pending[:], p[tail:])
	return dst
}

// Flush appends a U+FFFD for each byte held back (a character that never
// completed) and empties the decoder.
func (d *UTF8Decoder) Flush(dst []byte) []byte {
	for range d.n {
		dst = utf8.AppendRune(dst, utf8.RuneError)
	}
	d.n = 0
	return dst
}

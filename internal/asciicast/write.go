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
// each encoded with encoding/json. It buffers nothing: each call is one Write of whole lines on the
// underlying writer.
type Writer struct {
	w   io.Writer
	buf []byte
	enc *EventEncoder
}

// NewWriter writes h (with Version set) as the first line of w.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	wr := &Writer{w: w, enc: NewEventEncoder()}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	// Terminal output is full of < > &: escaping them for HTML would
	// only make the file bigger.
	enc.SetEscapeHTML(false)
	h.Version = Version
	if err := enc.Encode(h); err != nil {
		return nil, fmt.Errorf("asciicast: encode header: %w", err)
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return nil, fmt.Errorf("asciicast: write: %w", err)
	}
	return wr, nil
}

// WriteEvent writes one event line.
func (w *Writer) WriteEvent(e Event) error {
	var err error
	w.buf, err = w.enc.AppendEvent(w.buf[:0], e)
	if err != nil {
		return err
	}
	if _, err := w.w.Write(w.buf); err != nil {
		return fmt.Errorf("asciicast: write: %w", err)
	}
	return nil
}

// EventEncoder encodes event lines with encoding/json, appending them to
// a byte slice: the recorder appends to its queue with no copy of its
// own and no garbage beyond a few small values per event. Not safe for
// concurrent use.
type EventEncoder struct {
	enc *json.Encoder
	out sliceWriter
	num []byte
}

// NewEventEncoder returns an encoder of event lines. Data that is not
// valid UTF-8 has its bad bytes replaced with U+FFFD by the encoder.
func NewEventEncoder() *EventEncoder {
	e := &EventEncoder{num: make([]byte, 0, 32)}
	e.enc = json.NewEncoder(&e.out)
	// Terminal output is full of < > &: escaping them for HTML would
	// only make the file bigger.
	e.enc.SetEscapeHTML(false)
	return e
}

// sliceWriter is where the encoder writes each line, in one Write: the
// slice that AppendEvent appends to.
type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// AppendEvent appends e to dst as one line, [time, code, data] and a
// newline, and returns it; when it fails, it returns dst unchanged.
// Times are rounded to the microsecond.
func (e *EventEncoder) AppendEvent(dst []byte, ev Event) ([]byte, error) {
	switch ev.Code {
	case Output, Input, Resize, Marker:
	default:
		return dst, fmt.Errorf("%w: unknown code %q", ErrBadEvent, ev.Code)
	}
	if math.IsNaN(ev.Time) || math.IsInf(ev.Time, 0) || ev.Time < 0 {
		return dst, fmt.Errorf("%w: time %v", ErrBadEvent, ev.Time)
	}
	e.num = appendTime(e.num[:0], math.Round(ev.Time*1e6)/1e6)
	e.out.b = dst
	err := e.enc.Encode([3]any{json.Number(e.num), ev.Code, ev.Data})
	out := e.out.b
	e.out.b = nil
	if err != nil {
		return dst, fmt.Errorf("%w: %v", ErrBadEvent, err)
	}
	return out, nil
}

// appendTime writes seconds in plain decimal notation with at most six
// decimals ("0.5", "12.000031"), never in exponent form.
func appendTime(b []byte, t float64) []byte {
	start := len(b)
	b = strconv.AppendFloat(b, t, 'f', 6, 64)
	i := len(b)
	for i > start && b[i-1] == '0' {
		i--
	}
	if b[i-1] == '.' {
		i++ // keep "3.0"
	}
	return b[:i]
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

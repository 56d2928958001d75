package edge

import (
	"encoding/binary"
	"encoding/json"
	"io"
	"sync"

	"github.com/tetherhq/tether/transport"
)

// fileTap is the device's leg of a raw-mode file transfer (our extension
// of 0x20; docs/protocol.md). What the device sends after its answer is a
// run of type-length-payload records: a download's frames, ended by a
// Trailer (0x01) or an Error (0x02), or an upload's final OK (0x01, with
// the trailer of what it stored) or Error. The tap reads the records'
// headers as the bytes pass, without another copy, and keeps the trailer
// for the audit record.
type fileTap struct {
	*transport.Stream

	mu sync.Mutex
	// mu guards the following.
	hdr     [3]byte
	nhdr    int    // header bytes seen of the current record
	left    int    // payload bytes left in the current record
	keep    bool   // the current record is a trailer or an error: keep its payload
	payload []byte // the kept payload so far
	trailer struct {
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	}
	failed string // an Error record's reason
}

// newFileTap returns a tap for a file transfer whose device answered
// answer, or nil when the transfer is not in raw mode.
func newFileTap(st *transport.Stream, answer []byte) *fileTap {
	var a struct {
		Raw bool `json:"raw"`
	}
	if len(answer) == 0 || json.Unmarshal(answer, &a) != nil || !a.Raw {
		return nil
	}
	return &fileTap{Stream: st}
}

func (t *fileTap) Read(p []byte) (int, error) {
	n, err := t.Stream.Read(p)
	t.feed(p[:n])
	return n, err
}

// WriteTo keeps the stream's copy-free path, looking at the bytes on the
// way.
func (t *fileTap) WriteTo(w io.Writer) (int64, error) {
	return t.Stream.WriteTo(tapWriter{w: w, t: t})
}

type tapWriter struct {
	w io.Writer
	t *fileTap
}

func (tw tapWriter) Write(p []byte) (int, error) {
	n, err := tw.w.Write(p)
	tw.t.feed(p[:n])
	return n, err
}

// feed advances the record parser over p.
func (t *fileTap) feed(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(p) > 0 {
		if t.left == 0 && t.nhdr < len(t.hdr) {
			c := copy(t.hdr[t.nhdr:], p)
			t.nhdr += c
			p = p[c:]
			if t.nhdr < len(t.hdr) {
				return
			}
			t.left = int(binary.BigEndian.Uint16(t.hdr[1:]))
			t.keep = t.hdr[0] == 0x01 || t.hdr[0] == 0x02
			t.payload = t.payload[:0]
			if t.left == 0 {
				t.done()
			}
			continue
		}
		c := min(len(p), t.left)
		if t.keep {
			t.payload = append(t.payload, p[:c]...)
		}
		t.left -= c
		p = p[c:]
		if t.left == 0 {
			t.done()
		}
	}
}

// done ends a record.
func (t *fileTap) done() {
	t.nhdr = 0
	switch {
	case t.keep && t.hdr[0] == 0x01:
		_ = json.Unmarshal(t.payload, &t.trailer)
	case t.keep && t.hdr[0] == 0x02:
		t.failed = string(t.payload)
	}
	t.keep = false
}

// record adds what the tap saw to the stream's close record.
func (t *fileTap) record(ev *Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ev.SHA256, ev.FileSize = t.trailer.SHA256, t.trailer.Size
	if t.failed != "" && ev.Reason == "" {
		ev.Reason = "the device reported: " + t.failed
	}
}

// answerOffset is the offset a raw-mode answer resumes at, for the audit.
func answerOffset(answer []byte) int64 {
	var a struct {
		Offset int64 `json:"offset"`
	}
	if json.Unmarshal(answer, &a) != nil || a.Offset < 0 {
		return 0
	}
	return a.Offset
}

package edge

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/tetherhq/tether/internal/asciicast"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/wire"
)

// ptyStream is the device's stream of a web shell as the bridge uses it:
// the stream itself, or a recStream.
type ptyStream interface {
	io.ReadWriter
	SetWriteDeadline(time.Time) error
	Abort() error
}

// recStream is the device's leg of a recorded shell: what the device
// sends is recorded as output, what it takes as input (when configured).
// Like fileTap, it keeps the stream's copy-free path.
type recStream struct {
	*transport.Stream
	r *recorder
}

func (s *recStream) Read(p []byte) (int, error) {
	n, err := s.Stream.Read(p)
	s.r.output(p[:n])
	return n, err
}

// WriteTo records the bytes after they reached the client.
func (s *recStream) WriteTo(w io.Writer) (int64, error) {
	return s.Stream.WriteTo(recTee{w: w, r: s.r})
}

func (s *recStream) Write(p []byte) (int, error) {
	n, err := s.Stream.Write(p)
	s.r.userInput(p[:n])
	return n, err
}

type recTee struct {
	w io.Writer
	r *recorder
}

func (t recTee) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	t.r.output(p[:n])
	return n, err
}

// recorder is one shell's recording. The relay's copies hand it the
// bytes as they pass (output, userInput); it turns them into events under
// mu, coalescing output, into a bounded queue that its writer goroutine
// (run) writes to the file. Nothing waits on the disk but a required
// recording whose queue is full, for at most recordStallTimeout.
type recorder struct {
	s        *Server
	id       Identity
	device   string
	mode     RecordingMode
	input    bool
	maxBytes int64
	rid      string // the recording's ID
	rel      string // its path under the directory
	path     string
	f        recFile
	cmd      wire.PTYCommand // the opening request

	// Set by begin, before the relay starts.
	sid       string // the device's PTY session ID
	startWall time.Time
	clock     time.Time // the events' time zero (monotonic)

	mu sync.Mutex
	// mu guards the following.
	fail      func(error) // ends the shell
	state     recState
	out       []byte // encoded lines waiting for the writer
	spare     []byte
	enc       *asciicast.EventEncoder // appends to out
	busyAt    time.Time               // when the writer last wrote lines
	dec, idec asciicast.UTF8Decoder
	cur       []byte  // output not yet in an event
	curAt     float64 // the time of cur's first byte
	hasCur    bool
	armed     bool    // the writer runs within recordCoalesce without a signal
	last      float64 // the last event's time
	size      int64   // bytes of the lines queued and written
	truncated bool
	exit      *wire.ExitStatus
	lost      int64  // bytes of events dropped since the last marker
	lostWhy   string // why
	lostTotal int64  // bytes of events dropped in all
	lostErr   string // the first reason
	failed    error  // a required recording's failure; nothing more is written
	drained   chan struct{}
	wake      chan struct{}
	done      chan struct{}

	// The writer's own.
	written int64
	sum     hash.Hash
}

type recState int

const (
	recCreated recState = iota // file created, no header yet
	recBegun                   // header queued, writer running
	recClosed
)

// begin writes the header, now that the device answered with its session
// ID, starts the writer and registers the recording for the session's PTY
// commands.
func (r *recorder) begin(answer []byte) error {
	r.sid = string(bytes.TrimSpace(answer))
	r.startWall = time.Now()
	r.clock = r.startWall
	line, err := encodeHeader(r.header())
	if err != nil {
		return err
	}
	n, err := r.f.Write(line)
	if err != nil {
		return fmt.Errorf("write the recording's header: %w", err)
	}
	r.sum = sha256.New()
	r.sum.Write(line[:n])
	r.written = int64(n)
	r.s.rec.metrics.wrote(n)
	r.mu.Lock()
	r.size = int64(n)
	r.enc = asciicast.NewEventEncoder()
	r.drained = make(chan struct{})
	r.wake = make(chan struct{}, 1)
	r.done = make(chan struct{})
	r.state = recBegun
	r.mu.Unlock()
	go r.run()
	r.s.rec.mu.Lock()
	if r.s.rec.live == nil {
		r.s.rec.live = make(map[string]*recorder)
	}
	r.s.rec.live[r.device+"\x00"+r.sid] = r
	r.s.rec.mu.Unlock()
	return nil
}

// start sets how to end the shell when a required recording fails.
func (r *recorder) start(fail func(error)) {
	r.mu.Lock()
	r.fail = fail
	r.mu.Unlock()
}

func (r *recorder) begun() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state == recBegun
}

// discard removes a recording that never began.
func (r *recorder) discard() {
	r.f.Close()
	os.Remove(r.path)
	r.forget()
}

// forget takes the recording off the live lists.
func (r *recorder) forget() {
	r.s.rec.mu.Lock()
	delete(r.s.rec.files, r.path)
	if r.sid != "" && r.s.rec.live[r.device+"\x00"+r.sid] == r {
		delete(r.s.rec.live, r.device+"\x00"+r.sid)
	}
	r.s.rec.mu.Unlock()
	r.s.rec.metrics.activeDelta(-1)
}

// now is the time of an event, never before the last one.
func (r *recorder) nowLocked() float64 {
	t := time.Since(r.clock).Seconds()
	return max(t, r.last)
}

// output records what the device sent.
func (r *recorder) output(p []byte) {
	if len(p) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != recBegun {
		return
	}
	now := r.nowLocked()
	if r.hasCur && now-r.curAt >= recordCoalesce.Seconds() {
		r.emitCurLocked()
	}
	if !r.hasCur {
		r.hasCur, r.curAt = true, now
		if !r.armed {
			r.signal()
		}
	}
	r.cur = r.dec.Append(r.cur, p)
	if len(r.cur) >= recordChunk {
		r.emitCurLocked()
	}
}

// userInput records what the client sent, when input is recorded.
func (r *recorder) userInput(p []byte) {
	if !r.input || len(p) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != recBegun {
		return
	}
	r.emitCurLocked()
	var data []byte
	data = r.idec.Append(data, p)
	if len(data) > 0 {
		r.eventLocked(asciicast.Input, string(data))
	}
}

// resize records a window size the device took.
func (r *recorder) resize(cols, rows int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != recBegun {
		return
	}
	r.emitCurLocked()
	r.eventLocked(asciicast.Resize, fmt.Sprintf("%dx%d", cols, rows))
}

// noteExit keeps how the shell ended, for the marker that closes the
// recording.
func (r *recorder) noteExit(st wire.ExitStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.exit == nil {
		r.exit = &st
	}
}

func (r *recorder) exited() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exit != nil
}

// emitCurLocked turns the coalesced output into an event.
func (r *recorder) emitCurLocked() {
	if !r.hasCur {
		return
	}
	r.hasCur = false
	if len(r.cur) > 0 {
		// The encoder reads the string before eventAtLocked returns, and
		// cur does not change meanwhile (mu is held): a view of it saves
		// a copy, and the garbage, of every byte of output.
		r.eventAtLocked(r.curAt, asciicast.Output, unsafe.String(&r.cur[0], len(r.cur)))
	}
	r.cur = r.cur[:0]
	if cap(r.cur) > recordChunk*2 {
		r.cur = nil
	}
}

func (r *recorder) eventLocked(code asciicast.Code, data string) {
	r.eventAtLocked(r.nowLocked(), code, data)
}

// eventAtLocked queues one event: unless the recording is truncated, or
// failed, or its queue is full.
func (r *recorder) eventAtLocked(at float64, code asciicast.Code, data string) {
	if r.failed != nil || r.state != recBegun {
		return
	}
	final := code == asciicast.Marker && strings.HasPrefix(data, "exit")
	if r.truncated && !final {
		return
	}
	at = max(at, r.last)
	start := len(r.out)
	out, err := r.enc.AppendEvent(r.out, asciicast.Event{Time: at, Code: code, Data: data})
	if err != nil {
		return
	}
	r.out = out
	n := len(r.out) - start
	if r.maxBytes > 0 && !final && r.size+int64(n) > r.maxBytes {
		r.out = r.out[:start]
		r.truncated = true
		r.out, _ = r.enc.AppendEvent(r.out, asciicast.Event{Time: at, Code: asciicast.Marker,
			Data: fmt.Sprintf("truncated: the recording reached its limit of %d bytes (recording.max_bytes_per_session); the shell went on unrecorded", r.maxBytes)})
		n = len(r.out) - start
	}
	if start+n > recordQueueMax && start > 0 {
		// Not yet: the line waits outside the queue for room.
		line := append([]byte(nil), r.out[start:]...)
		r.out = r.out[:start]
		if !r.waitRoomLocked(n) {
			return
		}
		r.out = append(r.out, line...)
	}
	r.last = at
	r.size += int64(n)
	if code != asciicast.Output || !r.armed || len(r.out) >= recordFlushAt {
		r.signal()
	}
}

// waitRoomLocked handles a full queue: a best_effort recording drops the
// event (a marker says so once the disk catches up); a required one
// waits for the writer, up to recordStallTimeout, then fails.
func (r *recorder) waitRoomLocked(n int) bool {
	if r.mode != RecordingRequired {
		r.lost += int64(n)
		if r.lostWhy == "" {
			r.lostWhy = "the disk did not keep up"
			r.s.rec.metrics.failed(r.mode, "overflow")
		}
		return false
	}
	deadline := time.Now().Add(recordStallTimeout)
	for len(r.out)+n > recordQueueMax && len(r.out) > 0 && r.failed == nil {
		wait := time.Until(deadline)
		if wait <= 0 {
			r.failLocked(fmt.Errorf("the recording's disk took no writes for %v", recordStallTimeout), "overflow")
			return false
		}
		ch := r.drained
		r.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ch:
		case <-t.C:
		}
		t.Stop()
		r.mu.Lock()
	}
	return r.failed == nil
}

// failLocked ends a required recording, and with it the shell.
func (r *recorder) failLocked(err error, stage string) {
	if r.failed != nil {
		return
	}
	r.failed = err
	r.s.rec.metrics.failed(r.mode, stage)
	r.s.log.Warn("ending a shell: its required recording failed", "client", r.id.Name, "device", r.device, "recording", r.rid, "err", err)
	if r.fail != nil {
		go r.fail(fmt.Errorf("%w: %v; this edge does not run shells of client %s that it cannot record", errRecordingFailed, err, r.id.Name))
	}
}

// errRecordingFailed ends a shell whose required recording failed.
var errRecordingFailed = errors.New("the recording of this shell failed")

// signal wakes the writer.
func (r *recorder) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// run is the writer: it writes the queued lines, turns output older than
// recordCoalesce into an event, and ends once close queued the last
// lines.
func (r *recorder) run() {
	defer close(r.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-r.wake:
		case <-timer.C:
		}
		r.mu.Lock()
		if r.hasCur && (r.state == recClosed || time.Since(r.clock).Seconds()-r.curAt >= recordCoalesce.Seconds()) {
			r.emitCurLocked()
		}
		buf := r.out
		r.out = r.spare[:0]
		marker := r.lostMarkerLocked(len(buf) > 0)
		closing := r.state == recClosed
		r.mu.Unlock()

		if len(marker) > 0 {
			r.write(marker)
		}
		if len(buf) > 0 {
			r.write(buf)
		}

		r.mu.Lock()
		// The queue holds up to recordQueueMax and a line beyond.
		if cap(buf) <= 2*recordQueueMax {
			r.spare = buf[:0]
		}
		if len(buf) > 0 {
			r.busyAt = time.Now()
		}
		close(r.drained)
		r.drained = make(chan struct{})
		// While output comes, the writer runs every recordCoalesce
		// without being woken: a flood costs no wake-up per event.
		wait := time.Duration(-1)
		switch {
		case len(r.out) > 0 && (closing || len(r.out) >= recordFlushAt):
			wait = 0
		case r.hasCur:
			wait = max(0, time.Duration((r.curAt+recordCoalesce.Seconds()-time.Since(r.clock).Seconds())*float64(time.Second)))
		case len(r.out) > 0:
			wait = recordCoalesce
		}
		r.armed = wait >= 0
		// An idle shell keeps no buffers of a past flood, once it has
		// been idle for recordIdleTrim: a flood that pauses for a moment
		// reuses them rather than growing new ones (and making garbage).
		trimIn := time.Duration(-1)
		if !r.armed && !closing {
			if idle := time.Since(r.busyAt); idle < recordIdleTrim {
				trimIn = recordIdleTrim - idle
			} else {
				r.trimLocked()
			}
		}
		r.mu.Unlock()
		if closing && wait < 0 {
			return
		}
		switch {
		case wait == 0:
			r.signal()
		case wait > 0:
			timer.Reset(wait)
		case trimIn > 0 && r.holdsBuffers():
			timer.Reset(trimIn)
		}
	}
}

// trimLocked lets go of the buffers of a past flood.
func (r *recorder) trimLocked() {
	if cap(r.spare) > recordIdleKeep {
		r.spare = nil
	}
	if cap(r.out) > recordIdleKeep {
		r.out = nil
	}
	if !r.hasCur && cap(r.cur) > recordIdleKeep {
		r.cur = nil
	}
}

// holdsBuffers reports whether trimLocked would free anything.
func (r *recorder) holdsBuffers() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return cap(r.spare) > recordIdleKeep || cap(r.out) > recordIdleKeep || cap(r.cur) > recordIdleKeep
}

// lostMarkerLocked is the marker of events a best_effort recording lost,
// written before the next events.
func (r *recorder) lostMarkerLocked(next bool) []byte {
	if r.lost == 0 || !next && r.state != recClosed {
		return nil
	}
	b, err := r.enc.AppendEvent(nil, asciicast.Event{Time: r.last, Code: asciicast.Marker,
		Data: fmt.Sprintf("recording error: %s; %d bytes of the recording were lost", r.lostWhy, r.lost)})
	if err != nil {
		return nil
	}
	r.size += int64(len(b))
	r.lostTotal += r.lost
	if r.lostErr == "" {
		r.lostErr = r.lostWhy
	}
	r.lost, r.lostWhy = 0, ""
	return b
}

// write writes whole lines to the file. A failed write is undone (the file
// is cut back to its last whole line): a best_effort recording counts
// the lines lost and goes on, a required one fails.
func (r *recorder) write(b []byte) {
	r.mu.Lock()
	failed := r.failed != nil
	r.mu.Unlock()
	if failed {
		return
	}
	n, err := r.f.Write(b)
	if err == nil {
		r.sum.Write(b)
		r.written += int64(n)
		r.s.rec.metrics.wrote(n)
		return
	}
	if n > 0 {
		if terr := r.f.Truncate(r.written); terr == nil {
			_, terr = r.f.Seek(r.written, io.SeekStart)
			if terr != nil {
				err = fmt.Errorf("%v (and the file could not be cut back: %v)", err, terr)
			}
		} else {
			err = fmt.Errorf("%v (and the file could not be cut back: %v)", err, terr)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.size -= int64(len(b))
	if r.mode == RecordingRequired {
		r.failLocked(fmt.Errorf("write %s: %v", r.rel, err), "write")
		return
	}
	if r.lostWhy == "" {
		r.lostWhy = "a write failed: " + err.Error()
	}
	r.lost += int64(len(b))
	r.s.rec.metrics.failed(r.mode, "write")
	r.s.log.Warn("a recording lost events: a write failed (recording mode best_effort)", "recording", r.rid, "err", err)
}

// close writes the last output and the exit marker, waits for the
// writer (at most recordCloseWait), closes the file and returns what the
// close record says of it.
func (r *recorder) close() *RecordingAudit {
	r.mu.Lock()
	if r.state != recBegun {
		r.mu.Unlock()
		return nil
	}
	r.cur = r.dec.Flush(r.cur)
	r.emitCurLocked()
	if r.exit != nil {
		r.eventLocked(asciicast.Marker, "exit: "+r.exit.String())
	}
	r.state = recClosed
	r.signal()
	done := r.done
	r.mu.Unlock()

	t := time.NewTimer(recordCloseWait)
	defer t.Stop()
	stuck := false
	select {
	case <-done:
	case <-t.C:
		stuck = true
	}
	cerr := r.f.Close()
	r.forget()

	a := &RecordingAudit{Recorded: true, Mode: r.mode, ID: r.rid, Path: r.rel}
	r.mu.Lock()
	defer r.mu.Unlock()
	a.Truncated = r.truncated
	switch {
	case stuck:
		a.Error = fmt.Sprintf("the recording's last writes did not finish within %v", recordCloseWait)
	case r.failed != nil:
		a.Error = r.failed.Error()
	case r.lost+r.lostTotal > 0:
		a.Error = fmt.Sprintf("%s; %d bytes of the recording were lost", cmpOr(r.lostErr, r.lostWhy), r.lost+r.lostTotal)
	case cerr != nil:
		a.Error = "close the recording: " + cerr.Error()
	}
	if !stuck {
		a.Bytes = r.written
		a.SHA256 = hex.EncodeToString(r.sum.Sum(nil))
	}
	return a
}

package edge

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetherhq/tether/internal/logx"
	"github.com/tetherhq/tether/internal/ratelimit"
)

// Audit event kinds.
const (
	EventDeviceConnect    = "device_connect"
	EventDeviceDisconnect = "device_disconnect"
	EventDeviceRejected   = "device_rejected"
	EventClientOpen       = "client_open"
	EventClientClose      = "client_close"
	EventClientRejected   = "client_rejected"
	// EventStreamRequest records a request the policy allowed, before the
	// device sees it, for the stream types that must not run unaudited
	// (PTY and file transfer): the edge forwards such a request only once
	// this record is written. stream_open or stream_deny follows.
	EventStreamRequest = "stream_request"
	EventStreamOpen    = "stream_open"
	EventStreamDeny    = "stream_deny"
	EventStreamClose   = "stream_close"
	EventDeviceStream  = "device_stream_refused"
	// EventWebSignIn and EventWebSignOut record the web terminal's
	// sign-ins and sign-outs (method "web").
	EventWebSignIn  = "web_sign_in"
	EventWebSignOut = "web_sign_out"
)

// Event is one audit record. Empty fields are left out of the JSON line.
// Tokens never appear in an event.
type Event struct {
	Time       time.Time `json:"time"`
	Kind       string    `json:"event"`
	Device     string    `json:"device,omitempty"`
	Client     string    `json:"client,omitempty"`
	RemoteAddr string    `json:"remote_addr,omitempty"`
	Serial     string    `json:"serial,omitempty"`
	Type       string    `json:"type,omitempty"`
	Target     string    `json:"target,omitempty"`
	// Command and Args are what a PTY stream runs, and Command the
	// command line of an exec stream; an empty Command is the login shell.
	// They are recorded as the client sent them.
	Command string   `json:"command,omitempty"`
	Args    []string `json:"args,omitempty"`
	// Auth is how the client proved who it is: "token", "oidc" or "jwt"
	// (Identity.Method); with Client it names the person or the service
	// account, as in "alice@example.com (oidc)".
	Auth string `json:"auth,omitempty"`
	// Role is the role that allowed a stream (roles: in edge.yaml); empty
	// for a clients: entry, whose role is the client itself.
	Role   string `json:"role,omitempty"`
	Result string `json:"result,omitempty"`
	// Direction ("download" or "upload"), Path and Offset are a file
	// transfer's: Offset is where the client asked to resume a download
	// (stream_request) or where the device resumed (stream_close). SHA256
	// and FileSize are the whole file's, from a raw-mode transfer's
	// trailer as it passed the edge.
	Direction string `json:"direction,omitempty"`
	Path      string `json:"path,omitempty"`
	Offset    int64  `json:"offset,omitempty"`
	SHA256    string `json:"sha256,omitempty"`
	FileSize  int64  `json:"file_size,omitempty"`
	// Method is how the client came: "web" for the web terminal; empty
	// for the CLI and other clients of the stream protocol.
	Method string `json:"method,omitempty"`
	// ExitCode and Signal are how a web terminal's shell ended, when the
	// device said.
	ExitCode *int   `json:"exit_code,omitempty"`
	Signal   string `json:"signal,omitempty"`
	// Peer is, in a cluster, the other edge a stream went through: the
	// device's edge on the client's edge, and the client's edge on the
	// device's.
	Peer   string `json:"peer,omitempty"`
	Reason string `json:"reason,omitempty"`
	// BytesUp is client to device, BytesDown device to client.
	BytesUp    int64 `json:"bytes_up,omitempty"`
	BytesDown  int64 `json:"bytes_down,omitempty"`
	DurationMS int64 `json:"duration_ms,omitempty"`
	// Recording is a PTY stream's recording (record.go), and the file a
	// recording_deleted record is about.
	Recording *RecordingAudit `json:"recording,omitempty"`
	// Suppressed counts the refused-upgrade records that the rate limit
	// (Limits.RejectAuditRate) left out since the previous one written.
	Suppressed int64 `json:"suppressed,omitempty"`
}

// Auditor records events. Audit must be safe for concurrent use and must
// not block: it runs on the connection paths.
type Auditor interface {
	Audit(Event)
}

// A WaitAuditor can confirm that a record was written. The edge sends the
// records of streams that must not run unaudited (PTY and file transfer)
// through AuditWait, and refuses the stream when it fails. With an Auditor
// that lacks it, a record counts as written when Audit returns.
type WaitAuditor interface {
	Auditor
	// AuditWait records e and returns once it is written; it returns an
	// error wrapping ErrAuditUnavailable when it cannot be, or when ctx
	// ends first.
	AuditWait(ctx context.Context, e Event) error
}

// Audit errors.
var (
	// ErrAuditUnavailable: a record that had to be written was not (the
	// sink is stuck or failing, or the auditor is closed). Its text is
	// what a refused client reads.
	ErrAuditUnavailable = errors.New("audit log unavailable")
)

// JSONAuditor defaults.
const (
	DefaultAuditQueueSize    = 4096
	DefaultAuditStuckAfter   = 5 * time.Second
	DefaultAuditCloseTimeout = 5 * time.Second
	DefaultAuditCoalesce     = 10 * time.Millisecond
)

// maxAuditBatch bounds the bytes the writer hands the sink in one write.
const maxAuditBatch = 64 << 10

// JSONAuditor writes one JSON object per line to a sink. Records go through
// a bounded queue to a writer goroutine of its own, so a slow or stuck sink
// (a pipe whose reader stopped) never holds up the edge: Audit never
// blocks, and drops what does not fit in the queue; AuditWait waits for its
// own record. A write error drops the records of that write; the edge keeps
// serving.
//
// The zero value writes to standard output with the defaults below. Fill
// in the fields before the first record and do not change them afterwards;
// the writer starts with the first call of a method. Close it after the
// edge that uses it: Close writes what is still queued, for at most
// CloseTimeout, and ends the writer.
//
//	a := &edge.JSONAuditor{W: f, Logger: log, Metrics: metrics}
//	defer a.Close()
//	srv := &edge.Server{Auditor: a, Metrics: metrics}
//
// If the sink can take a write deadline (SetWriteDeadline, as an *os.File
// on a pipe can), Close interrupts a write that is stuck; otherwise Close
// returns after its bound with the writer still blocked in Write, and
// closing the sink ends it.
type JSONAuditor struct {
	// W is the sink. Nil means os.Stdout.
	W io.Writer
	// Logger receives the stuck, failing and recovered lines; nil discards
	// them.
	Logger *slog.Logger
	// Metrics counts dropped and blocked records; nil counts nothing.
	Metrics *Metrics
	// QueueSize bounds the records waiting for the sink, in records.
	// Beyond it Audit drops records (and counts them). Zero means
	// DefaultAuditQueueSize (4096).
	QueueSize int
	// StuckAfter is how long a write to the sink may go without returning
	// before the sink is declared stuck: logged once per episode, counted
	// in the metrics. Zero means DefaultAuditStuckAfter (5 s).
	StuckAfter time.Duration
	// CloseTimeout bounds how long Close goes on writing the records still
	// queued. Zero means DefaultAuditCloseTimeout (5 s).
	CloseTimeout time.Duration
	// Coalesce is the shortest time between two writes to the sink. A
	// record that comes sooner after a write waits for the rest of it,
	// with any others that come meanwhile, and they go out in one write;
	// a record after a quiet spell goes at once. So a busy edge writes at
	// most 1/Coalesce times a second instead of once or twice a stream,
	// and each write costs a system call that wakes a thread. A batch
	// with an AuditWait record in it, a full batch and Close do not wait.
	// Zero means DefaultAuditCoalesce (10 ms); a negative value writes
	// every batch at once.
	Coalesce time.Duration

	initOnce     sync.Once
	w            io.Writer
	log          *slog.Logger
	stuckAfter   time.Duration
	closeTimeout time.Duration
	coalesce     time.Duration

	queue     chan auditRecord
	quit      chan struct{} // closed by Close
	done      chan struct{} // closed when the writer has returned
	closed    atomic.Bool
	abandon   atomic.Bool // Close gave up: drop what is left
	closeOnce sync.Once
	closeErr  error

	buf []byte // only the writer uses it

	mu sync.Mutex
	// mu guards the following.
	writing  int       // records in the write under way; 0 between writes
	stuck    bool      // a write outlived StuckAfter, and none succeeded since
	troubled bool      // in an episode of trouble: stuck, failing or dropping
	logged   troubles  // what this episode logged already
	since    time.Time // when the episode began
	lost     int64     // records dropped since the last episode ended
}

// auditRecord is one JSON line waiting for the writer, or the event to
// marshal into it (ev, when line is nil). done, when not nil, receives the
// outcome of its write.
type auditRecord struct {
	line []byte
	ev   *Event
	done chan error
}

// auditLineGuess is the size fill counts for an event not marshalled yet.
const auditLineGuess = 256

// init resolves the defaults and starts the writer, once.
func (a *JSONAuditor) init() {
	a.initOnce.Do(func() {
		a.w = a.W
		if a.w == nil {
			a.w = os.Stdout
		}
		a.log = logx.Or(a.Logger)
		a.stuckAfter = cmp.Or(max(a.StuckAfter, 0), DefaultAuditStuckAfter)
		a.closeTimeout = cmp.Or(max(a.CloseTimeout, 0), DefaultAuditCloseTimeout)
		a.coalesce = cmp.Or(a.Coalesce, DefaultAuditCoalesce)
		a.queue = make(chan auditRecord, cmp.Or(max(a.QueueSize, 0), DefaultAuditQueueSize))
		a.quit = make(chan struct{})
		a.done = make(chan struct{})
		go a.run()
	})
}

// Audit queues e for writing; it never blocks. A record that finds the
// queue full, or the auditor closed, is dropped and counted.
func (a *JSONAuditor) Audit(e Event) {
	a.init()
	if a.closed.Load() {
		a.drop(1, "closed")
		return
	}
	var rec auditRecord
	if e.Args == nil && e.ExitCode == nil && e.Recording == nil {
		// Nothing in e is shared with the caller: the writer marshals it,
		// off the caller's path (a stream's open, say).
		rec.ev = &e
	} else {
		line, err := marshalEvent(e)
		if err != nil {
			return
		}
		rec.line = line
	}
	select {
	case a.queue <- rec:
	default:
		a.drop(1, "queue_full")
	}
}

// AuditWait queues e and waits until it is written, or ctx ends.
func (a *JSONAuditor) AuditWait(ctx context.Context, e Event) error {
	a.init()
	if a.closed.Load() {
		return fmt.Errorf("%w: the audit log is closed", ErrAuditUnavailable)
	}
	line, err := marshalEvent(e)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrAuditUnavailable, err)
	}
	rec := auditRecord{line: line, done: make(chan error, 1)}
	select {
	case a.queue <- rec:
	case <-ctx.Done():
		a.drop(1, "queue_full")
		return fmt.Errorf("%w: the audit queue stayed full (the audit sink is not taking records)", ErrAuditUnavailable)
	case <-a.quit:
		return fmt.Errorf("%w: the audit log is closed", ErrAuditUnavailable)
	}
	select {
	case err := <-rec.done:
		if err != nil {
			return fmt.Errorf("%w: %v", ErrAuditUnavailable, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: the record was not written in time (the audit sink is stuck)", ErrAuditUnavailable)
	}
}

func marshalEvent(e Event) ([]byte, error) {
	line, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	return append(line, '\n'), nil
}

// Close stops taking records, writes those still queued for at most
// CloseTimeout, and ends the writer. Records it could not write are
// dropped and counted; the error says so. It is idempotent.
func (a *JSONAuditor) Close() error {
	a.init()
	a.closeOnce.Do(func() {
		a.closed.Store(true)
		close(a.quit)
		t := time.NewTimer(a.closeTimeout)
		defer t.Stop()
		select {
		case <-a.done:
			return
		case <-t.C:
		}
		a.abandon.Store(true)
		dw, ok := a.w.(writeDeadliner)
		if !ok || dw.SetWriteDeadline(time.Now()) != nil {
			a.closeErr = fmt.Errorf("edge: audit log: the sink took no records for %v; the writer is still blocked in it (closing the sink ends it)", a.closeTimeout)
			return
		}
		<-a.done
		a.closeErr = fmt.Errorf("edge: audit log: the sink took no records for %v; the records still queued were dropped", a.closeTimeout)
	})
	return a.closeErr
}

// writeDeadliner is a sink whose blocked write a deadline can end.
type writeDeadliner interface {
	SetWriteDeadline(time.Time) error
}

// run is the writer: it takes records off the queue and writes them in
// batches, until Close.
func (a *JSONAuditor) run() {
	defer close(a.done)
	var batch []auditRecord
	var last time.Time // when the last write began
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	defer linger.Stop()
	for {
		select {
		case rec := <-a.queue:
			batch = a.fill(append(batch[:0], rec))
		case <-a.quit:
			if batch = a.fill(batch[:0]); len(batch) == 0 {
				return
			}
		}
		if wait := a.coalesce - time.Since(last); wait > 0 && !a.closed.Load() {
			linger.Reset(wait)
			batch = a.gather(batch, linger.C)
			linger.Stop()
		}
		if a.abandon.Load() {
			a.finish(batch, errors.New("the audit log was closed before the record was written"))
			a.drop(len(batch), "closed")
			continue
		}
		last = time.Now()
		a.write(batch)
	}
}

// fill adds queued records to batch, up to maxAuditBatch bytes, without
// waiting.
func (a *JSONAuditor) fill(batch []auditRecord) []auditRecord {
	size := batchSize(batch)
	for size < maxAuditBatch {
		select {
		case rec := <-a.queue:
			batch = append(batch, rec)
			size += rec.size()
		default:
			return batch
		}
	}
	return batch
}

// gather adds the records that come to batch until the coalescing wait
// ends (expired), the batch is full, or a record needs it written now: one
// that a caller waits for, or Close.
func (a *JSONAuditor) gather(batch []auditRecord, expired <-chan time.Time) []auditRecord {
	size := batchSize(batch)
	for size < maxAuditBatch && !waited(batch) {
		select {
		case rec := <-a.queue:
			batch = append(batch, rec)
			size += rec.size()
		case <-expired:
			return batch
		case <-a.quit:
			return a.fill(batch)
		}
	}
	return batch
}

func batchSize(batch []auditRecord) int {
	size := 0
	for _, r := range batch {
		size += r.size()
	}
	return size
}

// waited reports whether a caller waits for a record of batch (AuditWait).
func waited(batch []auditRecord) bool {
	for _, r := range batch {
		if r.done != nil {
			return true
		}
	}
	return false
}

// write writes batch as one run of lines and tells its waiters.
func (a *JSONAuditor) write(batch []auditRecord) {
	a.buf = a.buf[:0]
	for _, r := range batch {
		if r.line == nil && r.ev != nil {
			line, err := marshalEvent(*r.ev)
			if err != nil {
				continue
			}
			r.line = line
		}
		a.buf = append(a.buf, r.line...)
	}
	a.mu.Lock()
	a.writing = len(batch)
	a.mu.Unlock()
	watchdog := time.AfterFunc(a.stuckAfter, a.stuckWrite)
	err := a.writeAll(a.buf)
	watchdog.Stop()
	a.mu.Lock()
	a.writing = 0
	a.mu.Unlock()
	if err != nil {
		a.drop(len(batch), "write_error")
		a.writeFailed(err)
	} else {
		a.wrote()
	}
	a.finish(batch, err)
}

// writeAll writes b, going on after a partial write. A deadline error is
// final only once Close gave up.
func (a *JSONAuditor) writeAll(b []byte) error {
	for len(b) > 0 {
		n, err := a.w.Write(b)
		b = b[n:]
		switch {
		case err == nil && n == 0:
			return io.ErrShortWrite
		case err == nil:
		case isTimeout(err) && !a.abandon.Load():
		default:
			return err
		}
	}
	return nil
}

// size is the bytes r adds to a batch, or a guess before it is marshalled.
func (r auditRecord) size() int {
	if r.line == nil {
		return auditLineGuess
	}
	return len(r.line)
}

func (a *JSONAuditor) finish(batch []auditRecord, err error) {
	for _, r := range batch {
		if r.done != nil {
			r.done <- err
		}
	}
}

// stuckWrite runs when a write has not returned within StuckAfter.
func (a *JSONAuditor) stuckWrite() {
	a.mu.Lock()
	n := a.writing
	if n == 0 {
		a.mu.Unlock()
		return // the write returned meanwhile
	}
	first := !a.stuck
	a.stuck = true
	logIt := a.troubleLocked(troubleStuck)
	a.mu.Unlock()
	a.Metrics.auditBlocked(n)
	if first {
		a.Metrics.auditStuck(true)
	}
	if logIt {
		a.log.Error("audit log sink is stuck: a write has not returned; records are queued, then dropped, and PTY and file-transfer opens are refused until it recovers",
			"stuck_after", a.stuckAfter.String(), "queued", len(a.queue))
	}
}

func (a *JSONAuditor) writeFailed(err error) {
	a.mu.Lock()
	logIt := a.troubleLocked(troubleFailing)
	a.mu.Unlock()
	if logIt {
		a.log.Error("cannot write the audit log; records are being dropped", "err", err)
	}
}

// wrote ends an episode of trouble once a write succeeded and the queue
// has room again.
func (a *JSONAuditor) wrote() {
	a.mu.Lock()
	wasStuck := a.stuck
	a.stuck = false
	end := a.troubled && len(a.queue) <= cap(a.queue)/2
	lost, since := a.lost, a.since
	if end {
		a.troubled, a.logged, a.lost = false, 0, 0
	}
	a.mu.Unlock()
	if wasStuck {
		a.Metrics.auditStuck(false)
	}
	if end {
		a.log.Warn("audit log sink recovered; records are written again",
			"dropped", lost, "trouble_for", time.Since(since).Round(time.Millisecond).String())
	}
}

// troubles is a set of the kinds of trouble an episode can have.
type troubles uint8

const (
	troubleStuck troubles = 1 << iota
	troubleFailing
	troubleDropping
)

// troubleLocked notes trouble of kind k, starting an episode if none is
// under way, and reports whether k is new to the episode (to be logged:
// each kind is logged once per episode).
func (a *JSONAuditor) troubleLocked(k troubles) bool {
	if !a.troubled {
		a.troubled, a.since = true, time.Now()
	}
	if a.logged&k != 0 {
		return false
	}
	a.logged |= k
	return true
}

// drop counts n records that will never be written.
func (a *JSONAuditor) drop(n int, reason string) {
	a.Metrics.auditDropped(reason, n)
	a.mu.Lock()
	a.lost += int64(n)
	logIt := reason == "queue_full" && a.troubleLocked(troubleDropping)
	a.mu.Unlock()
	if logIt {
		a.log.Error("the audit queue is full; records are being dropped until the sink catches up", "queue_size", cap(a.queue))
	}
}

// MemoryAuditor keeps events in memory, for tests.
type MemoryAuditor struct {
	mu sync.Mutex
	// mu guards the following.
	events []Event
}

// Audit appends e.
func (a *MemoryAuditor) Audit(e Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, e)
}

// Events returns a copy of the events so far.
func (a *MemoryAuditor) Events() []Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Event(nil), a.events...)
}

type discardAuditor struct{}

func (discardAuditor) Audit(Event) {}

// auditLimiter lets records through at a sustained rate with a burst, and
// counts those it holds back; the next record let through carries the
// count. It bounds what unauthenticated peers can write to the audit log.
type auditLimiter struct {
	mu sync.Mutex
	// mu guards the following.
	b          ratelimit.Bucket
	suppressed int64
}

// take reports whether a record may be written now and, if so, how many
// were held back since the last one.
func (l *auditLimiter) take(now time.Time) (ok bool, suppressed int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.b.Allow(now) {
		l.suppressed++
		return false, 0
	}
	s := l.suppressed
	l.suppressed = 0
	return true, s
}

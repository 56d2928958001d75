package edge

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/tetherhq/tether/certs"
)

// FileLastSeen is the LastSeen of a single edge that keeps its records in
// a file as well as in memory (a MemoryLastSeen), so that the devices it
// saw leave stay listed when it restarts. Since the devices of a single
// edge that stops are expected back at it, an edge with a FileLastSeen
// records those connected when it shuts down too, as last seen then: the
// ones that come back are listed online again, the others offline.
//
// The file is JSON lines, a LastSeenRecord each, rewritten whole (a new
// file, synced and renamed over the old one) within saveLastSeenEvery of
// a change, and when the store is closed; so a crash of the edge loses
// at most that much. The file is private to its owner (0600).
type FileLastSeen struct {
	path  string
	log   *slog.Logger
	mem   MemoryLastSeen
	every time.Duration // saveLastSeenEvery; tests shorten it

	saving  sync.Mutex     // one save at a time, in order
	pending sync.WaitGroup // the timer's save, once it is set

	mu sync.Mutex
	// mu guards the following.
	dirty  bool
	timer  *time.Timer // the save to come; nil when none is
	closed bool
}

var _ LastSeen = (*FileLastSeen)(nil)

// Bounds of the last-seen file: it is read whole when the edge starts.
const (
	saveLastSeenEvery = 10 * time.Second
	maxLastSeenFile   = 256 << 20
	maxLastSeenLine   = 64 << 10
)

// OpenLastSeen reads the last-seen file at path, when there is one, into
// a store that keeps records for ttl, at most max of them (zero: the
// defaults of MemoryLastSeen). A file that cannot be read is an error. A
// file whose content is not what this edge writes is moved aside (to
// path.bad), with a warning on log, and the edge starts without the
// records: the device list is worth less than the edge's start.
func OpenLastSeen(path string, ttl time.Duration, max int, log *slog.Logger) (*FileLastSeen, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &FileLastSeen{path: path, log: log, mem: MemoryLastSeen{TTL: ttl, Max: max}, every: saveLastSeenEvery}
	b, err := readBounded(path, maxLastSeenFile)
	if err != nil {
		return nil, fmt.Errorf("cannot read the last-seen file: %w", err)
	}
	recs, perr := parseLastSeen(b)
	if perr != nil {
		bad := path + ".bad"
		if err := os.Rename(path, bad); err != nil {
			return nil, fmt.Errorf("last-seen file %s: %v, and it cannot be moved aside: %w", path, perr, err)
		}
		log.Warn("the last-seen file is not one this edge wrote; moved aside, starting without its records", "file", path, "moved_to", bad, "err", perr)
		return f, nil
	}
	for _, rec := range recs {
		_ = f.mem.RecordLastSeen(context.Background(), rec)
	}
	return f, nil
}

// parseLastSeen parses a last-seen file, in the order of its records.
func parseLastSeen(b []byte) ([]LastSeenRecord, error) {
	var recs []LastSeenRecord
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), maxLastSeenLine)
	for n := 1; sc.Scan(); n++ {
		var rec LastSeenRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		if err := certs.ValidDeviceID(rec.ID); err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		if rec.LastSeen.IsZero() {
			return nil, fmt.Errorf("line %d: no last_seen", n)
		}
		recs = append(recs, rec)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("a line of more than %d KiB", maxLastSeenLine>>10)
	}
	return recs, nil
}

// RecordLastSeen implements LastSeen; the file follows within
// saveLastSeenEvery.
func (f *FileLastSeen) RecordLastSeen(ctx context.Context, rec LastSeenRecord) error {
	if err := f.mem.RecordLastSeen(ctx, rec); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dirty = true
	if f.timer == nil && !f.closed {
		f.pending.Add(1)
		f.timer = time.AfterFunc(f.every, f.saveLater)
	}
	return nil
}

// ListLastSeen implements LastSeen.
func (f *FileLastSeen) ListLastSeen(ctx context.Context) ([]LastSeenRecord, error) {
	return f.mem.ListLastSeen(ctx)
}

// durable marks the LastSeen stores that outlive the edge.
func (*FileLastSeen) durable() {}

func (f *FileLastSeen) saveLater() {
	defer f.pending.Done()
	f.mu.Lock()
	f.timer = nil
	closed := f.closed
	f.mu.Unlock()
	if closed {
		return
	}
	if err := f.save(); err != nil {
		f.log.Warn("cannot save the last-seen records; trying again at the next change", "file", f.path, "err", err)
	}
}

// save writes the records to the file, when they changed since the last
// save.
func (f *FileLastSeen) save() error {
	f.saving.Lock()
	defer f.saving.Unlock()
	f.mu.Lock()
	dirty := f.dirty
	f.dirty = false
	f.mu.Unlock()
	if !dirty {
		return nil
	}
	recs, _ := f.mem.ListLastSeen(context.Background())
	// In the order they were seen, which is the order they expire in.
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].LastSeen.Before(recs[j].LastSeen) })
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, rec := range recs {
		if err := enc.Encode(rec); err != nil {
			return err
		}
	}
	if err := writeFileAtomic(f.path, b.Bytes()); err != nil {
		f.mu.Lock()
		f.dirty = true
		f.mu.Unlock()
		return err
	}
	return nil
}

// Close stops the saves to come, waits for one under way, and saves what
// changed. The store still answers, in memory, after it.
func (f *FileLastSeen) Close() error {
	f.mu.Lock()
	f.closed = true
	if f.timer != nil && f.timer.Stop() {
		f.pending.Done() // its save will not run
	}
	f.timer = nil
	f.mu.Unlock()
	f.pending.Wait()
	if err := f.save(); err != nil {
		return fmt.Errorf("cannot save the last-seen records: %w", err)
	}
	return nil
}

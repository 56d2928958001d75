package edge

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// sweeper runs the retention sweep at start and every
// recordingSweepEvery, and when asked (now), until stop.
func (s *Server) sweeper(now chan chan struct{}, stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(recordingSweepEvery)
	defer t.Stop()
	s.sweepRecordings(time.Now())
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			s.sweepRecordings(time.Now())
		case ack := <-now:
			s.sweepRecordings(time.Now())
			close(ack)
		}
	}
}

// SweepRecordings runs the retention sweep now and returns when it is
// done; the edge also runs it every minute. It does nothing without a
// recording directory.
func (s *Server) SweepRecordings() {
	s.init()
	s.startRecordings()
	s.rec.mu.Lock()
	ch, stop := s.rec.sweepNow, s.rec.sweepStop
	running := s.rec.started && !s.rec.stopped
	s.rec.mu.Unlock()
	if !running {
		return
	}
	ack := make(chan struct{})
	select {
	case ch <- ack:
		<-ack
	case <-stop:
	}
}

// recordingFile is one recording the sweep found.
type recordingFile struct {
	path string
	rel  string
	size int64
	mod  time.Time
}

// sweepRecordings deletes the recordings older than the retention, then
// the oldest while all of them take more than max_total_bytes, and
// audits each deletion. Recordings under way are counted, never deleted.
func (s *Server) sweepRecordings(now time.Time) {
	cfg := s.rec.cfg.Load()
	if cfg == nil || cfg.Dir == "" || cfg.Retention <= 0 && cfg.MaxTotalBytes <= 0 {
		return
	}
	var files []recordingFile
	var total int64
	err := filepath.WalkDir(cfg.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == cfg.Dir {
				return err
			}
			return nil // an unreadable corner: the rest is swept
		}
		if !d.Type().IsRegular() || !strings.HasSuffix(path, ".cast") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(cfg.Dir, path)
		files = append(files, recordingFile{path: path, rel: rel, size: info.Size(), mod: info.ModTime()})
		total += info.Size()
		return nil
	})
	if err != nil {
		if !os.IsNotExist(err) {
			s.log.Warn("recording sweep: cannot read the recording directory", "dir", cfg.Dir, "err", err)
		}
		return
	}
	sort.Slice(files, func(i, j int) bool {
		if !files[i].mod.Equal(files[j].mod) {
			return files[i].mod.Before(files[j].mod)
		}
		return files[i].rel < files[j].rel
	})
	s.rec.mu.Lock()
	live := make(map[string]bool, len(s.rec.files))
	for p := range s.rec.files {
		live[p] = true
	}
	s.rec.mu.Unlock()
	for _, f := range files {
		if live[f.path] {
			continue
		}
		var reason, why string
		switch {
		case cfg.Retention > 0 && now.Sub(f.mod) > cfg.Retention:
			reason, why = "retention", fmt.Sprintf("older than the retention (%v)", cfg.Retention)
		case cfg.MaxTotalBytes > 0 && total > cfg.MaxTotalBytes:
			reason, why = "max_total_bytes", fmt.Sprintf("the recordings took %d bytes, more than max_total_bytes (%d); the oldest go first", total, cfg.MaxTotalBytes)
		default:
			continue
		}
		if err := os.Remove(f.path); err != nil {
			s.log.Warn("recording sweep: cannot delete a recording", "path", f.path, "err", err)
			continue
		}
		total -= f.size
		s.rec.metrics.deletedOne(reason)
		id := strings.TrimSuffix(filepath.Base(f.rel), ".cast")
		s.audit.Audit(Event{Time: time.Now(), Kind: EventRecordingDeleted, Device: deviceOfRecording(f.rel), Result: reason, Reason: why,
			Recording: &RecordingAudit{ID: id, Path: f.rel, Bytes: f.size}})
		// Empty day, month and year directories go too.
		for dir := filepath.Dir(f.path); dir != cfg.Dir && strings.HasPrefix(dir, cfg.Dir); dir = filepath.Dir(dir) {
			if os.Remove(dir) != nil {
				break
			}
		}
	}
}

// deviceOfRecording is the device of a recording's path
// (YYYY/MM/DD/<device>/<ID>.cast), its directory name decoded.
func deviceOfRecording(rel string) string {
	parts := strings.Split(filepath.ToSlash(rel), "/")
	if len(parts) != 5 {
		return ""
	}
	dev, _ := deviceOfDir(parts[3])
	return dev
}

//go:build linux

package edge

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// BenchmarkRecorderOutput measures the recorder alone, in process: a
// flood of terminal text handed to it in the relay's pieces, decoded,
// coalesced, encoded, hashed and written to a file. cpu-ns/B is the
// process's CPU time (the writer goroutine's included) per byte of
// output: what recording adds to the edge's CPU for a flood. The
// recording is required, so that the flood waits for the disk rather than
// losing events.
func BenchmarkRecorderOutput(b *testing.B) {
	var text bytes.Buffer
	for i := 0; text.Len() < 8<<20; i++ {
		text.WriteString("Dec  2 14:00:00 device-1 \x1b[32msshd\x1b[0m[1234]: accepted publickey for root from 10.0.0.7 port 52211 ssh2 <ok> & done \"ü\"\r\n")
	}
	data := text.Bytes()
	const piece = 16 << 10
	dir := b.TempDir()
	s := &Server{}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	for i := 0; b.Loop(); i++ {
		path := filepath.Join(dir, "r.cast")
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			b.Fatal(err)
		}
		r := &recorder{s: s, device: "d1", mode: RecordingRequired, rid: "bench", rel: "r.cast", path: path, f: f}
		if err := r.begin([]byte("1")); err != nil {
			b.Fatal(err)
		}
		for p := data; len(p) > 0; {
			n := min(len(p), piece)
			r.output(p[:n])
			p = p[n:]
		}
		if a := r.close(); a.Error != "" {
			b.Fatal(a.Error)
		}
	}
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(int64(b.N)*int64(len(data))), "cpu-ns/B")
}

// TestRecorderLetsGoOfFloodBuffers: the buffers a flood grew are kept
// while it goes on, and let go of once the shell is idle.
func TestRecorderLetsGoOfFloodBuffers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.cast")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{s: &Server{}, device: "d1", mode: RecordingRequired, rid: "t", rel: "r.cast", path: path, f: f}
	if err := r.begin([]byte("1")); err != nil {
		t.Fatal(err)
	}
	defer r.close()
	piece := bytes.Repeat([]byte("flood of text \x1b[1mbold\x1b[0m\r\n"), 512)
	for range 64 {
		r.output(piece)
	}
	held := func() int {
		r.mu.Lock()
		defer r.mu.Unlock()
		return max(cap(r.out), cap(r.spare), cap(r.cur))
	}
	if held() <= recordIdleKeep {
		t.Fatalf("the flood grew no buffers to let go of (largest %d bytes)", held())
	}
	deadline := time.Now().Add(30 * time.Second)
	for held() > recordIdleKeep {
		if time.Now().After(deadline) {
			t.Fatalf("an idle recording still holds %d bytes of buffers", held())
		}
		time.Sleep(20 * time.Millisecond)
	}
	a := r.close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if a.Bytes != int64(len(data)) || !bytes.Contains(data, []byte(`flood of text \u001b[1mbold`)) {
		t.Fatalf("the recording (%d bytes, audited %d) lacks the flood", len(data), a.Bytes)
	}
}

// BenchmarkRecorderBursts measures the recorder alone on a typical text
// session: a page of output at a time, with pauses between pages longer
// than the coalescing. cpu-us/page is the process's CPU time per page.
func BenchmarkRecorderBursts(b *testing.B) {
	var text bytes.Buffer
	for i := 0; i < 50; i++ {
		fmt.Fprintf(&text, "Dec  2 14:00:%02d device-1 sshd[1234]: event %d <ok> & done\r\n", i%60, i)
	}
	page := text.Bytes()
	const pages = 40
	dir := b.TempDir()
	s := &Server{}
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	for i := 0; b.Loop(); i++ {
		path := filepath.Join(dir, fmt.Sprintf("r%d.cast", i))
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			b.Fatal(err)
		}
		r := &recorder{s: s, device: "d1", mode: RecordingBestEffort, rid: "bench", rel: "r.cast", path: path, f: f}
		if err := r.begin([]byte("1")); err != nil {
			b.Fatal(err)
		}
		for range pages {
			for p := page; len(p) > 0; {
				n := min(len(p), 1024)
				r.output(p[:n])
				p = p[n:]
			}
			time.Sleep(20 * time.Millisecond)
		}
		if a := r.close(); a.Error != "" {
			b.Fatal(a.Error)
		}
	}
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*pages), "cpu-us/page")
}

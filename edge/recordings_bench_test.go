package edge

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tetherhq/tether/internal/asciicast"
)

// BenchmarkRecordingIndex lists a directory of 1000 recordings: "cold"
// reads every header and tail, "warm" only walks and stats the files the
// index already read, as every list after the first does.
func BenchmarkRecordingIndex(b *testing.B) {
	dir := b.TempDir()
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for i := range 1000 {
		id := fmt.Sprintf("e1-%016x", i)
		device := fmt.Sprintf("d-%d", i%50)
		at := start.Add(time.Duration(i) * time.Minute)
		d := filepath.Join(dir, at.Format("2006/01/02"), device)
		if err := os.MkdirAll(d, 0o700); err != nil {
			b.Fatal(err)
		}
		f, err := os.Create(filepath.Join(d, id+".cast"))
		if err != nil {
			b.Fatal(err)
		}
		enc := json.NewEncoder(f)
		_ = enc.Encode(asciicast.Header{Version: 2, Width: 80, Height: 24, Timestamp: at.Unix(),
			Tether: &asciicast.Meta{ID: id, Device: device, Client: "ops", Edge: "e1"}})
		for j := range 200 {
			_ = enc.Encode([]any{float64(j) / 10, "o", "some output of a shell, a line of it\r\n"})
		}
		f.Close()
	}
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			x := newRecordingIndex(dir, slog.New(slog.DiscardHandler))
			if n := len(x.scan(time.Time{})); n != 1000 {
				b.Fatalf("listed %d; want 1000", n)
			}
		}
	})
	b.Run("warm", func(b *testing.B) {
		x := newRecordingIndex(dir, slog.New(slog.DiscardHandler))
		x.scan(time.Time{})
		for b.Loop() {
			if n := len(x.scan(time.Time{})); n != 1000 {
				b.Fatalf("listed %d; want 1000", n)
			}
		}
	})
}

package edge

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzReadRecordingInfo: whatever a file in the recording directory
// holds, reading its header and tail neither fails nor allocates beyond
// their bounds, and what it accepts names the file's own recording.
func FuzzReadRecordingInfo(f *testing.F) {
	const id = "e1-0123456789abcdef"
	header := `{"version":2,"width":80,"height":24,"timestamp":1764662400,"title":"ops@d-1","tether":{"id":"` + id + `","session":"s","device":"d-1","client":"ops","edge":"e1"}}` + "\n"
	f.Add([]byte(header + `[0.5,"o","hi"]` + "\n" + `[1.25,"r","100x30"]` + "\n"))
	f.Add([]byte(header + `[0.5,"o","hi"]` + "\n" + `[2.0,"o","cut`))
	f.Add([]byte(header))
	f.Add([]byte(`{"version":2}` + "\n"))
	f.Add([]byte(header + `[-1,"o","x"]` + "\n" + `["x","o","y"]` + "\n" + `[1e308,"m","z"]` + "\n"))
	f.Add([]byte("\n\n\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, id+".cast")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		info, err := readRecordingInfo(p, "d-1", id, st)
		if err != nil {
			return
		}
		if info.ID != id || info.Device != "d-1" || info.Edge != "e1" || info.Bytes != int64(len(b)) {
			t.Fatalf("accepted %+v for %s", info, id)
		}
		if info.Duration < 0 || len(info.Command) > maxRecordingText+3 || len(info.Title) > maxRecordingText+3 {
			t.Fatalf("out of bounds: %+v", info)
		}
	})
}

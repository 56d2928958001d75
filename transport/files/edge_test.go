package files_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/internal/testbroker"
	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/transport/files"
	"github.com/tetherhq/tether/transport/wire"
)

// TestThroughTheEdge runs transfers through the real edge: it refuses
// non-canonical paths and paths outside the client's globs, and audits
// each transfer with its direction, path, offset and the trailer's
// SHA-256.
func TestThroughTheEdge(t *testing.T) {
	dir := tempDir(t)
	pol, err := edge.NewStaticPolicy([]edge.ClientRule{{Name: "ops", TokenSHA256: edge.HashToken(mock.Token),
		Devices: []string{"*"}, Files: true, FileRules: &edge.FileRules{Read: []string{dir}, Write: []string{filepath.Join(dir, "in")}}}})
	require.NoError(t, err)
	m := mock.New(t, mock.Options{Policy: pol})
	dc := m.DeviceClientWithID("d1")
	srv := rwServer(dir)
	dc.Handle(wire.MsgFileTransfer, srv.Serve)
	cl := m.ClientFor("d1")
	ctx := testbroker.Ctx(t)
	require.NoError(t, os.Mkdir(filepath.Join(dir, "in"), 0o755))

	src := filepath.Join(dir, "log.bin")
	want := writeRandom(t, src, 20, 300_000)
	var buf bytes.Buffer
	_, err = cl.Download(ctx, src, &buf, nil)
	require.NoError(t, err)
	_, err = cl.Upload(ctx, filepath.Join(dir, "in", "up.bin"), bytes.NewReader(buf.Bytes()), &files.UploadOptions{Size: int64(buf.Len()), Name: "up.bin"})
	require.NoError(t, err)

	_, err = cl.Upload(ctx, filepath.Join(dir, "up.bin"), bytes.NewReader([]byte("x")), &files.UploadOptions{Size: 1, Name: "x"})
	var re *wire.RemoteError
	require.ErrorAs(t, err, &re, "an upload outside the client's write globs")
	require.Contains(t, re.Reason, "not allowed: file-transfer upload "+filepath.Join(dir, "up.bin"))
	st, _, err := cl.OpenStream(ctx, wire.MsgFileTransfer, []byte(`{"direction":0,"path":"`+dir+`/in/../log.bin"}`))
	if st != nil {
		st.Close()
	}
	require.ErrorAs(t, err, &re, "a path with ..")
	require.Contains(t, re.Reason, `".." component`)

	var closes []edge.Event
	require.Eventually(t, func() bool {
		closes = closes[:0]
		for _, e := range m.AuditEvents() {
			if e.Kind == edge.EventStreamClose && e.Type == "file-transfer" {
				closes = append(closes, e)
			}
		}
		return len(closes) == 2
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, [3]any{"download", src, want}, [3]any{closes[0].Direction, closes[0].Path, closes[0].SHA256})
	require.Equal(t, int64(300_000), closes[0].FileSize)
	require.Equal(t, [3]any{"upload", filepath.Join(dir, "in", "up.bin"), want}, [3]any{closes[1].Direction, closes[1].Path, closes[1].SHA256})
}

//go:build linux

package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/pty"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/wire"
)

// TestRecordingThroughTheBinary: edge.yaml's recording section reaches
// the edge (its dir relative to the file), a shell through the built
// binary is recorded, and after SIGTERM the audit log's close record
// vouches for the file.
func TestRecordingThroughTheBinary(t *testing.T) {
	path, pki := writeIssueConfig(t)
	dir := filepath.Dir(path)
	token, sum, err := newToken()
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(issueConfig, "<64 hex chars>", sum, 1)
	cfg = strings.Replace(cfg, "127.0.0.1:9090", testutil.FreeAddr(t), 1)
	cfg += "recording:\n  mode: required\n  dir: rec\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testutil.FreeAddr(t)
	p := startEdge(t, "--config", path, "--listen", addr)
	hc := httpsClient(t, filepath.Join(dir, "ca.crt"))
	waitFor(t, "the edge to be healthy", func() bool { return testutil.Healthy(hc, "https://"+addr) })

	dc := &device.Client{URL: "https://" + addr + "/device", TLSConfig: pki.DeviceTLS(pki.Device("dev-1"))}
	srv := &pty.Server{Config: pty.Config{Enabled: true, Shell: "/bin/sh"}}
	dc.Handle(wire.MsgPTY, srv.ServePTY)
	dc.Handle(wire.MsgPTYCommand, srv.ServeCommand)
	if err := dc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	defer dc.Close()
	waitFor(t, "the device to be listed", func() bool {
		ids, err := listDevices(hc, addr, token)
		return err == nil && len(ids) == 1
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := (&client.Dialer{Edge: "https://" + addr, Token: token, TLSConfig: certs.ClientTLSConfig(certs.PoolOf(pki.CA.Cert))}).Dial(ctx, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := pty.Open(ctx, c, pty.Request{Cols: 90, Rows: 20, Command: "/bin/sh", Args: []string{"-c", "echo recorded; exit 4"}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := s.ExitStatus(ctx); err != nil || st.Code != 4 {
		t.Fatalf("exit status %v, %v; want code 4", st, err)
	}
	s.Close()
	var files []string
	waitFor(t, "the recording to end with the exit status", func() bool {
		files = files[:0]
		_ = filepath.WalkDir(filepath.Join(dir, "rec"), func(p string, d os.DirEntry, err error) error {
			if err == nil && strings.HasSuffix(p, ".cast") {
				files = append(files, p)
			}
			return nil
		})
		b, err := os.ReadFile(strings.Join(files, ""))
		return len(files) == 1 && err == nil && strings.Contains(string(b), `"exit: exit code 4"`)
	})
	c.Close()
	dc.Close()
	if err := stopEdge(t, p); err != nil {
		t.Fatalf("exit %v after SIGTERM; want 0", err)
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"width":90,"height":20`) || !strings.Contains(string(raw), `"exit: exit code 4"`) {
		t.Errorf("recording:\n%s", raw)
	}
	var got strings.Builder
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	for _, l := range lines[1:] {
		var ev [3]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if ev[1] == "o" {
			got.WriteString(ev[2].(string))
		}
	}
	if got.String() != string(out) {
		t.Errorf("recorded output %q; the client read %q", got.String(), out)
	}

	audit, err := os.Open(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer audit.Close()
	fileSum := sha256.Sum256(raw)
	found := false
	sc := bufio.NewScanner(audit)
	for sc.Scan() {
		var ev struct {
			Event, Type string
			Recording   *struct {
				Recorded bool
				SHA256   string
				Bytes    int64
			}
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Event != "stream_close" || ev.Type != "pty" {
			continue
		}
		found = true
		if ev.Recording == nil || !ev.Recording.Recorded || ev.Recording.SHA256 != hex.EncodeToString(fileSum[:]) || ev.Recording.Bytes != int64(len(raw)) {
			t.Errorf("close record %s does not vouch for the file (sha256 %x, %d bytes)", sc.Bytes(), fileSum, len(raw))
		}
	}
	if !found {
		t.Error("no stream_close record for the shell")
	}
}

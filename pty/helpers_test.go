//go:build linux

package pty_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/pty"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// patience bounds every wait of these tests; it only keeps a broken test
// from hanging.
const patience = 30 * time.Second

// rig is a real edge (mock), a device serving PTY streams with a
// pty.Server, and a client bound to that device.
type rig struct {
	srv *pty.Server
	cl  *client.Client
}

func newRig(t *testing.T, cfg pty.Config) *rig {
	t.Helper()
	cl, dc, _ := mock.NewEdgeMock(t)
	srv := &pty.Server{Config: cfg, Logger: slog.New(slog.NewTextHandler(&testWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	dc.Handle(wire.MsgPTY, srv.ServePTY)
	dc.Handle(wire.MsgPTYCommand, srv.ServeCommand)
	t.Cleanup(func() {
		require.NoError(t, srv.Close())
		require.Zero(t, srv.NumSessions(), "sessions left after Close")
	})
	return &rig{srv: srv, cl: cl}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	t.Cleanup(cancel)
	return ctx
}

func (r *rig) open(t *testing.T, req pty.Request) *pty.Session {
	t.Helper()
	p, err := pty.Open(ctxT(t), r.cl, req)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	require.Len(t, p.ID, 32, "session ID should be 128 bits in hex")
	_ = p.SetReadDeadline(time.Now().Add(patience))
	return p
}

// shell opens a session running /bin/sh -c script.
func (r *rig) shell(t *testing.T, cols, rows int, script string) *pty.Session {
	return r.open(t, pty.Request{Cols: cols, Rows: rows, Command: "/bin/sh", Args: []string{"-c", script}})
}

// expect reads from p until the output holds want, and returns everything
// read so far.
func expect(t *testing.T, p io.Reader, want string, seen *bytes.Buffer) string {
	t.Helper()
	buf := make([]byte, 4096)
	for !strings.Contains(seen.String(), want) {
		n, err := p.Read(buf)
		seen.Write(buf[:n])
		if err != nil {
			t.Fatalf("waiting for %q: %v; got %q", want, err, seen.String())
		}
	}
	return seen.String()
}

// readAll reads p to its end.
func readAll(t *testing.T, p io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(p)
	require.NoError(t, err)
	return string(b)
}

// exitStatus waits for the session's exit status.
func (r *rig) exitStatus(t *testing.T, sid string) wire.ExitStatus {
	t.Helper()
	es, err := pty.WaitExit(ctxT(t), r.cl, sid)
	require.NoError(t, err)
	return es
}

// remoteErr asserts err is an Error answer from the device and returns its
// reason.
func remoteErr(t *testing.T, err error) string {
	t.Helper()
	var re *wire.RemoteError
	require.True(t, errors.As(err, &re), "got %v; want an Error answer", err)
	return re.Reason
}

// procStat is an independent reader of /proc/<pid>/stat for the checks.
type procStat struct {
	state         string
	ppid, session int
}

func readProc(pid int) (procStat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndex(s, ")")+1:])
	ppid, _ := strconv.Atoi(f[1])
	sess, _ := strconv.Atoi(f[3])
	return procStat{state: f[0], ppid: ppid, session: sess}, true
}

// sessionProcs lists every process (zombies included) whose session ID is
// sid, and every zombie child of the test process.
func sessionProcs(t *testing.T, sid int) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, ok := readProc(pid)
		if !ok {
			continue
		}
		if st.session == sid || (st.ppid == os.Getpid() && st.state == "Z") {
			out = append(out, e.Name()+":"+st.state)
		}
	}
	return out
}

// countFDs counts the open file descriptors of the test process.
func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

//go:build linux

package pty_test

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/pty"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/wire"
)

// benchRig is newRig for benchmarks.
func benchRig(b *testing.B) (*pty.Server, *client.Client) {
	cl, dc, _ := mock.NewEdgeMock(b)
	srv := &pty.Server{Config: pty.Config{Enabled: true}}
	dc.Handle(wire.MsgPTY, srv.ServePTY)
	dc.Handle(wire.MsgPTYCommand, srv.ServeCommand)
	b.Cleanup(func() { srv.Close() })
	return srv, cl
}

// BenchmarkPTYOutput measures terminal output from a device process to the
// client through the edge: 16 MiB per session.
func BenchmarkPTYOutput(b *testing.B) {
	_, cl := benchRig(b)
	const n = 16 << 20
	b.SetBytes(n)
	for b.Loop() {
		p, err := pty.Open(b.Context(), cl, pty.Request{Command: "/bin/sh", Args: []string{"-c", fmt.Sprintf("head -c %d /dev/zero", n)}})
		require.NoError(b, err)
		got, err := io.Copy(io.Discard, p)
		require.NoError(b, err)
		require.EqualValues(b, n, got)
		p.Close()
	}
}

// BenchmarkPTYKeystroke measures one keystroke's round trip: a byte typed
// on the client, echoed by the device's terminal, read back.
func BenchmarkPTYKeystroke(b *testing.B) {
	_, cl := benchRig(b)
	p, err := pty.Open(b.Context(), cl, pty.Request{Command: "cat"})
	require.NoError(b, err)
	defer p.Close()
	buf := make([]byte, 64)
	key := []byte{'x'}
	for b.Loop() {
		_, err := p.Write(key)
		require.NoError(b, err)
		for {
			n, err := p.Read(buf)
			require.NoError(b, err)
			if bytes.IndexByte(buf[:n], 'x') >= 0 {
				break
			}
		}
	}
}

// BenchmarkPTYSessionOpen measures opening a session, running a trivial
// command to its end and reading its exit status.
func BenchmarkPTYSessionOpen(b *testing.B) {
	_, cl := benchRig(b)
	for b.Loop() {
		p, err := pty.Open(b.Context(), cl, pty.Request{Command: "true"})
		require.NoError(b, err)
		_, _ = io.Copy(io.Discard, p)
		p.Close()
		es, err := pty.WaitExit(b.Context(), cl, p.ID)
		require.NoError(b, err)
		require.True(b, es.Exited, strings.TrimSpace(es.String()))
	}
}

// execBenchRig serves exec streams for benchmarks.
func execBenchRig(b *testing.B) *client.Client {
	cl, dc, _ := mock.NewEdgeMock(b)
	srv := &pty.ExecServer{Config: pty.ExecConfig{Enabled: true, Shell: "/bin/sh"}}
	dc.Handle(wire.MsgExec, srv.Serve)
	b.Cleanup(func() { srv.Close() })
	return cl
}

// BenchmarkExecOutput measures a command's stdout, framed, from the device
// to the client through the edge: 16 MiB per command.
func BenchmarkExecOutput(b *testing.B) {
	cl := execBenchRig(b)
	const n = 16 << 20
	b.SetBytes(n)
	for b.Loop() {
		e, err := pty.Exec(b.Context(), cl, fmt.Sprintf("head -c %d /dev/zero", n))
		require.NoError(b, err)
		require.NoError(b, e.CloseWrite())
		var c countWriter
		es, err := e.Wait(&c, io.Discard)
		require.NoError(b, err)
		require.Zero(b, es.Code)
		require.EqualValues(b, n, c.n)
		e.Close()
	}
}

// BenchmarkExecStdin measures stdin, framed, from the client to a command
// on the device: 16 MiB per command, counted there by wc.
func BenchmarkExecStdin(b *testing.B) {
	cl := execBenchRig(b)
	const n = 16 << 20
	chunk := make([]byte, 64<<10)
	b.SetBytes(n)
	for b.Loop() {
		e, err := pty.Exec(b.Context(), cl, "wc -c")
		require.NoError(b, err)
		go func() {
			for sent := 0; sent < n; sent += len(chunk) {
				if _, err := e.Write(chunk); err != nil {
					return
				}
			}
			_ = e.CloseWrite()
		}()
		var out bytes.Buffer
		es, err := e.Wait(&out, io.Discard)
		require.NoError(b, err)
		require.Zero(b, es.Code)
		require.Equal(b, fmt.Sprint(n), strings.TrimSpace(out.String()))
		e.Close()
	}
}

// BenchmarkExecOpen measures running a trivial command to its exit status.
func BenchmarkExecOpen(b *testing.B) {
	cl := execBenchRig(b)
	for b.Loop() {
		e, err := pty.Exec(b.Context(), cl, "true")
		require.NoError(b, err)
		require.NoError(b, e.CloseWrite())
		es, err := e.Wait(io.Discard, io.Discard)
		require.NoError(b, err)
		require.True(b, es.Exited)
		e.Close()
	}
}

package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// countingSink answers each connection, after the client's EOF, with the
// number of bytes it read.
func countingSink(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	var wg sync.WaitGroup
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				n, _ := io.Copy(io.Discard, c)
				fmt.Fprint(c, n)
			}()
		}
	}()
	return ln.Addr().String()
}

// BenchmarkNC measures one `tether nc` upload through a real edge and agent
// on loopback: process start, TLS, upgrade, stream and 64 MiB of data.
func BenchmarkNC(b *testing.B) {
	const size = 64 << 20
	f := newFleet(b)
	f.addAgent("d1", "")
	sink := countingSink(b)
	payload := bytes.Repeat([]byte("tether-nc-benchmark\n"), size/20)
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		cmd := exec.CommandContext(ctx, binPath("tether"), f.args(f.token, "nc", "d1", sink)...)
		cmd.Env = baseEnv(b)
		cmd.Stdin = bytes.NewReader(payload)
		out, err := cmd.Output()
		cancel()
		require.NoError(b, err)
		n, err := strconv.Atoi(strings.TrimSpace(string(out)))
		require.NoError(b, err)
		require.Equal(b, len(payload), n)
	}
}

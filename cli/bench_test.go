//go:build linux

package cli

import (
	"bytes"
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/testutil"
)

// BenchmarkNC measures one `tether nc` upload through a real edge and agent
// on loopback: process start, TLS, upgrade, stream and 64 MiB of data.
func BenchmarkNC(b *testing.B) {
	const size = 64 << 20
	f := newFleet(b)
	f.addAgent("d1", "")
	sink := testutil.TCPServer(b, testutil.CountingSink(testutil.Decimal))
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

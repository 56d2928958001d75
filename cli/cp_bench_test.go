//go:build linux

package cli

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/testutil"
)

// BenchmarkCPDownload downloads 1 GiB in raw mode with `tether cp` through
// a real edge and agent on loopback, and the same file with `tether nc`
// from a TCP server next to the agent, in the same run: the throughput
// ratio, and the agent's CPU time per GB for each (framing and SHA-256 on
// one side, a plain TCP stream on the other). Each is the best of two.
func BenchmarkCPDownload(b *testing.B) {
	const size = 1 << 30
	f := newFleet(b)
	dir, err := filepath.EvalSymlinks(b.TempDir())
	require.NoError(b, err)
	src := filepath.Join(dir, "image.bin")
	fh, err := os.Create(src)
	require.NoError(b, err)
	_, err = io.CopyN(fh, rand.NewChaCha8([32]byte{1}), size)
	require.NoError(b, err)
	require.NoError(b, fh.Close())
	f.addAgent("d1", "files: {read: [\""+dir+"\"]}\n")
	agentPID := f.agents["d1"].Cmd.Process.Pid
	// The nc baseline: a server on the agent's side that sends the file.
	server := testutil.TCPServer(b, func(c *net.TCPConn) {
		defer c.Close()
		in, err := os.Open(src)
		if err != nil {
			return
		}
		defer in.Close()
		_, _ = io.Copy(c, in)
	})
	out := b.TempDir()

	run := func(args ...string) (time.Duration, time.Duration) {
		dst := filepath.Join(out, "copy.bin")
		_ = os.Remove(dst)
		stdout, err := os.Create(dst + ".nc")
		require.NoError(b, err)
		defer os.Remove(dst + ".nc")
		defer stdout.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		args = append(args, dst)
		if args[0] == "nc" {
			args = args[:len(args)-1]
		}
		cmd := exec.CommandContext(ctx, binPath("tether"), f.args(f.token, args...)...)
		cmd.Env = baseEnv(b)
		cmd.Stdout = stdout
		cpu0 := procCPU(b, agentPID)
		start := time.Now()
		var errOut strings.Builder
		cmd.Stderr = &errOut
		require.NoError(b, cmd.Run(), errOut.String())
		wall := time.Since(start)
		return wall, procCPU(b, agentPID) - cpu0
	}
	b.SetBytes(size)
	b.ResetTimer()
	best := func(args ...string) (time.Duration, time.Duration) {
		w1, c1 := run(args...)
		w2, c2 := run(args...)
		return min(w1, w2), min(c1, c2)
	}
	for i := 0; i < b.N; i++ {
		cpWall, cpCPU := best("cp", "d1:"+src)
		ncWall, ncCPU := best("nc", "d1", server)
		gb := float64(size) / 1e9
		b.ReportMetric(float64(size)/cpWall.Seconds()/1e6, "cp-MB/s")
		b.ReportMetric(float64(size)/ncWall.Seconds()/1e6, "nc-MB/s")
		b.ReportMetric(ncWall.Seconds()/cpWall.Seconds(), "x-nc-throughput")
		b.ReportMetric(cpCPU.Seconds()/gb, "agent-cpu-s/GB-cp")
		b.ReportMetric(ncCPU.Seconds()/gb, "agent-cpu-s/GB-nc")
		b.ReportMetric(cpCPU.Seconds()/ncCPU.Seconds(), "x-nc-agent-cpu")
	}
}

// procCPU is the user and system CPU time pid has used so far.
func procCPU(tb testing.TB, pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	require.NoError(tb, err)
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, err := strconv.ParseInt(fields[11], 10, 64)
	require.NoError(tb, err)
	stime, err := strconv.ParseInt(fields[12], 10, 64)
	require.NoError(tb, err)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

//go:build linux

package cli

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/testutil"
)

// BenchmarkCPDownload downloads 1 GiB in raw mode with `tether cp` through
// a real edge and agent on loopback, and the same file with `tether nc`
// from a TCP server next to the agent: the throughput ratio, and the
// agent's CPU time per GB for each (framing and SHA-256 on one side, a
// plain TCP stream on the other). Both write the file to the same local
// directory; cp also checks the SHA-256, fsyncs and renames, nc does not.
//
// cp returns once the file is on disk; nc once it is in the page cache,
// which the benchmark removes before the kernel writes it back, so that
// the disk never sees nc's bytes. x-nc-throughput compares with nc as it
// is; x-nc-synced-throughput with nc followed by an fsync of its output
// (as `tether nc ... >file && sync file` would), so that both runs end
// with the same bytes on disk.
//
// The machine's load varies over a run, so the two go in interleaved
// rounds, cp and nc back to back (in turns, which goes first), and the
// ratios are of each round's pair: the reported ones are their medians.
func BenchmarkCPDownload(b *testing.B) {
	const (
		size   = 1 << 30
		rounds = 5
	)
	f := newFleet(b)
	dir, err := filepath.EvalSymlinks(b.TempDir())
	require.NoError(b, err)
	src := filepath.Join(dir, "image.bin")
	randomFile(b, src, 1, size)
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

	// run is one transfer: its wall time, the wall time until its file
	// is on disk, the agent's CPU time and the CLI's.
	type sample struct{ wall, synced, agent, cli time.Duration }
	run := func(args ...string) sample {
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
		agentCPU := procCPU(b, agentPID) - cpu0
		synced := wall
		if args[0] == "nc" {
			require.NoError(b, stdout.Sync())
			synced = time.Since(start)
		}
		st := cmd.ProcessState
		return sample{wall, synced, agentCPU, st.UserTime() + st.SystemTime()}
	}
	cp := func() sample { return run("cp", "d1:"+src) }
	nc := func() sample { return run("nc", "d1", server) }
	b.SetBytes(size)
	b.ResetTimer()
	var cps, ncs []sample
	var ratio, syncedRatio, cpuRatio []float64
	for i := 0; i < b.N*rounds; i++ {
		var c, n sample
		if i%2 == 0 {
			c, n = cp(), nc()
		} else {
			n, c = nc(), cp()
		}
		cps, ncs = append(cps, c), append(ncs, n)
		ratio = append(ratio, n.wall.Seconds()/c.wall.Seconds())
		syncedRatio = append(syncedRatio, n.synced.Seconds()/c.wall.Seconds())
		cpuRatio = append(cpuRatio, c.agent.Seconds()/n.agent.Seconds())
	}
	b.StopTimer()
	gb := float64(size) / 1e9
	med := func(s []sample, f func(sample) time.Duration) float64 {
		v := make([]float64, len(s))
		for i := range s {
			v[i] = f(s[i]).Seconds()
		}
		return median(v)
	}
	wall := func(s sample) time.Duration { return s.wall }
	agent := func(s sample) time.Duration { return s.agent }
	cli := func(s sample) time.Duration { return s.cli }
	b.ReportMetric(float64(size)/med(cps, wall)/1e6, "cp-MB/s")
	b.ReportMetric(float64(size)/med(ncs, wall)/1e6, "nc-MB/s")
	b.ReportMetric(median(ratio), "x-nc-throughput")
	b.ReportMetric(slices.Min(ratio), "x-nc-throughput-min")
	b.ReportMetric(float64(size)/med(ncs, func(s sample) time.Duration { return s.synced })/1e6, "nc-synced-MB/s")
	b.ReportMetric(median(syncedRatio), "x-nc-synced-throughput")
	b.ReportMetric(slices.Min(syncedRatio), "x-nc-synced-throughput-min")
	b.ReportMetric(med(cps, agent)/gb, "agent-cpu-s/GB-cp")
	b.ReportMetric(med(ncs, agent)/gb, "agent-cpu-s/GB-nc")
	b.ReportMetric(median(cpuRatio), "x-nc-agent-cpu")
	b.ReportMetric(med(cps, cli)/gb, "cli-cpu-s/GB-cp")
	b.ReportMetric(med(ncs, cli)/gb, "cli-cpu-s/GB-nc")
	b.Logf("throughput ratio per round: %.3f; with nc's fsync: %.3f", ratio, syncedRatio)
}

// median is the middle value of v (the mean of the two middle ones when
// len(v) is even).
func median(v []float64) float64 {
	v = slices.Sorted(slices.Values(v))
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
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

// BenchmarkCPUpload uploads 1 GiB in raw mode with `tether cp` through a
// real edge and agent on loopback, and sends the same file with `tether
// nc` to a TCP server next to the agent that writes it to the same
// directory. It reports the agent's CPU time per GB for each: with cp the
// agent parses the frames, hashes and writes the file (and fsyncs it);
// with nc it only relays the bytes. Rounds interleave, in turns.
func BenchmarkCPUpload(b *testing.B) {
	const (
		size   = 1 << 30
		rounds = 3
	)
	f := newFleet(b)
	dir, err := filepath.EvalSymlinks(b.TempDir())
	require.NoError(b, err)
	src := filepath.Join(b.TempDir(), "image.bin")
	randomFile(b, src, 2, size)
	f.addAgent("d1", "files: {write: [\""+dir+"\"]}\n")
	agentPID := f.agents["d1"].Cmd.Process.Pid
	server := testutil.TCPServer(b, func(c *net.TCPConn) {
		defer c.Close()
		out, err := os.Create(filepath.Join(dir, "nc.bin"))
		if err != nil {
			return
		}
		defer out.Close()
		_, _ = io.Copy(out, c)
	})

	// run is one transfer: its wall time and the agent's CPU time.
	run := func(args ...string) (wall, agent time.Duration) {
		in, err := os.Open(src)
		require.NoError(b, err)
		defer in.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, binPath("tether"), f.args(f.token, args...)...)
		cmd.Env = baseEnv(b)
		cmd.Stdin = in
		var errOut strings.Builder
		cmd.Stderr = &errOut
		cpu0 := procCPU(b, agentPID)
		start := time.Now()
		require.NoError(b, cmd.Run(), errOut.String())
		return time.Since(start), procCPU(b, agentPID) - cpu0
	}
	b.ResetTimer()
	var cpWall, ncWall, cpCPU, ncCPU, cpuRatio []float64
	for i := 0; i < b.N*rounds; i++ {
		order := []bool{true, false}
		if i%2 == 1 {
			order = []bool{false, true}
		}
		var cw, ca, nw, na time.Duration
		for _, isCP := range order {
			if isCP {
				cw, ca = run("cp", src, "d1:"+filepath.Join(dir, "cp.bin"))
			} else {
				nw, na = run("nc", "d1", server)
			}
		}
		cpWall, ncWall = append(cpWall, cw.Seconds()), append(ncWall, nw.Seconds())
		cpCPU, ncCPU = append(cpCPU, ca.Seconds()), append(ncCPU, na.Seconds())
		cpuRatio = append(cpuRatio, ca.Seconds()/na.Seconds())
	}
	b.StopTimer()
	gb := float64(size) / 1e9
	b.ReportMetric(float64(size)/median(cpWall)/1e6, "cp-MB/s")
	b.ReportMetric(float64(size)/median(ncWall)/1e6, "nc-MB/s")
	b.ReportMetric(median(cpCPU)/gb, "agent-cpu-s/GB-cp")
	b.ReportMetric(median(ncCPU)/gb, "agent-cpu-s/GB-nc")
	b.ReportMetric(median(cpuRatio), "x-nc-agent-cpu")
}

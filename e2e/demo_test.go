package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/testutil"
)

// runDemo runs scripts/demo.sh (make demo without the build) with the
// test's binaries, its temporary files under tmp, and KEEP=keep, and
// returns its output.
func runDemo(t *testing.T, tmp, keep string) string {
	t.Helper()
	t.Cleanup(func() { killDemoProcs(t, tmp) })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join("..", "scripts", "demo.sh"))
	cmd.Env = append(os.Environ(), "BIN="+binDir, "TMPDIR="+tmp, "KEEP="+keep)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("demo.sh: %v\n%s", err, out.String())
	}
	return out.String()
}

// demoProcs lists the processes whose command line names a path under
// tmp: every process the demo starts names its directory there.
func demoProcs(t *testing.T, tmp string) map[int]string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	found := make(map[int]string)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
		if strings.Contains(args, tmp) {
			found[pid] = args
		}
	}
	return found
}

// killDemoProcs kills what a failed test left running, so that it does
// not outlive the test.
func killDemoProcs(t *testing.T, tmp string) {
	for pid, args := range demoProcs(t, tmp) {
		t.Logf("killing leftover demo process %d: %s", pid, args)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// TestDemoLeavesNothingRunning: make demo stops every process it started,
// the TCP forward included, and removes its files.
func TestDemoLeavesNothingRunning(t *testing.T) {
	tmp := t.TempDir()
	out := runDemo(t, tmp, "0")
	require.Contains(t, out, "\nnotes from the operator\n", "the file the demo copied to the device did not arrive")
	require.Contains(t, out, "hello from", "the demo fetched nothing through the forward")
	require.Contains(t, out, "demo finished")
	require.Empty(t, demoProcs(t, tmp), "processes outlived the demo")
	left, err := os.ReadDir(tmp)
	require.NoError(t, err)
	require.Empty(t, left, "the demo left files behind")
}

// TestDemoKeepStopCommand: KEEP=1 leaves the edge, the agent and the
// device-side HTTP server running (and nothing else), and the one stop
// command it prints stops them all and removes the files.
func TestDemoKeepStopCommand(t *testing.T) {
	tmp := t.TempDir()
	out := runDemo(t, tmp, "1")
	m := regexp.MustCompile(`(?m)^Stop them all with: (\S+)$`).FindStringSubmatch(out)
	require.NotNil(t, m, "no stop command in the output:\n%s", out)

	kept := demoProcs(t, tmp)
	require.Len(t, kept, 3, "want the edge, the agent and the HTTP server; got %v", kept)
	var names []string
	for _, args := range kept {
		names = append(names, filepath.Base(strings.Fields(args)[0]))
	}
	require.ElementsMatch(t, []string{"tether-edge", "tether-agent", "httpd"}, names)

	stopOut, err := exec.Command(m[1]).CombinedOutput()
	require.NoError(t, err, "%s", stopOut)
	require.Contains(t, string(stopOut), "demo stopped")
	require.Empty(t, demoProcs(t, tmp), "processes outlived the stop command")
	left, err := os.ReadDir(tmp)
	require.NoError(t, err)
	require.Empty(t, left, "the stop command left files behind")
}

// TestDemoInterrupted: a demo stopped by SIGTERM or SIGINT while its TCP
// forward runs stops everything it started too. The demo's request through
// the forward goes to a curl of the test's own, which waits until the test
// ends it: the signal then lands while the demo is still running, however
// slow the machine, and the demo takes it when that curl ends, as a shell
// takes a signal once its foreground command is done.
func TestDemoInterrupted(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			tmp := t.TempDir()
			t.Cleanup(func() { killDemoProcs(t, tmp) })
			shim := t.TempDir()
			pidFile := filepath.Join(shim, "curl.pid")
			// On SIGTERM it ends as a curl that got its answer would (exit
			// 0): what ends the demo is then its own handling of sig.
			require.NoError(t, os.WriteFile(filepath.Join(shim, "curl"), []byte("#!/bin/sh\n"+
				"sleep 300 & trap 'kill $!; exit 0' TERM\n"+
				"echo $$ > "+pidFile+".part && mv "+pidFile+".part "+pidFile+"\n"+
				"wait\n"), 0o755))
			cmd := exec.Command("bash", filepath.Join("..", "scripts", "demo.sh"))
			cmd.Env = append(os.Environ(), "BIN="+binDir, "TMPDIR="+tmp, "KEEP=1", "PATH="+shim+string(os.PathListSeparator)+os.Getenv("PATH"))
			var out testutil.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			require.NoError(t, cmd.Start())
			var waitErr error
			exited := make(chan struct{})
			go func() { waitErr = cmd.Wait(); close(exited) }()
			// On a failure on the way, neither the demo's shell nor the
			// curl (whose trap ends its sleep) is under tmp, where
			// killDemoProcs looks: end them here, and wait for the shell.
			t.Cleanup(func() {
				if b, err := os.ReadFile(pidFile); err == nil {
					if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
						_ = syscall.Kill(pid, syscall.SIGTERM)
					}
				}
				_ = cmd.Process.Kill()
				<-exited
			})
			// The demo's curl runs once every process of the demo does.
			var curl int
			require.Eventually(t, func() bool {
				b, err := os.ReadFile(pidFile)
				if err == nil {
					curl, err = strconv.Atoi(strings.TrimSpace(string(b)))
				}
				return err == nil
			}, 2*time.Minute, 20*time.Millisecond, "the demo never made its request through the forward:\n%s", &out)
			require.Contains(t, out.String(), " -> demo ")
			require.GreaterOrEqual(t, len(demoProcs(t, tmp)), 4, "the edge, the agent, the HTTP server and the forward run")
			require.NoError(t, cmd.Process.Signal(sig))
			require.NoError(t, syscall.Kill(curl, syscall.SIGTERM))
			select {
			case <-exited:
				require.Error(t, waitErr, "an interrupted demo exits non-zero")
			case <-time.After(time.Minute):
				t.Fatalf("the interrupted demo did not exit:\n%s", &out)
			}
			require.Empty(t, demoProcs(t, tmp), "processes outlived the interrupted demo")
		})
	}
}

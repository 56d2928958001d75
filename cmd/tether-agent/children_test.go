package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/internal/testutil"
	"github.com/tetherhq/tether/pty"
)

// ptyOutput collects what a PTY session prints, read by one goroutine
// that ends with the session.
type ptyOutput struct {
	mu  sync.Mutex
	buf strings.Builder
	// mu guards buf.
	done chan struct{}
}

func readPTY(t testing.TB, sess *pty.Session) *ptyOutput {
	o := &ptyOutput{done: make(chan struct{})}
	go func() {
		defer close(o.done)
		b := make([]byte, 4096)
		for {
			n, err := sess.Read(b)
			o.mu.Lock()
			o.buf.Write(b[:n])
			o.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		sess.Close()
		<-o.done
	})
	return o
}

func (o *ptyOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// startAgentVia runs the built agent through /bin/sh -c script, which ends
// with `exec "$0" "$@"`, so that the agent inherits what the script set up
// (signal dispositions, open descriptors).
func (w *world) startAgentVia(id, extra, script string) *agentProc {
	w.t.Helper()
	a := &agentProc{id: id, path: w.writeAgentConfig(id, extra)}
	o := testutil.Options{KillAtCleanup: true}
	a.proc = testutil.StartWith(w.t, o, "/bin/sh", "-c", script+`; exec "$0" "$@"`,
		bin("tether-agent"), "--config", a.path, "--log-level", "debug")
	w.waitConnected(id)
	return a
}

// TestShellsGetDefaultInterruptSignals starts the agent with SIGINT and
// SIGQUIT ignored, as a shell does for a job started with '&'. A shell
// session must still be interruptible: ^C ends a foreground sleep and the
// prompt takes the next command.
func TestShellsGetDefaultInterruptSignals(t *testing.T) {
	w := newWorld(t)
	w.startAgentVia("dev-1", "pty: {enabled: true, shell: /bin/sh}\n", `trap "" INT QUIT`)
	c := w.client("dev-1")

	sess, err := pty.Open(ctxT(t), c, pty.Request{Cols: 80, Rows: 24})
	require.NoError(t, err)
	out := readPTY(t, sess)
	marker := fmt.Sprintf("%d", 400000+os.Getpid()%100000)
	_, err = fmt.Fprintf(sess, "sleep %s\r", marker)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(processesWithArg(marker)) == 1 }, 30*time.Second, 20*time.Millisecond,
		"the sleep did not start; output so far:\n%s", out)

	_, err = sess.Write([]byte{0x03}) // ^C
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(processesWithArg(marker)) == 0 }, 30*time.Second, 20*time.Millisecond,
		"^C did not end the foreground sleep; output so far:\n%s", out)
	_, err = fmt.Fprintf(sess, "echo back-at-the-prompt-$((6*7))\r")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "back-at-the-prompt-42") }, 30*time.Second, 20*time.Millisecond,
		"the shell did not take a command after ^C; output so far:\n%s", out)
}

// TestShellsGetOnlyTheirTerminal starts the agent with a descriptor open
// on a file, not close-on-exec, as a script's "exec 7<file" leaves it. A
// command in a PTY session must hold its terminal on 0, 1 and 2 and
// nothing else: ls lists /proc/self/fd, which is open on the one more
// descriptor it reads the listing with.
func TestShellsGetOnlyTheirTerminal(t *testing.T) {
	w := newWorld(t)
	marker := filepath.Join(t.TempDir(), "inherited-marker")
	require.NoError(t, os.WriteFile(marker, []byte("secret"), 0o600))
	w.startAgentVia("dev-1", "pty: {enabled: true, shell: /bin/sh}\n", fmt.Sprintf("exec 7<%q", marker))
	c := w.client("dev-1")

	sess, err := pty.Open(ctxT(t), c, pty.Request{Command: "/bin/ls", Args: []string{"-l", "/proc/self/fd"}})
	require.NoError(t, err)
	defer sess.Close()
	_ = sess.SetDeadline(time.Now().Add(30 * time.Second))
	out, _ := io.ReadAll(sess)
	links := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		before, link, ok := strings.Cut(strings.TrimSpace(line), " -> ")
		if !ok {
			continue
		}
		f := strings.Fields(before)
		links[f[len(f)-1]] = link
	}
	fds := make([]string, 0, len(links))
	for fd := range links {
		fds = append(fds, fd)
	}
	sort.Strings(fds)
	require.Equal(t, []string{"0", "1", "2", "3"}, fds, "got descriptors %v; want the terminal and the listing's own:\n%s", fds, out)
	for _, fd := range []string{"0", "1", "2"} {
		require.True(t, strings.HasPrefix(links[fd], "/dev/pts/"), "descriptor %s is %s; want the terminal", fd, links[fd])
	}
	require.NotContains(t, string(out), marker)
}

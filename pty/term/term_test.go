//go:build linux

package term_test

import (
	"context"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	cpty "github.com/creack/pty"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/tetherhq/tether/pty/term"
)

// openTTY opens a real pseudo-terminal pair for the terminal helpers.
func openTTY(t *testing.T) (ptm, tty *os.File) {
	t.Helper()
	ptm, tty, err := cpty.Open()
	require.NoError(t, err)
	t.Cleanup(func() { tty.Close(); ptm.Close() })
	return ptm, tty
}

func TestIsTerminal(t *testing.T) {
	_, tty := openTTY(t)
	require.True(t, term.IsTerminal(int(tty.Fd())))
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	require.False(t, term.IsTerminal(int(r.Fd())))
}

func TestMakeRawAndRestore(t *testing.T) {
	_, tty := openTTY(t)
	fd := int(tty.Fd())
	before, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	require.NoError(t, err)
	require.NotZero(t, before.Lflag&(unix.ICANON|unix.ECHO), "a new terminal starts cooked")

	restore, err := term.MakeRaw(fd)
	require.NoError(t, err)
	raw, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	require.NoError(t, err)
	require.Zero(t, raw.Lflag&(unix.ICANON|unix.ECHO|unix.ISIG), "raw mode keeps no line editing, echo or key signals")

	// The deferred call and a signal handler may race: both must be safe,
	// and the terminal must end up as it was.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); require.NoError(t, restore()) }()
	}
	wg.Wait()
	require.NoError(t, restore())
	after, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	require.NoError(t, err)
	require.Equal(t, *before, *after)
}

func TestMakeRawNotATerminal(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	_, err = term.MakeRaw(int(r.Fd()))
	require.Error(t, err)
}

func TestSize(t *testing.T) {
	ptm, tty := openTTY(t)
	require.NoError(t, cpty.Setsize(ptm, &cpty.Winsize{Cols: 91, Rows: 33}))
	cols, rows, err := term.Size(int(tty.Fd()))
	require.NoError(t, err)
	require.Equal(t, [2]int{91, 33}, [2]int{cols, rows})
}

func TestWatchResize(t *testing.T) {
	ptm, tty := openTTY(t)
	require.NoError(t, cpty.Setsize(ptm, &cpty.Winsize{Cols: 80, Rows: 24}))
	sizes := make(chan [2]int, 16)
	stop := term.WatchResize(context.Background(), int(tty.Fd()), func(cols, rows int) { sizes <- [2]int{cols, rows} })
	defer stop()

	for _, want := range [][2]int{{120, 40}, {60, 20}} {
		require.NoError(t, cpty.Setsize(ptm, &cpty.Winsize{Cols: uint16(want[0]), Rows: uint16(want[1])}))
		// The test process has no controlling terminal, so it sends the
		// SIGWINCH a terminal would send.
		require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGWINCH))
		select {
		case got := <-sizes:
			require.Equal(t, want, got)
		case <-ctxT(t).Done():
			t.Fatal("no resize callback")
		}
	}
	stop()
	stop() // idempotent
}

func TestMain(m *testing.M) {
	if os.Getenv(termCheckEnv) == "1" {
		os.Exit(termCheck()) // the test binary, re-run inside tmux
	}
	goleak.VerifyTestMain(m)
}

// patience bounds every wait of these tests; it only keeps a broken test
// from hanging.
const patience = 30 * time.Second

// ctxT is a context for one test, bounded so a broken test cannot hang.
func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	t.Cleanup(cancel)
	return ctx
}

package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tetherhq/tether/internal/asciicast"
	"github.com/tetherhq/tether/internal/termfilter"
	terminal "github.com/tetherhq/tether/pty/term"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/wire"
)

type playOptions struct {
	g         *globalOptions
	speed     float64
	idleLimit time.Duration
	cat       bool
	raw       bool
}

// replayReset ends a replay on a terminal: default colours, the cursor
// shown, mouse reports, focus events and bracketed paste off, normal
// cursor keys and keypad.
const replayReset = "\x1b[0m\x1b[?25h\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1004l\x1b[?1006l\x1b[?2004l\x1b[?1l\x1b>"

const playUse = "play ID|FILE [--speed N] [--idle-limit D] [--cat] [--raw]"

func newPlayCommand(g *globalOptions) *cobra.Command {
	o := &playOptions{g: g}
	cmd := &cobra.Command{
		Use:   playUse,
		Short: "Replay a recorded shell, from the edge or from an asciicast file",
		Long: `Replay a recorded shell on this terminal with its original timing.

The argument is a recording's ID (from tether recordings), fetched from the
edge, or an asciicast v2 file (.cast) such as one asciinema wrote: an
existing file, or any argument with a path separator or ending in .cast.

--speed N plays N times faster (0.5: half as fast). --idle-limit D shortens
every pause longer than D to D; without it, the recording's own
idle_time_limit applies, if it has one. --cat prints the whole output at
once, without timing, for a pipe or a file.

While it plays on a terminal: space pauses and resumes, . (when paused)
shows the next step, q stops, Ctrl-C stops and exits 130. When the
recorded terminal was larger than this one, a notice says so on stderr.

Escape sequences that act on this machine rather than on the screen are
removed unless --raw is given: the clipboard (OSC 52), window titles,
notifications, and queries the terminal would answer as if you had typed
the answer (cursor position, device attributes, ...). Colours, cursor
movement and the rest pass unchanged.`,
		Example: `  # Replay a recording from the edge, twice as fast, pauses capped at 2s
  tether play edge-1-3f2a9c0d5e6b7a81 --speed 2 --idle-limit 2s

  # A file asciinema or the edge wrote
  tether play session.cast

  # The whole output as text, for grep
  tether play edge-1-3f2a9c0d5e6b7a81 --cat | grep -a error`,
		ValidArgsFunction: completeRecording(g),
		Args:              argsUsage(cobra.ExactArgs(1), "tether "+playUse),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), args[0])
		},
	}
	cmd.Flags().Float64Var(&o.speed, "speed", 1, "play this many times faster")
	cmd.Flags().DurationVar(&o.idleLimit, "idle-limit", 0, "shorten pauses longer than this (0: the recording's idle_time_limit, if any)")
	cmd.Flags().BoolVar(&o.cat, "cat", false, "print the whole output at once, without timing")
	cmd.Flags().BoolVar(&o.raw, "raw", false, "pass every escape sequence, even those that act on this machine")
	return cmd
}

func (o *playOptions) check() error {
	if o.speed <= 0 || math.IsInf(o.speed, 0) || math.IsNaN(o.speed) {
		return usageErrorf("--speed %v: give a positive number, such as 2 or 0.5", o.speed)
	}
	if o.idleLimit < 0 {
		return usageErrorf("--idle-limit %v: give a positive duration, such as 2s", o.idleLimit)
	}
	return nil
}

func (o *playOptions) run(ctx context.Context, arg string) error {
	if err := o.check(); err != nil {
		return err
	}
	f, err := o.open(ctx, arg)
	if err != nil {
		return err
	}
	defer f.Close()

	dec := asciicast.NewDecoder(bufio.NewReaderSize(f, 64<<10))
	if _, err := dec.Header(); err != nil {
		return fmt.Errorf("read %s: %w; tether play reads asciicast v2 (convert other versions with asciinema convert)", arg, err)
	}
	out := bufio.NewWriterSize(o.g.io.Out, 32<<10)
	var w io.Writer = out
	// The filter also follows the alternate screen; with --raw, it only
	// does that, beside the output.
	var filter *termfilter.Filter
	if !o.raw {
		filter = termfilter.New(out)
		w = filter
	} else {
		filter = termfilter.New(io.Discard)
		w = io.MultiWriter(out, filter)
	}
	p := &player{
		out:   w,
		flush: out.Flush,
		speed: o.speed,
		idle:  o.idleLimit,
		cat:   o.cat,
		clock: realClock{},
		size:  func() (int, int, bool) { return 0, 0, false },
	}
	if fd, ok := terminalFD(o.g.io.Out); ok {
		p.size = func() (int, int, bool) {
			cols, rows, err := terminal.Size(fd)
			return cols, rows, err == nil && cols > 0 && rows > 0
		}
	}
	p.notice = o.g.notice
	if inFD, ok := terminalFD(o.g.io.In); ok && !o.cat {
		restore, err := terminal.MakeRaw(inFD)
		if err != nil {
			return err
		}
		defer restore()
		// Raw mode turns off the terminal's newline translation.
		p.notice = func(format string, args ...any) { o.g.notice(format+"\r", args...) }
		keys, stop := readKeys(o.g.io.In)
		defer stop()
		p.keys = keys
	}
	err = p.play(ctx, dec)
	if filter != nil {
		if cerr := filter.Close(); err == nil {
			err = cerr
		}
	}
	if _, ok := terminalFD(o.g.io.Out); ok && !o.cat {
		// The replay may end, or be stopped, with modes on that would
		// bother the shell after it: in the alternate screen (of a
		// full-screen program stopped mid-replay), or mid-line.
		reset := filter.AltScreen() + replayReset
		if err != nil {
			reset += "\r\n"
		}
		_, _ = io.WriteString(out, reset)
	}
	if ferr := out.Flush(); err == nil {
		err = ferr
	}
	if errors.Is(err, errQuit) || errors.Is(err, syscall.EPIPE) {
		return nil // q, or the reader of a pipe (head) went away
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("play %s: %w", arg, err)
	}
	return err
}

// open returns the recording arg names: a file, or a recording fetched
// from the edge into a temporary file, which Close removes.
func (o *playOptions) open(ctx context.Context, arg string) (io.ReadCloser, error) {
	if isRecordingFile(arg) {
		f, err := os.Open(arg)
		if err != nil {
			return nil, fmt.Errorf("open the recording: %w: check the path, or pass a recording ID from `tether recordings`", err)
		}
		return f, nil
	}
	if !wire.ValidRecordingID(arg) {
		return nil, usageErrorf("%q is neither a file nor a recording ID (EDGE-0123456789abcdef, from `tether recordings`)", arg)
	}
	s, err := o.g.settings()
	if err != nil {
		return nil, err
	}
	if err := s.requireEdge(); err != nil {
		return nil, err
	}
	d, err := apiDialer(s)
	if err != nil {
		return nil, err
	}
	return fetchRecording(ctx, d, arg, o.g.timeout)
}

// isRecordingFile reports whether the argument of tether play names a file:
// one that exists, or a path, or a name ending in .cast.
func isRecordingFile(arg string) bool {
	if fi, err := os.Stat(arg); err == nil && !fi.IsDir() {
		return true
	}
	return strings.ContainsRune(arg, '/') || strings.ContainsRune(arg, filepath.Separator) || strings.HasSuffix(arg, ".cast")
}

// fetchRecording downloads recording id into a temporary file, so that
// the replay holds no connection to the edge. The download fails when
// no byte arrives for idle (--connect-timeout).
func fetchRecording(ctx context.Context, d *client.Dialer, id string, idle time.Duration) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stalled bool
	var mu sync.Mutex
	timer := time.AfterFunc(idle, func() {
		mu.Lock()
		stalled = true
		mu.Unlock()
		cancel()
	})
	defer timer.Stop()
	fail := func(err error) error {
		mu.Lock()
		defer mu.Unlock()
		if stalled {
			err = fmt.Errorf("%w (nothing arrived for %v)", context.DeadlineExceeded, idle)
		}
		return recordingsError(fmt.Errorf("fetch recording %s from %s: %w", id, d.Edge, err), id)
	}
	body, err := d.Recording(ctx, id)
	if err != nil {
		return nil, fail(err)
	}
	defer body.Close()
	tmp, err := os.CreateTemp("", "tether-play-*.cast")
	if err != nil {
		return nil, fmt.Errorf("keep the recording: %w: set TMPDIR to a writable directory", err)
	}
	buf := make([]byte, 64<<10)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			timer.Reset(idle)
			if _, err := tmp.Write(buf[:n]); err != nil {
				tmp.Close()
				os.Remove(tmp.Name())
				return nil, fmt.Errorf("keep the recording in %s: %w", tmp.Name(), err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			return nil, fail(rerr)
		}
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, err
	}
	return &tempFile{tmp}, nil
}

// tempFile is a temporary file removed when closed.
type tempFile struct{ *os.File }

func (t *tempFile) Close() error {
	err := t.File.Close()
	os.Remove(t.Name())
	return err
}

// readKeys reads the keys typed on in, one byte at a time on the channel,
// until stop. A read that holds an escape sequence (arrows, mouse reports)
// is ignored. The reading goroutine ends at the read after stop: as with
// tether shell, the process is expected to end soon after.
func readKeys(in io.Reader) (keys <-chan byte, stop func()) {
	ch := make(chan byte, 16)
	done := make(chan struct{})
	go func() {
		defer close(ch)
		buf := make([]byte, 64)
		for {
			n, err := in.Read(buf)
			if n > 0 && !strings.ContainsRune(string(buf[:n]), 0x1b) {
				for _, b := range buf[:n] {
					select {
					case ch <- b:
					case <-done:
						return
					}
				}
			}
			if err != nil {
				return
			}
			select {
			case <-done:
				return
			default:
			}
		}
	}()
	var once sync.Once
	return ch, func() { once.Do(func() { close(done) }) }
}

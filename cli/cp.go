package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	terminal "github.com/tetherhq/tether/pty/term"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/files"
	"github.com/tetherhq/tether/transport/wire"
)

type cpOptions struct {
	g                             *globalOptions
	recursive, resume, noCompress bool
	compress                      bool
	retries                       int
	src, dst                      string
}

func newCPCommand(g *globalOptions) *cobra.Command {
	o := &cpOptions{g: g}
	cmd := &cobra.Command{
		Use:   "cp [-r] [-z] [--resume] [--no-compress] SRC DST",
		Short: "Copy files and directories to or from a device",
		Long: `Copy a file or a directory between this machine and a device. One of SRC and
DST is DEVICE:/absolute/path, the other a local path.

A single file moves as raw bytes (gzip-compressed on the wire with -z),
checked end to end with SHA-256, and the
device writes an upload to a temporary file that it renames over the target
once the checksum matches: the target is never seen half-written. A
directory (with -r) moves as a tar archive, gzip-compressed unless
--no-compress. When DST is an existing directory, SRC is copied into it.

With --resume, a file transfer that is cut (the network, the edge)
continues where it stopped, on a new connection (up to --retries times),
and a later run continues a partial one: downloads keep DST.tether-part
next to the target, uploads a partial file on the device. A file that
changed on the device since the partial download started is fetched again
from the start. Directories are not resumed: run the command again.

A device whose agent does not know the extension (a qbee-v1 agent) gets
plain tar+gzip, without resume or checksums; the command says so.

A progress bar (bytes, rate, time left) shows on stderr when it is a
terminal. A checksum mismatch exits 9.`,
		Example: `  # Fetch a log from device d1
  tether cp d1:/var/log/syslog ./d1-syslog

  # Push a firmware image, resuming if the link drops
  tether cp --resume ./fw-2.1.img d1:/data/firmware/

  # Copy a directory of compressed files without gzip
  tether cp -r --no-compress d1:/var/log/archive ./archive`,
		Args: argsUsage(cobra.ExactArgs(2), "tether cp [-r] [-z] [--resume] [--no-compress] SRC DST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.src, o.dst = args[0], args[1]
			return o.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.recursive, "recursive", "r", false, "copy directories, recursively")
	f.BoolVar(&o.resume, "resume", false, "continue a cut or partial transfer, retrying on a new connection")
	f.BoolVar(&o.noCompress, "no-compress", false, "send directories without gzip (for files that are compressed already)")
	f.BoolVarP(&o.compress, "compress", "z", false, "gzip a single file on the wire (a compressible file on a slow link)")
	f.IntVar(&o.retries, "retries", 10, "with --resume, how many times to reconnect after a cut")
	return cmd
}

// splitRemote parses DEVICE:/path. A local path may hold ':' after a '/'
// ("./a:b"), never before it.
func splitRemote(s string) (device, path string, remote bool) {
	i := strings.IndexByte(s, ':')
	if i <= 0 || strings.Contains(s[:i], "/") {
		return "", s, false
	}
	return s[:i], s[i+1:], true
}

func (o *cpOptions) run(ctx context.Context) error {
	sdev, spath, sremote := splitRemote(o.src)
	ddev, dpath, dremote := splitRemote(o.dst)
	switch {
	case sremote && dremote:
		return usageErrorf("both %s and %s name a device; copy between devices through this machine", o.src, o.dst)
	case !sremote && !dremote:
		return usageErrorf("neither %s nor %s names a device; write one as DEVICE:/absolute/path", o.src, o.dst)
	case o.retries < 0:
		return usageErrorf("--retries must not be negative")
	}
	device, remote, local, upload := sdev, spath, dpath, false
	if dremote {
		device, remote, local, upload = ddev, dpath, spath, true
	}
	remote = wire.TrimFilePath(remote)
	if err := files.CheckPath(remote); err != nil {
		return usageErrorf("%s: %s", device+":"+remote, strings.TrimPrefix(err.Error(), files.ErrBadRequest.Error()+": "))
	}
	if upload {
		fi, err := os.Stat(local)
		if err != nil {
			return fmt.Errorf("%s: %w", local, errors.Unwrap(err))
		}
		if fi.IsDir() && !o.recursive {
			return usageErrorf("%s is a directory; use -r to copy it", local)
		}
	}
	conn, err := o.g.prepare(device)
	if err != nil {
		return err
	}
	bar := o.progress(filepath.Base(remote))
	legacyNoted := false
	started := false  // a device answered once: later failures are cuts
	resumable := true // false once a transfer ran as a tar archive, which starts over
	fopts := &files.FileOptions{Resume: o.resume, NoGzip: o.noCompress, Gzip: o.compress, Limits: files.Limits{UID: -1, GID: -1, Umask: umask()},
		Start: func(i files.Info) error {
			started, resumable = true, i.Raw
			if i.Legacy && !legacyNoted {
				legacyNoted = true
				o.g.notice("device %s does not support resume or checksums (its agent speaks plain qbee-v1); copying as tar+gzip", device)
			}
			if !upload && !i.Raw && !i.Legacy && !o.recursive {
				return usageErrorf("%s:%s is a directory; use -r to copy it", device, remote)
			}
			if bar != nil {
				bar.reset(i)
			}
			return nil
		}}
	if bar != nil {
		fopts.Progress = bar.add
	}
	attempts := 1
	if o.resume {
		attempts += o.retries
	}
	for attempt := 1; ; attempt++ {
		err = o.once(ctx, conn, upload, remote, local, fopts)
		if err == nil {
			break
		}
		if attempt >= attempts || !started || !retryable(err) || !resumable || ctx.Err() != nil {
			if !resumable && o.resume && retryable(err) {
				o.g.notice("directories and transfers with an agent that speaks plain qbee-v1 are not resumed; run the command again to copy it whole")
			}
			if bar != nil {
				bar.stop()
			}
			return cpError(err)
		}
		o.g.notice("the transfer was cut (%v); resuming, attempt %d of %d", cutReason(err), attempt+1, attempts)
		select {
		case <-time.After(time.Duration(min(attempt, 10)) * 500 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if bar != nil {
		bar.finish()
	}
	return nil
}

func (o *cpOptions) once(ctx context.Context, conn *connection, upload bool, remote, local string, fopts *files.FileOptions) error {
	cl, err := conn.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	if upload {
		_, err = files.UploadFile(ctx, cl, local, remote, fopts)
	} else {
		_, err = files.DownloadFile(ctx, cl, remote, local, fopts)
	}
	return err
}

// retryable reports a transfer cut by the network or the edge, which
// --resume continues on a new connection.
func retryable(err error) bool {
	var (
		ne net.Error
		ue *usageError
		se *transport.StatusError
		re *wire.RemoteError
	)
	switch {
	case errors.As(err, &ue), errors.As(err, &se), errors.As(err, &re), errors.Is(err, files.ErrChecksum),
		errors.Is(err, context.Canceled):
		return false
	}
	return errors.Is(err, transport.ErrConnLost) || errors.Is(err, transport.ErrStreamReset) ||
		errors.Is(err, transport.ErrSessionClosed) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, wire.ErrTruncated) || errors.Is(err, files.ErrFrame) || errors.As(err, &ne)
}

func cutReason(err error) string {
	var re *transport.ResetError
	if errors.As(err, &re) && re.Reason != "" {
		return re.Reason
	}
	if errors.Is(err, transport.ErrConnLost) {
		return "the connection to the edge was lost"
	}
	return err.Error()
}

// cpError maps a transfer's error to the command's exit classes.
func cpError(err error) error {
	switch {
	case errors.Is(err, files.ErrChecksum):
		return &exitError{code: ExitChecksum, err: fmt.Errorf("%v; the copy was discarded, run the command again", err)}
	case errors.Is(err, files.ErrNoFinalAnswer):
		return &exitError{code: ExitRemote, err: err}
	case errors.Is(err, transport.ErrConnLost):
		return errSessionLost
	case errors.Is(err, transport.ErrStreamReset):
		return streamReset(err)
	}
	return err
}

// cpProgress is the progress bar on a terminal's stderr. It redraws at
// most every progressEvery (the bar's own throttle could swallow the final
// state of a short transfer).
type cpProgress struct {
	bar     *progressbar.ProgressBar
	out     io.Writer
	pending int
	last    time.Time
}

const progressEvery = 100 * time.Millisecond

// progress returns a bar when stderr is a terminal, else nil.
func (o *cpOptions) progress(name string) *cpProgress {
	f, ok := o.g.io.ErrOut.(*os.File)
	if !ok || !terminal.IsTerminal(int(f.Fd())) {
		return nil
	}
	bar := progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(f),
		progressbar.OptionSetDescription(name),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetRenderBlankState(true),
	)
	return &cpProgress{bar: bar, out: f}
}

func (p *cpProgress) reset(i files.Info) {
	p.pending = 0
	p.bar.Reset()
	if i.Raw {
		p.bar.ChangeMax64(i.Size)
		_ = p.bar.Set64(i.Offset)
	} else {
		p.bar.ChangeMax64(-1)
	}
}

func (p *cpProgress) add(n int) {
	p.pending += n
	if now := time.Now(); now.Sub(p.last) >= progressEvery {
		_ = p.bar.Add(p.pending)
		p.pending, p.last = 0, now
	}
}

func (p *cpProgress) finish() { _ = p.bar.Finish() }

func (p *cpProgress) stop() {
	_ = p.bar.Exit()
	fmt.Fprintln(p.out)
}

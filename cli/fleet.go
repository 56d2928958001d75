package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"

	"github.com/tetherhq/tether/pty"
	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/client"
	"github.com/tetherhq/tether/transport/labels"
)

// This file is tether exec on a fleet: one command on every connected
// device that a glob of IDs or a label selector picks, at most --parallel
// at once, as pdsh and ansible's ad-hoc commands run one. Each line of a
// device's output comes out prefixed with its ID.

// fleetLineMax bounds the partial line a device's output holds back: a
// longer run without a newline goes out as a line of its own.
const fleetLineMax = 64 << 10

// isFleet reports whether the words after the flags pick devices rather
// than name one: a glob (device IDs never hold * ? [ or \), or a selector.
func (o *shellOptions) isFleet() bool {
	return o.selector != "" || strings.ContainsAny(o.device, `*?[\`)
}

// fleetOutputMax bounds what -o json or yaml keeps of each stream of
// each device's output.
const fleetOutputMax = 64 << 10

// fleetResult is how the command ended on one device.
type fleetResult struct {
	device string
	code   int
	msg    string // what went wrong, when it did not run to its end

	stdout, stderr *capBuffer // -o json or yaml
}

// fleetRecord is a device's result in -o json or yaml.
type fleetRecord struct {
	Device   string `json:"device" yaml:"device"`
	ExitCode int    `json:"exit_code" yaml:"exit_code"`
	Stdout   string `json:"stdout" yaml:"stdout"`
	Stderr   string `json:"stderr" yaml:"stderr"`
	// Truncated: stdout or stderr was longer than fleetOutputMax.
	Truncated bool   `json:"truncated,omitempty" yaml:"truncated,omitempty"`
	Error     string `json:"error,omitempty" yaml:"error,omitempty"`
}

// fleetFormats are the values of tether exec -o.
var fleetFormats = []string{"text", "json", "yaml"}

// runFleet runs the command on every connected device o.device (a glob,
// or empty) and o.selector pick. tether exits with the highest of the
// devices' codes; a summary of those that failed goes to stderr.
func (o *shellOptions) runFleet(ctx context.Context) error {
	command := strings.Join(o.words, " ")
	switch {
	case strings.TrimSpace(command) == "":
		return usageErrorf("no command to run; usage: tether exec -l SELECTOR [PATTERN] -- COMMAND...")
	case o.parallel < 1:
		return usageErrorf("--parallel must be at least 1")
	case !contains(fleetFormats, o.output):
		return usageErrorf("unknown output format %q: use -o with one of %s", o.output, strings.Join(fleetFormats, ", "))
	}
	structured := o.output != "text"
	if _, err := path.Match(o.device, ""); err != nil {
		return usageErrorf("pattern %q: %v: use * for any run of characters, ? for one, [a-z] for a class", o.device, err)
	}
	if _, err := labels.ParseSelector(o.selector); err != nil {
		return usageErrorf("-l: %v", strings.TrimPrefix(err.Error(), labels.ErrSyntax.Error()+": "))
	}
	s, err := o.g.settings()
	if err != nil {
		return err
	}
	if err := s.requireEdge(); err != nil {
		return err
	}
	tc, err := tlsConfig(s)
	if err != nil {
		return err
	}
	notice := func(n string) { fmt.Fprintf(o.g.io.ErrOut, "tether: warning: %s\n", sanitizeReason(n)) }
	devs, err := fetchDevices(ctx, s, o.g.timeout, client.DevicesOptions{Status: client.StatusOnline, Match: o.device, Labels: o.selector, Notice: notice})
	if err != nil {
		return err
	}
	devs = selectDevices(devs, client.StatusOnline, o.device)
	if sel, _ := labels.ParseSelector(o.selector); len(sel) > 0 {
		devs = selectLabels(devs, sel)
	}
	if len(devs) == 0 {
		return &exitError{code: ExitOffline, err: fmt.Errorf("no connected device matches %s; see tether devices", o.fleetWhat())}
	}

	var outMu, errMu sync.Mutex
	results := make([]fleetResult, len(devs))
	slots := make(chan struct{}, o.parallel)
	var wg sync.WaitGroup
	for i, d := range devs {
		wg.Go(func() {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				results[i] = fleetResult{device: d.ID, code: ExitInterrupted, msg: "interrupted"}
				return
			}
			defer func() { <-slots }()
			r := fleetResult{device: d.ID}
			var stdout, stderr io.Writer
			if structured {
				r.stdout, r.stderr = &capBuffer{}, &capBuffer{}
				stdout, stderr = r.stdout, r.stderr
			} else {
				po := &linePrefixer{w: o.g.io.Out, mu: &outMu, prefix: d.ID + ": "}
				pe := &linePrefixer{w: o.g.io.ErrOut, mu: &errMu, prefix: d.ID + ": "}
				defer po.flush()
				defer pe.flush()
				stdout, stderr = po, pe
			}
			conn := &connection{settings: s, tls: tc, device: d.ID, log: o.g.logger(), cfg: &transport.Config{HandshakeTimeout: o.g.timeout}}
			dctx, cancel := o.withTimeout(ctx)
			code, err := execOnce(dctx, conn, command, stdout, stderr)
			cancel()
			r.code = code
			switch {
			case err != nil && timedOut(dctx):
				r.code, r.msg = ExitTimeout, fmt.Sprintf("timed out after %v (--timeout); the command was hung up", o.timeout)
			case err != nil:
				r.code, r.msg = describe(err, msgContext{s.Edge, d.ID, s.TokenFrom, s.CA})
			}
			results[i] = r
		})
	}
	wg.Wait()
	if structured {
		return o.printFleet(ctx, results)
	}

	worst, failed := 0, 0
	for _, r := range results {
		worst = max(worst, r.code)
		switch {
		case r.msg != "":
			failed++
			fmt.Fprintf(o.g.io.ErrOut, "tether: %s: %s\n", r.device, termSafe(r.msg))
		case r.code != 0:
			failed++
			fmt.Fprintf(o.g.io.ErrOut, "tether: %s: exit %d\n", r.device, r.code)
		}
	}
	if failed > 0 {
		fmt.Fprintf(o.g.io.ErrOut, "tether: failed on %d of %d devices\n", failed, len(devs))
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if worst != 0 {
		return &exitError{code: worst}
	}
	return nil
}

// printFleet prints the results in -o json or yaml, device by device,
// and returns the exit of the run.
func (o *shellOptions) printFleet(ctx context.Context, results []fleetResult) error {
	recs := make([]fleetRecord, 0, len(results))
	worst := 0
	for _, r := range results {
		worst = max(worst, r.code)
		rec := fleetRecord{Device: r.device, ExitCode: r.code, Error: r.msg}
		if r.stdout != nil {
			rec.Stdout = strings.ToValidUTF8(r.stdout.b.String(), "\uFFFD")
			rec.Stderr = strings.ToValidUTF8(r.stderr.b.String(), "\uFFFD")
			rec.Truncated = r.stdout.cut || r.stderr.cut
		}
		recs = append(recs, rec)
	}
	if err := printStructured(o.g.io.Out, o.output, recs, len(recs)); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if worst != 0 {
		return &exitError{code: worst}
	}
	return nil
}

// capBuffer keeps the first fleetOutputMax bytes written to it.
type capBuffer struct {
	b   bytes.Buffer
	cut bool // more was written
}

func (c *capBuffer) Write(p []byte) (int, error) {
	room := fleetOutputMax - c.b.Len()
	if len(p) > room {
		c.b.Write(p[:max(room, 0)])
		c.cut = true
		return len(p), nil
	}
	c.b.Write(p)
	return len(p), nil
}

// fleetWhat names the devices the fleet picks, for messages.
func (o *shellOptions) fleetWhat() string {
	switch {
	case o.device != "" && o.selector != "":
		return fmt.Sprintf("'%s' with labels '%s'", o.device, o.selector)
	case o.device != "":
		return fmt.Sprintf("'%s'", o.device)
	}
	return fmt.Sprintf("labels '%s'", o.selector)
}

// execOnce runs command on conn's device without a terminal and with
// nothing on its stdin, and returns its exit code.
func execOnce(ctx context.Context, conn *connection, command string, stdout, stderr io.Writer) (int, error) {
	cl, err := conn.dial(ctx)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	sess, err := pty.Exec(ctx, cl, command)
	if err != nil {
		return 0, err
	}
	defer sess.Close()
	if err := sess.CloseWrite(); err != nil {
		return 0, err
	}
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()
	st, err := sess.Wait(stdout, stderr)
	switch {
	case ctx.Err() != nil:
		return 0, ctx.Err()
	case err != nil && lost(cl):
		return 0, &exitError{code: ExitLost, err: errSessionLost}
	case err != nil:
		return 0, err
	}
	return st.Code, nil
}

// linePrefixer writes what a device sends to w, a line at a time, each
// after prefix; mu keeps the lines of all the devices on w whole.
type linePrefixer struct {
	w      io.Writer
	mu     *sync.Mutex
	prefix string
	buf    []byte // a line not yet ended
}

func (p *linePrefixer) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 || len(p.buf)+i+1 > fleetLineMax {
			// No end of line within the bound: hold what fits, and send
			// a full piece as a line.
			room := fleetLineMax - len(p.buf)
			if len(b) < room {
				p.buf = append(p.buf, b...)
				break
			}
			p.buf = append(p.buf, b[:room]...)
			b = b[room:]
			p.flush()
			continue
		}
		p.buf = append(p.buf, b[:i+1]...)
		p.emit()
		b = b[i+1:]
	}
	return n, nil
}

// flush ends a line the device did not end.
func (p *linePrefixer) flush() {
	if len(p.buf) > 0 {
		p.buf = append(p.buf, '\n')
		p.emit()
	}
}

func (p *linePrefixer) emit() {
	line := make([]byte, 0, len(p.prefix)+len(p.buf))
	line = append(append(line, p.prefix...), p.buf...)
	p.buf = p.buf[:0]
	p.mu.Lock()
	defer p.mu.Unlock()
	_, _ = p.w.Write(line) // a closed stdout ends nothing else; the exit code says how the command ended
}

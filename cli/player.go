package cli

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/tetherhq/tether/internal/asciicast"
)

// errQuit: the viewer pressed q.
var errQuit = errors.New("quit")

// Keys of tether play.
const (
	keyPause = ' '
	keyStep  = '.'
	keyQuit  = 'q'
	keyCtrlC = 0x03
	keyCtrlD = 0x04
)

// clock is the time a player waits on; tests pass their own.
type clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// player replays the events of a recording: output to out at their time,
// scaled by speed, with pauses capped at idle.
type player struct {
	out    io.Writer
	flush  func() error // after each timed step; nil: nothing to flush
	notice func(format string, args ...any)
	speed  float64       // > 0
	idle   time.Duration // longest pause; 0: the header's idle_time_limit, else none
	cat    bool          // no timing at all
	clock  clock
	// keys are the viewer's keys (nil: none).
	keys <-chan byte
	// size is the local terminal's size; ok is false when there is none.
	size func() (cols, rows int, ok bool)

	start   time.Time // when virtual time 0 is, moved on by pauses
	paused  bool
	noticed map[[2]int]bool // terminal sizes already reported as too large
}

// play replays what dec holds after its header.
func (p *player) play(ctx context.Context, dec *asciicast.Decoder) error {
	hdr, err := dec.Header()
	if err != nil {
		return err
	}
	idle := p.idle
	if idle == 0 && dec.IdleTimeLimit() > 0 {
		idle = seconds(dec.IdleTimeLimit())
	}
	p.checkSize(hdr.Width, hdr.Height)
	p.start = p.clock.Now()
	var at time.Duration // virtual time of the next event, from the start
	last := 0.0          // recorded time of the last event shown
	for {
		ev, err := dec.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if ev.Code != asciicast.Output && ev.Code != asciicast.Resize {
			continue // input, markers and unknown codes show nothing
		}
		if !p.cat {
			at += p.delay(ev.Time-last, idle)
			if ev.Time > last {
				last = ev.Time
			}
			if err := p.waitUntil(ctx, at); err != nil {
				return err
			}
		} else if err := ctx.Err(); err != nil {
			return err
		}
		switch ev.Code {
		case asciicast.Output:
			if _, err := io.WriteString(p.out, ev.Data); err != nil {
				return err
			}
			if !p.cat && p.flush != nil {
				if err := p.flush(); err != nil {
					return err
				}
			}
		case asciicast.Resize:
			if cols, rows, err := asciicast.ParseResize(ev.Data); err == nil {
				p.checkSize(cols, rows)
			}
		}
	}
}

// delay is how long a gap of the recording (seconds) lasts in the
// replay: at most idle (when not zero), divided by the speed.
func (p *player) delay(gap float64, idle time.Duration) time.Duration {
	if gap <= 0 {
		return 0
	}
	d := seconds(gap)
	if idle > 0 && d > idle {
		d = idle
	}
	return time.Duration(float64(d) / p.speed)
}

// seconds converts seconds to a Duration, saturating at about 292 years.
func seconds(s float64) time.Duration {
	if s >= float64(1<<63-1)/float64(time.Second) {
		return time.Duration(1<<63 - 1)
	}
	return time.Duration(s * float64(time.Second))
}

// waitUntil waits until virtual time at, taking the viewer's keys.
func (p *player) waitUntil(ctx context.Context, at time.Duration) error {
	for {
		if p.paused {
			step, err := p.pause(ctx, at)
			if err != nil || step {
				return err
			}
			continue
		}
		// A key typed before the time came is taken first.
		select {
		case k, ok := <-p.keys:
			if err := p.key(k, ok); err != nil {
				return err
			}
			continue
		default:
		}
		d := p.start.Add(at).Sub(p.clock.Now())
		if d <= 0 {
			return ctx.Err()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.clock.After(d):
		case k, ok := <-p.keys:
			if err := p.key(k, ok); err != nil {
				return err
			}
		}
	}
}

// key takes a key typed while playing.
func (p *player) key(k byte, ok bool) error {
	if !ok {
		p.keys = nil // stdin ended: play on
		return nil
	}
	switch k {
	case keyPause:
		p.paused = true
	case keyQuit, keyCtrlD:
		return errQuit
	case keyCtrlC:
		return context.Canceled
	}
	return nil
}

// pause waits, paused, for the key that resumes (space) or steps (.); the
// time spent paused moves the start on. step reports a step: the next
// event shows now, and the player stays paused.
func (p *player) pause(ctx context.Context, at time.Duration) (step bool, err error) {
	since := p.clock.Now()
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case k, ok := <-p.keys:
			switch {
			case !ok:
				p.keys = nil
				p.paused = false
			case k == keyPause:
				p.paused = false
			case k == keyStep:
				p.start = p.clock.Now().Add(-at)
				return true, nil
			case k == keyQuit || k == keyCtrlD:
				return false, errQuit
			case k == keyCtrlC:
				return false, context.Canceled
			default:
				continue
			}
			p.start = p.start.Add(p.clock.Now().Sub(since))
			return false, nil
		}
	}
}

// checkSize tells the viewer, once per size, that the recorded terminal
// is larger than the local one.
func (p *player) checkSize(cols, rows int) {
	if cols <= 0 || rows <= 0 || p.notice == nil {
		return
	}
	lc, lr, ok := p.size()
	if !ok || (cols <= lc && rows <= lr) {
		return
	}
	if p.noticed == nil {
		p.noticed = make(map[[2]int]bool)
	}
	if p.noticed[[2]int{cols, rows}] {
		return
	}
	p.noticed[[2]int{cols, rows}] = true
	p.notice("the recorded terminal is %dx%d, larger than this one (%dx%d): lines may wrap; enlarge the window to see it as it was", cols, rows, lc, lr)
}

package transport

import (
	"errors"
	"time"

	"github.com/xtaci/smux"
)

// An open that smux gives up on leaves its SYN behind. smux's OpenStream
// queues the SYN and waits at most 30 s for its send loop to write it;
// on a connection that does not drain, it then forgets the stream and
// fails, but the SYN stays queued and goes out once the connection moves
// again. The peer then holds a stream that nobody on this side will ever
// use, and the policer an entry for it that nothing would remove, with
// its window counted against the session's receive budget.
//
// So an open that failed that way is counted (openFailed). While any is,
// the failure and each SYN we send arm a timer (reap): a stream of ours
// that no Stream has bound reapGrace after its SYN went out is one of
// them, since Open binds its stream as soon as smux has sent the SYN.
// The timer drops its accounting and ends it for the peer, after its SYN:
// with a reset where the peer takes one, a FIN otherwise.

// abandonGrace is how long after its SYN went out a stream of ours may
// stay unbound before it counts as abandoned. A live open binds its
// stream a moment after; the grace covers a process stalled that long.
const abandonGrace = 10 * time.Second

// reasonAbandoned is the reset reason of a stream whose open was given up.
const reasonAbandoned = "the opener gave up before its stream was open: its connection was not draining"

// openFailed notes why smux's OpenStream failed: a timeout leaves the SYN
// queued (see above).
func (c *frameConn) openFailed(err error) {
	if errors.Is(err, smux.ErrTimeout) {
		c.abandoned.Add(1)
		c.armReap(c.reapGrace)
	}
}

// sentSYN runs once our SYN for stream sid went out, or is held to go out
// before any later frame.
func (c *frameConn) sentSYN(sid uint32) {
	c.pol.synSent(sid)
	if c.abandoned.Load() > 0 {
		c.armReap(c.reapGrace)
	}
}

// armReap makes sure a reap runs within d.
func (c *frameConn) armReap(d time.Duration) {
	c.reapMu.Lock()
	defer c.reapMu.Unlock()
	switch {
	case c.reapStopped:
	case c.reapT == nil:
		c.reapT = time.AfterFunc(d, c.reap)
	case !c.reapArmed:
		c.reapT.Reset(d)
	default:
		return
	}
	c.reapArmed = !c.reapStopped
}

// reap ends the abandoned streams (see above) and runs again while a
// young unbound stream of ours may be one.
func (c *frameConn) reap() {
	c.reapMu.Lock()
	c.reapArmed = false
	c.reapMu.Unlock()
	reaped, next := c.pol.reapUnbound(c.reapGrace)
	for _, r := range reaped {
		if n := c.abandoned.Add(-1); n < 0 {
			c.abandoned.CompareAndSwap(n, 0)
		}
		if r.open {
			c.sendAbandonedEnd(r.sid)
		}
	}
	if next > 0 && c.abandoned.Load() > 0 {
		c.armReap(next)
	}
}

// stopReap stops the reap timer for good.
func (c *frameConn) stopReap() {
	c.reapMu.Lock()
	defer c.reapMu.Unlock()
	c.reapStopped = true
	if c.reapT != nil {
		c.reapT.Stop()
	}
}

// sendAbandonedEnd ends an abandoned stream for the peer. Like
// sendClosedReset it leaves no mark in finSent: smux knows nothing of the
// stream and sends no FIN for it that the mark would drop.
func (c *frameConn) sendAbandonedEnd(sid uint32) {
	frame := endFrame(smuxCmdFIN, sid, "")
	if c.peer.reset {
		frame = endFrame(cmdRST, sid, reasonAbandoned)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr == nil {
		_, _ = c.writeLocked(frame, nil)
	}
}

package udp

import (
	"sync"
	"sync/atomic"
	"time"
)

// maxReplyPorts caps the ports, besides the authorized one, that a tunnel
// may send to: the source ports of the target's most recent answers from
// other ports. A ninth such port makes the tunnel forget the oldest.
const maxReplyPorts = 8

// replyPorts is the set of the target's source ports, other than the
// authorized port, that a tunnel has relayed answers from: at most
// maxReplyPorts, the oldest forgotten first. One goroutine learns
// (socketToStream); any goroutine may ask. Every slot is an atomic, so an
// asker sees each slot either before or after a change, never torn.
type replyPorts struct {
	slots [maxReplyPorts]atomic.Uint32 // a port, or 0 for an empty slot
	next  int                          // the slot learn fills next; learner only
}

// learn adds port, replacing the oldest when the set is full. Only one
// goroutine may call it. Port 0 is never learned.
func (s *replyPorts) learn(port uint16) {
	if port == 0 || s.has(port) {
		return
	}
	s.slots[s.next].Store(uint32(port))
	s.next = (s.next + 1) % maxReplyPorts
}

// has reports whether port was learned and not forgotten since.
func (s *replyPorts) has(port uint16) bool {
	if port == 0 {
		return false
	}
	for i := range s.slots {
		if s.slots[i].Load() == uint32(port) {
			return true
		}
	}
	return false
}

// meterSlots is how many parts a reply meter's window rolls in.
const meterSlots = 10

// replyMeter caps the bytes a tunnel relays from its target against the
// bytes it sends to it: over the rolling window, replies may total at most
// ratio × requests + allowance. The window rolls in meterSlots parts, so at
// any moment it holds the current part and the meterSlots-1 before it
// (between 9/10 of the window and the whole of it). Bytes are datagram
// payload bytes. The two relay goroutines share it under mu.
type replyMeter struct {
	ratio     int64
	allowance int64
	part      time.Duration // window / meterSlots
	start     time.Time

	mu sync.Mutex
	// mu guards the following.
	cur      int64             // parts since start of the newest part
	req, rep [meterSlots]int64 // bytes per part; part i is at i % meterSlots
	reqSum   int64             // sum of req
	repSum   int64             // sum of rep
}

// newReplyMeter returns a meter, or nil (no cap) for a negative ratio.
// ratio, window and allowance are already defaulted; a negative allowance
// means none.
func newReplyMeter(ratio int, window time.Duration, allowance int, now time.Time) *replyMeter {
	if ratio < 0 {
		return nil
	}
	return &replyMeter{
		ratio:     int64(ratio),
		allowance: int64(max(allowance, 0)),
		part:      max(window/meterSlots, time.Nanosecond),
		start:     now,
	}
}

// advanceLocked drops the parts that fell out of the window at now.
func (m *replyMeter) advanceLocked(now time.Time) {
	idx := int64(now.Sub(m.start) / m.part)
	if idx <= m.cur {
		return
	}
	if idx-m.cur >= meterSlots {
		m.req, m.rep = [meterSlots]int64{}, [meterSlots]int64{}
		m.reqSum, m.repSum = 0, 0
		m.cur = idx
		return
	}
	for m.cur < idx {
		m.cur++
		i := m.cur % meterSlots
		m.reqSum -= m.req[i]
		m.repSum -= m.rep[i]
		m.req[i], m.rep[i] = 0, 0
	}
}

// request counts n bytes sent to the target at now.
func (m *replyMeter) request(now time.Time, n int) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.advanceLocked(now)
	m.req[m.cur%meterSlots] += int64(n)
	m.reqSum += int64(n)
}

// reply counts n bytes from the target at now and reports whether they
// stay within the cap. Bytes over the cap are not counted: the caller
// drops them and ends the tunnel.
func (m *replyMeter) reply(now time.Time, n int) bool {
	if m == nil {
		return true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.advanceLocked(now)
	// replies ≤ ratio × requests + allowance, without overflowing: the
	// excess over the allowance, divided by the ratio and rounded up, must
	// not exceed the requests.
	over := m.repSum + int64(n) - m.allowance
	if over > 0 && (m.ratio == 0 || (over+m.ratio-1)/m.ratio > m.reqSum) {
		return false
	}
	m.rep[m.cur%meterSlots] += int64(n)
	m.repSum += int64(n)
	return true
}

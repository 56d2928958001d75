package edge

import (
	"crypto/x509"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetherhq/tether/transport"
)

// Device is a connected device session held by this edge.
type Device struct {
	// ID is the device ID (the certificate's Subject CN).
	ID string
	// Serial is the certificate serial in lowercase hex.
	Serial string
	// Since is when the session was established.
	Since time.Time
	// RemoteAddr is the device's network address.
	RemoteAddr net.Addr
	// Agent is what the device said about itself at connect, cleaned
	// (transport.ParseAgentInfo); for display only.
	Agent transport.AgentInfo
	// Labels are the labels of the device's certificate (URI SANs
	// tether://label/k=v); the edge's labels file adds to them
	// (LabelDevice). Never what the agent says.
	Labels map[string]string

	sess     *transport.Session
	notAfter time.Time    // the certificate's end of validity
	streams  atomic.Int64 // edge-opened streams in use, GoAway included
	// chain is the certificate chain the device presented, and ca the
	// device CA it was verified against; a new device CA checks it again.
	chain []*x509.Certificate
	ca    *x509.CertPool
	// maxStreams is the edge's cap on the device's streams, no higher than
	// what the device said it serves; share is one client's part of it.
	maxStreams, share int
	// nonce names this session in the cluster's presence; rev is the
	// revision of its record there (0 until announced). takeover is set
	// when the session replaced a live one of the same ID.
	nonce          string
	rev            atomic.Uint64
	announced      atomic.Int64 // unix nanoseconds of the last announcement
	announceFailed atomic.Bool  // the last announcement failed (logged once)
	announcing     atomic.Bool  // an announcement is in flight
	takeover       bool

	closeMu sync.Mutex
	// closeMu guards the following.
	closeReason string

	clientMu sync.Mutex
	// clientMu guards the following.
	clientStreams map[string]int // streams in use by client name
}

// Streams returns the number of streams open to the device.
func (d *Device) Streams() int { return int(d.streams.Load()) }

// takeClientSlot counts a stream of client unless the client already has
// share open; it reports whether it did. releaseClientSlot undoes it.
func (d *Device) takeClientSlot(client string, share int) bool {
	d.clientMu.Lock()
	defer d.clientMu.Unlock()
	if d.clientStreams[client] >= share {
		return false
	}
	if d.clientStreams == nil {
		d.clientStreams = make(map[string]int)
	}
	d.clientStreams[client]++
	return true
}

func (d *Device) releaseClientSlot(client string) {
	d.clientMu.Lock()
	defer d.clientMu.Unlock()
	if d.clientStreams[client]--; d.clientStreams[client] <= 0 {
		delete(d.clientStreams, client)
	}
}

// close ends the session, recording the first reason given.
func (d *Device) close(reason string) {
	d.closeMu.Lock()
	if d.closeReason == "" {
		d.closeReason = reason
	}
	d.closeMu.Unlock()
	d.sess.Close()
}

func (d *Device) reason() string {
	d.closeMu.Lock()
	defer d.closeMu.Unlock()
	if d.closeReason == "" {
		return "session ended"
	}
	return d.closeReason
}

// Registry tracks the connected devices by ID.
//
// The rule for a second connection with an ID already connected: the newer
// connection wins. Register returns the older Device and the edge closes it
// and audits the replacement. A device that reconnects after a network
// change so takes over at once, without waiting for the old session's
// keep-alive to expire; two live sessions for one ID never coexist.
//
// A registry shared by several edges would keep which edge holds each ID;
// this interface is the part one edge needs. Implementations must be safe
// for concurrent use.
type Registry interface {
	// Register makes d the device for d.ID and returns the device it
	// replaced, if any.
	Register(d *Device) (replaced *Device)
	// Unregister removes d if it is still the device for d.ID, and reports
	// whether it was.
	Unregister(d *Device) bool
	// Lookup returns the device connected under id.
	Lookup(id string) (*Device, bool)
	// List returns the connected devices sorted by ID.
	List() []*Device
}

// MemoryRegistry is the in-memory Registry of a single edge. The zero value
// is ready to use.
type MemoryRegistry struct {
	mu sync.RWMutex
	// mu guards the following.
	devices map[string]*Device
}

// Register implements Registry.
func (r *MemoryRegistry) Register(d *Device) *Device {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.devices == nil {
		r.devices = make(map[string]*Device)
	}
	old := r.devices[d.ID]
	r.devices[d.ID] = d
	return old
}

// Unregister implements Registry.
func (r *MemoryRegistry) Unregister(d *Device) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.devices[d.ID] != d {
		return false
	}
	delete(r.devices, d.ID)
	return true
}

// Lookup implements Registry.
func (r *MemoryRegistry) Lookup(id string) (*Device, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	d, ok := r.devices[id]
	return d, ok
}

// List implements Registry.
func (r *MemoryRegistry) List() []*Device {
	r.mu.RLock()
	out := make([]*Device, 0, len(r.devices))
	for _, d := range r.devices {
		out = append(out, d)
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tetherhq/tether/transport"
)

// MaxDevicesBody bounds the edge's answer to GET /api/devices.
const MaxDevicesBody = 32 << 20

// Device statuses, in Device.Status and DevicesOptions.Status.
const (
	StatusOnline  = "online"
	StatusOffline = "offline"
	StatusAll     = "all" // DevicesOptions only
)

// Device is one device of the edge's list (GET /api/devices, docs/api.md).
type Device struct {
	// ID is the device ID.
	ID string `json:"id" yaml:"id"`
	// Status is StatusOnline or StatusOffline.
	Status string `json:"status" yaml:"status"`
	// ConnectedSince is when its session began; online devices only.
	ConnectedSince *time.Time `json:"connected_since,omitempty" yaml:"connected_since,omitempty"`
	// LastSeen is when its session ended; offline devices only.
	LastSeen *time.Time `json:"last_seen,omitempty" yaml:"last_seen,omitempty"`
	// RemoteAddr is its address as its edge saw it.
	RemoteAddr string `json:"remote_addr" yaml:"remote_addr"`
	// Streams is how many streams are open to it, counted on the edge
	// that answered; zero for the devices of other edges.
	Streams int `json:"streams" yaml:"streams"`
	// Edge is the ID of the edge that holds (or held) it, in a cluster.
	Edge string `json:"edge,omitempty" yaml:"edge,omitempty"`
	// AgentInfo is what the device said about itself at connect: version,
	// platform, OS; empty for an agent that says nothing.
	transport.AgentInfo `yaml:",inline"`
	// Labels are the device's labels, from its certificate and the
	// edge's labels file; never what the agent says.
	Labels map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
}

// DevicesOptions selects devices for Dialer.Devices.
type DevicesOptions struct {
	// Status is StatusOnline, StatusOffline or StatusAll; empty means
	// StatusOnline.
	Status string
	// Match keeps the IDs that match this pattern (path.Match syntax:
	// "gw-*", "gw-0[0-4]?"); empty keeps all.
	Match string
	// Labels keeps the devices whose labels meet this selector
	// (transport/labels: "site=berlin,tier!=test"); empty keeps all.
	Labels string
	// Notice, when set, is called with each part of the list that the edge
	// says may be stale or missing (its Tether-Cluster and Tether-Last-Seen
	// headers, docs/api.md): "cluster: unavailable: ...". The list is
	// still returned.
	Notice func(string)
}

// Devices lists the devices of the edge that the token may see, sorted by
// ID: GET /api/devices. The edge's refusal comes back as a
// *transport.StatusError.
func (d *Dialer) Devices(ctx context.Context, opts DevicesOptions) ([]Device, error) {
	u, err := DevicesURL(d.Edge, opts)
	if err != nil {
		return nil, err
	}
	body, hdr, err := d.getAllHeader(ctx, u, "application/json", MaxDevicesBody, "device list")
	if err != nil {
		return nil, err
	}
	if opts.Notice != nil {
		for _, h := range [...]struct{ name, what string }{{"Tether-Cluster", "cluster"}, {"Tether-Last-Seen", "offline devices"}} {
			if v := strings.TrimSpace(hdr.Get(h.name)); v != "" {
				opts.Notice(h.what + ": " + v)
			}
		}
	}
	devs, err := DecodeDevices(body)
	if err != nil {
		return nil, fmt.Errorf("client: the edge's device list is not valid (%v): check that the URL points at a tether edge", err)
	}
	return devs, nil
}

// statusError is the edge's refusal: its status and the reason its body
// gives, bounded.
func statusError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	reason := strings.TrimSpace(string(b))
	if len(reason) > 512 {
		reason = reason[:512]
	}
	return &transport.StatusError{StatusCode: resp.StatusCode, Reason: reason}
}

// DevicesURL returns the URL of the device list under the edge's base URL,
// with the query of opts.
func DevicesURL(edge string, opts DevicesOptions) (string, error) {
	u, err := url.Parse(edge)
	if err != nil {
		return "", fmt.Errorf("client: parse edge URL: %w", err)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/api/devices"
	u.RawPath = ""
	q := url.Values{}
	if opts.Status != "" {
		q.Set("status", opts.Status)
	}
	if opts.Match != "" {
		q.Set("match", opts.Match)
	}
	if opts.Labels != "" {
		q.Set("labels", opts.Labels)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// DecodeDevices decodes a GET /api/devices answer: a JSON list of
// devices. Fields it does not know are ignored; a device without a status
// (from an edge that lists connected devices only) is online.
func DecodeDevices(body []byte) ([]Device, error) {
	var devs []Device
	if err := json.Unmarshal(body, &devs); err != nil {
		return nil, err
	}
	if devs == nil {
		return nil, fmt.Errorf("expected a JSON list, got %.40q", body)
	}
	for i := range devs {
		if devs[i].ID == "" {
			return nil, fmt.Errorf("device %d has no id", i)
		}
		if devs[i].Status == "" {
			// Edges before the status field list connected devices only.
			devs[i].Status = StatusOnline
		}
	}
	return devs, nil
}

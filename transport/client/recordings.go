package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tetherhq/tether/transport/wire"
)

// MaxRecordingsBody bounds the edge's answer to GET /api/recordings.
const MaxRecordingsBody = 32 << 20

// MaxRecordingBody bounds one recording read with Dialer.Recording: reading
// past it fails with ErrRecordingTooLarge.
const MaxRecordingBody = 4 << 30

// ErrRecordingTooLarge: a recording is larger than MaxRecordingBody.
var ErrRecordingTooLarge = errors.New("client: the recording is larger than the client reads")

// Recording is one recording of the edge's list (GET /api/recordings,
// docs/api.md).
type Recording struct {
	// ID names it for Dialer.Recording: "<edge>-<16 hex digits>".
	ID string `json:"id" yaml:"id"`
	// Edge is the ID of the edge that holds the file.
	Edge string `json:"edge" yaml:"edge"`
	// Device, Client and Session say whose shell it is.
	Device  string `json:"device" yaml:"device"`
	Client  string `json:"client" yaml:"client"`
	Session string `json:"session" yaml:"session"`
	// Command is what ran, empty for the login shell.
	Command string `json:"command,omitempty" yaml:"command,omitempty"`
	// Title is the header's title, "client@device".
	Title string `json:"title,omitempty" yaml:"title,omitempty"`
	// Start is when the shell began.
	Start time.Time `json:"start" yaml:"start"`
	// Duration is its length in seconds, as far as recorded.
	Duration float64 `json:"duration" yaml:"duration"`
	// Bytes is the file's size.
	Bytes int64 `json:"bytes" yaml:"bytes"`
	// Width and Height are the terminal's size at the start.
	Width  int `json:"width" yaml:"width"`
	Height int `json:"height" yaml:"height"`
}

// Recordings is the edge's answer to GET /api/recordings.
type Recordings struct {
	// Recordings are newest first.
	Recordings []Recording `json:"recordings" yaml:"recordings"`
	// Unavailable names the edges of a cluster whose recordings could not
	// be listed: the list may miss some.
	Unavailable []string `json:"unavailable,omitempty" yaml:"unavailable,omitempty"`
}

// RecordingsOptions selects recordings for Dialer.Recordings. Empty fields
// select all.
type RecordingsOptions struct {
	// Device and Client keep the recordings of this device and client.
	Device, Client string
	// Since keeps those that started at or after it: an RFC 3339 time, or
	// a Go duration ("24h") meaning that long before now, by the edge's
	// clock.
	Since string
	// Limit caps how many the edge lists; zero leaves it to the edge.
	Limit int
}

// Recordings lists the recordings of the edge (and, in a cluster, of its
// peers) that the token may read, newest first: GET /api/recordings. The
// edge's refusal comes back as a *transport.StatusError (403 without the
// recordings right).
func (d *Dialer) Recordings(ctx context.Context, opts RecordingsOptions) (*Recordings, error) {
	u, err := RecordingsURL(d.Edge, opts)
	if err != nil {
		return nil, err
	}
	body, err := d.getAll(ctx, u, "application/json", MaxRecordingsBody, "recording list")
	if err != nil {
		return nil, err
	}
	list, err := DecodeRecordings(body)
	if err != nil {
		return nil, fmt.Errorf("client: the edge's recording list is not valid (%v): check that the URL points at a tether edge", err)
	}
	return list, nil
}

// Recording opens the recording id, an asciicast v2 file: GET
// /api/recordings/{id}. The caller reads and closes it; ctx bounds the
// whole read. Reading more than MaxRecordingBody fails with
// ErrRecordingTooLarge. The edge's refusal comes back as a
// *transport.StatusError (404 for an unknown ID).
func (d *Dialer) Recording(ctx context.Context, id string) (io.ReadCloser, error) {
	u, err := RecordingURL(d.Edge, id)
	if err != nil {
		return nil, err
	}
	resp, err := d.get(ctx, u, "application/x-asciicast", "recording "+id)
	if err != nil {
		return nil, err
	}
	return &limitedBody{rc: resp.Body, left: MaxRecordingBody}, nil
}

// RecordingsURL returns the URL of the recording list under the edge's base
// URL, with the query of opts.
func RecordingsURL(edge string, opts RecordingsOptions) (string, error) {
	u, err := apiURL(edge, "/api/recordings")
	if err != nil {
		return "", err
	}
	q := url.Values{}
	if opts.Device != "" {
		q.Set("device", opts.Device)
	}
	if opts.Client != "" {
		q.Set("client", opts.Client)
	}
	if opts.Since != "" {
		q.Set("since", opts.Since)
	}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// RecordingURL returns the URL of the recording id under the edge's base
// URL. id must pass wire.ValidRecordingID.
func RecordingURL(edge, id string) (string, error) {
	if !wire.ValidRecordingID(id) {
		return "", fmt.Errorf("client: %q is not a recording ID (EDGE-0123456789abcdef)", id)
	}
	u, err := apiURL(edge, "/api/recordings/"+id)
	if err != nil {
		return "", err
	}
	return u.String(), nil
}

// DecodeRecordings decodes a GET /api/recordings answer. Fields it does not
// know are ignored.
func DecodeRecordings(body []byte) (*Recordings, error) {
	var list *Recordings
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, err
	}
	if list == nil || list.Recordings == nil {
		return nil, fmt.Errorf(`expected {"recordings": [...]}, got %.40q`, body)
	}
	for i, r := range list.Recordings {
		if r.ID == "" {
			return nil, fmt.Errorf("recording %d has no id", i)
		}
	}
	return list, nil
}

// apiURL is path under the edge's base URL.
func apiURL(edge, path string) (*url.URL, error) {
	u, err := url.Parse(edge)
	if err != nil {
		return nil, fmt.Errorf("client: parse edge URL: %w", err)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawPath = ""
	return u, nil
}

// get sends GET u with the token and returns the response when it is 200 OK;
// otherwise a *transport.StatusError with the edge's reason. what names the
// request in errors. The caller closes the body.
func (d *Dialer) get(ctx context.Context, u, accept, what string) (*http.Response, error) {
	hc := &http.Client{Transport: &http.Transport{
		Proxy:             http.ProxyFromEnvironment,
		TLSClientConfig:   d.TLSConfig,
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("client: %s request: %w", what, err)
	}
	if d.Token != "" {
		req.Header.Set("Authorization", "Bearer "+d.Token)
	}
	req.Header.Set("Accept", accept)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: %s: %w", what, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, statusError(resp)
	}
	return resp, nil
}

// getAll is get with the whole body read, up to max bytes.
func (d *Dialer) getAll(ctx context.Context, u, accept string, max int64, what string) ([]byte, error) {
	body, _, err := d.getAllHeader(ctx, u, accept, max, what)
	return body, err
}

// getAllHeader is getAll, with the answer's header.
func (d *Dialer) getAllHeader(ctx context.Context, u, accept string, max int64, what string) ([]byte, http.Header, error) {
	resp, err := d.get(ctx, u, accept, what)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, nil, fmt.Errorf("client: read the %s: %w", what, err)
	}
	if int64(len(body)) > max {
		return nil, nil, fmt.Errorf("client: the edge's %s is larger than %d bytes", what, max)
	}
	return body, resp.Header, nil
}

// limitedBody fails a read past left bytes with ErrRecordingTooLarge.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.left <= 0 {
		// One more byte tells a body of exactly the limit from a longer one.
		var one [1]byte
		if n, _ := l.rc.Read(one[:]); n > 0 {
			return 0, ErrRecordingTooLarge
		}
		return l.rc.Read(p)
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.rc.Read(p)
	l.left -= int64(n)
	return n, err
}

func (l *limitedBody) Close() error { return l.rc.Close() }

package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/tetherhq/tether/transport"
	"github.com/tetherhq/tether/transport/files"
	"github.com/tetherhq/tether/transport/wire"
)

// Dialer dials client sessions through one edge. The zero value needs
// Edge at least; a Dialer may dial many devices, concurrently.
type Dialer struct {
	// Edge is the edge's base URL, such as https://edge.example.com:8443.
	Edge string
	// Token is the bearer token sent as "Authorization: Bearer <token>".
	// Empty sends no credential.
	Token string
	// TLSConfig verifies the edge (RootCAs) and may carry a client
	// certificate. Nil means the system roots.
	TLSConfig *tls.Config
	// Config tunes the session; nil means transport defaults.
	Config *transport.Config
}

// Dial opens a session to device through the edge.
func (d *Dialer) Dial(ctx context.Context, device string) (*Client, error) {
	u, err := URL(d.Edge, device)
	if err != nil {
		return nil, err
	}
	auth := ""
	if d.Token != "" {
		auth = "Bearer " + d.Token
	}
	sess, err := transport.Dial(ctx, u, auth, d.TLSConfig, d.Config)
	if err != nil {
		return nil, err
	}
	return New(sess), nil
}

// URL returns the URL of device's client endpoint under the edge's base
// URL, such as https://edge.example.com:8443.
func URL(edge, device string) (string, error) {
	u, err := url.Parse(edge)
	if err != nil {
		return "", fmt.Errorf("client: parse edge URL: %w", err)
	}
	raw := strings.TrimSuffix(u.EscapedPath(), "/") + "/client/" + url.PathEscape(device)
	if u.Path, err = url.PathUnescape(raw); err != nil {
		return "", fmt.Errorf("client: edge URL path: %w", err)
	}
	u.RawPath = raw
	return u.String(), nil
}

// Client is a session to the edge bound to one device.
type Client struct {
	sess *transport.Session
}

var _ transport.Opener = (*Client)(nil)

// New wraps an established client session.
func New(sess *transport.Session) *Client { return &Client{sess: sess} }

// OpenStream opens a stream of type t on the device: see
// transport.Session.OpenStream.
func (c *Client) OpenStream(ctx context.Context, t wire.MsgType, payload []byte) (*transport.Stream, []byte, error) {
	return c.sess.OpenStream(ctx, t, payload)
}

// OpenStreamEarly opens a stream of type t on the device without waiting
// for the answer: see transport.EarlyStream.
func (c *Client) OpenStreamEarly(ctx context.Context, t wire.MsgType, payload, first []byte) (*transport.EarlyStream, error) {
	return c.sess.OpenStreamEarly(ctx, t, payload, first)
}

// Reload asks the device to reload its configuration. It returns nil on OK
// and a *wire.RemoteError with the device's reason otherwise.
func (c *Client) Reload(ctx context.Context) error {
	st, _, err := c.OpenStream(ctx, wire.MsgReload, nil)
	if err != nil {
		return err
	}
	return st.Close()
}

// Session returns the underlying session.
func (c *Client) Session() *transport.Session { return c.sess }

// Done is closed as soon as the connection to the edge is gone.
func (c *Client) Done() <-chan struct{} { return c.sess.Done() }

// Close closes the session and all its streams.
func (c *Client) Close() error { return c.sess.Close() }

// Download fetches path from the device and writes the body to w: a
// regular file's bytes (raw mode, checked against the device's SHA-256),
// or the tar archive of a directory or of anything from a qbee-v1 device.
// See files.Download.
func (c *Client) Download(ctx context.Context, path string, w io.Writer, opts *files.DownloadOptions) (*files.Result, error) {
	return files.Download(ctx, c, path, w, opts)
}

// Upload sends r to path on the device: one file in raw mode, stored
// atomically once its SHA-256 checks out, or a tar archive with
// opts.Tar. See files.Upload.
func (c *Client) Upload(ctx context.Context, path string, r io.Reader, opts *files.UploadOptions) (*files.Result, error) {
	return files.Upload(ctx, c, path, r, opts)
}

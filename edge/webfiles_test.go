//go:build linux

package edge_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/mock"
	"github.com/tetherhq/tether/transport/files"
	"github.com/tetherhq/tether/transport/wire"
)

// filesRig is a webRig whose device serves files beneath dir, and whose
// client "ops" may download beneath dir and upload beneath dir/in.
func filesRig(t *testing.T) (r *webRig, dir string) {
	t.Helper()
	dir = t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "in"), 0o755))
	rules := testRules()
	rules[0].Files = true
	rules[0].FileRules = &edge.FileRules{Read: []string{dir}, Write: []string{filepath.Join(dir, "in")}}
	pol, err := edge.NewStaticPolicy(rules)
	require.NoError(t, err)
	r = newWebRig(t, edge.WebConfig{}, func(o *mock.Options) { o.Policy = pol })
	srv := &files.Server{}
	srv.SetConfig(files.Config{Read: []string{dir}, Write: []string{dir}})
	r.dc.Handle(wire.MsgFileTransfer, srv.Serve)
	return r, dir
}

func (b *browser) download(device, path string) (*http.Response, string) {
	b.t.Helper()
	return b.do("GET", "/web/download?"+url.Values{"device": {device}, "path": {path}}.Encode(), nil, nil)
}

func (b *browser) upload(device, path, name string, body []byte, hdr map[string]string) (*http.Response, string) {
	b.t.Helper()
	return b.send("PUT", "/web/upload?"+url.Values{"device": {device}, "path": {path}, "name": {name}}.Encode(), bytes.NewReader(body), hdr)
}

func requireAttachment(t *testing.T, resp *http.Response, name string) {
	t.Helper()
	typ, params, err := mime.ParseMediaType(resp.Header.Get("Content-Disposition"))
	require.NoError(t, err)
	require.Equal(t, "attachment", typ)
	require.Equal(t, name, params["filename"])
}

// TestWebFiles: the files page downloads a file as an attachment with
// its bytes, and a directory as a tar archive, and uploads a file that
// the device stores; each is a file transfer stream under the client's
// file rules, audited as `tether cp`'s are.
func TestWebFiles(t *testing.T) {
	r, dir := filesRig(t)
	b := r.signedIn(t)
	csrf := b.csrf()

	resp, page := b.do("GET", "/web/files/"+webDevice, nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, page)
	require.Contains(t, page, `action="/web/download"`)

	content := bytes.Repeat([]byte("line of a log\n"), 20000) // 280 kB: several frames
	logPath := filepath.Join(dir, "app log.txt")
	require.NoError(t, os.WriteFile(logPath, content, 0o644))
	resp, got := b.download(webDevice, logPath)
	require.Equal(t, http.StatusOK, resp.StatusCode, got)
	require.Equal(t, string(content), got)
	requireAttachment(t, resp, "app log.txt")
	require.Equal(t, "application/octet-stream", resp.Header.Get("Content-Type"))
	require.Equal(t, int64(len(content)), resp.ContentLength)
	sum := sha256.Sum256(content)
	ev := waitEvent(t, r.m, func(e edge.Event) bool {
		return e.Kind == edge.EventStreamClose && e.Method == "web" && e.Direction == "download"
	})
	require.Equal(t, "ok", ev.Result, ev.Reason)
	require.Equal(t, logPath, ev.Path)
	require.Equal(t, "ops", ev.Client)
	require.Equal(t, webDevice, ev.Device)
	require.Equal(t, int64(len(content)), ev.BytesDown)
	require.Equal(t, hex.EncodeToString(sum[:]), ev.SHA256)

	// A directory comes as a tar archive.
	resp, got = b.download(webDevice, filepath.Join(dir, "in"))
	require.Equal(t, http.StatusOK, resp.StatusCode, got)
	require.Equal(t, "application/x-tar", resp.Header.Get("Content-Type"))
	requireAttachment(t, resp, "in.tar")
	_, err := tar.NewReader(strings.NewReader(got)).Next()
	require.NoError(t, err, "not a tar archive")

	// An upload to a directory keeps the file's name.
	fw := bytes.Repeat([]byte{0xa5, 0x5a, 0}, 100000)
	resp, got = b.upload(webDevice, filepath.Join(dir, "in"), "fw.img", fw, map[string]string{"X-CSRF-Token": csrf, "Origin": b.origin})
	require.Equal(t, http.StatusOK, resp.StatusCode, got)
	var res struct {
		Path   string
		Bytes  int64
		SHA256 string
	}
	require.NoError(t, json.Unmarshal([]byte(got), &res))
	fwSum := sha256.Sum256(fw)
	require.Equal(t, int64(len(fw)), res.Bytes)
	require.Equal(t, hex.EncodeToString(fwSum[:]), res.SHA256)
	stored, err := os.ReadFile(filepath.Join(dir, "in", "fw.img"))
	require.NoError(t, err)
	require.Equal(t, fw, stored)
	ev = waitEvent(t, r.m, func(e edge.Event) bool {
		return e.Kind == edge.EventStreamClose && e.Method == "web" && e.Direction == "upload"
	})
	require.Equal(t, "ok", ev.Result, ev.Reason)
	require.Equal(t, int64(len(fw)), ev.BytesUp)

	// An upload to a file path stores it there.
	resp, got = b.upload(webDevice, filepath.Join(dir, "in", "renamed.bin"), "fw.img", []byte("small"), map[string]string{"X-CSRF-Token": csrf, "Origin": b.origin})
	require.Equal(t, http.StatusOK, resp.StatusCode, got)
	stored, err = os.ReadFile(filepath.Join(dir, "in", "renamed.bin"))
	require.NoError(t, err)
	require.Equal(t, "small", string(stored))
}

// TestWebFilesRefusals: what the file rules, the CSRF token, the origin,
// the path's form and the device refuse is refused with its reason, and
// nothing is written.
func TestWebFilesRefusals(t *testing.T) {
	r, dir := filesRig(t)
	b := r.signedIn(t)
	csrf := b.csrf()
	secret := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secret, []byte("not for ops"), 0o600))
	ok := map[string]string{"X-CSRF-Token": csrf, "Origin": b.origin}

	for _, tc := range []struct {
		name   string
		resp   func() (*http.Response, string)
		status int
		reason string
	}{
		{"a download outside the read rules", func() (*http.Response, string) { return b.download(webDevice, secret) }, http.StatusForbidden, secret},
		{"a relative path", func() (*http.Response, string) { return b.download(webDevice, "etc/passwd") }, http.StatusBadRequest, "absolute"},
		{"a path with ..", func() (*http.Response, string) { return b.download(webDevice, dir+"/in/../../x") }, http.StatusBadRequest, ".."},
		{"a missing file", func() (*http.Response, string) { return b.download(webDevice, dir+"/nothing") }, http.StatusBadGateway, "nothing"},
		{"an offline device", func() (*http.Response, string) { return b.download("d-gone", dir+"/x") }, http.StatusNotFound, "not connected"},
		{"an upload outside the write rules", func() (*http.Response, string) { return b.upload(webDevice, dir, "x", []byte("x"), ok) }, http.StatusForbidden, dir},
		{"an upload without the CSRF token", func() (*http.Response, string) {
			return b.upload(webDevice, dir+"/in", "x", []byte("x"), map[string]string{"Origin": b.origin})
		}, http.StatusForbidden, "CSRF"},
		{"an upload from another origin", func() (*http.Response, string) {
			return b.upload(webDevice, dir+"/in", "x", []byte("x"), map[string]string{"X-CSRF-Token": csrf, "Origin": "https://evil.test"})
		}, http.StatusForbidden, "cross-origin"},
		{"an upload named with a /", func() (*http.Response, string) { return b.upload(webDevice, dir+"/in", "../x", []byte("x"), ok) }, http.StatusBadRequest, "one path component"},
		{"a download another origin of the site sent", func() (*http.Response, string) {
			return b.send("GET", "/web/download?"+url.Values{"device": {webDevice}, "path": {dir + "/in"}}.Encode(), nil, map[string]string{"Sec-Fetch-Site": "same-site"})
		}, http.StatusForbidden, "cross-origin"},
		{"a download another site sent", func() (*http.Response, string) {
			return b.send("GET", "/web/download?"+url.Values{"device": {webDevice}, "path": {dir + "/in"}}.Encode(), nil, map[string]string{"Sec-Fetch-Site": "cross-site"})
		}, http.StatusForbidden, "cross-origin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := tc.resp()
			require.Equal(t, tc.status, resp.StatusCode, body)
			require.Contains(t, body, tc.reason)
		})
	}
	entries, err := os.ReadDir(filepath.Join(dir, "in"))
	require.NoError(t, err)
	require.Empty(t, entries, "a refused upload wrote a file")
	require.Empty(t, entries)
	ev := waitEvent(t, r.m, func(e edge.Event) bool {
		return e.Kind == edge.EventStreamDeny && e.Method == "web" && e.Path == secret
	})
	require.Equal(t, "denied", ev.Result)

	// A browser's download (it accepts HTML) that is refused gets the
	// files page again, with the reason and the path it asked for.
	html := map[string]string{"Accept": "text/html,application/xhtml+xml"}
	resp, body := b.send("GET", "/web/download?"+url.Values{"device": {webDevice}, "path": {dir + "/nothing"}}.Encode(), nil, html)
	require.Equal(t, http.StatusBadGateway, resp.StatusCode, body)
	require.Contains(t, resp.Header.Get("Content-Type"), "text/html")
	require.Regexp(t, `<p id="download-error" class="error">[^<]*nothing`, body)
	require.Contains(t, body, `value="`+dir+`/nothing"`)
	require.Contains(t, body, `action="/web/download"`)

	// Without a session: no file, and a browser goes to sign in.
	anon := r.browser(t)
	resp, body = anon.download(webDevice, filepath.Join(dir, "in"))
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, body)
	resp, _ = anon.send("GET", "/web/download?"+url.Values{"device": {webDevice}, "path": {dir + "/in"}}.Encode(), nil, html)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/web/login", resp.Header.Get("Location"))
	resp, _ = anon.do("GET", "/web/files/"+webDevice, nil, nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
}

// pendingUpload starts an upload of 1 MiB to path and sends its first
// quarter; the rest waits for the pipe. done gives the answer's status (0
// when the request failed).
func (b *browser) pendingUpload(csrf, path string) (*io.PipeWriter, <-chan int) {
	b.t.Helper()
	const size = 1 << 20
	pr, pw := io.Pipe()
	req, err := http.NewRequest("PUT", b.origin+"/web/upload?"+url.Values{"device": {webDevice}, "path": {path}}.Encode(), pr)
	require.NoError(b.t, err)
	req.ContentLength = size
	req.Header.Set("X-CSRF-Token", csrf)
	req.Header.Set("Origin", b.origin)
	done := make(chan int, 1)
	go func() {
		resp, err := b.hc.Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	_, err = pw.Write(make([]byte, size/4))
	require.NoError(b.t, err)
	return pw, done
}

// TestWebFileTransfersEndAtSignOut: a browser session has at most 4
// transfers under way, and a sign-out ends them, as it ends its
// terminals; the uploads are not stored.
func TestWebFileTransfersEndAtSignOut(t *testing.T) {
	r, dir := filesRig(t)
	b := r.signedIn(t)
	csrf := b.csrf()
	var pipes []*io.PipeWriter
	var dones []<-chan int
	for i := range 4 {
		pw, done := b.pendingUpload(csrf, fmt.Sprintf("%s/in/big-%d.bin", dir, i))
		pipes, dones = append(pipes, pw), append(dones, done)
	}
	require.Eventually(t, func() bool {
		n := 0
		for _, e := range r.m.AuditEvents() {
			if e.Kind == edge.EventStreamOpen && e.Method == "web" && e.Direction == "upload" && e.Result == "ok" {
				n++
			}
		}
		return n == 4
	}, 20*time.Second, 10*time.Millisecond, "the 4 uploads did not open")
	resp, body := b.upload(webDevice, dir+"/in", "fifth", []byte("x"), map[string]string{"X-CSRF-Token": csrf, "Origin": b.origin})
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, body)
	require.Contains(t, body, "too many file transfers")

	resp, _ = b.do("POST", "/web/logout", url.Values{"csrf": {csrf}}, map[string]string{"Origin": b.origin})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Eventually(t, func() bool {
		n := 0
		for _, e := range r.m.AuditEvents() {
			if e.Kind == edge.EventStreamClose && e.Method == "web" && e.Direction == "upload" && e.Result == "revoked" && strings.Contains(e.Reason, "signed out") {
				n++
			}
		}
		return n == 4
	}, 20*time.Second, 10*time.Millisecond, "the sign-out did not end the 4 uploads")
	for _, pw := range pipes {
		pw.CloseWithError(io.ErrClosedPipe) // the browser's side gives up too
	}
	for _, done := range dones {
		require.NotEqual(t, http.StatusOK, <-done)
	}
	for i := range 4 {
		_, err := os.Stat(fmt.Sprintf("%s/in/big-%d.bin", dir, i))
		require.ErrorIs(t, err, os.ErrNotExist, "an upload cut by a sign-out was stored")
	}
}

// TestWebFileTransferEndsAtAReload: a reload that takes the right to a
// transfer under way away ends it, as it ends a terminal.
func TestWebFileTransferEndsAtAReload(t *testing.T) {
	r, dir := filesRig(t)
	b := r.signedIn(t)
	pw, done := b.pendingUpload(b.csrf(), dir+"/in/big.bin")
	defer pw.Close()
	waitEvent(t, r.m, func(e edge.Event) bool {
		return e.Kind == edge.EventStreamOpen && e.Method == "web" && e.Direction == "upload" && e.Result == "ok"
	})
	rules := testRules()
	rules[0].Files = true
	rules[0].FileRules = &edge.FileRules{Read: []string{dir}}
	pol, err := edge.NewStaticPolicy(rules)
	require.NoError(t, err)
	r.m.Server().Reload(pol, nil)
	ev := waitEvent(t, r.m, func(e edge.Event) bool {
		return e.Kind == edge.EventStreamClose && e.Method == "web" && e.Direction == "upload"
	})
	require.Equal(t, "revoked", ev.Result, ev.Reason)
	require.Contains(t, ev.Reason, "may no longer upload "+dir+"/in/big.bin")
	pw.CloseWithError(io.ErrClosedPipe)
	require.NotEqual(t, http.StatusOK, <-done)
}

// TestWebFilesAcrossTheCluster: the files page of one edge moves files to
// and from a device that another edge holds, through the peer session.
func TestWebFilesAcrossTheCluster(t *testing.T) {
	dir := t.TempDir()
	rig := newClusterRig(t)
	rig.web = &edge.WebConfig{Key: webKey}
	rules := testRules()
	rules[0].Files = true
	pol, err := edge.NewStaticPolicy(rules)
	require.NoError(t, err)
	rig.policy = pol
	rig.start("e1")
	rig.start("e2")
	srv := &files.Server{}
	srv.SetConfig(files.Config{Read: []string{dir}, Write: []string{dir}})
	rig.device("e1", "d-1", map[wire.MsgType]device.Handler{wire.MsgFileTransfer: srv.Serve})
	rig.waitEverywhere("d-1", "e1")

	b := newBrowser(t, rig.edges["e2"].url, rig.pki.ClientTLS())
	require.Equal(t, http.StatusSeeOther, b.signIn(opsToken).StatusCode)
	content := bytes.Repeat([]byte("through the peer session\n"), 10000)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "far.log"), content, 0o644))
	resp, got := b.download("d-1", filepath.Join(dir, "far.log"))
	require.Equal(t, http.StatusOK, resp.StatusCode, got)
	require.Equal(t, string(content), got)
	resp, got = b.upload("d-1", dir, "back.bin", content[:1000], map[string]string{"X-CSRF-Token": b.csrf(), "Origin": b.origin})
	require.Equal(t, http.StatusOK, resp.StatusCode, got)
	stored, err := os.ReadFile(filepath.Join(dir, "back.bin"))
	require.NoError(t, err)
	require.Equal(t, content[:1000], stored)
	require.Eventually(t, func() bool {
		n := 0
		for _, e := range rig.edges["e2"].audit.Events() {
			if e.Kind == edge.EventStreamClose && e.Method == "web" && e.Peer == "e1" && e.Result == "ok" {
				n++
			}
		}
		return n == 2
	}, 20*time.Second, 10*time.Millisecond, "no stream_close records through e1 on e2")
}

// TestWebFileTransferOutlivesADrain: a drain waits for the file
// transfers under way, as for the CLI's streams; the upload completes.
func TestWebFileTransferOutlivesADrain(t *testing.T) {
	r, dir := filesRig(t)
	b := r.signedIn(t)
	pw, done := b.pendingUpload(b.csrf(), dir+"/in/big.bin")
	waitEvent(t, r.m, func(e edge.Event) bool {
		return e.Kind == edge.EventStreamOpen && e.Method == "web" && e.Direction == "upload" && e.Result == "ok"
	})
	drained := make(chan error, 1)
	go func() { drained <- r.m.Server().Shutdown(ctxT(t)) }()
	require.Eventually(t, func() bool { return strings.Contains(r.logs.String(), "sending GoAway to every device") },
		20*time.Second, 10*time.Millisecond, "the drain did not start")
	_, err := pw.Write(make([]byte, 3<<18)) // the rest of the 1 MiB
	require.NoError(t, err)
	require.NoError(t, pw.Close())
	require.Equal(t, http.StatusOK, <-done)
	require.NoError(t, <-drained)
	fi, err := os.Stat(dir + "/in/big.bin")
	require.NoError(t, err)
	require.EqualValues(t, 1<<20, fi.Size())
}

// TestWebFileTransferEndsWithItsSession: a transfer under way when its
// browser session ends is ended, as a terminal is.
func TestWebFileTransferEndsWithItsSession(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "in"), 0o755))
	rules := testRules()
	rules[0].Files = true
	pol, err := edge.NewStaticPolicy(rules)
	require.NoError(t, err)
	r := newWebRig(t, edge.WebConfig{SessionLifetime: 3 * time.Second}, func(o *mock.Options) { o.Policy = pol })
	srv := &files.Server{}
	srv.SetConfig(files.Config{Write: []string{dir}})
	r.dc.Handle(wire.MsgFileTransfer, srv.Serve)
	b := r.signedIn(t)
	pw, done := b.pendingUpload(b.csrf(), dir+"/in/big.bin")
	defer pw.Close()
	ev := waitEvent(t, r.m, func(e edge.Event) bool {
		return e.Kind == edge.EventStreamClose && e.Method == "web" && e.Direction == "upload"
	})
	require.Equal(t, "expired", ev.Result, ev.Reason)
	require.Contains(t, ev.Reason, "sign in again")
	pw.CloseWithError(io.ErrClosedPipe)
	require.NotEqual(t, http.StatusOK, <-done)
}

package main

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tetherhq/tether/device"
	"github.com/tetherhq/tether/internal/testutil"
)

// webUser is a browser's view of the edge's web pages: its session
// cookie, and the origin it sends.
type webUser struct {
	t      *testing.T
	hc     *http.Client
	origin string
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// do sends a request with the cookies given and returns the status, the
// cookies set and the body.
func (u *webUser) do(method, path string, form url.Values, cookies ...*http.Cookie) (int, []*http.Cookie, string) {
	u.t.Helper()
	req, err := http.NewRequest(method, u.origin+path, strings.NewReader(form.Encode()))
	if err != nil {
		u.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", u.origin)
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := u.hc.Do(req)
	if err != nil {
		u.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		u.t.Fatal(err)
	}
	return resp.StatusCode, resp.Cookies(), string(b)
}

func cookieNamed(cs []*http.Cookie, name string) *http.Cookie {
	for _, c := range cs {
		if c.Name == name && c.Value != "" {
			return c
		}
	}
	return nil
}

// signIn signs in with token and returns the session cookie.
func (u *webUser) signIn(token string) *http.Cookie {
	u.t.Helper()
	code, cs, page := u.do("GET", "/web/login", nil)
	m := csrfInput.FindStringSubmatch(page)
	if code != http.StatusOK || m == nil {
		u.t.Fatalf("sign-in page: %d\n%s", code, page)
	}
	code, set, page := u.do("POST", "/web/login", url.Values{"token": {token}, "csrf": {m[1]}}, cookieNamed(cs, "tether_login"))
	sess := cookieNamed(set, "tether_session")
	if code != http.StatusSeeOther || sess == nil {
		u.t.Fatalf("sign-in: %d, no session cookie\n%s", code, page)
	}
	return sess
}

// signedIn reports whether the device list accepts the session cookie
// (it sends a page that is no longer signed in to the sign-in page).
func (u *webUser) signedIn(sess *http.Cookie) bool {
	u.t.Helper()
	code, _, page := u.do("GET", "/web/", nil, sess)
	switch code {
	case http.StatusOK:
		return true
	case http.StatusSeeOther:
		return false
	}
	u.t.Fatalf("device list: unexpected %d\n%s", code, page)
	return false
}

// signOut signs the session out, with the CSRF token of its device list.
func (u *webUser) signOut(sess *http.Cookie) {
	u.t.Helper()
	_, _, page := u.do("GET", "/web/", nil, sess)
	m := csrfInput.FindStringSubmatch(page)
	if m == nil {
		u.t.Fatalf("no CSRF token in the device list:\n%s", page)
	}
	if code, _, page := u.do("POST", "/web/logout", url.Values{"csrf": {m[1]}}, sess); code != http.StatusSeeOther {
		u.t.Fatalf("sign-out: %d\n%s", code, page)
	}
}

// devicesByStatus lists the edge's devices, online and offline, as ID to
// status.
func devicesByStatus(t *testing.T, hc *http.Client, addr, token string) map[string]string {
	t.Helper()
	var out []struct{ ID, Status string }
	if err := testutil.GetJSON(hc, "https://"+addr+"/api/devices?status=all", token, &out); err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, d := range out {
		m[d.ID] = d.Status
	}
	return m
}

// A single edge with a state_dir keeps its web sign-outs and its
// last-seen records across a restart: the cookie of a session signed out
// before it is refused after it, while a session that did not sign out
// goes on; a device that left before it is still listed offline, and so
// is one that was connected when the edge stopped and did not come back.
func TestStateDirOutlivesARestart(t *testing.T) {
	path, pki := writeIssueConfig(t)
	dir := filepath.Dir(path)
	token, sum, err := newToken()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "web.key"), []byte(strings.Repeat("k", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	addr := testutil.FreeAddr(t)
	cfg := strings.Replace(issueConfig, "<64 hex chars>", sum, 1)
	cfg = strings.Replace(cfg, "metrics_listen: \"127.0.0.1:9090\"", "", 1)
	cfg += "state_dir: state\nweb:\n  enabled: true\n  public_url: https://" + addr + "\n  session_key_file: web.key\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	hc := httpsClient(t, filepath.Join(dir, "ca.crt"))
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	u := &webUser{t: t, hc: hc, origin: "https://" + addr}
	start := func() *testutil.Proc {
		p := startEdge(t, "--config", path, "--listen", addr)
		waitFor(t, "the edge to be healthy", func() bool { return testutil.Healthy(hc, "https://"+addr) })
		return p
	}
	connect := func(id string) *device.Client {
		dc := &device.Client{URL: "https://" + addr + "/device", TLSConfig: pki.DeviceTLS(pki.Device(id))}
		if err := dc.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		return dc
	}

	p := start()
	if strings.Contains(p.Stderr(), "state_dir is not set") {
		t.Errorf("the edge warns that sign-outs are in memory while state_dir is set:\n%s", p.Stderr())
	}
	gone, kept := u.signIn(token), u.signIn(token)
	if !u.signedIn(gone) || !u.signedIn(kept) {
		t.Fatal("a fresh session is refused")
	}
	u.signOut(gone)
	if u.signedIn(gone) {
		t.Fatal("the signed-out cookie still works")
	}
	left, stays := connect("left"), connect("stays")
	waitFor(t, "both devices online", func() bool {
		m := devicesByStatus(t, hc, addr, token)
		return m["left"] == "online" && m["stays"] == "online"
	})
	left.Close()
	waitFor(t, "the device that left to be offline", func() bool { return devicesByStatus(t, hc, addr, token)["left"] == "offline" })
	// The device that stays is connected as the edge stops, and does not
	// come back.
	if err := stopEdge(t, p); err != nil {
		t.Fatalf("edge exit: %v\n%s", err, p.Stderr())
	}
	stays.Close()
	for _, name := range []string{"web-signouts", "last-seen.jsonl"} {
		st, err := os.Stat(filepath.Join(state, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", name, st.Mode().Perm())
		}
	}

	start()
	if u.signedIn(gone) {
		t.Fatal("after a restart, the cookie of a session signed out before it works again")
	}
	if !u.signedIn(kept) {
		t.Fatal("after a restart, a session that did not sign out is refused")
	}
	if m := devicesByStatus(t, hc, addr, token); m["left"] != "offline" || m["stays"] != "offline" {
		t.Fatalf("after a restart, the devices are listed %v; want both offline", m)
	}
	back := connect("stays")
	defer back.Close()
	waitFor(t, "the device that came back to be online", func() bool { return devicesByStatus(t, hc, addr, token)["stays"] == "online" })
}

package edge_test

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tetherhq/tether/certs/certstest"
	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/internal/asciicast"
	"github.com/tetherhq/tether/transport/wire"
)

const (
	auditorToken = "auditor-token-0123456789"
	wideToken    = "wide-token-0123456789"
	partialToken = "partial-token-0123456789"
)

// recRules are testRules and two readers of recordings: "auditor" on
// devices d-*, and "wide" on every device. "ops" has every right but
// that one.
func recRules() []edge.ClientRule {
	return append(testRules(),
		edge.ClientRule{Name: "auditor", TokenSHA256: edge.HashToken(auditorToken), Devices: []string{"d-*"}, Recordings: true},
		edge.ClientRule{Name: "wide", TokenSHA256: edge.HashToken(wideToken), Devices: []string{"*"}, Recordings: true})
}

func recPolicy(t testing.TB) *edge.StaticPolicy {
	t.Helper()
	p, err := edge.NewStaticPolicy(recRules())
	require.NoError(t, err)
	return p
}

// cast is a recording to write as the recorder does.
type cast struct {
	edge, device, client, command string
	start                         time.Time
	width, height                 int
	events                        []asciicast.Event
}

// writeCast writes c under dir at its place,
// YYYY/MM/DD/<device>/<edge>-<16 hex>.cast (0600 in 0700 directories),
// and returns its ID and path.
func writeCast(t testing.TB, dir string, c cast) (id, path string) {
	t.Helper()
	var b [8]byte
	_, _ = rand.Read(b[:])
	id = c.edge + "-" + hex.EncodeToString(b[:])
	if c.width == 0 {
		c.width, c.height = 80, 24
	}
	d := filepath.Join(dir, c.start.UTC().Format("2006/01/02"), c.device)
	require.NoError(t, os.MkdirAll(d, 0o700))
	path = filepath.Join(d, id+".cast")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	require.NoError(t, err)
	defer f.Close()
	enc := json.NewEncoder(f)
	require.NoError(t, enc.Encode(asciicast.Header{Version: 2, Width: c.width, Height: c.height, Timestamp: c.start.Unix(),
		Title: c.client + "@" + c.device, Env: map[string]string{"TERM": "xterm-256color"},
		Tether: &asciicast.Meta{ID: id, Session: "s-" + id[len(id)-8:], Device: c.device, Client: c.client, Edge: c.edge, Command: c.command}}))
	for _, e := range c.events {
		require.NoError(t, enc.Encode([]any{e.Time, e.Code, e.Data}))
	}
	return id, path
}

// shellEvents is a short session whose last event is at 2.5 s.
func shellEvents(last string) []asciicast.Event {
	return []asciicast.Event{{Time: 0.1, Code: asciicast.Output, Data: "$ "}, {Time: 1.25, Code: asciicast.Resize, Data: "100x30"},
		{Time: 2.5, Code: asciicast.Output, Data: last + "\r\n"}}
}

// recEdge is one real edge with a recording directory, on loopback.
type recEdge struct {
	url   string
	dir   string
	pki   *certstest.PKI
	audit *edge.MemoryAuditor
}

func startRecEdge(t *testing.T, edgeID string) *recEdge { return startRecEdgeWeb(t, edgeID, nil) }

// startRecEdgeWeb is startRecEdge with the web terminal on when web is
// set, its public URL the edge's own.
func startRecEdgeWeb(t *testing.T, edgeID string, web *edge.WebConfig) *recEdge {
	t.Helper()
	pki := certstest.New(t)
	e := &recEdge{dir: t.TempDir(), pki: pki, audit: &edge.MemoryAuditor{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	e.url = "https://" + ln.Addr().String()
	if web != nil {
		web.PublicURL = e.url
	}
	srv := &edge.Server{DeviceCA: pki.Pool(), Policy: recPolicy(t), Auditor: e.audit, Logger: testLogger(t), EdgeID: edgeID,
		Limits: edge.Limits{UpgradeRate: 1e6, UpgradeBurst: 1e6}, Recording: &edge.RecordingConfig{Dir: e.dir}, Web: web}
	hs := srv.HTTPServer(pki.EdgeTLS())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = hs.Serve(srv.Listener(ln, hs.TLSConfig)) }()
	t.Cleanup(func() {
		hs.Close()
		wg.Wait()
		srv.Close()
	})
	return e
}

// apiGet sends GET base+path with token and returns the status and body.
func apiGet(t testing.TB, pki *certstest.PKI, base, path, token string) (int, http.Header, string) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: pki.ClientTLS()}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(b)
}

type recListing struct {
	Recordings []struct {
		ID, Edge, Device, Client, Session, Command, Title string
		Start                                             time.Time
		Duration                                          float64
		Bytes                                             int64
		Width, Height                                     int
	}
	Unavailable []string
}

func listRecs(t testing.TB, pki *certstest.PKI, base, query, token string) recListing {
	t.Helper()
	code, hdr, body := apiGet(t, pki, base, "/api/recordings"+query, token)
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "application/json", hdr.Get("Content-Type"))
	var l recListing
	require.NoError(t, json.Unmarshal([]byte(body), &l))
	require.NotNil(t, l.Unavailable, "unavailable is a list, empty or not: %s", body)
	return l
}

func recIDs(l recListing) []string {
	out := []string{}
	for _, r := range l.Recordings {
		out = append(out, r.ID)
	}
	return out
}

// TestRecordingsList: the list holds the recordings of the devices the
// client may reach, newest first, with their header's fields, the last
// event's time and the file's size; the filters narrow it; malformed
// files and files out of place are skipped; the right is required.
func TestRecordingsList(t *testing.T) {
	e := startRecEdge(t, "e1")
	now := time.Now().UTC().Truncate(time.Second)
	old, oldPath := writeCast(t, e.dir, cast{edge: "e1", device: "d-1", client: "ops", start: now.Add(-72 * time.Hour), events: shellEvents("old")})
	mid, midPath := writeCast(t, e.dir, cast{edge: "e1", device: "d-2", client: "peer", command: "top", start: now.Add(-2 * time.Hour),
		width: 120, height: 40, events: shellEvents("mid")})
	hidden, _ := writeCast(t, e.dir, cast{edge: "e1", device: "x-9", client: "ops", start: now.Add(-time.Hour), events: shellEvents("x")})
	// The newest is being written: its last line is cut.
	newest, newestPath := writeCast(t, e.dir, cast{edge: "e1", device: "d-1", client: "peer", start: now, events: shellEvents("new")})
	f, err := os.OpenFile(newestPath, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`[3.75, "o", "cut sho`)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	// Files the index must skip.
	day := filepath.Join(e.dir, now.Format("2006/01/02"))
	require.NoError(t, os.WriteFile(filepath.Join(day, "d-1", "e1-00000000000000aa.cast"), []byte("not json\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(day, "d-1", "e1-00000000000000bb.cast"), []byte(`{"version":2,"width":80,"height":24}`+"\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(day, "d-1", "e1-00000000000000cc.cast"), []byte(strings.Repeat("x", 70<<10)), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(day, "d-1", "notes.txt"), []byte("hello\n"), 0o600))
	// A copy of d-2's recording under d-1: its header names another device.
	b, err := os.ReadFile(midPath)
	require.NoError(t, err)
	misplaced := filepath.Join(day, "d-1", "e1-00000000000000dd.cast")
	require.NoError(t, os.WriteFile(misplaced, []byte(strings.Replace(string(b), mid, "e1-00000000000000dd", 1)), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(day, "d-1", "..cast"), b, 0o600))
	// A link to a recording of a device the client may not reach.
	outside := t.TempDir()
	_, secret := writeCast(t, outside, cast{edge: "e1", device: "d-1", client: "ops", start: now, events: shellEvents("secret")})
	require.NoError(t, os.Symlink(secret, filepath.Join(day, "d-1", "e1-00000000000000ee.cast")))
	require.NoError(t, os.Symlink(filepath.Dir(secret), filepath.Join(day, "d-3")))

	l := listRecs(t, e.pki, e.url, "", auditorToken)
	require.Equal(t, []string{newest, mid, old}, recIDs(l), "newest first, x-9's and the malformed ones left out")
	r := l.Recordings[1]
	require.Equal(t, "e1", r.Edge)
	require.Equal(t, "d-2", r.Device)
	require.Equal(t, "peer", r.Client)
	require.Equal(t, "top", r.Command)
	require.Equal(t, "peer@d-2", r.Title)
	require.Equal(t, now.Add(-2*time.Hour), r.Start)
	require.Equal(t, 2.5, r.Duration, "the last event's time")
	require.Equal(t, 120, r.Width)
	require.Equal(t, 40, r.Height)
	st, err := os.Stat(oldPath)
	require.NoError(t, err)
	require.Equal(t, st.Size(), l.Recordings[2].Bytes)
	require.Equal(t, 2.5, l.Recordings[0].Duration, "the cut last line of a recording being written is not an event")

	require.Equal(t, []string{newest, hidden, mid}, recIDs(listRecs(t, e.pki, e.url, "?since=3h", wideToken)), "the wide client sees x-9")
	require.Equal(t, []string{newest, old}, recIDs(listRecs(t, e.pki, e.url, "?device=d-1", auditorToken)))
	require.Equal(t, []string{newest, mid}, recIDs(listRecs(t, e.pki, e.url, "?client=peer", auditorToken)))
	require.Equal(t, []string{newest}, recIDs(listRecs(t, e.pki, e.url, "?since="+now.Add(-time.Minute).Format(time.RFC3339), auditorToken)))
	require.Equal(t, []string{newest}, recIDs(listRecs(t, e.pki, e.url, "?limit=1", auditorToken)))
	require.Empty(t, recIDs(listRecs(t, e.pki, e.url, "?device=x-9", auditorToken)), "a device out of scope lists nothing")

	// The file changes: the index reads it again.
	f, err = os.OpenFile(newestPath, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString("ed\"]\n[9.5, \"m\", \"exit 0\"]\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.Equal(t, 9.5, listRecs(t, e.pki, e.url, "?limit=1", auditorToken).Recordings[0].Duration)

	for query, want := range map[string]string{
		"?status=all":      "unknown query parameter",
		"?since=yesterday": "RFC 3339",
		"?since=-1h":       "RFC 3339",
		"?limit=0":         "limit",
		"?limit=5000":      "limit",
		"?device=a/b":      "not a device ID",
		"?limit=1&limit=2": "once",
	} {
		code, _, body := apiGet(t, e.pki, e.url, "/api/recordings"+query, auditorToken)
		require.Equal(t, http.StatusBadRequest, code, query)
		require.Contains(t, body, want, query)
	}
	code, _, body := apiGet(t, e.pki, e.url, "/api/recordings", opsToken)
	require.Equal(t, http.StatusForbidden, code)
	require.Contains(t, body, `client ops may not read recordings`)
	require.Contains(t, body, `recordings: read`)
	code, _, _ = apiGet(t, e.pki, e.url, "/api/recordings", "")
	require.Equal(t, http.StatusUnauthorized, code)
	code, _, _ = apiGet(t, e.pki, e.url, "/api/recordings", "wrong-token-0123456789")
	require.Equal(t, http.StatusUnauthorized, code)
}

// TestRecordingsFetch: a recording's file comes back as written, to a
// client that may read it; an unknown ID, one out of the client's scope
// and every path that is not an ID get the same 404.
func TestRecordingsFetch(t *testing.T) {
	e := startRecEdge(t, "e1")
	now := time.Now().UTC()
	id, path := writeCast(t, e.dir, cast{edge: "e1", device: "d-1", client: "ops", start: now, events: shellEvents("fetched")})
	hidden, _ := writeCast(t, e.dir, cast{edge: "e1", device: "x-9", client: "ops", start: now, events: shellEvents("x")})
	want, err := os.ReadFile(path)
	require.NoError(t, err)

	code, hdr, body := apiGet(t, e.pki, e.url, "/api/recordings/"+id, auditorToken)
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "application/x-asciicast", hdr.Get("Content-Type"))
	require.Equal(t, string(want), body)
	var read []edge.Event
	for _, ev := range e.audit.Events() {
		if ev.Kind == edge.EventRecordingRead {
			read = append(read, ev)
		}
	}
	require.Len(t, read, 1)
	require.Equal(t, "auditor", read[0].Client)
	require.Equal(t, "d-1", read[0].Device)
	require.Equal(t, id, read[0].Path)

	code, _, body = apiGet(t, e.pki, e.url, "/api/recordings/"+hidden, wideToken)
	require.Equal(t, http.StatusOK, code, body)

	// The secret: a file outside the directory, and one the index must
	// not reach through a link.
	outside := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(outside, []byte("top-secret-content"), 0o600))
	day := filepath.Join(e.dir, now.Format("2006/01/02"), "d-1")
	require.NoError(t, os.Symlink(outside, filepath.Join(day, "e1-00000000000000ee.cast")))
	for _, p := range []string{
		hidden,                // exists, out of scope
		"e1-0123456789abcdef", // unknown
		"e1-00000000000000ee", // a link
		id + ".cast",          // not an ID
		"..%2F..%2F..%2Fetc%2Fpasswd",
		"../../../../etc/passwd",
		"%2e%2e-0123456789abcdef",
		now.Format("2006") + "%2F" + now.Format("01"),
		filepath.Base(outside),
		"e1-0123456789abcdef%00",
		"e1-0123456789ABCDEF",
	} {
		code, _, body := apiGet(t, e.pki, e.url, "/api/recordings/"+p, auditorToken)
		require.Equal(t, http.StatusNotFound, code, "%s: %s", p, body)
		require.NotContains(t, body, "top-secret-content")
	}
	code, _, body = apiGet(t, e.pki, e.url, "/api/recordings/"+id, opsToken)
	require.Equal(t, http.StatusForbidden, code, body)
}

// hiddenEdge adds to a presence view an edge that never answers.
type hiddenEdge struct {
	edge.Presence
	id string
}

func (p hiddenEdge) Edges() []edge.EdgeRecord {
	return append(p.Presence.Edges(), edge.EdgeRecord{ID: p.id, Started: time.Now(), Seen: time.Now()})
}

// TestClusterRecordings: a client of one edge lists the recordings of
// every edge of the cluster and fetches one that another edge holds,
// through the peer session; scope and 404s hold across the hop, and an
// edge that does not answer is named.
func TestClusterRecordings(t *testing.T) {
	rig := newClusterRig(t)
	dirs := map[string]string{"e1": t.TempDir(), "e2": t.TempDir(), "e3": t.TempDir()}
	rig.server = func(id string, srv *edge.Server) {
		// "partial" reads recordings on every edge but e1, whose policy
		// differs: e1 refuses it under its own.
		p, err := edge.NewStaticPolicy(append(recRules(), edge.ClientRule{Name: "partial", TokenSHA256: edge.HashToken(partialToken),
			Devices: []string{"*"}, Recordings: id != "e1"}))
		require.NoError(t, err)
		srv.Policy = p
		srv.Recording = &edge.RecordingConfig{Dir: dirs[id]}
	}
	rig.wrap = map[string]func(edge.Presence) edge.Presence{
		"e3": func(p edge.Presence) edge.Presence { return hiddenEdge{Presence: p, id: "e9"} },
	}
	for _, id := range []string{"e1", "e2", "e3"} {
		rig.start(id)
	}
	require.Eventually(t, func() bool {
		for _, e := range rig.edges {
			if len(e.presence.Edges()) != 3 {
				return false
			}
		}
		return true
	}, 20*time.Second, 10*time.Millisecond, "the edges did not see each other")

	now := time.Now().UTC().Truncate(time.Second)
	onE1, path := writeCast(t, dirs["e1"], cast{edge: "e1", device: "d-1", client: "ops", start: now.Add(-time.Minute), events: shellEvents("on e1")})
	onE2, _ := writeCast(t, dirs["e2"], cast{edge: "e2", device: "d-2", client: "ops", start: now, events: shellEvents("on e2")})
	hiddenE1, _ := writeCast(t, dirs["e1"], cast{edge: "e1", device: "x-9", client: "ops", start: now, events: shellEvents("x")})

	l := listRecs(t, rig.pki, rig.edges["e2"].url, "", auditorToken)
	require.Equal(t, []string{onE2, onE1}, recIDs(l), "both edges' recordings, x-9's left out")
	require.Equal(t, "e1", l.Recordings[1].Edge)
	require.Empty(t, l.Unavailable)
	require.Equal(t, []string{onE1}, recIDs(listRecs(t, rig.pki, rig.edges["e2"].url, "?device=d-1", auditorToken)))

	want, err := os.ReadFile(path)
	require.NoError(t, err)
	code, hdr, body := apiGet(t, rig.pki, rig.edges["e2"].url, "/api/recordings/"+onE1, auditorToken)
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "application/x-asciicast", hdr.Get("Content-Type"))
	require.Equal(t, string(want), body, "fetched from e1 through the peer session")
	var read bool
	for _, ev := range rig.edges["e2"].audit.Events() {
		read = read || ev.Kind == edge.EventRecordingRead && ev.Path == onE1 && ev.Peer == "e1" && ev.Client == "auditor"
	}
	require.True(t, read, "e2 audits the read with the edge that holds it")

	for _, id := range []string{hiddenE1, "e1-0123456789abcdef", "e7-0123456789abcdef"} {
		code, _, body := apiGet(t, rig.pki, rig.edges["e2"].url, "/api/recordings/"+id, auditorToken)
		require.Equal(t, http.StatusNotFound, code, "%s: %s", id, body)
	}
	code, _, body = apiGet(t, rig.pki, rig.edges["e2"].url, "/api/recordings/"+hiddenE1, wideToken)
	require.Equal(t, http.StatusOK, code, body)

	// e3 counts an edge e9 that never answers.
	l = listRecs(t, rig.pki, rig.edges["e3"].url, "", wideToken)
	require.ElementsMatch(t, []string{onE1, onE2, hiddenE1}, recIDs(l))
	require.Equal(t, []string{"e9"}, l.Unavailable)
	code, _, body = apiGet(t, rig.pki, rig.edges["e3"].url, "/api/recordings/e9-0123456789abcdef", wideToken)
	require.Equal(t, http.StatusBadGateway, code, body)
	require.Contains(t, body, "edge e9")

	// The edge that holds a recording checks the right under its own
	// policy.
	l = listRecs(t, rig.pki, rig.edges["e2"].url, "", partialToken)
	require.Equal(t, []string{onE2}, recIDs(l))
	require.Equal(t, []string{"e1"}, l.Unavailable)
	code, _, body = apiGet(t, rig.pki, rig.edges["e2"].url, "/api/recordings/"+onE1, partialToken)
	require.Equal(t, http.StatusForbidden, code, body)
	require.Contains(t, body, "client partial may not read recordings")

	// A client cannot send the edges' own message on its session.
	rig.device("e1", "d-1", nil)
	rig.waitEverywhere("d-1", "e1")
	cl := rig.client("e2", "d-1")
	req, err := wire.PeerRecordings{Op: wire.PeerRecordingsFetch, Via: "e2", Client: "wide", ID: hiddenE1}.Encode()
	require.NoError(t, err)
	_, _, err = cl.OpenStream(ctxT(t), wire.MsgPeerRecordings, req)
	var re *wire.RemoteError
	require.ErrorAs(t, err, &re)
	require.Contains(t, re.Reason, "unknown stream type 0x72")
}

package edge

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/transport/wire"
)

// This file is the web terminal's recordings: /web/recordings lists those
// the signed-in identity may read (as GET /api/recordings does),
// /web/recordings/{id} plays one with asciinema-player, and
// /web/recordings/{id}.cast is its file, for the player, with the session
// cookie.

// webPlayerCSP is the player page's policy: webCSP, and WebAssembly, which
// asciinema-player's terminal emulator is compiled to ('wasm-unsafe-eval'
// allows compiling WebAssembly only: no eval of script, no inline script).
var webPlayerCSP = strings.Replace(fmt.Sprintf(webCSP, ""), "script-src 'self'", "script-src 'self' 'wasm-unsafe-eval'", 1)

// webRecordingsLimit bounds the list page.
const webRecordingsLimit = 500

// webRecordingRow is a line of the recordings page.
type webRecordingRow struct {
	ID, Start, Device, Client, Duration, Size, Edge, Command string
}

func (s *Server) serveWebRecordings(w http.ResponseWriter, r *http.Request) {
	webHeaders(w, "")
	rest := strings.TrimPrefix(r.URL.Path, "/web/recordings")
	me, err := s.webSessionFrom(w, r)
	if errors.Is(err, errWebUnchecked) {
		webUnchecked(w, err)
		return
	}
	if err != nil {
		if rest == "" || !strings.HasSuffix(rest, castExt) {
			http.Redirect(w, r, "/web/login", http.StatusSeeOther)
			return
		}
		http.Error(w, "not signed in, or the session ended: sign in again", http.StatusUnauthorized)
		return
	}
	pol := me.auth.policy
	if !canReadRecordings(pol, me.id) {
		http.Error(w, recordingsRefusal(me.id.Name), http.StatusForbidden)
		return
	}
	id, isFile := strings.CutSuffix(strings.TrimPrefix(rest, "/"), castExt)
	switch {
	case rest == "":
		s.serveWebRecordingList(w, r, me)
	case !wire.ValidRecordingID(id):
		http.Error(w, "not a recording ID (<edge>-<16 hex digits>)", http.StatusNotFound)
	case isFile:
		s.serveRecordingFile(w, r, pol, me.id, id, "web")
	default:
		s.serveWebPlayer(w, r, me, id)
	}
}

func (s *Server) serveWebRecordingList(w http.ResponseWriter, r *http.Request, me webIdentity) {
	q := recordingQuery{limit: webRecordingsLimit}
	device := r.URL.Query().Get("device")
	if device != "" {
		if certs.ValidDeviceID(device) != nil {
			http.Error(w, "the device query parameter must be a device ID", http.StatusBadRequest)
			return
		}
		q.device = device
	}
	list := s.listRecordings(r.Context(), me.auth.policy, me.id, q)
	rows := make([]webRecordingRow, 0, len(list.Recordings))
	for _, rec := range list.Recordings {
		rows = append(rows, webRecordingRow{ID: rec.ID, Start: rec.Start.Format("2006-01-02 15:04:05 UTC"), Device: rec.Device,
			Client: rec.Client, Duration: (time.Duration(rec.Duration * float64(time.Second))).Round(time.Second).String(),
			Size: byteSize(rec.Bytes), Edge: rec.Edge, Command: rec.Command})
	}
	notice := ""
	if len(list.Unavailable) > 0 {
		notice = "Edges " + strings.Join(list.Unavailable, ", ") + " did not answer: their recordings are missing. Reload to try again."
	}
	s.render(w, http.StatusOK, "recordings.html", map[string]any{"Identity": me.id.Name, "CSRF": s.web.signer.csrf(me.sess.ID),
		"Recordings": rows, "Device": device, "Notice": notice})
}

// serveWebPlayer serves the player page of recording id. The page names
// the recording; its file comes from serveRecordingFile, which checks the
// scope on whichever edge holds it.
func (s *Server) serveWebPlayer(w http.ResponseWriter, r *http.Request, me webIdentity, id string) {
	title, start := id, ""
	if info, _, ok := s.recordings().find(id); ok {
		if !s.mayReadRecordingsOf(me.auth.policy, me.id, info.Device) {
			http.Error(w, fmt.Sprintf("no recording %s that client %s may read", id, me.id.Name), http.StatusNotFound)
			return
		}
		title, start = info.Title, info.Start.Format("2006-01-02 15:04:05 UTC")
		if title == "" {
			title = info.Client + "@" + info.Device
		}
	}
	w.Header().Set("Content-Security-Policy", webPlayerCSP)
	s.render(w, http.StatusOK, "play.html", map[string]any{"ID": id, "Title": title, "Start": start})
}

// byteSize writes n bytes for people: 812 B, 48.2 KiB, 3.1 MiB.
func byteSize(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}

package certs

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// FileCert serves a certificate, with the chain its file holds, and its
// key from their files, read again at the first handshake after either
// file's modification time changed: a renewed certificate is used from
// the next connection on, without a restart. Files that changed but do
// not load (a renewal half written, a key that does not match) keep the
// previous certificate, and the failure is logged once per change. A
// FileCert is safe for concurrent use.
type FileCert struct {
	cert, key string
	what      string // names it in the log: "edge certificate"
	log       *slog.Logger
	check     func(*tls.Certificate) error // set by Verify; nil: none

	mu sync.Mutex
	// mu guards the following.
	current         *tls.Certificate
	certMod, keyMod time.Time
}

// NewFileCert loads the certificate what (a name for the log, such as
// "edge certificate") from certFile and keyFile, and logs its reloads to
// log (nil: nowhere).
func NewFileCert(certFile, keyFile, what string, log *slog.Logger) (*FileCert, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &FileCert{cert: certFile, key: keyFile, what: what, log: log}
	if _, err := f.Certificate(); err != nil {
		return nil, err
	}
	return f, nil
}

// Certificate returns the certificate, read again first if either file
// changed.
func (f *FileCert) Certificate() (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cm, km := modTime(f.cert), modTime(f.key)
	if f.current != nil && cm.Equal(f.certMod) && km.Equal(f.keyMod) {
		return f.current, nil
	}
	tc, err := tls.LoadX509KeyPair(f.cert, f.key)
	why := "do not load"
	if err == nil && f.check != nil {
		if err = f.check(&tc); err != nil {
			why = "hold a certificate that fails its check"
		}
	}
	if err != nil {
		if f.current != nil {
			f.log.Warn(f.what+" files changed but "+why+"; still using the previous certificate", "cert", f.cert, "key", f.key, "err", err)
			f.certMod, f.keyMod = cm, km // log once per change
			return f.current, nil
		}
		return nil, fmt.Errorf("%s: %w", f.what, err)
	}
	if f.current != nil {
		f.log.Info(f.what+" reloaded from disk", "cert", f.cert, "serial", SerialHex(tc.Leaf), "not_after", tc.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	f.current, f.certMod, f.keyMod = &tc, cm, km
	return f.current, nil
}

// Verify makes f serve only certificates that pass check, the caller's
// own rules for them (a CA, a name, a key usage): the certificate served
// now is checked at once, and its error returned; a renewal that fails is
// kept out as files that do not load are. Call it before f serves.
func (f *FileCert) Verify(check func(*tls.Certificate) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := check(f.current); err != nil {
		return fmt.Errorf("%s: %w", f.what, err)
	}
	f.check = check
	return nil
}

// GetCertificate serves the certificate as a tls.Config's
// GetCertificate, for a server.
func (f *FileCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return f.Certificate()
}

// GetClientCertificate serves the certificate as a tls.Config's
// GetClientCertificate, for a client.
func (f *FileCert) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return f.Certificate()
}

func modTime(path string) time.Time {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/device/agent"
	"github.com/tetherhq/tether/internal/logx"
)

// deviceTLS builds the agent's TLS configuration from the files the config
// names. The CA bundle is read once; the certificate and key are read again
// at a handshake after either file changed, so a renewed certificate is used
// from the next reconnect on without a restart. A renewal that does not load
// keeps the previous certificate and is logged.
func deviceTLS(cfg *agent.Config, log *slog.Logger) (*tls.Config, error) {
	log = logx.Or(log)
	pool, err := certs.LoadPool(cfg.CA)
	if err != nil {
		return nil, fmt.Errorf("edge CA file %s: %w", cfg.CA, err)
	}
	cf := &certFiles{cert: cfg.Cert, key: cfg.Key, log: log}
	tc0, err := cf.load()
	if err != nil {
		return nil, err
	}
	warnExpiry(log, cfg.Cert, tc0.Leaf.NotAfter, time.Now())
	tc := certs.DeviceTLSConfig(tls.Certificate{}, pool)
	tc.Certificates = nil
	tc.GetClientCertificate = cf.get
	return tc, nil
}

// expiryWarning: a certificate closer than this to its end is logged at
// start.
const expiryWarning = 30 * 24 * time.Hour

// warnExpiry logs a certificate closer than expiryWarning to its end, or
// past it, with the time left or gone as a person would say it.
func warnExpiry(log *slog.Logger, path string, notAfter, now time.Time) {
	left := notAfter.Sub(now)
	switch {
	case left <= 0:
		log.Error("the device certificate expired "+roughly(-left)+" ago, and the edge refuses it; issue a new one and replace the files (the agent picks them up at its next connection)",
			"cert", path, "not_after", notAfter.UTC().Format(time.RFC3339))
	case left < expiryWarning:
		log.Warn("the device certificate expires in "+roughly(left)+"; issue a new one and replace the files (the agent picks them up at its next connection)",
			"cert", path, "not_after", notAfter.UTC().Format(time.RFC3339))
	}
}

// certFiles serves the device certificate from its files, reloading them
// when their modification time changes.
type certFiles struct {
	cert, key string
	log       *slog.Logger

	mu sync.Mutex
	// mu guards the following.
	current         *tls.Certificate
	certMod, keyMod time.Time
}

func modTime(path string) time.Time {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// load reads both files if they changed since the last load.
func (f *certFiles) load() (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cm, km := modTime(f.cert), modTime(f.key)
	if f.current != nil && cm.Equal(f.certMod) && km.Equal(f.keyMod) {
		return f.current, nil
	}
	kp, err := certs.Load(f.cert, f.key)
	if err != nil {
		if f.current != nil {
			f.log.Warn("device certificate files changed but do not load; still using the previous certificate", "cert", f.cert, "key", f.key, "err", err)
			f.certMod, f.keyMod = cm, km // log once per change
			return f.current, nil
		}
		return nil, fmt.Errorf("device certificate: %w", err)
	}
	tc := kp.TLSCertificate()
	if f.current != nil {
		f.log.Info("device certificate reloaded from disk", "cert", f.cert, "serial", certs.SerialHex(kp.Cert), "not_after", kp.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	f.current, f.certMod, f.keyMod = &tc, cm, km
	return f.current, nil
}

func (f *certFiles) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return f.load()
}

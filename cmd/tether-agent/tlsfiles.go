package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/device/agent"
	"github.com/tetherhq/tether/internal/logx"
)

// deviceTLS builds the agent's TLS configuration from the files the config
// names. The CA bundle is read once; the certificate and key are read again
// at a handshake after either file changed (certs.FileCert), so a renewed
// certificate is used from the next reconnect on without a restart. A
// renewal that does not load keeps the previous certificate and is logged.
func deviceTLS(cfg *agent.Config, log *slog.Logger) (*tls.Config, error) {
	log = logx.Or(log)
	pool, err := certs.LoadPool(cfg.CA)
	if err != nil {
		return nil, fmt.Errorf("edge CA file %s: %w", cfg.CA, err)
	}
	cf, err := certs.NewFileCert(cfg.Cert, cfg.Key, "device certificate", log)
	if err != nil {
		return nil, err
	}
	tc0, err := cf.Certificate()
	if err != nil {
		return nil, err
	}
	warnExpiry(log, cfg.Cert, tc0.Leaf.NotAfter, time.Now())
	tc := certs.DeviceTLSConfig(tls.Certificate{}, pool)
	tc.Certificates = nil
	tc.GetClientCertificate = cf.GetClientCertificate
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

package testutil

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// NewToken returns a random client token and its SHA-256 in hex, as the
// token_sha256 of a client in edge.yaml wants it.
func NewToken(tb testing.TB) (token, sum string) {
	tb.Helper()
	b := make([]byte, 32)
	_, err := rand.Read(b)
	require.NoError(tb, err)
	token = hex.EncodeToString(b)
	h := sha256.Sum256([]byte(token))
	return token, hex.EncodeToString(h[:])
}

// Healthy reports whether GET base+"/healthz" answers 200 OK: a running
// tether-edge at base ("https://127.0.0.1:PORT") is serving.
func Healthy(hc *http.Client, base string) bool {
	resp, err := hc.Get(base + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// GetJSON GETs url with token as a bearer token (none if empty) and
// decodes the JSON answer, at most 1 MiB, into v. An answer other than
// 200 OK is an error.
func GetJSON(hc *http.Client, url, token string, v any) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", req.URL.Path, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v); err != nil {
		return fmt.Errorf("GET %s: decode: %w", req.URL.Path, err)
	}
	return nil
}

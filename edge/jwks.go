package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// Limits of what the edge reads from an identity provider.
const (
	maxDiscoveryBody = 256 << 10
	maxJWKSBody      = 1 << 20
	idpTimeout       = 10 * time.Second
	// DefaultKeyRefetch is how often at most the edge fetches an
	// issuer's keys again for a token signed by a key it does not know.
	DefaultKeyRefetch = time.Minute
)

// signingAlgs are the JWS algorithms the edge accepts; "none" and the
// HMAC ones never are.
var signingAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512,
	jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512, jose.EdDSA}

func algNames() []string {
	out := make([]string, len(signingAlgs))
	for i, a := range signingAlgs {
		out[i] = string(a)
	}
	return out
}

// discovery is the part of an issuer's OpenID configuration the edge uses.
type discovery struct {
	Issuer                      string `json:"issuer"`
	JWKSURI                     string `json:"jwks_uri"`
	AuthorizationEndpoint       string `json:"authorization_endpoint"`
	TokenEndpoint               string `json:"token_endpoint"`
	DeviceAuthorizationEndpoint string `json:"device_authorization_endpoint"`
}

// keySet is an issuer's signing keys, as an oidc.KeySet for go-oidc's
// verifier. It fetches them on first use and again for a token signed
// with a key it does not know, at most once per refetch interval: a flood
// of tokens with made-up key IDs costs the provider one request a minute.
// Between fetches, verification makes no network call.
type keySet struct {
	issuer  string
	client  *http.Client
	refetch time.Duration
	now     func() time.Time

	keys    atomic.Pointer[jose.JSONWebKeySet]
	fetches atomic.Int64 // JWKS fetches made, for tests and metrics

	mu sync.Mutex
	// mu guards the following, and serializes fetches.
	disc      *discovery
	lastFetch time.Time
}

// errUnknownKey: the token's key ID is not among the issuer's keys.
var errUnknownKey = errors.New("the token is signed with a key the identity provider does not publish")

// VerifySignature implements oidc.KeySet.
func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, signingAlgs)
	if err != nil {
		return nil, fmt.Errorf("malformed token: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("the token must carry exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	if p, ok := k.verifyWith(k.keys.Load(), jws, kid); ok {
		return p, nil
	}
	if err := k.fetch(ctx, kid); err != nil {
		return nil, err
	}
	if p, ok := k.verifyWith(k.keys.Load(), jws, kid); ok {
		return p, nil
	}
	if kid != "" && k.lookup(k.keys.Load(), kid) == nil {
		return nil, fmt.Errorf("%w (kid %q)", errUnknownKey, kid)
	}
	return nil, errors.New("the token's signature does not verify")
}

func (k *keySet) lookup(set *jose.JSONWebKeySet, kid string) *jose.JSONWebKey {
	if set == nil {
		return nil
	}
	for i := range set.Keys {
		if set.Keys[i].KeyID == kid && set.Keys[i].Use != "enc" {
			return &set.Keys[i]
		}
	}
	return nil
}

// verifyWith verifies jws with the key kid names, or with every signing
// key when it names none.
func (k *keySet) verifyWith(set *jose.JSONWebKeySet, jws *jose.JSONWebSignature, kid string) ([]byte, bool) {
	if set == nil {
		return nil, false
	}
	if kid != "" {
		key := k.lookup(set, kid)
		if key == nil {
			return nil, false
		}
		p, err := jws.Verify(key)
		return p, err == nil
	}
	for i := range set.Keys {
		if set.Keys[i].Use == "enc" {
			continue
		}
		if p, err := jws.Verify(&set.Keys[i]); err == nil {
			return p, true
		}
	}
	return nil, false
}

// fetch fetches the keys again unless they were fetched within the
// refetch interval (or already hold kid, fetched by a concurrent call).
func (k *keySet) fetch(ctx context.Context, kid string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if kid != "" && k.lookup(k.keys.Load(), kid) != nil {
		return nil
	}
	now := k.now()
	if !k.lastFetch.IsZero() && now.Sub(k.lastFetch) < k.refetch {
		return fmt.Errorf("%w (kid %q); the edge fetches the provider's keys at most once every %v", errUnknownKey, kid, k.refetch)
	}
	k.lastFetch = now
	ctx, cancel := context.WithTimeout(ctx, idpTimeout)
	defer cancel()
	d, err := k.discoveryLocked(ctx)
	if err != nil {
		return err
	}
	var set jose.JSONWebKeySet
	if err := getJSON(ctx, k.client, d.JWKSURI, maxJWKSBody, &set); err != nil {
		return fmt.Errorf("fetch the identity provider's keys: %w", err)
	}
	k.fetches.Add(1)
	k.keys.Store(&set)
	return nil
}

// discoveryLocked returns the issuer's OpenID configuration, fetched once.
func (k *keySet) discoveryLocked(ctx context.Context) (*discovery, error) {
	if k.disc != nil {
		return k.disc, nil
	}
	var d discovery
	u := strings.TrimSuffix(k.issuer, "/") + "/.well-known/openid-configuration"
	if err := getJSON(ctx, k.client, u, maxDiscoveryBody, &d); err != nil {
		return nil, fmt.Errorf("read the identity provider's configuration: %w", err)
	}
	if d.Issuer != k.issuer {
		return nil, fmt.Errorf("the identity provider at %s calls itself %q; set the issuer to exactly that", k.issuer, d.Issuer)
	}
	if err := checkIdPURL(d.JWKSURI); err != nil {
		return nil, fmt.Errorf("the identity provider's jwks_uri: %w", err)
	}
	k.disc = &d
	return &d, nil
}

// discovery returns the issuer's OpenID configuration, fetched once.
func (k *keySet) discovery(ctx context.Context) (*discovery, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, idpTimeout)
	defer cancel()
	return k.discoveryLocked(ctx)
}

// getJSON GETs u and decodes at most limit bytes of JSON into v.
func getJSON(ctx context.Context, c *http.Client, u string, limit int64, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if int64(len(b)) > limit {
		return fmt.Errorf("GET %s: the answer is larger than %d bytes", u, limit)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}

// checkIdPURL accepts https URLs, and http ones on a loopback host only
// (an identity provider on the same machine, as in tests).
func checkIdPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	switch {
	case u.Scheme == "https" && u.Host != "":
		return nil
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
		return nil
	}
	return fmt.Errorf("%q must be an https URL (http only on a loopback address)", s)
}

func isLoopbackHost(h string) bool {
	return h == "localhost" || h == "::1" || strings.HasPrefix(h, "127.")
}

var _ oidc.KeySet = (*keySet)(nil)

package edge

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"syscall"
	"testing"
	"time"

	"github.com/tetherhq/tether/certs"
	"github.com/tetherhq/tether/internal/testoidc"
)

func FuzzUnverifiedIssuer(f *testing.F) {
	f.Add("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2V4YW1wbGUuY29tIn0.sig")
	f.Add("a.b.c")
	f.Add("...")
	f.Fuzz(func(t *testing.T, s string) {
		iss, err := unverifiedIssuer(s)
		if err == nil && len(iss) > len(s) {
			t.Fatalf("issuer %q longer than its token", iss)
		}
	})
}

func FuzzParseCSR(f *testing.F) {
	key, _ := certs.NewUserKey()
	der, _ := certs.UserCSR(key)
	f.Add(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})))
	f.Add("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
	f.Fuzz(func(t *testing.T, s string) {
		csr, err := parseCSR(s)
		if err == nil && csr.CheckSignature() != nil {
			t.Fatal("parseCSR accepted a request whose signature does not verify")
		}
	})
}

// benchAuth is an auth runtime with a user CA and a JWT issuer whose
// keys are already fetched, as on a running edge.
func benchAuth(b *testing.B) (*authRuntime, []*x509.Certificate, string, *testoidc.Provider) {
	b.Helper()
	idp, err := testoidc.Start("127.0.0.1:0", testoidc.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { idp.Close() })
	ca, err := certs.NewCA("bench user CA", certs.Options{})
	if err != nil {
		b.Fatal(err)
	}
	key, _ := certs.NewUserKey()
	cert, err := ca.IssueUser(key.Public(), "alice@example.com", []string{"field-eng", "ops"}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	rt := newAuthRuntime(&AuthConfig{UserCA: certs.PoolOf(ca.Cert),
		JWTIssuers: []JWTIssuer{{Issuer: idp.Issuer, Audiences: []string{"tether-ci"}}}}, nil)
	tok, err := idp.Mint(testoidc.Claims{Audience: []string{"tether-ci"}})
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := rt.verifyJWT(context.Background(), tok); err != nil {
		b.Fatal(err)
	}
	return rt, []*x509.Certificate{cert}, tok, idp
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// perOp runs f n times and returns the CPU time per run, in
// microseconds: on a shared machine the wall time counts other
// processes' turns, the CPU time only this work.
func perOp(n int, f func()) float64 {
	start := cpuTime()
	for range n {
		f()
	}
	return float64(cpuTime()-start) / float64(n) / 1e3
}

// connectAuthGoal is what authenticating a client may cost on connect.
const connectAuthGoal = 200 * time.Microsecond

// BenchmarkConnectAuth measures what authenticating a client costs on
// connect, in CPU time per check: a static token (the baseline), a user
// certificate against the user CA and a bearer JWT against the issuer's
// cached keys, each seen for the first time (the signature is checked)
// and again (the edge remembers it). x-goal is the first-time cost over
// the 0.2 ms goal. None calls the identity provider: the JWKS fetches are
// counted around the runs.
func BenchmarkConnectAuth(b *testing.B) {
	rt, chain, tok, idp := benchAuth(b)
	p, err := NewStaticPolicy([]ClientRule{{Name: "ops", TokenSHA256: HashToken("ops-token-0123456789"), Devices: []string{"*"}}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	check := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	before := idp.JWKSFetches()
	const n = 2000
	for b.Loop() {
		token := perOp(n, func() {
			if _, ok := p.Authenticate("ops-token-0123456789"); !ok {
				b.Fatal("token refused")
			}
		})
		certFirst := perOp(n, func() {
			rt.verified = verifiedCache{}
			_, _, err := rt.verifyUserCert(chain)
			check(err)
		})
		jwtFirst := perOp(n, func() {
			rt.verified = verifiedCache{}
			_, _, err := rt.verifyJWT(ctx, tok)
			check(err)
		})
		certAgain := perOp(n, func() { _, _, err := rt.verifyUserCert(chain); check(err) })
		jwtAgain := perOp(n, func() { _, _, err := rt.verifyJWT(ctx, tok); check(err) })
		goal := float64(connectAuthGoal.Microseconds())
		b.ReportMetric(token, "token-cpu-us")
		b.ReportMetric(certFirst, "cert-cpu-us")
		b.ReportMetric(jwtFirst, "jwt-cpu-us")
		b.ReportMetric(certAgain, "cert-again-cpu-us")
		b.ReportMetric(jwtAgain, "jwt-again-cpu-us")
		b.ReportMetric(max(certFirst, jwtFirst)/goal, "x-goal")
	}
	if n := idp.JWKSFetches() - before; n != 0 {
		b.Fatalf("verification called the identity provider %d times", n)
	}
}

package certs_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/tetherhq/tether/certs"
)

func TestUserCertificates(t *testing.T) {
	userCA, err := certs.NewCA("user CA", certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	devCA, err := certs.NewCA("device CA", certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	key, err := certs.NewUserKey()
	if err != nil {
		t.Fatal(err)
	}
	groups := []string{"field-eng", "site admins/berlin", "ünïcode"}
	cert, err := userCA.IssueUser(key.Public(), "alice@example.com", groups, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got := time.Until(cert.NotAfter); got > certs.MaxUserLifetime {
		t.Fatalf("lifetime %v; want at most %v", got, certs.MaxUserLifetime)
	}
	users := certs.PoolOf(userCA.Cert)
	u, err := certs.VerifyUser([]*x509.Certificate{cert}, users, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "alice@example.com" || len(u.Groups) != 3 || u.Groups[1] != "site admins/berlin" || u.Groups[2] != "ünïcode" {
		t.Fatalf("got %+v", u)
	}
	if u.Serial != certs.SerialHex(cert) {
		t.Fatalf("serial %s; want %s", u.Serial, certs.SerialHex(cert))
	}

	// 60 s of skew on either side of the start; none past the end.
	if _, err := certs.VerifyUser([]*x509.Certificate{cert}, users, time.Now().Add(-50*time.Second)); err != nil {
		t.Fatalf("a verifier 50 s behind: %v", err)
	}
	if _, err := certs.VerifyUser([]*x509.Certificate{cert}, users, cert.NotAfter.Add(time.Second)); err == nil {
		t.Fatal("an expired user certificate verified")
	}
	// Another CA's user certificate.
	if _, err := certs.VerifyUser([]*x509.Certificate{cert}, certs.PoolOf(devCA.Cert), time.Now()); err == nil {
		t.Fatal("a user certificate verified against another CA")
	}
	// A device certificate, even one the user CA signed, is no user's.
	dev, err := userCA.IssueDevice("gw-1", certs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := certs.VerifyUser([]*x509.Certificate{dev.Cert}, users, time.Now()); !errors.Is(err, certs.ErrNotUserCert) {
		t.Fatalf("device certificate as a user's: %v; want ErrNotUserCert", err)
	}
	// A user certificate, even one the device CA signed, is no device's.
	asDev, err := devCA.IssueUser(key.Public(), "gw-1", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := certs.VerifyDevice([]*x509.Certificate{asDev}, certs.PoolOf(devCA.Cert), time.Now()); !errors.Is(err, certs.ErrUserCertAsDevice) {
		t.Fatalf("user certificate as a device's: %v; want ErrUserCertAsDevice", err)
	}

	// Only P-256 keys, and names and groups without control characters.
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := userCA.IssueUser(p384.Public(), "alice", nil, time.Hour); err == nil {
		t.Fatal("a P-384 key was signed")
	}
	for _, bad := range []struct {
		name   string
		groups []string
	}{{"", nil}, {"a\nb", nil}, {"alice", []string{""}}, {"alice", []string{"x\x00"}}} {
		if _, err := userCA.IssueUser(key.Public(), bad.name, bad.groups, time.Hour); err == nil {
			t.Fatalf("signed name %q groups %q", bad.name, bad.groups)
		}
	}
}

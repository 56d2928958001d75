package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/oauth2"

	"github.com/tetherhq/tether/certs"
)

// A login is a user key and the certificate the edge signed for it after
// an SSO sign-in, kept per profile beside the config file:
// <config dir>/logins/<profile>/user.key and user.crt, both mode 0600.
// Without a profile the directory is named after the edge's host and
// port. A token, when one is set, wins over the login.

// Limits of what login reads from the edge and the identity provider.
const (
	maxAuthAnswer = 256 << 10
	loginTimeout  = 30 * time.Second
)

// loginDirFor is the directory of the login of a profile, or of an edge
// when no profile is in use; "" when there is no config directory.
func loginDirFor(cfgPath, profile, edge string) string {
	if cfgPath == "" {
		return ""
	}
	name := profile
	if name == "" {
		host := strings.TrimPrefix(edge, "https://")
		host = strings.TrimRight(host, "/")
		if host == "" {
			return ""
		}
		name = "edge-" + strings.NewReplacer(":", "_", "/", "_", "[", "", "]", "").Replace(host)
	}
	return filepath.Join(filepath.Dir(cfgPath), "logins", name)
}

func loginPaths(dir string) (cert, key string) {
	return filepath.Join(dir, "user.crt"), filepath.Join(dir, "user.key")
}

// errLoginExpired: the login's certificate expired.
type errLoginExpired struct{ at time.Time }

func (e *errLoginExpired) Error() string {
	return fmt.Sprintf("your login expired at %s; run `tether login`", e.at.Local().Format("2006-01-02 15:04:05 MST"))
}

// loadLogin reads the login of s; os.ErrNotExist when there is none, and
// an *errLoginExpired when its certificate has expired.
func loadLogin(s *Settings) (*tls.Certificate, error) {
	if s.LoginDir == "" {
		return nil, os.ErrNotExist
	}
	certPath, keyPath := loginPaths(s.LoginDir)
	tc, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, os.ErrNotExist
		}
		return nil, &configError{fmt.Errorf("read your login in %s: %w; run `tether login` again", s.LoginDir, err)}
	}
	if time.Now().After(tc.Leaf.NotAfter) {
		return nil, &configError{&errLoginExpired{tc.Leaf.NotAfter}}
	}
	return &tc, nil
}

// hasLogin reports whether s has a login file, expired or not.
func hasLogin(s *Settings) bool {
	if s.LoginDir == "" {
		return false
	}
	c, _ := loginPaths(s.LoginDir)
	_, err := os.Stat(c)
	return err == nil
}

type loginOptions struct {
	g       *globalOptions
	browser bool
}

func newLoginCommand(g *globalOptions) *cobra.Command {
	o := &loginOptions{g: g}
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Sign in with the edge's identity provider and get a short-lived certificate",
		Long: `Sign in with the identity provider the edge names (GET /api/auth/config). By
default this uses the device authorization grant: open the address shown,
enter the code, and sign in there, from any machine. With --browser, a
browser on this machine signs in (authorization code with PKCE and a
loopback redirect). The edge then signs a certificate for a new P-256 key,
valid for a few hours at most; both are kept, mode 0600, for the profile (or
the edge) and used instead of a token until they expire.`,
		Example: `  tether login --edge https://edge.example.com:8443
  tether --profile prod login --browser
  tether whoami`,
		Args: argsUsage(cobra.NoArgs, "tether login [--browser]"),
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context()) },
	}
	cmd.Flags().BoolVar(&o.browser, "browser", false, "sign in with a browser on this machine instead of a code")
	return cmd
}

// authConfig is GET /api/auth/config.
type authConfig struct {
	Issuer                      string   `json:"issuer"`
	ClientID                    string   `json:"client_id"`
	Scopes                      []string `json:"scopes"`
	AuthorizationEndpoint       string   `json:"authorization_endpoint"`
	TokenEndpoint               string   `json:"token_endpoint"`
	DeviceAuthorizationEndpoint string   `json:"device_authorization_endpoint"`
}

func (o *loginOptions) run(ctx context.Context) error {
	s, err := o.g.settings()
	if err != nil {
		return err
	}
	if s.Edge == "" {
		return usageErrorf("no edge URL: pass --edge https://HOST:PORT, set %s, or add a profile", EnvEdge)
	}
	if s.LoginDir == "" {
		return &configError{errors.New("no place to keep the login: set HOME or XDG_CONFIG_HOME, or pass --config")}
	}
	edgeTLS, err := tlsConfig(&Settings{CA: s.CA})
	if err != nil {
		return err
	}
	edgeHTTP := &http.Client{Timeout: loginTimeout, Transport: &http.Transport{TLSClientConfig: edgeTLS}}
	defer edgeHTTP.CloseIdleConnections()
	edge := strings.TrimRight(s.Edge, "/")

	var ac authConfig
	if err := getEdgeJSON(ctx, edgeHTTP, edge+"/api/auth/config", &ac); err != nil {
		return err
	}
	oc := &oauth2.Config{ClientID: ac.ClientID, Scopes: ac.Scopes, Endpoint: oauth2.Endpoint{
		AuthURL: ac.AuthorizationEndpoint, TokenURL: ac.TokenEndpoint, DeviceAuthURL: ac.DeviceAuthorizationEndpoint,
		AuthStyle: oauth2.AuthStyleInParams}}
	idpHTTP := &http.Client{Timeout: loginTimeout}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, idpHTTP)
	var idToken, nonce string
	if o.browser {
		idToken, nonce, err = o.browserFlow(ctx, oc)
	} else {
		idToken, err = o.deviceFlow(ctx, oc)
	}
	if err != nil {
		return err
	}

	key, err := certs.NewUserKey()
	if err != nil {
		return err
	}
	csr, err := certs.UserCSR(key)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]string{"id_token": idToken, "nonce": nonce,
		"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}))})
	var ans struct {
		Certificate string    `json:"certificate"`
		Name        string    `json:"name"`
		Groups      []string  `json:"groups"`
		NotAfter    time.Time `json:"not_after"`
	}
	if err := postEdgeJSON(ctx, edgeHTTP, edge+"/api/auth/exchange", body, &ans); err != nil {
		return err
	}
	blk, _ := pem.Decode([]byte(ans.Certificate))
	if blk == nil {
		return errors.New("the edge answered without a certificate; try again, and tell the edge's operator if it persists")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return fmt.Errorf("the edge's certificate: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	certPath, keyPath := loginPaths(s.LoginDir)
	if err := os.MkdirAll(s.LoginDir, 0o700); err != nil {
		return &configError{err}
	}
	if err := certs.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600, true); err != nil {
		return &configError{err}
	}
	if err := certs.WriteFile(certPath, pem.EncodeToMemory(blk), 0o600, true); err != nil {
		return &configError{err}
	}
	fmt.Fprintf(o.g.io.Out, "Signed in as %s%s, until %s (%s).\n", ans.Name, groupsText(ans.Groups),
		cert.NotAfter.Local().Format("15:04 MST"), time.Until(cert.NotAfter).Round(time.Minute))
	return nil
}

func groupsText(g []string) string {
	if len(g) == 0 {
		return ""
	}
	return " (groups: " + strings.Join(g, ", ") + ")"
}

// deviceFlow runs the device authorization grant (RFC 8628) and returns
// the ID token.
func (o *loginOptions) deviceFlow(ctx context.Context, oc *oauth2.Config) (string, error) {
	if oc.Endpoint.DeviceAuthURL == "" {
		return "", errors.New("the identity provider offers no device sign-in; run `tether login --browser`")
	}
	da, err := oc.DeviceAuth(ctx)
	if err != nil {
		return "", fmt.Errorf("start the sign-in at the identity provider: %w", err)
	}
	fmt.Fprintf(o.g.io.ErrOut, "To sign in, open %s and enter the code %s\n", da.VerificationURI, da.UserCode)
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(o.g.io.ErrOut, "(or open %s)\n", da.VerificationURIComplete)
	}
	fmt.Fprintln(o.g.io.ErrOut, "Waiting for the sign-in…")
	tok, err := oc.DeviceAccessToken(ctx, da)
	if err != nil {
		return "", fmt.Errorf("the sign-in did not complete: %w; run `tether login` again", err)
	}
	return idTokenOf(tok)
}

func idTokenOf(tok *oauth2.Token) (string, error) {
	id, _ := tok.Extra("id_token").(string)
	if id == "" {
		return "", errors.New("the identity provider sent no ID token; the client at the provider must allow the openid scope")
	}
	return id, nil
}

// browserFlow runs the authorization code flow with PKCE, a state and a
// nonce, with a loopback redirect (RFC 8252), and returns the ID token
// and the nonce.
func (o *loginOptions) browserFlow(ctx context.Context, oc *oauth2.Config) (string, string, error) {
	if oc.Endpoint.AuthURL == "" {
		return "", "", errors.New("the identity provider offers no browser sign-in; run `tether login` without --browser")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", err
	}
	defer ln.Close()
	oc.RedirectURL = "http://" + ln.Addr().String() + "/callback"
	state, nonce, verifier := randomText(), randomText(), oauth2.GenerateVerifier()
	u := oc.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", nonce))
	type result struct {
		code string
		err  error
	}
	got := make(chan result, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		var res result
		switch {
		case q.Get("state") != state:
			res.err = errors.New("the sign-in came back with another state; run `tether login` again")
		case q.Get("error") != "":
			res.err = fmt.Errorf("the identity provider refused the sign-in: %s %s", q.Get("error"), q.Get("error_description"))
		default:
			res.code = q.Get("code")
		}
		if res.err != nil {
			http.Error(w, res.err.Error(), http.StatusBadRequest)
		} else {
			fmt.Fprintln(w, "Signed in. You can close this window and return to the terminal.")
		}
		// The page goes out before the login goes on: it may finish, and
		// stop this server, before the handler returns.
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		select {
		case got <- res:
		default:
		}
	})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	defer func() {
		// Shutdown lets the browser's answer finish; Close ends what is
		// left after a few seconds (a browser that keeps a request open).
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
		srv.Close()
		<-done
	}()
	fmt.Fprintf(o.g.io.ErrOut, "To sign in, open this address in a browser on this machine:\n%s\n", u)
	openBrowser(u)
	var res result
	select {
	case res = <-got:
	case <-ctx.Done():
		return "", "", ctx.Err()
	case <-time.After(5 * time.Minute):
		return "", "", errors.New("no sign-in within 5 minutes; run `tether login --browser` again")
	}
	if res.err != nil {
		return "", "", res.err
	}
	tok, err := oc.Exchange(ctx, res.code, oauth2.VerifierOption(verifier))
	if err != nil {
		return "", "", fmt.Errorf("redeem the sign-in at the identity provider: %w", err)
	}
	id, err := idTokenOf(tok)
	return id, nonce, err
}

func randomText() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// getEdgeJSON and postEdgeJSON call the edge's sign-in endpoints; a
// refusal becomes an error with the edge's own text.
func getEdgeJSON(ctx context.Context, c *http.Client, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	return doEdgeJSON(c, req, v)
}

func postEdgeJSON(ctx context.Context, c *http.Client, u string, body []byte, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return doEdgeJSON(c, req, v)
}

func doEdgeJSON(c *http.Client, req *http.Request, v any) error {
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("reach the edge: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAuthAnswer))
	if err != nil {
		return fmt.Errorf("read the edge's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the edge refused (%s): %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return json.Unmarshal(b, v)
}

func newWhoamiCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Show who you are signed in as, your groups and the time left",
		Long: `Show the identity of the login of this profile (or edge): the name the identity
provider vouched for, the groups, and when the certificate expires. Run
` + "`tether login`" + ` again when it has expired.`,
		Example: `  tether whoami
  tether --profile prod whoami`,
		Args: argsUsage(cobra.NoArgs, "tether whoami"),
		RunE: func(*cobra.Command, []string) error {
			s, err := g.settings()
			if err != nil {
				return err
			}
			if s.LoginDir == "" || !hasLogin(s) {
				if s.Token != "" {
					fmt.Fprintf(g.io.Out, "not signed in; using the token from %s\n", s.TokenFrom)
					return nil
				}
				return &configError{errors.New("not signed in: run `tether login`")}
			}
			certPath, _ := loginPaths(s.LoginDir)
			c, err := certs.LoadCertificate(certPath)
			if err != nil {
				return &configError{err}
			}
			name, groups := c.Subject.CommonName, []string(nil)
			for _, u := range c.URIs {
				if u.Scheme == "tether" && u.Host == "group" {
					groups = append(groups, strings.TrimPrefix(u.Path, "/"))
				}
			}
			fmt.Fprintf(g.io.Out, "%s (oidc)\n", name)
			if len(groups) > 0 {
				fmt.Fprintf(g.io.Out, "groups: %s\n", strings.Join(groups, ", "))
			}
			left := time.Until(c.NotAfter)
			if left <= 0 {
				return &configError{&errLoginExpired{c.NotAfter}}
			}
			fmt.Fprintf(g.io.Out, "expires: %s (in %s)\n", c.NotAfter.Local().Format(time.RFC3339), left.Round(time.Second))
			if s.Token != "" {
				fmt.Fprintf(g.io.Out, "note: the token from %s is used instead while it is set\n", s.TokenFrom)
			}
			return nil
		},
	}
}

func newLogoutCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Delete your login's key and certificate",
		Long: `Delete the key and the certificate that ` + "`tether login`" + ` kept for this profile
(or edge). The certificate stays valid until it expires; an operator who
must cut it sooner adds its serial to the edge's revoked file.`,
		Example: `  tether logout
  tether --profile prod logout`,
		Args: argsUsage(cobra.NoArgs, "tether logout"),
		RunE: func(*cobra.Command, []string) error {
			s, err := g.settings()
			if err != nil {
				return err
			}
			if !hasLogin(s) {
				fmt.Fprintln(g.io.Out, "not signed in")
				return nil
			}
			certPath, keyPath := loginPaths(s.LoginDir)
			for _, p := range []string{keyPath, certPath} {
				if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
					return &configError{err}
				}
			}
			fmt.Fprintln(g.io.Out, "signed out")
			return nil
		},
	}
}

// openBrowser asks the desktop to open u, when there is one; the address
// is printed either way.
func openBrowser(u string) {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", u)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", u)
	default:
		if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
			return
		}
		cmd = exec.Command("xdg-open", u)
	}
	if cmd.Start() == nil {
		_ = cmd.Process.Release()
	}
}

// useLogin makes tc present the login of s when s has no token: the
// certificate replaces the token. An expired login is an error that says
// to sign in again.
func useLogin(s *Settings, tc *tls.Config) error {
	if s.Token != "" {
		return nil
	}
	c, err := loadLogin(s)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	tc.Certificates = []tls.Certificate{*c}
	return nil
}

// Command testoidc runs the test OpenID Connect provider of package
// testoidc as a process of its own, for e2e tests. It prints
// "issuer URL" on stdout once it listens, and serves until killed.
//
// Never use it as a real identity provider: anyone can approve logins and
// mint tokens through its /test/ endpoints.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/tetherhq/tether/internal/testoidc"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	clientID := flag.String("client-id", "tether", "the client ID")
	var users []testoidc.User
	flag.Func("user", "a user, ID:EMAIL:GROUP,GROUP (repeatable)", func(s string) error {
		parts := strings.SplitN(s, ":", 3)
		if len(parts) < 2 {
			return fmt.Errorf("want ID:EMAIL[:GROUPS]")
		}
		u := testoidc.User{ID: parts[0], Email: parts[1]}
		if len(parts) == 3 && parts[2] != "" {
			u.Groups = strings.Split(parts[2], ",")
		}
		users = append(users, u)
		return nil
	})
	flag.Parse()
	p, err := testoidc.Start(*listen, testoidc.Options{ClientID: *clientID, Users: users})
	if err != nil {
		fmt.Fprintln(os.Stderr, "testoidc:", err)
		os.Exit(1)
	}
	fmt.Println("issuer", p.Issuer)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	_ = p.Close()
}

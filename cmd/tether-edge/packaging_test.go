package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/tetherhq/tether/certs/certstest"
)

// TestPackagedConfigLoads loads the example edge.yaml that the package
// installs in /etc/tether, next to the certificate files it names: every
// key must be known and valid, so that filling in the clients is all an
// operator has to do.
func TestPackagedConfigLoads(t *testing.T) {
	example, err := os.ReadFile(filepath.Join("..", "..", "packaging", "edge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pki := certstest.New(t)
	path := filepath.Join(pki.Dir, "edge.yaml")
	// The unit's StateDirectory, which systemd makes; here, one of the
	// test's.
	const stateDir = "state_dir: /var/lib/tether-edge\n"
	if !bytes.Contains(example, []byte(stateDir)) {
		t.Fatalf("the packaged edge.yaml lacks %q, the unit's StateDirectory", stateDir)
	}
	example = bytes.Replace(example, []byte(stateDir), []byte("state_dir: "+t.TempDir()+"\n"), 1)
	if err := os.WriteFile(path, example, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig(path)
	if err != nil {
		t.Fatalf("the packaged edge.yaml does not load: %v", err)
	}
	if got, want := c.file.AuditLog, "/var/log/tether-edge/audit.jsonl"; got != want {
		t.Errorf("audit_log = %q; want %q, in the unit's LogsDirectory", got, want)
	}
	if c.file.Listen != "0.0.0.0:8443" {
		t.Errorf("listen = %q; want 0.0.0.0:8443, which needs no capability", c.file.Listen)
	}
}

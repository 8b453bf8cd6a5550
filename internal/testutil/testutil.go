// Package testutil holds helpers shared by tests: external tools, free
// ports, a test certificate authority.
package testutil

import (
	"os/exec"
	"testing"
)

// Tool returns the path of an external program a test needs. A missing tool
// fails the test (never skips it): .ci/run installs every tool the tests use,
// and the message names the Debian package to install by hand.
func Tool(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: apt-get install %s (.ci/run installs it)", name, debianPackage)
	}
	return p
}

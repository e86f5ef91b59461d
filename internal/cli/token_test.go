package cli

import (
	"strings"
	"testing"
)

// A team gets a token without curl: create for a principal, list, revoke
// by name; a lifetime over the vault's maximum is refused with the limit.
func TestTokenCommands(t *testing.T) {
	run := startTestVault(t)
	out, err := run("token", "create", "alice-laptop", "--principal", "user:alice", "--expires-in", "P7D")
	if err != nil || !strings.Contains(out, "arca_") || !strings.Contains(out, "principal user:alice") || !strings.Contains(out, "arca role assign --principal user:alice") {
		t.Fatalf("token create: %v\n%s", err, out)
	}
	tok := strings.TrimSpace(between(out, "safely:\n\n", "\n"))
	if !strings.HasPrefix(tok, "arca_") {
		t.Fatalf("token not printed on its own line: %q", tok)
	}
	out, err = run("token", "create", "ci")
	if err != nil || !strings.Contains(out, "principal ci") {
		t.Fatalf("token create with the default lifetime: %v\n%s", err, out)
	}
	out, err = run("token", "list")
	if err != nil || !strings.Contains(out, "alice-laptop") || !strings.Contains(out, "user:alice") || !strings.Contains(out, "ci") {
		t.Fatalf("token list: %v\n%s", err, out)
	}
	if strings.Contains(out, tok) {
		t.Fatal("token list shows a token")
	}
	// Every token listed but admin's (made by the test without a
	// lifetime) expires.
	for _, l := range strings.Split(out, "\n")[1:] {
		if l != "" && !strings.HasPrefix(strings.Fields(l)[1], "admin") && strings.HasSuffix(l, "never") {
			t.Fatalf("a token created through the CLI never expires: %s", l)
		}
	}
	_, err = run("token", "create", "forever", "--expires-in", "P10Y")
	if err == nil || !strings.Contains(err.Error(), "TokenLifetimeTooLong") || !strings.Contains(err.Error(), "P1Y") {
		t.Fatalf("too long a lifetime must be refused with the maximum: %v", err)
	}
	if _, err := run("token", "create", "x", "--principal", "user ann"); err == nil || ExitCode(err) != 2 {
		t.Fatalf("a bad principal must be a usage error: %v", err)
	}
	if out, err = run("token", "revoke", "alice-laptop"); err != nil || !strings.Contains(out, "revoked") {
		t.Fatalf("token revoke by name: %v\n%s", err, out)
	}
	if out, err = run("token", "list", "-o", "json"); err != nil || strings.Contains(out, "alice-laptop") {
		t.Fatalf("revoked token still listed: %v\n%s", err, out)
	}
	if _, err := run("token", "revoke", "nobody"); err == nil || !strings.Contains(err.Error(), "arca token list") {
		t.Fatalf("revoking an unknown token: %v", err)
	}
}

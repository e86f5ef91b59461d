package cli

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The protection commands against a real HTTPS vault: settings, the
// resource guard's request and approval by a second principal with its
// own token, and webhook subscriptions.
func TestProtectionCommands(t *testing.T) {
	run := startTestVault(t)
	must := func(out string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return out
	}
	must(run("vault", "create", "default"))
	out := must(run("vault", "update", "default", "--immutability", "unlocked", "--resource-guard", "on", "--soft-delete-days", "30"))
	if !strings.Contains(out, "30 days") || !strings.Contains(out, "unlocked") || !strings.Contains(out, "on") {
		t.Fatalf("vault update:\n%s", out)
	}
	for _, bad := range [][]string{{"--immutability", "frozen"}, {"--resource-guard", "maybe"}, {}} {
		if _, err := run(append([]string{"vault", "update", "default"}, bad...)...); ExitCode(err) != 2 {
			t.Fatalf("vault update %v: want a usage error, got %v", bad, err)
		}
	}
	if _, err := run("vault", "update", "default", "--soft-delete-days", "500"); err == nil || !strings.Contains(err.Error(), "InvalidSoftDeleteDays") {
		t.Fatalf("--soft-delete-days 500: %v", err)
	}

	must(run("role", "assign", "--principal", "user:carol", "--role", "Resource Guard Approver", "--scope-vault", "default"))
	carol := strings.TrimSpace(between(must(run("token", "create", "carol", "--principal", "user:carol")), "safely:\n\n", "\n"))
	_, err := run("vault", "update", "default", "--immutability", "disabled")
	if err == nil || !strings.Contains(err.Error(), "ApprovalRequired") || !strings.Contains(err.Error(), "arca approval approve mua-") {
		t.Fatalf("guarded update: %v", err)
	}
	out = must(run("approval", "list", "--state", "Pending", "-o", "json", "--token", carol))
	id := between(out, `"id": "`, `"`)
	if !strings.HasPrefix(id, "mua-") || !strings.Contains(out, "disableImmutability") {
		t.Fatalf("approval list:\n%s", out)
	}
	if _, err := run("approval", "approve", id); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Fatalf("the requester (an Owner) approving: %v", err)
	}
	if out := must(run("approval", "approve", id, "--reason", "change 4711", "--token", carol)); !strings.Contains(out, "Approved") {
		t.Fatalf("approve:\n%s", out)
	}
	if out := must(run("vault", "update", "default", "--immutability", "disabled")); !strings.Contains(out, "disabled") {
		t.Fatalf("the approved update:\n%s", out)
	}
	must(run("vault", "update", "default", "--immutability", "locked"))
	if _, err := run("vault", "update", "default", "--immutability", "unlocked"); err == nil || !strings.Contains(err.Error(), "ImmutabilityLocked") {
		t.Fatalf("unlocking a locked vault: %v", err)
	}
	if out := must(run("vault", "usage", "default")); !strings.Contains(out, "SOFT-DELETED BYTES") {
		t.Fatalf("vault usage:\n%s", out)
	}

	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }))
	defer hook.Close()
	secret := filepath.Join(t.TempDir(), "hook.secret")
	if err := os.WriteFile(secret, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := run("notification", "add", "--url", hook.URL, "--secret-file", secret, "--events", "job-exploded"); err == nil || !strings.Contains(err.Error(), "InvalidEvents") {
		t.Fatalf("unknown event: %v", err)
	}
	if _, err := run("notification", "add", "--url", hook.URL); ExitCode(err) != 2 {
		t.Fatalf("missing flags: %v", err)
	}
	out = must(run("notification", "add", "--url", hook.URL, "--secret-file", secret, "--events", "job-failed,schedule-missed", "-o", "json"))
	sub := between(out, `"id": "`, `"`)
	if !strings.HasPrefix(sub, "wh-") || strings.Contains(out, "0123456789abcdef") {
		t.Fatalf("notification add (the secret must not come back):\n%s", out)
	}
	if out := must(run("notification", "list")); !strings.Contains(out, hook.URL) || !strings.Contains(out, "job-failed,schedule-missed") {
		t.Fatalf("notification list:\n%s", out)
	}
	must(run("notification", "deliveries", "--subscription", sub))
	must(run("notification", "remove", sub))
	if out := must(run("notification", "list")); strings.Contains(out, sub) {
		t.Fatalf("removed subscription still listed:\n%s", out)
	}
}

package cli

import (
	"strings"
	"testing"
)

func TestRoleCommands(t *testing.T) {
	run := startTestVault(t)
	if _, err := run("vault", "create", "prod"); err != nil {
		t.Fatal(err)
	}
	out, err := run("role", "assign", "--principal", "user:otto", "--role", "backup-operator", "--scope-vault", "prod", "--scope-instance", "shop")
	if err != nil || !strings.Contains(out, "Backup Operator") || !strings.Contains(out, "/vaults/prod/instances/shop") {
		t.Fatalf("assign: %v\n%s", err, out)
	}
	out, err = run("role", "assign", "--principal", "extension:prod-1", "--role", "Storage Contributor", "--scope-storage", "s3://bucket/arca?endpoint=http://127.0.0.1:9000")
	if err != nil || !strings.Contains(out, "/storageLocations/s3:%2F%2Fbucket%2Farca%3Fendpoint=http:%2F%2F127.0.0.1:9000") {
		t.Fatalf("assign storage: %v\n%s", err, out)
	}
	out, err = run("role", "list", "--scope-vault", "prod", "-o", "json")
	if err != nil || !strings.Contains(out, `"principal": "user:otto"`) || !strings.Contains(out, `"principal": "admin"`) || strings.Contains(out, "extension:prod-1") {
		t.Fatalf("list at /vaults/prod (own, inherited from /, not the storage one): %v\n%s", err, out)
	}
	// admin's Owner at / comes first; it is the last one and is kept.
	adminID := between(out, `"id": "`, `"`)
	if out, err := run("role", "remove", adminID); err == nil || !strings.Contains(err.Error(), "LastRootOwner") || !strings.Contains(err.Error(), "Assign another Owner first") {
		t.Fatalf("removing the last Owner at / must be refused with the fix: %v\n%s", err, out)
	}
	out, err = run("role", "list", "--scope-vault", "prod", "--principal", "user:otto", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	id := between(out, `"id": "`, `"`)
	if _, err := run("role", "assign", "--principal", "x", "--role", "Janitor", "--scope", "/"); err == nil || ExitCode(err) != 2 {
		t.Fatalf("unknown role must be a usage error: %v", err)
	}
	if _, err := run("role", "assign", "--principal", "x", "--role", "Reader"); err == nil || ExitCode(err) != 2 {
		t.Fatalf("missing scope must be a usage error: %v", err)
	}
	if out, err = run("role", "definitions"); err != nil || !strings.Contains(out, "Storage Contributor") {
		t.Fatalf("definitions: %v\n%s", err, out)
	}
	if out, err = run("role", "remove", id); err != nil || !strings.Contains(out, "removed") {
		t.Fatalf("remove %s: %v\n%s", id, err, out)
	}
}

func between(s, start, end string) string {
	i := strings.Index(s, start)
	if i < 0 {
		return ""
	}
	s = s[i+len(start):]
	j := strings.Index(s, end)
	if j < 0 {
		return ""
	}
	return s[:j]
}

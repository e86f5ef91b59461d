package server_test

import (
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/vault/client"
	"github.com/arca-backup/arca/internal/vault/clock"
	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/server"
)

// auditLines returns the audit log lines, decoded.
func auditLines(t *testing.T, e *env) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(e.log.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "audit" {
			out = append(out, m)
		}
	}
	return out
}

// findAudit returns the first audit line whose fields include want.
func findAudit(t *testing.T, e *env, want map[string]any) map[string]any {
	t.Helper()
	for _, m := range auditLines(t, e) {
		ok := true
		for k, v := range want {
			if m[k] != v {
				ok = false
				break
			}
		}
		if ok {
			return m
		}
	}
	t.Fatalf("no audit line with %v in:\n%s", want, e.log.String())
	return nil
}

// The audit log records refused and failed writes with their reason, not
// only successful ones, and every token minted or revoked (without the
// token itself).
func TestAuditRecordsFailuresAndTokenMints(t *testing.T) {
	e := setup(t)
	e.want(t, "POST", "/api/v1/vaults", map[string]any{"name": "v"}, "", 201, "")
	e.want(t, "POST", "/api/v1/vaults/v/policies", pol, "", 201, "")

	// A failed write: the vault is not empty.
	e.want(t, "DELETE", "/api/v1/vaults/v", nil, "*", 409, "VaultNotEmpty")
	m := findAudit(t, e, map[string]any{"event": "failed", "method": "DELETE", "path": "/api/v1/vaults/v"})
	if m["principal"] != "admin" || m["status"] != 409.0 || m["code"] != "VaultNotEmpty" || !strings.Contains(m["reason"].(string), "policy") {
		t.Fatalf("failed write audit line: %v", m)
	}
	// A write without If-Match fails too, and says why.
	e.want(t, "PUT", "/api/v1/vaults/v", map[string]any{"description": "x"}, "", 428, "PreconditionRequired")
	findAudit(t, e, map[string]any{"event": "failed", "method": "PUT", "code": "PreconditionRequired"})

	// A denied write: a Reader may not create policies.
	r := e.as(t, "user:rita", rbac.Reader+"@/vaults/v")
	r.want(t, "POST", "/api/v1/vaults/v/policies", map[string]any{"name": "p2"}, "", 403, "Forbidden")
	m = findAudit(t, e, map[string]any{"event": "denied", "principal": "user:rita"})
	if m["action"] != rbac.PoliciesWrite || m["scope"] != "/vaults/v" || m["status"] != 403.0 || !strings.Contains(m["reason"].(string), "arca role assign") {
		t.Fatalf("denied write audit line: %v", m)
	}
	// An unauthenticated write is denied and recorded as such.
	anon := &env{c: &client.Client{BaseURL: e.url, HTTP: e.c.HTTP}}
	anon.want(t, "POST", "/api/v1/vaults", map[string]any{"name": "w"}, "", 401, "Unauthenticated")
	findAudit(t, e, map[string]any{"event": "denied", "principal": "(unauthenticated)", "path": "/api/v1/vaults", "status": 401.0})

	// A token mint names who minted it, for whom and until when; the
	// token itself is not in the log.
	out := e.want(t, "POST", "/api/v1/tokens", map[string]any{"name": "ci", "principal": "user:ci", "expiresIn": "P7D"}, "", 201, "")
	m = findAudit(t, e, map[string]any{"event": "tokenCreated", "tokenId": out["id"]})
	if m["principal"] != "admin" || m["tokenPrincipal"] != "user:ci" || m["tokenName"] != "ci" || m["expiresAt"] == nil {
		t.Fatalf("token mint audit line: %v", m)
	}
	if strings.Contains(e.log.String(), out["token"].(string)) {
		t.Fatal("the minted token is in the log")
	}
	// A refused mint (too long) is a failed write with the reason.
	e.want(t, "POST", "/api/v1/tokens", map[string]any{"name": "forever", "expiresIn": "P5Y"}, "", 400, "TokenLifetimeTooLong")
	m = findAudit(t, e, map[string]any{"event": "failed", "code": "TokenLifetimeTooLong"})
	if !strings.Contains(m["reason"].(string), "P1Y") {
		t.Fatalf("refused mint audit line: %v", m)
	}
	e.want(t, "DELETE", "/api/v1/tokens/"+out["id"].(string), nil, "", 204, "")
	findAudit(t, e, map[string]any{"event": "tokenRevoked", "tokenId": out["id"], "tokenPrincipal": "user:ci"})
	// Successful writes are still recorded.
	findAudit(t, e, map[string]any{"event": "write", "method": "POST", "path": "/api/v1/vaults/v/policies", "principal": "admin"})
	// Reads that succeed are not audited.
	for _, l := range auditLines(t, e) {
		if l["method"] == "GET" {
			t.Fatalf("a successful read was audited: %v", l)
		}
	}
}

// vault init's admin token expires after the maximum token lifetime; once
// every token has expired, init (run where the database is) issues a new
// one, and not before.
func TestInitTokenExpiresAndCanBeReissued(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	o := server.Options{DataDir: t.TempDir(), Clock: clk, Log: slog.New(slog.DiscardHandler), TokenMaxLifetime: policy.Duration{Days: 90}}
	if _, err := server.Init(ctx, o); err != nil {
		t.Fatal(err)
	}
	st, err := server.OpenStore(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	toks, _ := st.ListTokens(ctx)
	st.Close()
	if len(toks) != 1 || toks[0].ExpiresAt == nil || !toks[0].ExpiresAt.Equal(clk.Now().AddDate(0, 0, 90)) {
		t.Fatalf("admin token: %+v; want it to expire after --token-max-lifetime P90D", toks[0])
	}
	clk.Advance(89 * 24 * time.Hour)
	if _, err := server.Init(ctx, o); !errors.Is(err, server.ErrInitialized) {
		t.Fatalf("init with a valid token left: %v", err)
	}
	clk.Advance(2 * 24 * time.Hour)
	if res, err := server.Init(ctx, o); err != nil || !strings.HasPrefix(res.Token, server.TokenPrefix) {
		t.Fatalf("init after every token expired: %v", err)
	}
	o.TokenLifetime, o.TokenMaxLifetime = policy.Duration{Days: 60}, policy.Duration{Days: 30}
	if _, err := server.Init(ctx, o); err == nil || !strings.Contains(err.Error(), "--token-max-lifetime") {
		t.Fatalf("default lifetime over the maximum: %v", err)
	}
}

// A role assignment does not outlive its vault: a vault deleted and made
// again under the same name does not give its old readers access.
func TestRoleAssignmentsGoWithTheirVault(t *testing.T) {
	e := setup(t)
	e.want(t, "POST", "/api/v1/vaults", map[string]any{"name": "b"}, "", 201, "")
	r := e.as(t, "user:rita", rbac.Reader+"@/vaults/b")
	r.want(t, "GET", "/api/v1/vaults/b", nil, "", 200, "")
	e.want(t, "DELETE", "/api/v1/vaults/b", nil, "*", 204, "")
	if as, err := e.c.ListRoleAssignments(ctx, "/vaults/b", "user:rita"); err != nil || len(as) != 0 {
		t.Fatalf("rita's assignments after the vault went: %+v %v", as, err)
	}
	e.want(t, "POST", "/api/v1/vaults", map[string]any{"name": "b"}, "", 201, "")
	out := r.want(t, "GET", "/api/v1/vaults/b", nil, "", 403, "Forbidden")
	if msg, _ := out["message"].(string); !strings.Contains(msg, "arca role assign") {
		t.Fatalf("denial message: %q", msg)
	}
}

// A vault from before token lifetimes: its tokens without expiry get the
// maximum lifetime when it starts, and the log says so.
func TestOldTokensGetAnExpiry(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	logs := &syncBuf{}
	o := server.Options{DataDir: t.TempDir(), Clock: clk, Log: slog.New(slog.NewJSONHandler(logs, nil))}
	st, err := server.OpenStore(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, _, err := server.CreateToken(ctx, st, "legacy", "admin", nil); err != nil {
		t.Fatal(err)
	}
	if err := server.BoundTokens(ctx, st, o); err != nil {
		t.Fatal(err)
	}
	toks, _ := st.ListTokens(ctx)
	if len(toks) != 1 || toks[0].ExpiresAt == nil || !toks[0].ExpiresAt.Equal(clk.Now().AddDate(1, 0, 0)) {
		t.Fatalf("legacy token: %+v; want it to expire a year (the maximum) from now", toks[0])
	}
	if !strings.Contains(logs.String(), "arca token create") {
		t.Fatalf("no warning in the log: %s", logs.String())
	}
}

package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/vault/client"
)

// rootOwnerID returns the ID of principal's Owner assignment at /.
func rootOwnerID(t *testing.T, e *env, principal string) string {
	t.Helper()
	as, err := e.c.ListRoleAssignments(ctx, "/", principal)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if a.Role == "Owner" && a.Scope == "/" {
			return a.ID
		}
	}
	t.Fatalf("%s has no Owner assignment at /: %+v", principal, as)
	return ""
}

// tokenIDs returns the IDs of principal's tokens.
func tokenIDs(t *testing.T, e *env, principal string) []string {
	t.Helper()
	var out struct {
		Items []struct{ ID, Principal string }
	}
	if _, err := e.c.Do(ctx, "GET", "/api/v1/tokens", nil, &out, ""); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tk := range out.Items {
		if tk.Principal == principal {
			ids = append(ids, tk.ID)
		}
	}
	return ids
}

func TestLastRootOwnerAndAdminTokenAreKept(t *testing.T) {
	e := setup(t)

	// The only Owner at / cannot remove its assignment nor revoke its
	// only token.
	adminOwner := rootOwnerID(t, e, "admin")
	out := e.want(t, "DELETE", "/api/v1/role-assignments/"+adminOwner, nil, "", 409, "LastRootOwner")
	if msg := out["message"].(string); !strings.Contains(msg, "Assign another Owner first") || !strings.Contains(msg, "--role Owner --scope /") {
		t.Errorf("message does not say the fix: %s", msg)
	}
	adminTok := tokenIDs(t, e, "admin")
	if len(adminTok) != 1 {
		t.Fatalf("admin tokens: %v", adminTok)
	}
	out = e.want(t, "DELETE", "/api/v1/tokens/"+adminTok[0], nil, "", 409, "LastAdminToken")
	if msg := out["message"].(string); !strings.Contains(msg, "Create another token for an Owner at / first") {
		t.Errorf("message does not say the fix: %s", msg)
	}
	// Refused means nothing changed: the admin still acts.
	if rootOwnerID(t, e, "admin") != adminOwner || len(tokenIDs(t, e, "admin")) != 1 {
		t.Fatal("a refused removal changed something")
	}

	// Another Owner at / without a token does not count, and is named.
	e.want(t, "POST", "/api/v1/role-assignments", map[string]any{"principal": "user:olga", "role": "Owner", "scope": "/"}, "", 201, "")
	out = e.want(t, "DELETE", "/api/v1/role-assignments/"+adminOwner, nil, "", 409, "LastRootOwner")
	if msg := out["message"].(string); !strings.Contains(msg, "user:olga: Owner at / without a valid token") {
		t.Errorf("message does not name the tokenless Owner: %s", msg)
	}

	// With a token she does: the admin may step down, and its token may
	// be revoked (it is not the last admin token any more).
	var tok struct{ Token string }
	if _, err := e.c.Do(ctx, "POST", "/api/v1/tokens", map[string]any{"name": "olga", "principal": "user:olga"}, &tok, ""); err != nil {
		t.Fatal(err)
	}
	olga := *e
	olga.c = &client.Client{BaseURL: e.url, Token: tok.Token, HTTP: e.c.HTTP}
	olga.want(t, "DELETE", "/api/v1/tokens/"+adminTok[0], nil, "", 204, "")
	olga.want(t, "DELETE", "/api/v1/role-assignments/"+adminOwner, nil, "", 204, "")

	// Now olga is the last one. An Owner at / whose only token has
	// expired does not count either.
	olgaOwner := rootOwnerID(t, &olga, "user:olga")
	if _, err := olga.c.Do(ctx, "POST", "/api/v1/tokens", map[string]any{"name": "carl", "principal": "user:carl", "expiresIn": "P1D"}, nil, ""); err != nil {
		t.Fatal(err)
	}
	olga.want(t, "POST", "/api/v1/role-assignments", map[string]any{"principal": "user:carl", "role": "Owner", "scope": "/"}, "", 201, "")
	e.clk.Advance(48 * time.Hour)
	out = olga.want(t, "DELETE", "/api/v1/role-assignments/"+olgaOwner, nil, "", 409, "LastRootOwner")
	if msg := out["message"].(string); !strings.Contains(msg, "user:carl") {
		t.Errorf("message does not name the Owner with an expired token: %s", msg)
	}
	olga.want(t, "DELETE", "/api/v1/tokens/"+tokenIDs(t, &olga, "user:olga")[0], nil, "", 409, "LastAdminToken")

	// Other assignments and tokens are removed as before.
	carlOwner := rootOwnerID(t, &olga, "user:carl")
	olga.want(t, "DELETE", "/api/v1/role-assignments/"+carlOwner, nil, "", 204, "")
	olga.want(t, "DELETE", "/api/v1/tokens/"+tokenIDs(t, &olga, "user:carl")[0], nil, "", 204, "")

}

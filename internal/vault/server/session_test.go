package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/vault/server"
)

// TestDashboardSession drives the dashboard's session over real HTTPS as a
// browser does: sign-in sets an HttpOnly, Secure, SameSite=Strict cookie;
// the cookie authenticates reads; a write needs the session's CSRF token
// (refused without it, or with another session's); an expired token ends
// the session; sign-out removes the cookie. Bearer tokens need no CSRF
// token (no browser sends them on its own).
func TestDashboardSession(t *testing.T) {
	e := setup(t)
	hc := e.c.HTTP
	do := func(method, path, body string, hdr map[string]string) (*http.Response, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return res, m
	}
	errCode := func(m map[string]any) string {
		e, _ := m["error"].(map[string]any)
		s, _ := e["code"].(string)
		return s
	}

	// The page and its assets are public, with a strict CSP.
	res, _ := do("GET", "/", "", nil)
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(res.Header.Get("Content-Security-Policy"), "script-src 'self'") || res.Header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("GET /: %d %v", res.StatusCode, res.Header)
	}
	if res, _ := do("GET", "/ui/app.js", "", nil); res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/javascript") {
		t.Fatalf("GET /ui/app.js: %d %v", res.StatusCode, res.Header)
	}
	if res, _ := do("GET", "/ui/user-guide.md", "", nil); res.StatusCode != 200 {
		t.Fatalf("GET /ui/user-guide.md: %d", res.StatusCode)
	}
	if res, _ := do("GET", "/ui/../server.go", "", nil); res.StatusCode != 404 {
		t.Fatalf("path outside the assets: %d", res.StatusCode)
	}

	// A bad token is refused and sets no cookie.
	res, m := do("POST", "/api/v1/session", `{"token":"arca_nope"}`, nil)
	if res.StatusCode != 401 || errCode(m) != "InvalidToken" || len(res.Cookies()) != 0 {
		t.Fatalf("bad token: %d %v %v", res.StatusCode, m, res.Cookies())
	}

	// Sign in.
	res, m = do("POST", "/api/v1/session", `{"token":"`+e.c.Token+`"}`, nil)
	if res.StatusCode != 200 || m["principal"] != "admin" || m["csrfToken"] == "" {
		t.Fatalf("sign-in: %d %v", res.StatusCode, m)
	}
	var ck *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == server.SessionCookie {
			ck = c
		}
	}
	if ck == nil || !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || ck.MaxAge <= 0 {
		t.Fatalf("session cookie %+v (Set-Cookie %q)", ck, res.Header.Values("Set-Cookie"))
	}
	csrf := m["csrfToken"].(string)
	cookie := map[string]string{"Cookie": ck.Name + "=" + ck.Value}

	// Reads with the cookie.
	if res, m := do("GET", "/api/v1/session", "", cookie); res.StatusCode != 200 || m["principal"] != "admin" || m["csrfToken"] != csrf {
		t.Fatalf("GET session: %d %v", res.StatusCode, m)
	}
	if res, _ := do("GET", "/api/v1/vaults", "", cookie); res.StatusCode != 200 {
		t.Fatalf("list vaults with the cookie: %d", res.StatusCode)
	}
	// A write with the cookie alone (what a forged cross-site request
	// could carry) is refused and changes nothing; with another token's
	// CSRF value too.
	other, _, err := server.CreateToken(ctx, e.st, "other", "admin", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", server.CSRFToken(other)} {
		h := map[string]string{"Cookie": cookie["Cookie"], "Content-Type": "application/json"}
		if bad != "" {
			h[server.CSRFHeader] = bad
		}
		res, m := do("POST", "/api/v1/vaults", `{"name":"forged"}`, h)
		if res.StatusCode != 403 || errCode(m) != "CSRFTokenInvalid" {
			t.Fatalf("write without the session's CSRF token %q: %d %v", bad, res.StatusCode, m)
		}
	}
	if _, err := e.c.GetVault(ctx, "forged"); err == nil {
		t.Fatal("a refused write created the vault")
	}
	if !strings.Contains(e.log.String(), `"code":"CSRFTokenInvalid"`) {
		t.Error("the refused write has no audit line")
	}
	// With it, the write goes through.
	h := map[string]string{"Cookie": cookie["Cookie"], "Content-Type": "application/json", server.CSRFHeader: csrf}
	if res, m := do("POST", "/api/v1/vaults", `{"name":"fromui"}`, h); res.StatusCode != 201 {
		t.Fatalf("write with the CSRF token: %d %v", res.StatusCode, m)
	}
	// Bearer tokens need none.
	if _, err := e.c.CreateVault(ctx, "bearer", ""); err != nil {
		t.Fatalf("bearer write: %v", err)
	}

	// The audit log through the API: the refusals and the writes.
	if res, m := do("GET", "/api/v1/audit?limit=50", "", cookie); res.StatusCode != 200 || !strings.Contains(toJSON(m), `"CSRFTokenInvalid"`) ||
		!strings.Contains(toJSON(m), `"/api/v1/vaults"`) {
		t.Fatalf("audit: %d %s", res.StatusCode, toJSON(m))
	}

	// An expired token ends the session with a message naming the cause.
	exp := e.clk.Now().Add(time.Minute)
	short, _, err := server.CreateToken(ctx, e.st, "short", "admin", &exp)
	if err != nil {
		t.Fatal(err)
	}
	res, m = do("POST", "/api/v1/session", `{"token":"`+short+`"}`, nil)
	if res.StatusCode != 200 || m["sessionExpiresAt"] == nil || !strings.HasPrefix(m["sessionExpiresAt"].(string), exp.Format("2006-01-02T15:04")) {
		t.Fatalf("sign-in with a short token: %d %v", res.StatusCode, m)
	}
	e.clk.Advance(2 * time.Minute)
	res, m = do("GET", "/api/v1/session", "", map[string]string{"Cookie": server.SessionCookie + "=" + short})
	if res.StatusCode != 401 || errCode(m) != "InvalidToken" || !strings.Contains(m["error"].(map[string]any)["message"].(string), "expired") {
		t.Fatalf("expired session: %d %v", res.StatusCode, m)
	}

	// Sign-out expires the cookie.
	res, _ = do("DELETE", "/api/v1/session", "", cookie)
	if res.StatusCode != 204 || len(res.Cookies()) != 1 || res.Cookies()[0].MaxAge >= 0 || res.Cookies()[0].Value != "" {
		t.Fatalf("sign-out: %d %v", res.StatusCode, res.Cookies())
	}
}

func toJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/arca-backup/arca/internal/vault/clock"
	"github.com/arca-backup/arca/internal/vault/server"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
)

// FuzzRequestBodies sends arbitrary bodies to every route that takes one,
// against a vault that holds a vault, a policy and an instance, so the
// handlers get past their lookups and decode. Whatever the body, the vault
// never answers 500 (an unexpected failure), and an error always carries a
// code and a message. (This vault has no cluster access, so validation
// answers 503 NoClusterAccess: a stated limit, not a failure.)
func FuzzRequestBodies(f *testing.F) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 30, 0, 0, time.UTC))
	st, err := sqlite.Open(ctx, filepath.Join(f.TempDir(), "vault.db"), clk.Now)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	srv, _ := server.New(st, server.Options{Clock: clk, Log: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	srv.MaxBody = 64 << 10
	ts := httptest.NewServer(srv.Handler())
	f.Cleanup(ts.Close)
	tok, _, err := server.CreateAdminToken(ctx, st, "admin", "admin")
	if err != nil {
		f.Fatal(err)
	}
	do := func(method, path string, body []byte, ifMatch string) (int, []byte) {
		req, _ := http.NewRequestWithContext(ctx, method, ts.URL+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		if ifMatch != "" {
			req.Header.Set("If-Match", ifMatch)
		}
		resp, err := ts.Client().Do(req)
		if err != nil {
			f.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, out
	}
	mustJSON := func(v any) []byte { b, _ := json.Marshal(v); return b }
	for _, c := range []struct {
		path string
		body any
	}{
		{"/api/v1/role-assignments", map[string]any{"principal": "vault:v", "role": "Reader", "scope": "/"}},
		{"/api/v1/role-assignments", map[string]any{"principal": "extension:prod-1", "role": "Storage Contributor", "scope": "/"}},
		{"/api/v1/vaults", map[string]any{"name": "v"}},
		{"/api/v1/vaults/v/policies", pol},
		{"/api/v1/vaults/v/instances", instanceBody("shop")},
	} {
		if code, out := do("POST", c.path, mustJSON(c.body), ""); code != 201 {
			f.Fatalf("setting up %s: %d %s", c.path, code, out)
		}
	}

	// Every route with a body, its path parameters filled with the objects
	// above. Read from the server so a new route is fuzzed without a change here.
	fill := strings.NewReplacer("{vault}", "v", "{policy}", "p4h", "{instance}", "shop", "{id}", "none", "{cluster}", "prod-1", "{rp}", "none")
	var routes [][2]string
	for _, r := range srv.Routes() {
		if r[0] == "POST" || r[0] == "PUT" {
			routes = append(routes, [2]string{r[0], fill.Replace(r[1])})
		}
	}
	if len(routes) < 10 {
		f.Fatalf("only %d routes take a body: %v", len(routes), routes)
	}

	f.Add(uint8(0), []byte(`{"name":"v2"}`))
	f.Add(uint8(1), mustJSON(pol))
	f.Add(uint8(2), mustJSON(instanceBody("web")))
	f.Add(uint8(3), []byte(`{"retention":"P30D"}`))
	f.Add(uint8(4), []byte(`{"recoveryPoint":"latest","targetCluster":"prod-1","criteria":{"namespaceMappings":{"shop":"kube-system"}}}`))
	f.Add(uint8(5), []byte(`{"principal":"bob","role":"Backup Operator","scope":"/vaults/v"}`))
	f.Add(uint8(6), []byte(`{"name":"c","server":"https://10.0.0.1:6443","caData":"!!"}`))
	f.Add(uint8(7), []byte(`{} {}`))
	f.Add(uint8(8), []byte(`[`))
	f.Add(uint8(9), []byte(`{"name":"`+strings.Repeat("x", 300)+`"}`))
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		r := routes[int(route)%len(routes)]
		ifMatch := ""
		if r[0] == "PUT" {
			ifMatch = `"*"`
		}
		code, out := do(r[0], r[1], body, ifMatch)
		if code == http.StatusInternalServerError {
			t.Fatalf("%s %s with body %q: %d %s", r[0], r[1], body, code, out)
		}
		if code >= 400 {
			var e struct {
				Error struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if json.Unmarshal(out, &e) != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("%s %s with body %q: %d without a code and message: %s", r[0], r[1], body, code, out)
			}
		}
	})
}

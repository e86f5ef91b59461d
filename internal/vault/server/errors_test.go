package server_test

import (
	"net/http"
	"testing"

	"github.com/arca-backup/arca/internal/vault/server"
	"github.com/arca-backup/arca/internal/vault/service"
)

// Every error kind of the operations has its own status, and only
// Internal is a 500.
func TestEveryErrorKindHasAStatus(t *testing.T) {
	want := map[service.Kind]int{service.NotFound: 404, service.Conflict: 409, service.PreconditionFailed: 412,
		service.Invalid: 400, service.Forbidden: 403, service.TooLarge: 413, service.ChecksFailed: 422, service.Unavailable: 503, service.Internal: 500}
	seen := map[int]service.Kind{}
	for _, k := range service.Kinds() {
		st := server.StatusOf(k)
		if w, ok := want[k]; !ok || st != w {
			t.Errorf("kind %s: status %d, want %d (a new kind needs its status in statusOf and here)", k, st, w)
		}
		if other, dup := seen[st]; dup {
			t.Errorf("kinds %s and %s share status %d", other, k, st)
		}
		seen[st] = k
	}
	if len(service.Kinds()) != len(want) {
		t.Errorf("service.Kinds() has %d kinds, this test %d", len(service.Kinds()), len(want))
	}
	if st := server.StatusOf("NoSuchKind"); st != http.StatusInternalServerError {
		t.Errorf("unknown kind: %d", st)
	}
}

// The mapping is what the API answers: each kind through a real request.
func TestErrorKindsOverHTTP(t *testing.T) {
	e := setup(t)
	e.want(t, "GET", "/api/v1/vaults/nope", nil, "", 404, "NotFound")                                          // NotFound
	e.want(t, "POST", "/api/v1/vaults", map[string]any{"name": "Bad_Name"}, "", 400, "InvalidName")            // Invalid
	e.want(t, "POST", "/api/v1/vaults", map[string]any{"name": "v"}, "", 201, "")                              //
	e.want(t, "POST", "/api/v1/vaults", map[string]any{"name": "v"}, "", 409, "AlreadyExists")                 // Conflict
	e.want(t, "PUT", "/api/v1/vaults/v", map[string]any{"description": "d"}, `"7"`, 412, "PreconditionFailed") // PreconditionFailed
	e.want(t, "POST", "/api/v1/vaults/v/instances/x/sync", map[string]any{"recoveryPoints": make([]map[string]any, service.MaxSyncPoints+1)},
		"", 413, "TooManyRecoveryPoints") // TooLarge
}

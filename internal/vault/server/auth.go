package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/arca-backup/arca/internal/vault/service"

	"github.com/arca-backup/arca/internal/vault/store"
)

// TokenPrefix starts every Arca API token (service.TokenPrefix).
const TokenPrefix = service.TokenPrefix

// NewToken returns a fresh token and the hash under which it is stored
// (service.NewToken).
func NewToken() (token, hash string) { return service.NewToken() }

// HashToken is the stored form of a token (service.HashToken).
func HashToken(token string) string { return service.HashToken(token) }

type principalKey struct{}

// Principal returns the authenticated principal of a request.
func Principal(ctx context.Context) string {
	p, _ := ctx.Value(principalKey{}).(string)
	return p
}

func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, bearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		tok := bearerOrCookie(r)
		if tok == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="arca"`)
			writeError(w, r, apiErr(http.StatusUnauthorized, "Unauthenticated", "missing bearer token: pass Authorization: Bearer <token> (arca vault init prints the first one)"))
			return
		}
		t, err := s.lookupToken(r, tok)
		var ae *APIError
		if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="arca", error="invalid_token"`)
		}
		if err != nil {
			writeError(w, r, err)
			return
		}
		if rec, ok := w.(*recorder); ok {
			rec.principal = t.Principal
		}
		if !bearer {
			if err := checkCSRF(r, tok); err != nil {
				writeError(w, r, err)
				return
			}
		}
		ctx := service.WithCaller(context.WithValue(context.WithValue(r.Context(), principalKey{}, t.Principal), tokenKey{}, t), t.Principal)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// CreateToken stores a new token for principal and returns it; the token
// itself is never stored and cannot be shown again.
func CreateToken(ctx context.Context, st store.TokenStore, name, principal string, expires *time.Time) (string, *store.Token, error) {
	return service.IssueToken(ctx, st, name, principal, expires)
}

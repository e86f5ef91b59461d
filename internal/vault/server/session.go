package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/arca-backup/arca/internal/vault/store"
)

// Browser sessions (the dashboard). Signing in posts a token once; the
// vault answers with a cookie that carries it, HttpOnly (no script reads
// it), Secure (HTTPS only) and SameSite=Strict (no other site's page sends
// it). Every request the cookie authenticates is checked exactly like a
// bearer token, so a revoked or expired token ends the session at once.
// Writes (any method but GET and HEAD) authenticated by the cookie also
// need the header X-CSRF-Token: an HMAC of the token that only a page of
// this origin can read (GET /api/v1/session; no CORS, so other origins
// cannot), and that a cross-site form cannot send.

// SessionCookie is the name of the dashboard's session cookie.
const SessionCookie = "arca_session"

// CSRFHeader is the header a cookie-authenticated write must carry.
const CSRFHeader = "X-CSRF-Token"

// MaxSession is the lifetime of a session's cookie; the token's own
// expiry or revocation ends the session sooner.
const MaxSession = 12 * time.Hour

// CSRFToken is the anti-forgery value of a session token.
func CSRFToken(token string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("arca dashboard csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Session is what GET and POST /api/v1/session return.
type Session struct {
	Principal string     `json:"principal"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"` // the token's expiry
	// SessionExpiresAt is when the cookie ends (MaxSession after sign-in,
	// or the token's expiry if sooner); sign-in only.
	SessionExpiresAt *time.Time `json:"sessionExpiresAt,omitempty"`
	CSRFToken        string     `json:"csrfToken"`
}

type tokenKey struct{}

// signIn checks the posted token and sets the session cookie.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Token string `json:"token"`
	}
	if !decoded(w, r, &in) {
		return
	}
	tok := strings.TrimSpace(in.Token)
	t, err := s.lookupToken(r, tok)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if rec := recorderOf(r); rec != nil {
		rec.principal = t.Principal
	}
	now := s.Clock.Now()
	end := now.Add(MaxSession)
	if t.ExpiresAt != nil && t.ExpiresAt.Before(end) {
		end = *t.ExpiresAt
	}
	// The cookie outlives an expiring token on purpose: the browser keeps
	// sending it, so the vault can answer "expired" instead of the page
	// seeing a session that silently vanished.
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: tok, Path: "/", MaxAge: int(MaxSession.Seconds()),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	s.Log.Info("audit", "event", "signedIn", "principal", t.Principal, "tokenId", t.ID, "sessionExpiresAt", end)
	writeJSON(w, http.StatusOK, &Session{Principal: t.Principal, ExpiresAt: t.ExpiresAt, SessionExpiresAt: &end, CSRFToken: CSRFToken(tok)})
}

// getSession returns the signed-in principal and the CSRF token.
func (s *Server) getSession(w http.ResponseWriter, r *http.Request) {
	t, _ := r.Context().Value(tokenKey{}).(*store.Token)
	tok := bearerOrCookie(r)
	if t == nil || tok == "" {
		writeError(w, r, apiErr(http.StatusUnauthorized, "Unauthenticated", "not signed in"))
		return
	}
	writeJSON(w, http.StatusOK, &Session{Principal: t.Principal, ExpiresAt: t.ExpiresAt, CSRFToken: CSRFToken(tok)})
}

// signOut removes the session cookie. It needs no valid session (a
// browser holding an expired one must be able to drop it).
func (s *Server) signOut(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
}

// bearerOrCookie returns the request's token: the Authorization header's,
// else the session cookie's.
func bearerOrCookie(r *http.Request) string {
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(tok)
	}
	if c, err := r.Cookie(SessionCookie); err == nil {
		return c.Value
	}
	return ""
}

// lookupToken returns the stored record of a valid token, or the 401.
func (s *Server) lookupToken(r *http.Request, tok string) (*store.Token, error) {
	if tok == "" {
		return nil, apiErr(http.StatusUnauthorized, "Unauthenticated", "missing token: pass Authorization: Bearer <token> or sign in to the dashboard (arca vault init prints the first token; arca token create makes more)")
	}
	t, err := s.Store.GetTokenByHash(r.Context(), HashToken(tok))
	if errors.Is(err, store.ErrNotFound) || (err == nil && t.ExpiresAt != nil && !t.ExpiresAt.After(s.Clock.Now())) {
		return nil, apiErr(http.StatusUnauthorized, "InvalidToken", "the token is unknown, revoked or expired: sign in again with a valid token (arca token create issues one)")
	}
	return t, err
}

// checkCSRF refuses a cookie-authenticated write without the session's
// X-CSRF-Token.
func checkCSRF(r *http.Request, tok string) error {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return nil
	}
	got := r.Header.Get(CSRFHeader)
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(CSRFToken(tok))) != 1 {
		return apiErr(http.StatusForbidden, "CSRFTokenInvalid",
			"a %s with the dashboard's session cookie needs the %s header from GET /api/v1/session; reload the dashboard (scripts and other sites cannot write with the cookie alone)", r.Method, CSRFHeader)
	}
	return nil
}

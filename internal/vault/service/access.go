package service

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/store"
)

// ---- authorization data ----

// Assignments returns a principal's role assignments, as rbac decides on them.
func (s *Service) Assignments(ctx context.Context, principal string) ([]rbac.Assignment, error) {
	as, err := s.Store.ListRoleAssignments(ctx, store.RoleAssignmentFilter{Principal: principal})
	if err != nil {
		return nil, err
	}
	out := make([]rbac.Assignment, len(as))
	for i, a := range as {
		out[i] = rbac.Assignment{Principal: a.Principal, Role: a.Role, Scope: a.Scope}
	}
	return out, nil
}

// Can reports whether principal holds action at scope.
func (s *Service) Can(ctx context.Context, principal, action, scope string) (bool, error) {
	as, err := s.Assignments(ctx, principal)
	if err != nil {
		return false, err
	}
	return rbac.Decide(as, principal, action, scope).Allowed, nil
}

// Refused is the Forbidden error of principal lacking action at scope.
func Refused(principal, action, scope string) *Error {
	return ForbiddenTo(action, scope, "principal %q may not %s at scope %s: no role assigned there or above grants it (arca role assign --principal %s --role ROLE --scope %s, by an Owner)",
		principal, action, scope, principal, scope)
}

// CheckScope checks a scope path (before it is authorized on).
func CheckScope(scope string) error {
	if err := rbac.ValidScope(scope); err != nil {
		return InvalidField("InvalidScope", "scope", scope, "/, /vaults/V, /vaults/V/policies/P, /vaults/V/instances/I, /clusters/C, …", "%v", err)
	}
	return nil
}

// ---- roles and assignments ----

// Permissions is a principal's effective access at a scope.
type Permissions struct {
	Principal   string                  `json:"principal"`
	Scope       string                  `json:"scope"`
	Actions     []string                `json:"actions"`
	Assignments []*store.RoleAssignment `json:"assignments"` // those at the scope or enclosing it
}

// Permissions returns what principal may do at scope, and why.
func (s *Service) Permissions(ctx context.Context, principal, scope string) (*Permissions, error) {
	if err := CheckScope(scope); err != nil {
		return nil, err
	}
	as, err := s.Store.ListRoleAssignments(ctx, store.RoleAssignmentFilter{Principal: principal})
	if err != nil {
		return nil, err
	}
	out := &Permissions{Principal: principal, Scope: scope, Assignments: []*store.RoleAssignment{}}
	var roles []string
	for _, a := range as {
		if rbac.Contains(a.Scope, scope) {
			out.Assignments = append(out.Assignments, a)
			roles = append(roles, a.Role)
		}
	}
	out.Actions = append([]string{}, rbac.ActionsOf(roles)...)
	slices.Sort(out.Actions)
	return out, nil
}

// ListRoleAssignments lists the assignments effective at scope (at it,
// above it and below it), of one principal when set.
func (s *Service) ListRoleAssignments(ctx context.Context, principal, scope string) ([]*store.RoleAssignment, error) {
	as, err := s.Store.ListRoleAssignments(ctx, store.RoleAssignmentFilter{Principal: principal})
	if err != nil {
		return nil, err
	}
	var out []*store.RoleAssignment
	for _, a := range as {
		if rbac.Contains(a.Scope, scope) || rbac.Contains(scope, a.Scope) {
			out = append(out, a)
		}
	}
	return out, nil
}

// CheckPrincipal checks a principal name.
func CheckPrincipal(principal string) error {
	if err := rbac.ValidPrincipal(principal); err != nil {
		return InvalidField("InvalidPrincipal", "principal", principal, "user:NAME, group:NAME or a token name", "%v", err)
	}
	return nil
}

// AssignRole grants role to principal at scope, by principal by.
func (s *Service) AssignRole(ctx context.Context, by, principal, role, scope string) (*store.RoleAssignment, error) {
	if err := CheckPrincipal(principal); err != nil {
		return nil, err
	}
	r, ok := rbac.FindRole(role)
	if !ok {
		var names []string
		for _, ro := range rbac.Roles {
			names = append(names, ro.Name)
		}
		return nil, InvalidField("UnknownRole", "role", role, "one of "+strings.Join(names, ", "),
			"role %q: built-in roles are %s", role, strings.Join(names, ", "))
	}
	if err := CheckScope(scope); err != nil {
		return nil, err
	}
	a := &store.RoleAssignment{Principal: principal, Role: r.Name, Scope: scope, CreatedBy: by}
	create := func() error { return s.Store.CreateRoleAssignment(ctx, a) }
	if r.Name == rbac.ResourceGuardApprover {
		if err := s.guardApprovers(ctx, scope, principal, create); err != nil {
			return nil, err
		}
		return a, nil
	}
	if err := create(); err != nil {
		return nil, err
	}
	return a, nil
}

// guardApprovers runs create, a new Resource Guard Approver assignment at
// scope, behind the guard of every guarded vault the scope covers that
// has an approver already: a second approver is an approved operation
// (assignApprover), or whoever may assign roles there could make an
// accomplice one. The first approver of a vault is not guarded (nobody
// could approve it).
func (s *Service) guardApprovers(ctx context.Context, scope, principal string, create func() error) error {
	vs, err := s.Store.ListVaults(ctx)
	if err != nil {
		return err
	}
	var used []*store.Approval
	giveBack := func() {
		for _, a := range used {
			s.unuse(ctx, a)
		}
	}
	for _, v := range vs {
		vscope := rbac.VaultScope(v.Name)
		if !v.ResourceGuard || !rbac.Contains(scope, vscope) {
			continue
		}
		has, err := s.hasApprover(ctx, vscope)
		if err != nil || !has {
			if err != nil {
				giveBack()
				return err
			}
			continue
		}
		a, err := s.guard(ctx, v, OpAssignApprover, principal)
		if err != nil {
			giveBack()
			return err
		}
		used = append(used, a)
	}
	if err := create(); err != nil {
		giveBack()
		return err
	}
	return nil
}

// hasApprover reports whether a Resource Guard Approver assignment covers
// the vault scope.
func (s *Service) hasApprover(ctx context.Context, vscope string) (bool, error) {
	for _, at := range []string{vscope, rbac.Root()} {
		as, err := s.Store.ListRoleAssignments(ctx, store.RoleAssignmentFilter{Scope: at})
		if err != nil {
			return false, err
		}
		for _, a := range as {
			if a.Role == rbac.ResourceGuardApprover {
				return true, nil
			}
		}
	}
	return false, nil
}

// GetRoleAssignment returns an assignment.
func (s *Service) GetRoleAssignment(ctx context.Context, id string) (*store.RoleAssignment, error) {
	return s.Store.GetRoleAssignment(ctx, id)
}

// RemoveRoleAssignment removes an assignment, unless it is the last Owner
// at / held by a principal with a usable token.
func (s *Service) RemoveRoleAssignment(ctx context.Context, a *store.RoleAssignment) error {
	if a.Role == rbac.Owner && a.Scope == rbac.Root() {
		if err := s.keepRootAdmin(ctx, a.ID, ""); err != nil {
			return err
		}
	}
	if v, last, err := s.lastVaultOwner(ctx, a); err != nil {
		return err
	} else if last {
		return s.guarded(ctx, v, OpRemoveLastOwner, a.Principal, func() error { return s.Store.DeleteRoleAssignment(ctx, a.ID) })
	}
	return s.Store.DeleteRoleAssignment(ctx, a.ID)
}

// lastVaultOwner reports whether a is the last Owner assignment at a
// vault's scope whose resource guard is on (Owners at the root scope
// are kept by keepRootAdmin), and returns the vault.
func (s *Service) lastVaultOwner(ctx context.Context, a *store.RoleAssignment) (*store.Vault, bool, error) {
	name, ok := strings.CutPrefix(a.Scope, "/vaults/")
	if a.Role != rbac.Owner || !ok || strings.Contains(name, "/") {
		return nil, false, nil
	}
	v, err := s.Store.GetVault(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, nil
	} else if err != nil || !v.ResourceGuard {
		return nil, false, err
	}
	as, err := s.Store.ListRoleAssignments(ctx, store.RoleAssignmentFilter{Scope: a.Scope})
	if err != nil {
		return nil, false, err
	}
	for _, o := range as {
		if o.ID != a.ID && o.Role == rbac.Owner {
			return v, false, nil
		}
	}
	return v, true, nil
}

// rootAdmins returns the principals that hold Owner at the root scope and
// an unexpired token: those who can still manage the vault's access,
// leaving out the assignment skipAssignment and the token skipToken (the
// ones about to be removed).
func (s *Service) rootAdmins(ctx context.Context, skipAssignment, skipToken string) (admins, tokenless []string, err error) {
	as, err := s.Store.ListRoleAssignments(ctx, store.RoleAssignmentFilter{Scope: rbac.Root()})
	if err != nil {
		return nil, nil, err
	}
	owners := map[string]bool{}
	for _, a := range as {
		if a.ID != skipAssignment && a.Role == rbac.Owner && a.Scope == rbac.Root() {
			owners[a.Principal] = false // no usable token seen yet
		}
	}
	ts, err := s.Store.ListTokens(ctx)
	if err != nil {
		return nil, nil, err
	}
	now := s.now().Now()
	for _, t := range ts {
		if _, ok := owners[t.Principal]; ok && t.ID != skipToken && (t.ExpiresAt == nil || t.ExpiresAt.After(now)) {
			owners[t.Principal] = true
		}
	}
	for p, hasToken := range owners {
		if hasToken {
			admins = append(admins, p)
		} else {
			tokenless = append(tokenless, p)
		}
	}
	slices.Sort(admins)
	slices.Sort(tokenless)
	return admins, tokenless, nil
}

// keepRootAdmin refuses (Conflict) removing the Owner assignment at / or
// the token skipped when nobody else would remain Owner at / with a usable
// token: the vault's access could then no longer be managed through the
// API.
func (s *Service) keepRootAdmin(ctx context.Context, skipAssignment, skipToken string) error {
	admins, tokenless, err := s.rootAdmins(ctx, skipAssignment, skipToken)
	if err != nil || len(admins) > 0 {
		return err
	}
	also := ""
	if len(tokenless) > 0 {
		also = fmt.Sprintf(" (%s: Owner at / without a valid token; create one with POST /api/v1/tokens)", strings.Join(tokenless, ", "))
	}
	if skipToken != "" {
		return Conflictf("LastAdminToken",
			"this is the last valid token of an Owner at /; revoking it would leave nobody able to manage the vault's access%s. Create another token for an Owner at / first (POST /api/v1/tokens), then revoke this one", also)
	}
	return Conflictf("LastRootOwner",
		"this is the last Owner assignment at / held by a principal with a valid token; removing it would leave nobody able to manage the vault's access%s. Assign another Owner first (arca role assign --principal P --role Owner --scope /, and a token for P), then remove this one", also)
}

// ---- tokens ----

// TokenPrefix starts every Arca API token, so that leaked tokens are easy
// to recognise (secret scanners, logs).
const TokenPrefix = "arca_"

// NewToken returns a fresh token and the hash under which it is stored.
// Tokens carry 256 random bits, so a plain SHA-256 is enough: there is
// nothing to brute-force that a slow hash would protect.
func NewToken() (token, hash string) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	token = TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return token, HashToken(token)
}

// HashToken is the stored form of a token.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// IssueToken stores a new token for principal and returns it; the token
// itself is never stored and cannot be shown again.
func IssueToken(ctx context.Context, st store.TokenStore, name, principal string, expires *time.Time) (string, *store.Token, error) {
	tok, hash := NewToken()
	t := &store.Token{Name: name, Hash: hash, Principal: principal, ExpiresAt: expires}
	if err := st.CreateToken(ctx, t); err != nil {
		return "", nil, err
	}
	return tok, t, nil
}

// ListTokens lists the API tokens (never the tokens themselves).
func (s *Service) ListTokens(ctx context.Context) ([]*store.Token, error) {
	return s.Store.ListTokens(ctx)
}

// Token lifetimes the vault applies when it is not told otherwise
// (arca vault serve --token-lifetime, --token-max-lifetime): a token asked
// for without a lifetime expires after DefaultTokenLifetime, and none may
// live longer than DefaultTokenMaxLifetime.
var (
	DefaultTokenLifetime    = policy.Duration{Days: 30}
	DefaultTokenMaxLifetime = policy.Duration{Years: 1}
)

// TokenLifetimes returns the lifetime a token gets by default and the
// longest one allowed.
func (s *Service) TokenLifetimes() (def, max policy.Duration) {
	def, max = s.TokenLifetime, s.TokenMaxLifetime
	if max == (policy.Duration{}) {
		max = DefaultTokenMaxLifetime
	}
	if def == (policy.Duration{}) {
		def = DefaultTokenLifetime
	}
	if max.Less(def) {
		def = max
	}
	return def, max
}

// CheckTokenLifetimes checks a vault's token lifetimes (the flags of
// arca vault serve): both at least a day, the default within the maximum.
func CheckTokenLifetimes(def, max policy.Duration) error {
	switch {
	case def.Less(policy.Duration{Days: 1}) || max.Less(policy.Duration{Days: 1}):
		return fmt.Errorf("token lifetimes must be at least P1D (got default %s, maximum %s)", def, max)
	case max.Less(def):
		return fmt.Errorf("the default token lifetime %s is longer than the maximum %s: lower --token-lifetime or raise --token-max-lifetime", def, max)
	}
	return nil
}

// CreateToken creates a token named name for principal (default: name),
// expiring after expiresIn (an ISO 8601 duration; empty: the vault's
// default lifetime). A lifetime over the vault's maximum is refused:
// every token expires.
func (s *Service) CreateToken(ctx context.Context, name, principal, expiresIn string) (string, *store.Token, error) {
	if err := CheckName("name", name); err != nil {
		return "", nil, err
	}
	if principal == "" {
		principal = name
	}
	if err := CheckPrincipal(principal); err != nil {
		return "", nil, err
	}
	def, max := s.TokenLifetimes()
	life := def
	if expiresIn != "" {
		d, err := policy.ParseDuration(expiresIn)
		if err != nil {
			return "", nil, InvalidField("InvalidValue", "expiresIn", expiresIn, err.Error())
		}
		if max.Less(d) {
			return "", nil, InvalidField("TokenLifetimeTooLong", "expiresIn", expiresIn,
				fmt.Sprintf("at most %s, this vault's maximum token lifetime (arca vault serve --token-max-lifetime); ask for %s or less and create a new token before it expires", max, max))
		}
		life = d
	}
	expires := life.AddTo(s.now().Now())
	return IssueToken(ctx, s.Store, name, principal, &expires)
}

// DeleteToken revokes a token, unless it is the last usable token of an
// Owner at /; it returns the revoked token.
func (s *Service) DeleteToken(ctx context.Context, id string) (*store.Token, error) {
	ts, err := s.Store.ListTokens(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range ts {
		if t.ID == id {
			if err := s.keepRootAdmin(ctx, "", id); err != nil {
				return nil, err
			}
			return t, s.Store.DeleteToken(ctx, id)
		}
	}
	return nil, NotFoundf("NotFound", "token %q does not exist (arca token list shows the IDs)", id)
}

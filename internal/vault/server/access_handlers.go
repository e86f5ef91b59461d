package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/service"
	"github.com/arca-backup/arca/internal/vault/store"
)

// ---- roles and assignments ----

func (s *Server) listRoles(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, items(rbac.Roles))
}

// Permissions is the caller's effective access at a scope.
type Permissions struct {
	Principal   string                  `json:"principal"`
	Scope       string                  `json:"scope"`
	Actions     []string                `json:"actions"`
	Assignments []*store.RoleAssignment `json:"assignments"` // those at the scope or enclosing it
}

func queryScope(r *http.Request) (string, error) {
	sc := r.URL.Query().Get("scope")
	if sc == "" {
		sc = rbac.Root()
	}
	if err := rbac.ValidScope(sc); err != nil {
		return "", apiErr(http.StatusBadRequest, "InvalidScope", "%v", err)
	}
	return sc, nil
}

func (s *Server) permissions(w http.ResponseWriter, r *http.Request) {
	sc, err := queryScope(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	p := Principal(r.Context())
	as, err := s.Store.ListRoleAssignments(r.Context(), store.RoleAssignmentFilter{Principal: p})
	if err != nil {
		writeError(w, r, err)
		return
	}
	out := Permissions{Principal: p, Scope: sc, Actions: []string{}, Assignments: []*store.RoleAssignment{}}
	for _, a := range as {
		if !rbac.Contains(a.Scope, sc) {
			continue
		}
		out.Assignments = append(out.Assignments, a)
		if role, ok := rbac.FindRole(a.Role); ok {
			for _, act := range role.Actions {
				if !slices.Contains(out.Actions, act) {
					out.Actions = append(out.Actions, act)
				}
			}
		}
	}
	slices.Sort(out.Actions)
	writeJSON(w, http.StatusOK, out)
}

// listRoleAssignments lists the assignments effective at ?scope= (at it,
// above it and below it), optionally of one ?principal=. Anyone may list
// their own; others need roleAssignments/read at the scope.
func (s *Server) listRoleAssignments(w http.ResponseWriter, r *http.Request) {
	sc, err := queryScope(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	who := r.URL.Query().Get("principal")
	if who != Principal(r.Context()) {
		if err := s.require(r, rbac.RoleAssignmentsRead, sc); err != nil {
			writeError(w, r, err)
			return
		}
	}
	as, err := s.Store.ListRoleAssignments(r.Context(), store.RoleAssignmentFilter{Principal: who})
	if err != nil {
		writeError(w, r, err)
		return
	}
	var out []*store.RoleAssignment
	for _, a := range as {
		if rbac.Contains(a.Scope, sc) || rbac.Contains(sc, a.Scope) {
			out = append(out, a)
		}
	}
	writeJSON(w, http.StatusOK, items(out))
}

type assignmentBody struct {
	Principal string `json:"principal"`
	Role      string `json:"role"`
	Scope     string `json:"scope"`
}

func (s *Server) createRoleAssignment(w http.ResponseWriter, r *http.Request) {
	var b assignmentBody
	if err := decode(w, r, &b); err != nil {
		writeError(w, r, err)
		return
	}
	if err := rbac.ValidPrincipal(b.Principal); err != nil {
		writeError(w, r, apiErr(http.StatusBadRequest, "InvalidPrincipal", "%v", err))
		return
	}
	role, ok := rbac.FindRole(b.Role)
	if !ok {
		var names []string
		for _, ro := range rbac.Roles {
			names = append(names, ro.Name)
		}
		writeError(w, r, apiErr(http.StatusBadRequest, "UnknownRole", "role %q: built-in roles are %s", b.Role, strings.Join(names, ", ")))
		return
	}
	if err := rbac.ValidScope(b.Scope); err != nil {
		writeError(w, r, apiErr(http.StatusBadRequest, "InvalidScope", "%v", err))
		return
	}
	if err := s.require(r, rbac.RoleAssignmentsWrite, b.Scope); err != nil {
		writeError(w, r, err)
		return
	}
	a := &store.RoleAssignment{Principal: b.Principal, Role: role.Name, Scope: b.Scope, CreatedBy: Principal(r.Context())}
	if err := s.Store.CreateRoleAssignment(r.Context(), a); err != nil {
		writeError(w, r, err)
		return
	}
	s.Log.Info("audit", "event", "roleAssigned", "principal", a.CreatedBy, "assignee", a.Principal, "role", a.Role, "scope", a.Scope, "id", a.ID)
	w.Header().Set("Location", "/api/v1/role-assignments/"+a.ID)
	writeJSON(w, http.StatusCreated, a)
}

func (s *Server) deleteRoleAssignment(w http.ResponseWriter, r *http.Request) {
	a, err := s.Store.GetRoleAssignment(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	if err := s.require(r, rbac.RoleAssignmentsWrite, a.Scope); err != nil {
		writeError(w, r, err)
		return
	}
	if a.Role == rbac.Owner && a.Scope == rbac.Root() {
		if err := s.keepRootAdmin(r.Context(), a.ID, ""); err != nil {
			writeError(w, r, err)
			return
		}
	}
	if err := s.Store.DeleteRoleAssignment(r.Context(), a.ID); err != nil {
		writeError(w, r, err)
		return
	}
	s.Log.Info("audit", "event", "roleRemoved", "principal", Principal(r.Context()), "assignee", a.Principal, "role", a.Role, "scope", a.Scope, "id", a.ID)
	w.WriteHeader(http.StatusNoContent)
}

// rootAdmins returns the principals that hold Owner at the root scope and
// an unexpired token: those who can still manage the vault's access,
// leaving out the assignment skipAssignment and the token skipToken (the
// ones about to be removed).
func (s *Server) rootAdmins(ctx context.Context, skipAssignment, skipToken string) (admins, tokenless []string, err error) {
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
	now := s.Clock.Now()
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

// keepRootAdmin refuses (409) removing the Owner assignment at / or the
// token skipped when nobody else would remain Owner at / with a usable
// token: the vault's access could then no longer be managed through the
// API.
func (s *Server) keepRootAdmin(ctx context.Context, skipAssignment, skipToken string) error {
	admins, tokenless, err := s.rootAdmins(ctx, skipAssignment, skipToken)
	if err != nil || len(admins) > 0 {
		return err
	}
	also := ""
	if len(tokenless) > 0 {
		also = fmt.Sprintf(" (%s: Owner at / without a valid token; create one with POST /api/v1/tokens)", strings.Join(tokenless, ", "))
	}
	if skipToken != "" {
		return apiErr(http.StatusConflict, "LastAdminToken",
			"this is the last valid token of an Owner at /; revoking it would leave nobody able to manage the vault's access%s. Create another token for an Owner at / first (POST /api/v1/tokens), then revoke this one", also)
	}
	return apiErr(http.StatusConflict, "LastRootOwner",
		"this is the last Owner assignment at / held by a principal with a valid token; removing it would leave nobody able to manage the vault's access%s. Assign another Owner first (arca role assign --principal P --role Owner --scope /, and a token for P), then remove this one", also)
}

// CreateAdminToken creates a token for principal and makes the principal
// Owner at the root scope: the first token of `arca vault init`.
func CreateAdminToken(ctx context.Context, st interface {
	store.RoleStore
	store.TokenStore
}, name, principal string) (string, *store.Token, error) {
	a := &store.RoleAssignment{Principal: principal, Role: rbac.Owner, Scope: rbac.Root(), CreatedBy: "vault-init"}
	if err := st.CreateRoleAssignment(ctx, a); err != nil && !errors.Is(err, store.ErrAlreadyExists) {
		return "", nil, err
	}
	return CreateToken(ctx, st, name, principal, nil)
}

// ---- clusters (trusted access) ----

// ClusterBody registers a cluster or renews its credential.
type ClusterBody struct {
	Name           string     `json:"name"`
	Server         string     `json:"server"`
	CAData         []byte     `json:"caData,omitempty"`
	Namespace      string     `json:"namespace"`
	ServiceAccount string     `json:"serviceAccount"`
	Token          string     `json:"token"`
	TokenExpiresAt *time.Time `json:"tokenExpiresAt,omitempty"`
}

func (b *ClusterBody) check() error {
	switch {
	case !strings.HasPrefix(b.Server, "https://"):
		return apiErr(http.StatusBadRequest, "InvalidValue", "server %q: want the cluster's https:// API server URL", b.Server)
	case b.Namespace == "" || b.ServiceAccount == "":
		return apiErr(http.StatusBadRequest, "MissingField", "namespace and serviceAccount: required")
	case b.Token == "":
		return apiErr(http.StatusBadRequest, "MissingField", "token: required (a TokenRequest token of the service account)")
	}
	return nil
}

func (s *Server) listClusters(w http.ResponseWriter, r *http.Request) {
	cs, err := s.Store.ListClusters(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, items(cs))
}

func (s *Server) registerCluster(w http.ResponseWriter, r *http.Request) {
	var b ClusterBody
	if err := decode(w, r, &b); err != nil {
		writeError(w, r, err)
		return
	}
	if err := service.CheckName("name", b.Name); err != nil {
		writeError(w, r, err)
		return
	}
	if err := s.require(r, rbac.ClustersWrite, rbac.ClusterScope(b.Name)); err != nil {
		writeError(w, r, err)
		return
	}
	if err := b.check(); err != nil {
		writeError(w, r, err)
		return
	}
	c := &store.Cluster{Name: b.Name, Server: b.Server, CAData: b.CAData, Namespace: b.Namespace, ServiceAccount: b.ServiceAccount,
		Token: b.Token, TokenExpiresAt: b.TokenExpiresAt, State: store.ClusterConnected}
	if err := s.Store.CreateCluster(r.Context(), c); err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/clusters/"+c.Name)
	writeVersioned(w, http.StatusCreated, c.Version, c)
}

func (s *Server) getCluster(w http.ResponseWriter, r *http.Request) {
	c, err := s.Store.GetCluster(r.Context(), r.PathValue("cluster"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeVersioned(w, http.StatusOK, c.Version, c)
}

// updateCluster replaces the connection (re-enabling trusted access).
func (s *Server) updateCluster(w http.ResponseWriter, r *http.Request) {
	var b ClusterBody
	if err := decode(w, r, &b); err != nil {
		writeError(w, r, err)
		return
	}
	name := r.PathValue("cluster")
	if b.Name != "" && b.Name != name {
		writeError(w, r, apiErr(http.StatusBadRequest, "ImmutableField", "name: %q cannot become %q", name, b.Name))
		return
	}
	if err := b.check(); err != nil {
		writeError(w, r, err)
		return
	}
	c, err := s.Store.GetCluster(r.Context(), name)
	if err != nil {
		writeError(w, r, err)
		return
	}
	ver, err := ifMatch(r)
	if err == nil {
		err = service.Precondition(ver, c.Version)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	c.Server, c.CAData, c.Namespace, c.ServiceAccount = b.Server, b.CAData, b.Namespace, b.ServiceAccount
	c.Token, c.TokenExpiresAt, c.State, c.Message = b.Token, b.TokenExpiresAt, store.ClusterConnected, ""
	if err := s.Store.UpdateCluster(r.Context(), c); err != nil {
		writeError(w, r, err)
		return
	}
	writeVersioned(w, http.StatusOK, c.Version, c)
}

func (s *Server) deleteCluster(w http.ResponseWriter, r *http.Request) {
	ver, err := ifMatch(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if err := s.Store.DeleteCluster(r.Context(), r.PathValue("cluster"), ver); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

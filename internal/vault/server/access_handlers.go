package server

import (
	"context"
	"errors"
	"net/http"
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
type Permissions = service.Permissions

func queryScope(r *http.Request) (string, error) {
	sc := r.URL.Query().Get("scope")
	if sc == "" {
		sc = rbac.Root()
	}
	return sc, service.CheckScope(sc)
}

func (s *Server) permissions(w http.ResponseWriter, r *http.Request) {
	sc, err := queryScope(r)
	var out *Permissions
	if err == nil {
		out, err = s.Service.Permissions(r.Context(), Principal(r.Context()), sc)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// listRoleAssignments lists the assignments effective at ?scope= (at it,
// above it and below it), optionally of one ?principal=. Anyone may list
// their own; others need roleAssignments/read at the scope.
func (s *Server) listRoleAssignments(w http.ResponseWriter, r *http.Request) {
	sc, err := queryScope(r)
	who := r.URL.Query().Get("principal")
	if err == nil && who != Principal(r.Context()) {
		err = s.require(r, rbac.RoleAssignmentsRead, sc)
	}
	var out []*store.RoleAssignment
	if err == nil {
		out, err = s.Service.ListRoleAssignments(r.Context(), who, sc)
	}
	replyList(w, r, out, err)
}

type assignmentBody struct {
	Principal string `json:"principal"`
	Role      string `json:"role"`
	Scope     string `json:"scope"`
}

func (s *Server) createRoleAssignment(w http.ResponseWriter, r *http.Request) {
	var b assignmentBody
	if !decoded(w, r, &b) {
		return
	}
	err := service.CheckScope(b.Scope)
	if err == nil {
		err = s.require(r, rbac.RoleAssignmentsWrite, b.Scope)
	}
	var a *store.RoleAssignment
	if err == nil {
		a, err = s.Service.AssignRole(r.Context(), Principal(r.Context()), b.Principal, b.Role, b.Scope)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	s.Log.Info("audit", "event", "roleAssigned", "principal", a.CreatedBy, "assignee", a.Principal, "role", a.Role, "scope", a.Scope, "id", a.ID)
	w.Header().Set("Location", "/api/v1/role-assignments/"+a.ID)
	writeJSON(w, http.StatusCreated, a)
}

func (s *Server) deleteRoleAssignment(w http.ResponseWriter, r *http.Request) {
	a, err := s.Service.GetRoleAssignment(r.Context(), r.PathValue("id"))
	if err == nil {
		err = s.require(r, rbac.RoleAssignmentsWrite, a.Scope)
	}
	if err == nil {
		err = s.Service.RemoveRoleAssignment(r.Context(), a)
	}
	if err == nil {
		s.Log.Info("audit", "event", "roleRemoved", "principal", Principal(r.Context()), "assignee", a.Principal, "role", a.Role, "scope", a.Scope, "id", a.ID)
	}
	replyNone(w, r, err)
}

// CreateAdminToken creates a token for principal, expiring at expires
// (nil: never; tests), and makes the principal Owner at the root scope:
// the first token of `arca vault init`.
func CreateAdminToken(ctx context.Context, st interface {
	store.RoleStore
	store.TokenStore
}, name, principal string, expires ...*time.Time) (string, *store.Token, error) {
	a := &store.RoleAssignment{Principal: principal, Role: rbac.Owner, Scope: rbac.Root(), CreatedBy: "vault-init"}
	if err := st.CreateRoleAssignment(ctx, a); err != nil && !errors.Is(err, store.ErrAlreadyExists) {
		return "", nil, err
	}
	var exp *time.Time
	if len(expires) > 0 {
		exp = expires[0]
	}
	return CreateToken(ctx, st, name, principal, exp)
}

// ---- clusters (trusted access) ----

func (s *Server) listClusters(w http.ResponseWriter, r *http.Request) {
	cs, err := s.Service.ListClusters(r.Context())
	replyList(w, r, cs, err)
}

func (s *Server) registerCluster(w http.ResponseWriter, r *http.Request) {
	var b service.ClusterRegistration
	if !decoded(w, r, &b) {
		return
	}
	err := service.CheckName("name", b.Name)
	if err == nil {
		err = s.require(r, rbac.ClustersWrite, rbac.ClusterScope(b.Name))
	}
	var c *store.Cluster
	if err == nil {
		c, err = s.Service.RegisterCluster(r.Context(), b)
	}
	replyCreated(w, r, c, err, "/api/v1/clusters/"+b.Name)
}

func (s *Server) getCluster(w http.ResponseWriter, r *http.Request) {
	c, err := s.Service.GetCluster(r.Context(), r.PathValue("cluster"))
	reply(w, r, c, err)
}

// updateCluster replaces the connection (re-enabling trusted access).
func (s *Server) updateCluster(w http.ResponseWriter, r *http.Request) {
	var b service.ClusterRegistration
	ver, ok := version(w, r)
	if !ok || !decoded(w, r, &b) {
		return
	}
	c, err := s.Service.UpdateCluster(r.Context(), r.PathValue("cluster"), ver, b)
	reply(w, r, c, err)
}

func (s *Server) deleteCluster(w http.ResponseWriter, r *http.Request) {
	if ver, ok := version(w, r); ok {
		replyNone(w, r, s.Service.DeleteCluster(r.Context(), r.PathValue("cluster"), ver))
	}
}

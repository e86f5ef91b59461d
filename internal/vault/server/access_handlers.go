package server

import (
	"context"
	"errors"
	"net/http"
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

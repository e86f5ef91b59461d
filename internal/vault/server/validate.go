package server

import (
	"net/http"

	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/service"
	"github.com/arca-backup/arca/internal/vault/store"
)

// roles are the request principal's roles as the prerequisite checks see
// them; assignments they create are audited.
func (s *Server) roles(r *http.Request) service.Roles {
	return s.Service.RolesOf(Principal(r.Context()), func(ra *store.RoleAssignment) {
		s.Log.Info("audit", "event", "roleAssigned", "principal", ra.CreatedBy, "assignee", ra.Principal, "role", ra.Role,
			"scope", ra.Scope, "id", ra.ID, "via", "assign-missing-roles")
	})
}

// validateInstanceRoute: POST …/instances/{instance}/validate
// [?assignMissingRoles=true]. 200 with the report whether it passed or not.
func (s *Server) validateInstanceRoute(w http.ResponseWriter, r *http.Request) {
	v, err := s.Service.ValidateInstance(r.Context(), r.PathValue("vault"), r.PathValue("instance"), s.roles(r),
		r.URL.Query().Get("assignMissingRoles") == "true")
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v.Body)
}

// validateRestoreRoute: POST /api/v1/vaults/{vault}/restores/validate
// [?assignMissingRoles=true], with the body of POST …/restores. 200 with
// the report whether it passed or not.
func (s *Server) validateRestoreRoute(w http.ResponseWriter, r *http.Request) {
	var b jobs.RestoreParams
	if !decoded(w, r, &b) {
		return
	}
	v, err := s.Service.ValidateRestore(r.Context(), r.PathValue("vault"), b, s.roles(r), r.URL.Query().Get("assignMissingRoles") == "true")
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v.Body)
}

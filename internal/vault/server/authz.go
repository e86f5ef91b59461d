package server

import (
	"context"
	"net/http"

	"github.com/arca-backup/arca/internal/vault/service"

	"github.com/arca-backup/arca/internal/vault/rbac"
)

// authz says what an operation needs: an action at a scope computed from
// the request path. scope nil means the handler authorizes itself (the
// scope is in the body or a stored record) by calling s.require.
type authz struct {
	action string
	scope  func(r *http.Request) string
}

func atRoot(*http.Request) string { return rbac.Root() }
func atVault(r *http.Request) string {
	return rbac.VaultScope(r.PathValue("vault"))
}
func atPolicy(r *http.Request) string {
	return rbac.PolicyScope(r.PathValue("vault"), r.PathValue("policy"))
}
func atInstance(r *http.Request) string {
	return rbac.InstanceScope(r.PathValue("vault"), r.PathValue("instance"))
}
func atCluster(r *http.Request) string { return rbac.ClusterScope(r.PathValue("cluster")) }

// anyPrincipal marks operations every authenticated principal may call
// (reading the role catalogue, its own permissions); listing vaults is
// filtered per vault by the handler.
const anyPrincipal = "(authenticated)"

// authorization maps every non-public route ("METHOD pattern") to what it
// needs. A route missing here is refused (fail closed); a test checks that
// none is missing.
func authorization() map[string]authz {
	const v, vp = "/api/v1/vaults/{vault}", "/api/v1/vaults/{vault}/policies/{policy}"
	const in = "/api/v1/vaults/{vault}/instances/{instance}"
	return map[string]authz{
		"GET /api/v1/vaults":  {anyPrincipal, nil},
		"POST /api/v1/vaults": {rbac.VaultsWrite, nil}, // scope: the new vault's name
		"GET " + v:            {rbac.VaultsRead, atVault},
		"PUT " + v:            {rbac.VaultsWrite, atVault},
		"DELETE " + v:         {rbac.VaultsDelete, atVault},

		"GET " + v + "/policies":  {rbac.PoliciesRead, atVault},
		"POST " + v + "/policies": {rbac.PoliciesWrite, atVault},
		"GET " + vp:               {rbac.PoliciesRead, atPolicy},
		"PUT " + vp:               {rbac.PoliciesWrite, atPolicy},
		"DELETE " + vp:            {rbac.PoliciesDelete, atPolicy},

		"GET " + v + "/instances":           {rbac.InstancesRead, atVault},
		"POST " + v + "/instances":          {rbac.InstancesWrite, atVault},
		"GET " + in:                         {rbac.InstancesRead, atInstance},
		"PUT " + in:                         {rbac.InstancesWrite, atInstance},
		"DELETE " + in:                      {rbac.InstancesDelete, atInstance},
		"POST " + in + "/stop-protection":   {rbac.InstancesProtect, atInstance},
		"POST " + in + "/resume-protection": {rbac.InstancesProtect, atInstance},
		"POST " + in + "/backup":            {rbac.InstancesBackup, atInstance},
		"POST " + in + "/validate":          {rbac.InstancesValidate, atInstance},
		"POST " + in + "/sync":              {rbac.InstancesWrite, atInstance}, // re-creates catalog entries
		"POST " + in + "/undelete":          {rbac.InstancesUndelete, atInstance},

		"GET " + v + "/recovery-points":                {rbac.RecoveryPointsRead, atVault},
		"GET " + v + "/recovery-points/{id}":           {rbac.RecoveryPointsRead, atVault},
		"DELETE " + v + "/recovery-points/{id}":        {rbac.RecoveryPointsDelete, atVault},
		"POST " + v + "/recovery-points/{id}/undelete": {rbac.RecoveryPointsUndelete, atVault},
		// The extension answers; Secrets' values and files' content also
		// need storageLocations/data/read at the point's storage location
		// (checked by the service, which knows the location).
		"GET " + v + "/recovery-points/{id}/contents":      {rbac.RecoveryPointsRead, atVault},
		"GET " + v + "/recovery-points/{id}/diff":          {rbac.RecoveryPointsRead, atVault},
		"GET " + v + "/recovery-points/{id}/volumes":       {rbac.RecoveryPointsRead, atVault},
		"GET " + v + "/recovery-points/{id}/files":         {rbac.RecoveryPointsRead, atVault},
		"GET " + v + "/recovery-points/{id}/files/content": {rbac.RecoveryPointsRead, atVault},
		"POST " + v + "/recovery-points/{id}/verify":       {rbac.RestoresStart, atVault}, // a restore into sandbox namespaces
		"GET " + v + "/usage":                              {rbac.RecoveryPointsRead, atVault},

		"GET " + v + "/approvals":               {rbac.ApprovalsRead, atVault},
		"GET " + v + "/approvals/{id}":          {rbac.ApprovalsRead, atVault},
		"POST " + v + "/approvals/{id}/approve": {rbac.ApprovalsApprove, atVault},
		"POST " + v + "/approvals/{id}/reject":  {rbac.ApprovalsApprove, atVault},
		"GET " + v + "/notifications":           {rbac.NotificationsRead, atVault},
		"POST " + v + "/notifications":          {rbac.NotificationsWrite, atVault},
		"GET " + v + "/notifications/{id}":      {rbac.NotificationsRead, atVault},
		"DELETE " + v + "/notifications/{id}":   {rbac.NotificationsWrite, atVault},
		"GET " + v + "/deliveries":              {rbac.NotificationsRead, atVault},
		"POST " + v + "/restores":               {rbac.RestoresStart, atVault},
		"POST " + v + "/restores/validate":      {rbac.RestoresStart, atVault}, // same as starting one

		"GET " + v + "/jobs":              {rbac.JobsRead, atVault},
		"GET " + v + "/jobs/{id}":         {rbac.JobsRead, atVault},
		"POST " + v + "/jobs/{id}/cancel": {rbac.JobsCancel, atVault},

		"GET /api/v1/tokens":         {rbac.TokensRead, atRoot},
		"POST /api/v1/tokens":        {rbac.TokensWrite, atRoot},
		"DELETE /api/v1/tokens/{id}": {rbac.TokensWrite, atRoot},

		"GET /api/v1/audit":                    {rbac.RoleAssignmentsRead, atRoot}, // who did what: for those who see who may do what
		"GET /api/v1/session":                  {anyPrincipal, nil},                // the caller's own
		"GET /api/v1/roles":                    {anyPrincipal, nil},
		"GET /api/v1/permissions":              {anyPrincipal, nil}, // the caller's own
		"GET /api/v1/role-assignments":         {rbac.RoleAssignmentsRead, nil},
		"POST /api/v1/role-assignments":        {rbac.RoleAssignmentsWrite, nil},
		"DELETE /api/v1/role-assignments/{id}": {rbac.RoleAssignmentsWrite, nil},

		"GET /api/v1/clusters":              {rbac.ClustersRead, atRoot},
		"POST /api/v1/clusters":             {rbac.ClustersWrite, nil},
		"GET /api/v1/clusters/{cluster}":    {rbac.ClustersRead, atCluster},
		"PUT /api/v1/clusters/{cluster}":    {rbac.ClustersWrite, atCluster},
		"DELETE /api/v1/clusters/{cluster}": {rbac.ClustersDelete, atCluster},
	}
}

// AuthorizationTable exposes the route → action table (tests, docs).
func AuthorizationTable() map[string]string {
	out := map[string]string{}
	for k, a := range authorization() {
		out[k] = a.action
	}
	return out
}

// assignments returns the principal's role assignments.
func (s *Server) assignments(ctx context.Context, principal string) ([]rbac.Assignment, error) {
	return s.Service.Assignments(ctx, principal)
}

// require returns nil when the caller may do action at scope, and
// otherwise the 403 naming both (the audit log records it with the
// response, see Server.audit).
func (s *Server) require(r *http.Request, action, scope string) error {
	p := Principal(r.Context())
	ok, err := s.Service.Can(r.Context(), p, action, scope)
	if err != nil || ok {
		return err
	}
	return service.Refused(p, action, scope)
}

// authorize wraps a handler with its route's check. It runs after
// authentication, inside the mux (so r.Pattern is set).
func (s *Server) authorize(key string, next http.Handler) http.Handler {
	a, ok := authorization()[key]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ok {
			writeError(w, r, apiErr(http.StatusForbidden, "Forbidden", "operation %s has no authorization rule; refused", key))
			return
		}
		if a.scope != nil {
			if err := s.require(r, a.action, a.scope(r)); err != nil {
				writeError(w, r, err)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

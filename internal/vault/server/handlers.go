package server

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/service"
	"github.com/arca-backup/arca/internal/vault/store"
)

// The handlers of the vault operations: each decodes the request,
// authorizes it (the route's rule in authz.go, and here what depends on
// the body), calls one operation of package service and encodes the
// answer. Errors are mapped to statuses in one place (errors.go).

// ---- ETag / If-Match ----

func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// ifMatch returns the version an If-Match header names; 0 for "*" (the
// caller's explicit "whatever is stored"). Every update and delete of a
// versioned record needs the header: without it a client overwrites
// changes it never saw, so a missing one is 428 Precondition Required.
// Weak tags are accepted: versions are exact either way.
func ifMatch(r *http.Request) (int64, error) {
	h := strings.TrimSpace(r.Header.Get("If-Match"))
	if h == "" {
		return 0, apiErr(http.StatusPreconditionRequired, "PreconditionRequired",
			"%s %s needs an If-Match header: send the ETag the record had when you read it (GET %s returns it in the ETag header, e.g. If-Match: \"3\"), or If-Match: * to change whatever is stored; the arca CLI sends it itself",
			r.Method, r.URL.Path, recordPath(r))
	}
	if h == "*" {
		return 0, nil
	}
	h = strings.Trim(strings.TrimPrefix(h, "W/"), `"`)
	v, err := strconv.ParseInt(h, 10, 64)
	if err != nil || v < 1 {
		return 0, service.InvalidField("InvalidIfMatch", "If-Match", h, "send an ETag returned by this API, like \"3\"",
			"If-Match must be an ETag returned by this API, like \"3\"")
	}
	return v, nil
}

// recordPath is the path that reads the record an update names (its
// own path, or the instance's for stop/resume-protection).
func recordPath(r *http.Request) string {
	p := strings.TrimSuffix(r.URL.Path, "/")
	for _, suffix := range []string{"/stop-protection", "/resume-protection"} {
		p = strings.TrimSuffix(p, suffix)
	}
	return p
}

// versioned is a record with a version: every store record with Meta.
type versioned interface{ GetVersion() int64 }

func writeVersioned(w http.ResponseWriter, status int, version int64, v any) {
	w.Header().Set("ETag", etag(version))
	writeJSON(w, status, v)
}

// reply encodes the result of an operation: the error, or the record with
// its ETag and status (200 unless given).
func reply[T versioned](w http.ResponseWriter, r *http.Request, v T, err error, status ...int) {
	if err != nil {
		writeError(w, r, err)
		return
	}
	code := http.StatusOK
	if len(status) > 0 {
		code = status[0]
	}
	writeVersioned(w, code, v.GetVersion(), v)
}

// replyCreated answers 201 with the record and its Location.
func replyCreated[T versioned](w http.ResponseWriter, r *http.Request, v T, err error, location string) {
	if err == nil {
		w.Header().Set("Location", location)
	}
	reply(w, r, v, err, http.StatusCreated)
}

// replyNone answers 204 No Content.
func replyNone(w http.ResponseWriter, r *http.Request, err error) {
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// replyJob answers 202 Accepted with a queued job and its Location.
func replyJob(w http.ResponseWriter, r *http.Request, j *store.Job, err error) {
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Location", jobPath(j))
	writeJSON(w, http.StatusAccepted, j)
}

func jobPath(j *store.Job) string { return fmt.Sprintf("/api/v1/vaults/%s/jobs/%s", j.Vault, j.ID) }

// replyList answers a list.
func replyList[T any](w http.ResponseWriter, r *http.Request, xs []T, err error) {
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, items(xs))
}

// decoded decodes the body into v, answering the error itself.
func decoded(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := decode(w, r, v); err != nil {
		writeError(w, r, err)
		return false
	}
	return true
}

// version reads If-Match, answering the error itself.
func version(w http.ResponseWriter, r *http.Request) (int64, bool) {
	v, err := ifMatch(r)
	if err != nil {
		writeError(w, r, err)
		return 0, false
	}
	return v, true
}

type list[T any] struct {
	Items []T `json:"items"`
	// Next, on a full page, names the last item: pass it as ?after= for
	// the next page.
	Next string `json:"next,omitempty"`
}

// replyPage answers one page of a list ordered by name; a full page names
// its last item as next.
func replyPage[T any](w http.ResponseWriter, r *http.Request, xs []T, err error, p store.Page, name func(T) string) {
	if err != nil {
		writeError(w, r, err)
		return
	}
	l := items(xs)
	if p.Limit > 0 && len(xs) == p.Limit {
		l.Next = name(xs[len(xs)-1])
	}
	writeJSON(w, http.StatusOK, l)
}

func items[T any](xs []T) list[T] {
	if xs == nil {
		xs = []T{}
	}
	return list[T]{Items: xs}
}

// ---- vaults ----

type vaultBody struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

func (s *Server) listVaults(w http.ResponseWriter, r *http.Request) {
	vs, err := s.Service.ListVaults(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	// Each caller sees the vaults it may read.
	p := Principal(r.Context())
	as, err := s.assignments(r.Context(), p)
	var visible []*store.Vault
	for _, v := range vs {
		if rbac.Decide(as, p, rbac.VaultsRead, rbac.VaultScope(v.Name)).Allowed {
			visible = append(visible, v)
		}
	}
	replyList(w, r, visible, err)
}

func (s *Server) createVault(w http.ResponseWriter, r *http.Request) {
	var b vaultBody
	if !decoded(w, r, &b) {
		return
	}
	if err := service.CheckName("name", b.Name); err != nil {
		writeError(w, r, err)
		return
	}
	if err := s.require(r, rbac.VaultsWrite, rbac.VaultScope(b.Name)); err != nil {
		writeError(w, r, err)
		return
	}
	v, err := s.Service.CreateVault(r.Context(), b.Name, b.Description)
	replyCreated(w, r, v, err, "/api/v1/vaults/"+b.Name)
}

func (s *Server) getVault(w http.ResponseWriter, r *http.Request) {
	v, err := s.Service.GetVault(r.Context(), r.PathValue("vault"))
	reply(w, r, v, err)
}

func (s *Server) updateVault(w http.ResponseWriter, r *http.Request) {
	var b service.VaultUpdate
	ver, ok := version(w, r)
	if !ok || !decoded(w, r, &b) {
		return
	}
	v, err := s.Service.UpdateVault(r.Context(), r.PathValue("vault"), ver, b)
	reply(w, r, v, err)
}

func (s *Server) deleteVault(w http.ResponseWriter, r *http.Request) {
	if ver, ok := version(w, r); ok {
		replyNone(w, r, s.Service.DeleteVault(r.Context(), r.PathValue("vault"), ver))
	}
}

// ---- policies ----

func (s *Server) listPolicies(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	pg, err := service.ParsePage(q.Get("limit"), q.Get("after"))
	var ps []*store.Policy
	if err == nil {
		ps, err = s.Service.ListPolicies(r.Context(), r.PathValue("vault"), pg)
	}
	replyPage(w, r, ps, err, pg, func(p *store.Policy) string { return p.Name })
}

func (s *Server) createPolicy(w http.ResponseWriter, r *http.Request) {
	var b service.PolicySpec
	if !decoded(w, r, &b) {
		return
	}
	p, err := s.Service.CreatePolicy(r.Context(), r.PathValue("vault"), b)
	replyCreated(w, r, p, err, fmt.Sprintf("/api/v1/vaults/%s/policies/%s", r.PathValue("vault"), b.Name))
}

func (s *Server) getPolicy(w http.ResponseWriter, r *http.Request) {
	p, err := s.Service.GetPolicy(r.Context(), r.PathValue("vault"), r.PathValue("policy"))
	reply(w, r, p, err)
}

func (s *Server) updatePolicy(w http.ResponseWriter, r *http.Request) {
	var b service.PolicySpec
	ver, ok := version(w, r)
	if !ok || !decoded(w, r, &b) {
		return
	}
	p, err := s.Service.UpdatePolicy(r.Context(), r.PathValue("vault"), r.PathValue("policy"), ver, b)
	reply(w, r, p, err)
}

func (s *Server) deletePolicy(w http.ResponseWriter, r *http.Request) {
	if ver, ok := version(w, r); ok {
		replyNone(w, r, s.Service.DeletePolicy(r.Context(), r.PathValue("vault"), r.PathValue("policy"), ver))
	}
}

// ---- instances ----

func (s *Server) listInstances(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	pg, err := service.ParsePage(q.Get("limit"), q.Get("after"))
	var ins []*store.Instance
	if err == nil {
		ins, err = s.Service.ListInstancesWith(r.Context(), r.PathValue("vault"), q.Get("policy"), q.Get("deleted"), pg)
	}
	replyPage(w, r, ins, err, pg, func(in *store.Instance) string { return in.Name })
}

func (s *Server) createInstance(w http.ResponseWriter, r *http.Request) {
	var b service.InstanceSpec
	if !decoded(w, r, &b) {
		return
	}
	var prereq service.Prerequisites
	vault, caller := r.PathValue("vault"), Principal(r.Context())
	switch {
	case r.URL.Query().Get("skipValidation") == "true":
		if err := s.Service.CheckSkipValidation(r.Context(), caller, vault); err != nil {
			writeError(w, r, err)
			return
		}
	case s.ValidateOnCreate:
		prereq = s.Service.BackupPrerequisites(s.roles(r))
	}
	in, err := s.Service.CreateInstance(r.Context(), caller, vault, b, prereq)
	if err == nil && prereq == nil && r.URL.Query().Get("skipValidation") == "true" {
		s.Log.Info("audit", "event", "validationSkipped", "principal", caller, "vault", vault, "instance", b.Name, "cluster", b.Cluster)
	}
	replyCreated(w, r, in, err, fmt.Sprintf("/api/v1/vaults/%s/instances/%s", r.PathValue("vault"), b.Name))
}

func (s *Server) getInstance(w http.ResponseWriter, r *http.Request) {
	in, err := s.Service.GetInstance(r.Context(), r.PathValue("vault"), r.PathValue("instance"))
	reply(w, r, in, err)
}

func (s *Server) updateInstance(w http.ResponseWriter, r *http.Request) {
	var b service.InstanceSpec
	ver, ok := version(w, r)
	if !ok || !decoded(w, r, &b) {
		return
	}
	in, err := s.Service.UpdateInstance(r.Context(), Principal(r.Context()), r.PathValue("vault"), r.PathValue("instance"), ver, b)
	reply(w, r, in, err)
}

// deleteInstance: 204; with ?deleteData=true 202 and the job that
// deletes the recovery points and then the instance.
func (s *Server) deleteInstance(w http.ResponseWriter, r *http.Request) {
	ver, ok := version(w, r)
	switch {
	case !ok:
	case r.URL.Query().Get("deleteData") == "true":
		j, err := s.Service.DeleteInstanceWithData(r.Context(), r.PathValue("vault"), r.PathValue("instance"), ver)
		if err == nil && j == nil { // soft-deleted: the instance as it is now
			in, err := s.Service.GetInstance(r.Context(), r.PathValue("vault"), r.PathValue("instance"))
			reply(w, r, in, err)
			return
		}
		replyJob(w, r, j, err)
	default:
		replyNone(w, r, s.Service.DeleteInstance(r.Context(), r.PathValue("vault"), r.PathValue("instance"), ver))
	}
}

type stopBody struct {
	Mode string `json:"mode"`
}

// stopProtection answers the instance; with delete-data 202 Accepted and
// the Location of the queued deletion job.
func (s *Server) stopProtection(w http.ResponseWriter, r *http.Request) {
	var b stopBody
	ver, ok := version(w, r)
	if !ok || !decoded(w, r, &b) {
		return
	}
	in, j, err := s.Service.StopProtection(r.Context(), r.PathValue("vault"), r.PathValue("instance"), ver, b.Mode)
	if err == nil && j != nil {
		w.Header().Set("Location", jobPath(j))
		reply(w, r, in, err, http.StatusAccepted)
		return
	}
	reply(w, r, in, err)
}

func (s *Server) resumeProtection(w http.ResponseWriter, r *http.Request) {
	if ver, ok := version(w, r); ok {
		in, err := s.Service.ResumeProtection(r.Context(), r.PathValue("vault"), r.PathValue("instance"), ver)
		reply(w, r, in, err)
	}
}

func (s *Server) backupNow(w http.ResponseWriter, r *http.Request) {
	var b jobs.BackupParams
	if r.ContentLength != 0 && !decoded(w, r, &b) {
		return
	}
	j, err := s.Service.BackupNow(r.Context(), Principal(r.Context()), r.PathValue("vault"), r.PathValue("instance"), b)
	replyJob(w, r, j, err)
}

func (s *Server) syncRecoveryPoints(w http.ResponseWriter, r *http.Request) {
	var req service.SyncRequest
	if !decoded(w, r, &req) {
		return
	}
	res, err := s.Service.SyncRecoveryPoints(r.Context(), r.PathValue("vault"), r.PathValue("instance"), req)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// ---- recovery points, restores ----

func (s *Server) listRecoveryPoints(w http.ResponseWriter, r *http.Request) {
	rps, err := s.Service.ListRecoveryPointsWith(r.Context(), r.PathValue("vault"), r.URL.Query().Get("instance"), r.URL.Query().Get("deleted"))
	replyList(w, r, rps, err)
}

func (s *Server) getRecoveryPoint(w http.ResponseWriter, r *http.Request) {
	rp, err := s.Service.GetRecoveryPoint(r.Context(), r.PathValue("vault"), r.PathValue("id"))
	reply(w, r, rp, err)
}

func (s *Server) startRestore(w http.ResponseWriter, r *http.Request) {
	var b jobs.RestoreParams
	if !decoded(w, r, &b) {
		return
	}
	j, err := s.Service.StartRestore(r.Context(), Principal(r.Context()), r.PathValue("vault"), b)
	replyJob(w, r, j, err)
}

func (s *Server) verifyRecoveryPoint(w http.ResponseWriter, r *http.Request) {
	var b jobs.VerificationParams
	if !decoded(w, r, &b) {
		return
	}
	b.RecoveryPoint = r.PathValue("id")
	j, err := s.Service.StartVerification(r.Context(), Principal(r.Context()), r.PathValue("vault"), b)
	replyJob(w, r, j, err)
}

// ---- jobs ----

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.JobFilter{Vault: r.PathValue("vault"), Instance: q.Get("instance"), Type: q.Get("type"), State: q.Get("state")}
	js, err := s.Service.ListJobs(r.Context(), f, q.Get("limit"))
	replyList(w, r, js, err)
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	j, err := s.Service.GetJob(r.Context(), r.PathValue("vault"), r.PathValue("id"))
	reply(w, r, j, err)
}

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request) {
	j, err := s.Service.CancelJob(r.Context(), r.PathValue("vault"), r.PathValue("id"))
	reply(w, r, j, err)
}

// ---- tokens ----

type tokenBody struct {
	Name      string `json:"name"`
	Principal string `json:"principal"`
	ExpiresIn string `json:"expiresIn,omitempty"` // ISO 8601 duration
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	ts, err := s.Service.ListTokens(r.Context())
	replyList(w, r, ts, err)
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	var b tokenBody
	if !decoded(w, r, &b) {
		return
	}
	tok, t, err := s.Service.CreateToken(r.Context(), b.Name, b.Principal, b.ExpiresIn)
	if err != nil {
		writeError(w, r, err)
		return
	}
	// Minting a credential is audited with what it grants (never the
	// token itself).
	s.Log.Info("audit", "event", "tokenCreated", "principal", Principal(r.Context()), "tokenId", t.ID, "tokenName", t.Name,
		"tokenPrincipal", t.Principal, "expiresAt", t.ExpiresAt)
	writeJSON(w, http.StatusCreated, map[string]any{"token": tok, "id": t.ID, "name": t.Name, "principal": t.Principal, "expiresAt": t.ExpiresAt})
}

func (s *Server) deleteToken(w http.ResponseWriter, r *http.Request) {
	t, err := s.Service.DeleteToken(r.Context(), r.PathValue("id"))
	if err == nil {
		s.Log.Info("audit", "event", "tokenRevoked", "principal", Principal(r.Context()), "tokenId", t.ID, "tokenName", t.Name,
			"tokenPrincipal", t.Principal)
	}
	replyNone(w, r, err)
}

// ---- what a recovery point holds (the cluster's extension answers) ----

// queryInt reads an optional integer query parameter.
func queryInt(r *http.Request, name string) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, service.InvalidField("InvalidValue", name, v, "an integer")
	}
	return n, nil
}

func queryBool(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, service.InvalidField("InvalidValue", name, v, "true or false")
	}
	return b, nil
}

func (s *Server) recoveryPointContents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := queryInt(r, "limit")
	if err != nil {
		writeError(w, r, err)
		return
	}
	res, err := s.Service.RecoveryPointContents(r.Context(), Principal(r.Context()), r.PathValue("vault"), r.PathValue("id"), service.ContentsRequest{
		Namespace: q.Get("namespace"), Type: q.Get("type"), Name: q.Get("name"), Limit: int(limit), Continue: q.Get("continue")})
	replyResult(w, r, res, err)
}

func (s *Server) recoveryPointDiff(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := queryInt(r, "limit")
	if err != nil {
		writeError(w, r, err)
		return
	}
	live, err := queryBool(r, "live")
	if err != nil {
		writeError(w, r, err)
		return
	}
	res, err := s.Service.RecoveryPointDiff(r.Context(), Principal(r.Context()), r.PathValue("vault"), r.PathValue("id"), service.DiffRequest{
		Against: q.Get("against"), Live: live, Namespace: q.Get("namespace"), Type: q.Get("type"), Name: q.Get("name"),
		Limit: int(limit), Continue: q.Get("continue")})
	replyResult(w, r, res, err)
}

func (s *Server) recoveryPointVolumes(w http.ResponseWriter, r *http.Request) {
	res, err := s.Service.RecoveryPointVolumes(r.Context(), Principal(r.Context()), r.PathValue("vault"), r.PathValue("id"))
	replyResult(w, r, res, err)
}

func (s *Server) recoveryPointFiles(read bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		req := service.FilesRequest{Volume: q.Get("volume"), Path: q.Get("path"), Read: read, Continue: q.Get("continue")}
		var limit int64
		var err error
		for _, f := range []struct {
			name string
			to   *int64
		}{{"limit", &limit}, {"offset", &req.Offset}, {"length", &req.Length}} {
			if *f.to, err = queryInt(r, f.name); err != nil {
				writeError(w, r, err)
				return
			}
		}
		req.Limit = int(limit)
		res, err := s.Service.RecoveryPointFiles(r.Context(), Principal(r.Context()), r.PathValue("vault"), r.PathValue("id"), req)
		replyResult(w, r, res, err)
	}
}

func replyResult(w http.ResponseWriter, r *http.Request, res *v1alpha1.RecoveryPointQueryResult, err error) {
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

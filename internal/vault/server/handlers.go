package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/vault/jobs"
	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/retention"
	"github.com/arca-backup/arca/internal/vault/scheduler"
	"github.com/arca-backup/arca/internal/vault/store"
)

// ---- ETag / If-Match ----

func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// ifMatch returns the version an If-Match header names; 0 when absent or
// "*". Weak tags are accepted: versions are exact either way.
func ifMatch(r *http.Request) (int64, error) {
	h := strings.TrimSpace(r.Header.Get("If-Match"))
	if h == "" || h == "*" {
		return 0, nil
	}
	h = strings.Trim(strings.TrimPrefix(h, "W/"), `"`)
	v, err := strconv.ParseInt(h, 10, 64)
	if err != nil || v < 1 {
		return 0, apiErr(http.StatusBadRequest, "InvalidIfMatch", "If-Match must be an ETag returned by this API, like \"3\"")
	}
	return v, nil
}

// precondition checks If-Match against the current version and returns the
// version to base an update on.
func precondition(r *http.Request, current int64) (int64, error) {
	want, err := ifMatch(r)
	if err != nil {
		return 0, err
	}
	if want != 0 && want != current {
		return 0, apiErr(http.StatusPreconditionFailed, "PreconditionFailed",
			"If-Match %s does not match the current ETag %s: the resource changed; fetch it again", etag(want), etag(current))
	}
	return current, nil
}

func writeVersioned(w http.ResponseWriter, status int, version int64, v any) {
	w.Header().Set("ETag", etag(version))
	writeJSON(w, status, v)
}

type list[T any] struct {
	Items []T `json:"items"`
	// Next, on a full page, names the last item: pass it as ?after= for
	// the next page.
	Next string `json:"next,omitempty"`
}

// maxPage bounds ?limit= on lists that page.
const maxPage = 1000

// page reads ?limit= and ?after= of a list ordered by name; without limit
// the list is whole, as before pages existed.
func page(r *http.Request) (store.Page, error) {
	q := r.URL.Query()
	p := store.Page{After: q.Get("after")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxPage {
			return p, apiErr(http.StatusBadRequest, "InvalidValue", "limit %q: want 1-%d (then ?after=<next of the previous page>)", l, maxPage)
		}
		p.Limit = n
	}
	return p, nil
}

// pageOf is a list answer; a full page names its last item as next.
func pageOf[T any](xs []T, p store.Page, name func(T) string) list[T] {
	l := items(xs)
	if p.Limit > 0 && len(xs) == p.Limit {
		l.Next = name(xs[len(xs)-1])
	}
	return l
}

func items[T any](xs []T) list[T] {
	if xs == nil {
		xs = []T{}
	}
	return list[T]{Items: xs}
}

func (s *Server) vault(r *http.Request) (*store.Vault, error) {
	return s.Store.GetVault(r.Context(), r.PathValue("vault"))
}

// ---- vaults ----

type vaultBody struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

func (s *Server) listVaults(w http.ResponseWriter, r *http.Request) {
	vs, err := s.Store.ListVaults(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	// Each caller sees the vaults it may read.
	p := Principal(r.Context())
	as, err := s.assignments(r.Context(), p)
	if err != nil {
		writeError(w, r, err)
		return
	}
	var visible []*store.Vault
	for _, v := range vs {
		if rbac.Decide(as, p, rbac.VaultsRead, rbac.VaultScope(v.Name)).Allowed {
			visible = append(visible, v)
		}
	}
	writeJSON(w, http.StatusOK, items(visible))
}

func (s *Server) createVault(w http.ResponseWriter, r *http.Request) {
	var b vaultBody
	if err := decode(w, r, &b); err != nil {
		writeError(w, r, err)
		return
	}
	if err := validName("name", b.Name); err != nil {
		writeError(w, r, err)
		return
	}
	if err := s.require(r, rbac.VaultsWrite, rbac.VaultScope(b.Name)); err != nil {
		writeError(w, r, err)
		return
	}
	if len(b.Description) > 1024 {
		writeError(w, r, apiErr(http.StatusBadRequest, "InvalidValue", "description: at most 1024 characters"))
		return
	}
	v := &store.Vault{Name: b.Name, Description: b.Description}
	if err := s.Store.CreateVault(r.Context(), v); err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/vaults/"+v.Name)
	writeVersioned(w, http.StatusCreated, v.Version, v)
}

func (s *Server) getVault(w http.ResponseWriter, r *http.Request) {
	v, err := s.vault(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeVersioned(w, http.StatusOK, v.Version, v)
}

func (s *Server) updateVault(w http.ResponseWriter, r *http.Request) {
	var b vaultBody
	if err := decode(w, r, &b); err != nil {
		writeError(w, r, err)
		return
	}
	v, err := s.vault(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if b.Name != "" && b.Name != v.Name {
		writeError(w, r, apiErr(http.StatusBadRequest, "ImmutableField", "name cannot be changed"))
		return
	}
	if v.Version, err = precondition(r, v.Version); err != nil {
		writeError(w, r, err)
		return
	}
	v.Description = b.Description
	if err := s.Store.UpdateVault(r.Context(), v); err != nil {
		writeError(w, r, err)
		return
	}
	writeVersioned(w, http.StatusOK, v.Version, v)
}

func (s *Server) deleteVault(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("vault")
	ctx := r.Context()
	if _, err := s.vault(r); err != nil {
		writeError(w, r, err)
		return
	}
	ps, err := s.Store.ListPolicies(ctx, name)
	if err != nil {
		writeError(w, r, err)
		return
	}
	ins, err := s.Store.ListInstances(ctx, name, "")
	if err != nil {
		writeError(w, r, err)
		return
	}
	if len(ps)+len(ins) > 0 {
		writeError(w, r, apiErr(http.StatusConflict, "VaultNotEmpty", "vault %q still has %d backup instance(s) and %d policy(ies): delete them first", name, len(ins), len(ps)))
		return
	}
	ver, err := ifMatch(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if err := s.Store.DeleteVault(ctx, name, ver); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// ---- policies ----

type policyBody struct {
	Name      string               `json:"name"`
	Schedule  string               `json:"schedule"`
	Retention policy.RetentionSpec `json:"retention"`
}

// policyFromBody validates a policy and returns its stored form.
func policyFromBody(b policyBody) (string, json.RawMessage, *policy.Policy, error) {
	p, err := policy.Parse(policy.Spec{Schedule: b.Schedule, Retention: b.Retention})
	if err != nil {
		return "", nil, nil, err
	}
	// Store the normalised spec: datastores filled in.
	norm := b.Retention
	for _, rs := range []*policy.RuleSpec{norm.Default, norm.Daily, norm.Weekly, norm.Monthly, norm.Yearly} {
		if rs != nil && rs.Datastore == "" {
			rs.Datastore = policy.Operational
		}
	}
	raw, err := json.Marshal(norm)
	if err != nil {
		return "", nil, nil, err
	}
	return strings.TrimSpace(b.Schedule), raw, p, nil
}

func (s *Server) listPolicies(w http.ResponseWriter, r *http.Request) {
	if _, err := s.vault(r); err != nil {
		writeError(w, r, err)
		return
	}
	pg, err := page(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	ps, err := s.Store.ListPoliciesPage(r.Context(), r.PathValue("vault"), pg)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, pageOf(ps, pg, func(p *store.Policy) string { return p.Name }))
}

func (s *Server) createPolicy(w http.ResponseWriter, r *http.Request) {
	if _, err := s.vault(r); err != nil {
		writeError(w, r, err)
		return
	}
	var b policyBody
	if err := decode(w, r, &b); err != nil {
		writeError(w, r, err)
		return
	}
	if err := validName("name", b.Name); err != nil {
		writeError(w, r, err)
		return
	}
	sched, ret, _, err := policyFromBody(b)
	if err != nil {
		writeError(w, r, err)
		return
	}
	p := &store.Policy{Vault: r.PathValue("vault"), Name: b.Name, Schedule: sched, Retention: ret}
	if err := s.Store.CreatePolicy(r.Context(), p); err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Location", fmt.Sprintf("/api/v1/vaults/%s/policies/%s", p.Vault, p.Name))
	writeVersioned(w, http.StatusCreated, p.Version, p)
}

func (s *Server) getPolicy(w http.ResponseWriter, r *http.Request) {
	p, err := s.Store.GetPolicy(r.Context(), r.PathValue("vault"), r.PathValue("policy"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeVersioned(w, http.StatusOK, p.Version, p)
}

func (s *Server) updatePolicy(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var b policyBody
	if err := decode(w, r, &b); err != nil {
		writeError(w, r, err)
		return
	}
	p, err := s.Store.GetPolicy(ctx, r.PathValue("vault"), r.PathValue("policy"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	if b.Name != "" && b.Name != p.Name {
		writeError(w, r, apiErr(http.StatusBadRequest, "ImmutableField", "name cannot be changed"))
		return
	}
	if p.Version, err = precondition(r, p.Version); err != nil {
		writeError(w, r, err)
		return
	}
	sched, ret, _, err := policyFromBody(b)
	if err != nil {
		writeError(w, r, err)
		return
	}
	changed := sched != p.Schedule
	p.Schedule, p.Retention = sched, ret
	if err := s.Store.UpdatePolicy(ctx, p); err != nil {
		writeError(w, r, err)
		return
	}
	if changed {
		// Protected instances follow the new schedule from now on.
		ins, err := s.Store.ListInstances(ctx, p.Vault, p.Name)
		if err != nil {
			writeError(w, r, err)
			return
		}
		for _, in := range ins {
			if in.ProtectionState != store.ProtectionConfigured {
				continue
			}
			if _, err := scheduler.Arm(ctx, s.Store, in.Vault, in.Name, p.Schedule, s.Clock.Now()); err != nil {
				writeError(w, r, err)
				return
			}
		}
	}
	writeVersioned(w, http.StatusOK, p.Version, p)
}

func (s *Server) deletePolicy(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	vault, name := r.PathValue("vault"), r.PathValue("policy")
	if _, err := s.Store.GetPolicy(ctx, vault, name); err != nil {
		writeError(w, r, err)
		return
	}
	ins, err := s.Store.ListInstances(ctx, vault, name)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if len(ins) > 0 {
		writeError(w, r, apiErr(http.StatusConflict, "PolicyInUse", "policy %q is used by %d backup instance(s), e.g. %q", name, len(ins), ins[0].Name))
		return
	}
	ver, err := ifMatch(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if err := s.Store.DeletePolicy(ctx, vault, name, ver); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// ---- instances ----

type instanceBody struct {
	Name             string          `json:"name"`
	Cluster          string          `json:"cluster"`
	Policy           string          `json:"policy"`
	Config           json.RawMessage `json:"backupConfiguration"`
	StorageLocation  string          `json:"storageLocation"`
	SnapshotLocation string          `json:"snapshotLocation"`
}

func (s *Server) validateInstance(r *http.Request, b *instanceBody) (*store.Policy, error) {
	if err := validName("cluster", b.Cluster); err != nil {
		return nil, err
	}
	if b.Policy == "" {
		return nil, apiErr(http.StatusBadRequest, "MissingField", "policy: required")
	}
	p, err := s.Store.GetPolicy(r.Context(), r.PathValue("vault"), b.Policy)
	if errors.Is(err, store.ErrNotFound) {
		return nil, apiErr(http.StatusBadRequest, "UnknownReference", "policy %q does not exist in vault %q", b.Policy, r.PathValue("vault"))
	}
	if err != nil {
		return nil, err
	}
	switch {
	case b.StorageLocation == "":
		return nil, apiErr(http.StatusBadRequest, "MissingField", "storageLocation: required (file:///path, azure://account/container[/prefix] or s3://bucket[/prefix]?endpoint=…)")
	case !strings.HasPrefix(b.StorageLocation, "file:///") && !strings.HasPrefix(b.StorageLocation, "azure://") && !strings.HasPrefix(b.StorageLocation, "s3://"):
		return nil, apiErr(http.StatusBadRequest, "InvalidStorageLocation", "storageLocation %q: want file:///path, azure://account/container[/prefix] or s3://bucket[/prefix]?endpoint=…", b.StorageLocation)
	case len(b.StorageLocation) > 2048 || len(b.SnapshotLocation) > 253:
		return nil, apiErr(http.StatusBadRequest, "InvalidValue", "storageLocation or snapshotLocation too long")
	}
	if len(bytes.TrimSpace(b.Config)) == 0 || string(bytes.TrimSpace(b.Config)) == "null" {
		b.Config = json.RawMessage(`{}`)
	}
	var cfg v1alpha1.BackupConfiguration
	dec := json.NewDecoder(bytes.NewReader(b.Config))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return nil, apiErr(http.StatusBadRequest, "InvalidBackupConfiguration", "backupConfiguration: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, apiErr(http.StatusBadRequest, "InvalidBackupConfiguration", "backupConfiguration: %v", err)
	}
	return p, nil
}

func (s *Server) listInstances(w http.ResponseWriter, r *http.Request) {
	if _, err := s.vault(r); err != nil {
		writeError(w, r, err)
		return
	}
	pg, err := page(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	ins, err := s.Store.ListInstancesPage(r.Context(), r.PathValue("vault"), r.URL.Query().Get("policy"), pg)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, pageOf(ins, pg, func(in *store.Instance) string { return in.Name }))
}

func (s *Server) createInstance(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if _, err := s.vault(r); err != nil {
		writeError(w, r, err)
		return
	}
	var b instanceBody
	if err := decode(w, r, &b); err != nil {
		writeError(w, r, err)
		return
	}
	if err := validName("name", b.Name); err != nil {
		writeError(w, r, err)
		return
	}
	p, err := s.validateInstance(r, &b)
	if err != nil {
		writeError(w, r, err)
		return
	}
	in := &store.Instance{Vault: r.PathValue("vault"), Name: b.Name, Cluster: b.Cluster, Policy: b.Policy, Config: b.Config,
		StorageLocation: b.StorageLocation, SnapshotLocation: b.SnapshotLocation, ProtectionState: store.ProtectionConfigured}
	if s.ValidateOnCreate && r.URL.Query().Get("skipValidation") != "true" {
		rep, err := s.validateBackup(r, in)
		if err != nil {
			writeError(w, r, err)
			return
		}
		if !rep.Passed {
			var failed []string
			for _, c := range rep.Failures() {
				failed = append(failed, fmt.Sprintf("%s: %s → %s", c.Code, c.Message, c.Remedy))
			}
			writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": &APIError{Code: "ValidationFailed",
				Message: fmt.Sprintf("%d prerequisite(s) not met (create with skipValidation=true, then arca instance validate shows every check): %s",
					len(failed), strings.Join(failed, "; "))},
				"validation": rep})
			return
		}
	}
	if err := s.Store.CreateInstance(ctx, in); err != nil {
		writeError(w, r, err)
		return
	}
	if _, err := scheduler.Arm(ctx, s.Store, in.Vault, in.Name, p.Schedule, s.Clock.Now()); err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Location", fmt.Sprintf("/api/v1/vaults/%s/instances/%s", in.Vault, in.Name))
	writeVersioned(w, http.StatusCreated, in.Version, in)
}

func (s *Server) getInstance(w http.ResponseWriter, r *http.Request) {
	in, err := s.Store.GetInstance(r.Context(), r.PathValue("vault"), r.PathValue("instance"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeVersioned(w, http.StatusOK, in.Version, in)
}

func (s *Server) updateInstance(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var b instanceBody
	if err := decode(w, r, &b); err != nil {
		writeError(w, r, err)
		return
	}
	in, err := s.Store.GetInstance(ctx, r.PathValue("vault"), r.PathValue("instance"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	if (b.Name != "" && b.Name != in.Name) || (b.Cluster != "" && b.Cluster != in.Cluster) {
		writeError(w, r, apiErr(http.StatusBadRequest, "ImmutableField", "name and cluster of a backup instance cannot be changed; create a new instance"))
		return
	}
	b.Cluster = in.Cluster
	if in.Version, err = precondition(r, in.Version); err != nil {
		writeError(w, r, err)
		return
	}
	p, err := s.validateInstance(r, &b)
	if err != nil {
		writeError(w, r, err)
		return
	}
	policyChanged := b.Policy != in.Policy
	in.Policy, in.Config, in.StorageLocation, in.SnapshotLocation = b.Policy, b.Config, b.StorageLocation, b.SnapshotLocation
	if err := s.Store.UpdateInstance(ctx, in); err != nil {
		writeError(w, r, err)
		return
	}
	if policyChanged && in.ProtectionState == store.ProtectionConfigured {
		if _, err := scheduler.Arm(ctx, s.Store, in.Vault, in.Name, p.Schedule, s.Clock.Now()); err != nil {
			writeError(w, r, err)
			return
		}
	}
	writeVersioned(w, http.StatusOK, in.Version, in)
}

func (s *Server) deleteInstance(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	in, err := s.Store.GetInstance(ctx, r.PathValue("vault"), r.PathValue("instance"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	if in.ProtectionState != store.ProtectionStopped {
		writeError(w, r, apiErr(http.StatusConflict, "ProtectionActive", "backup instance %q is protected: stop protection first (stop-protection)", in.Name))
		return
	}
	rps, err := s.Store.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: in.Vault, Instance: in.Name})
	if err != nil {
		writeError(w, r, err)
		return
	}
	if len(rps) > 0 {
		writeError(w, r, apiErr(http.StatusConflict, "RecoveryPointsRemain",
			"backup instance %q still has %d recovery point(s): stop protection with mode delete-data to remove them, or wait until retention expires them", in.Name, len(rps)))
		return
	}
	ver, err := ifMatch(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if err := s.Store.DeleteInstance(ctx, in.Vault, in.Name, ver); err != nil {
		writeError(w, r, err)
		return
	}
	_ = s.Store.DeleteTrigger(ctx, in.Vault, in.Name) // normally gone already
	w.WriteHeader(http.StatusNoContent)
}

type stopBody struct {
	Mode string `json:"mode"`
}

func (s *Server) stopProtection(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var b stopBody
	if err := decode(w, r, &b); err != nil {
		writeError(w, r, err)
		return
	}
	switch b.Mode {
	case store.StopRetainForever, store.StopRetainPerPolicy, store.StopDeleteData:
	default:
		writeError(w, r, apiErr(http.StatusBadRequest, "InvalidStopMode", "mode %q: want retain-forever, retain-per-policy or delete-data", b.Mode))
		return
	}
	in, err := s.Store.GetInstance(ctx, r.PathValue("vault"), r.PathValue("instance"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	if in.ProtectionState == store.ProtectionStopped && in.StopMode == b.Mode {
		writeError(w, r, apiErr(http.StatusConflict, "AlreadyStopped", "protection of %q is already stopped with mode %s", in.Name, in.StopMode))
		return
	}
	if in.Version, err = precondition(r, in.Version); err != nil {
		writeError(w, r, err)
		return
	}
	// State first (version-checked), then the trigger: a scheduled job the
	// scheduler creates in between is cancelled by the runner, which checks
	// the protection state before starting a ScheduledBackup.
	in.ProtectionState, in.StopMode = store.ProtectionStopped, b.Mode
	if err := s.Store.UpdateInstance(ctx, in); err != nil {
		writeError(w, r, err)
		return
	}
	if err := s.Store.DeleteTrigger(ctx, in.Vault, in.Name); err != nil && !errors.Is(err, store.ErrNotFound) {
		writeError(w, r, err)
		return
	}
	switch b.Mode {
	case store.StopRetainForever:
		err = s.Retention.RetainForever(ctx, in.Vault, in.Name)
	case store.StopDeleteData:
		start := s.Clock.Now()
		res, derr := s.Retention.DeleteAll(ctx, in.Vault, in.Name)
		if derr == nil {
			var j *store.Job
			j, derr = s.Retention.RecordJob(ctx, in.Vault, in.Name, start, res)
			if derr == nil {
				s.JobCreated(j)
			}
		}
		err = derr
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeVersioned(w, http.StatusOK, in.Version, in)
}

func (s *Server) resumeProtection(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	in, err := s.Store.GetInstance(ctx, r.PathValue("vault"), r.PathValue("instance"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	if in.ProtectionState != store.ProtectionStopped {
		writeError(w, r, apiErr(http.StatusConflict, "NotStopped", "protection of %q is not stopped", in.Name))
		return
	}
	if in.Version, err = precondition(r, in.Version); err != nil {
		writeError(w, r, err)
		return
	}
	pol, err := s.Store.GetPolicy(ctx, in.Vault, in.Policy)
	if err != nil {
		writeError(w, r, err)
		return
	}
	p, err := policy.ParseJSON(pol.Schedule, pol.Retention)
	if err != nil {
		writeError(w, r, err)
		return
	}
	wasForever := in.StopMode == store.StopRetainForever
	in.ProtectionState, in.StopMode = store.ProtectionConfigured, ""
	if err := s.Store.UpdateInstance(ctx, in); err != nil {
		writeError(w, r, err)
		return
	}
	if wasForever {
		if err := s.Retention.Reapply(ctx, p, in.Vault, in.Name); err != nil {
			writeError(w, r, err)
			return
		}
	}
	if _, err := scheduler.Arm(ctx, s.Store, in.Vault, in.Name, pol.Schedule, s.Clock.Now()); err != nil {
		writeError(w, r, err)
		return
	}
	writeVersioned(w, http.StatusOK, in.Version, in)
}

func (s *Server) backupNow(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var b jobs.BackupParams
	if r.ContentLength != 0 {
		if err := decode(w, r, &b); err != nil {
			writeError(w, r, err)
			return
		}
	}
	if b.Retention != "" {
		d, err := policy.ParseDuration(b.Retention)
		if err != nil {
			writeError(w, r, &policy.FieldError{Field: "retention", Value: b.Retention, Reason: err.Error()})
			return
		}
		if d.Less(policy.MinRetention) || policy.MaxRetention.Less(d) {
			writeError(w, r, &policy.FieldError{Field: "retention", Value: b.Retention, Reason: "must be between P1D and P10Y"})
			return
		}
	}
	in, err := s.Store.GetInstance(ctx, r.PathValue("vault"), r.PathValue("instance"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	if in.ProtectionState != store.ProtectionConfigured {
		writeError(w, r, apiErr(http.StatusConflict, "ProtectionStopped", "protection of %q is stopped: resume it before backing up", in.Name))
		return
	}
	params, _ := json.Marshal(b)
	j := &store.Job{Vault: in.Vault, Type: store.JobOnDemandBackup, Instance: in.Name, State: store.JobQueued, Params: params}
	if err := s.Store.CreateJob(ctx, j); err != nil {
		writeError(w, r, err)
		return
	}
	s.JobCreated(j)
	w.Header().Set("Location", fmt.Sprintf("/api/v1/vaults/%s/jobs/%s", j.Vault, j.ID))
	writeJSON(w, http.StatusAccepted, j)
}

// ---- catalog sync ----

// SyncPoint is a recovery point found in the repository, as `arca vault
// sync` reads it from the manifest the extension wrote.
type SyncPoint struct {
	RepositoryID string    `json:"repositoryId"`
	Time         time.Time `json:"time"`
	JobID        string    `json:"jobId,omitempty"` // the manifest's arca.io/job tag
	Items        int64     `json:"items"`
	Bytes        int64     `json:"bytes"`
}

// SyncRequest is the body of POST …/instances/{instance}/sync.
type SyncRequest struct {
	RecoveryPoints []SyncPoint `json:"recoveryPoints"`
}

// SyncResult says what a sync changed.
type SyncResult struct {
	Created  []*store.RecoveryPoint `json:"created"`
	Existing int                    `json:"existing"`
}

// maxSyncPoints bounds one sync request.
const maxSyncPoints = 10000

// syncRecoveryPoints re-creates the catalog entries of recovery points
// that are in the repository but not in the vault (after losing the
// database). A point written by a vault job gets the ID it had
// (jobs.RecoveryPointID of its job); others an ID from their repository
// ID. Tags and expiry are computed again from the instance's policy,
// oldest first, as when they were taken.
func (s *Server) syncRecoveryPoints(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req SyncRequest
	if err := decode(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	if len(req.RecoveryPoints) > maxSyncPoints {
		writeError(w, r, apiErr(http.StatusRequestEntityTooLarge, "TooManyRecoveryPoints", "at most %d recovery points per sync request", maxSyncPoints))
		return
	}
	for i, p := range req.RecoveryPoints {
		if p.RepositoryID == "" || p.Time.IsZero() || p.Items < 0 || p.Bytes < 0 {
			writeError(w, r, &policy.FieldError{Field: fmt.Sprintf("recoveryPoints[%d]", i), Value: p.RepositoryID, Reason: "needs repositoryId, time and non-negative items and bytes"})
			return
		}
	}
	in, err := s.Store.GetInstance(ctx, r.PathValue("vault"), r.PathValue("instance"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	pol, err := s.Store.GetPolicy(ctx, in.Vault, in.Policy)
	if err != nil {
		writeError(w, r, err)
		return
	}
	p, err := policy.ParseJSON(pol.Schedule, pol.Retention)
	if err != nil {
		writeError(w, r, err)
		return
	}
	have, err := s.Store.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: in.Vault, Instance: in.Name})
	if err != nil {
		writeError(w, r, err)
		return
	}
	known := map[string]bool{}
	for _, rp := range have {
		known[rp.RepoID] = true
	}
	pts := append([]SyncPoint(nil), req.RecoveryPoints...)
	sort.SliceStable(pts, func(i, j int) bool { return pts[i].Time.Before(pts[j].Time) })
	eng := s.Retention
	if eng == nil {
		eng = &retention.Engine{Store: s.Store, Clock: s.Clock}
	}
	res := SyncResult{Created: []*store.RecoveryPoint{}}
	for _, sp := range pts {
		if known[sp.RepositoryID] {
			res.Existing++
			continue
		}
		known[sp.RepositoryID] = true
		id := "rp-repo-" + sp.RepositoryID
		if len(id) > 24 {
			id = id[:24]
		}
		if sp.JobID != "" {
			id = jobs.RecoveryPointID(sp.JobID)
		}
		rp := &store.RecoveryPoint{Vault: in.Vault, ID: id, Instance: in.Name, JobID: sp.JobID, Time: sp.Time.UTC(),
			RepoID: sp.RepositoryID, Items: sp.Items, Bytes: sp.Bytes}
		if err := eng.Apply(ctx, p, rp); err != nil {
			writeError(w, r, err)
			return
		}
		if in.ProtectionState == store.ProtectionStopped && in.StopMode == store.StopRetainForever {
			rp.ExpiresAt = nil
		}
		if err := s.Store.CreateRecoveryPoint(ctx, rp); errors.Is(err, store.ErrAlreadyExists) {
			res.Existing++
			continue
		} else if err != nil {
			writeError(w, r, err)
			return
		}
		res.Created = append(res.Created, rp)
	}
	writeJSON(w, http.StatusOK, res)
}

// ---- recovery points, restores ----

func (s *Server) listRecoveryPoints(w http.ResponseWriter, r *http.Request) {
	if _, err := s.vault(r); err != nil {
		writeError(w, r, err)
		return
	}
	rps, err := s.Store.ListRecoveryPoints(r.Context(), store.RecoveryPointFilter{Vault: r.PathValue("vault"), Instance: r.URL.Query().Get("instance")})
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, items(rps))
}

func (s *Server) getRecoveryPoint(w http.ResponseWriter, r *http.Request) {
	rp, err := s.Store.GetRecoveryPoint(r.Context(), r.PathValue("vault"), r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeVersioned(w, http.StatusOK, rp.Version, rp)
}

// restoreCriteria decodes and checks a restore's restoreCriteria (empty:
// the defaults).
func restoreCriteria(raw json.RawMessage) (v1alpha1.RestoreCriteria, error) {
	var c v1alpha1.RestoreCriteria
	if len(raw) == 0 {
		return c, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, apiErr(http.StatusBadRequest, "InvalidRestoreCriteria", "restoreCriteria: %v", err)
	}
	if err := c.Validate(); err != nil {
		return c, apiErr(http.StatusBadRequest, "InvalidRestoreCriteria", "restoreCriteria: %v", err)
	}
	return c, nil
}

func (s *Server) startRestore(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if _, err := s.vault(r); err != nil {
		writeError(w, r, err)
		return
	}
	var b jobs.RestoreParams
	if err := decode(w, r, &b); err != nil {
		writeError(w, r, err)
		return
	}
	if err := validName("targetCluster", b.TargetCluster); err != nil {
		writeError(w, r, err)
		return
	}
	if _, err := s.Store.GetRecoveryPoint(ctx, r.PathValue("vault"), b.RecoveryPoint); errors.Is(err, store.ErrNotFound) {
		writeError(w, r, apiErr(http.StatusBadRequest, "UnknownReference", "recovery point %q does not exist in vault %q", b.RecoveryPoint, r.PathValue("vault")))
		return
	} else if err != nil {
		writeError(w, r, err)
		return
	}
	if _, err := restoreCriteria(b.Criteria); err != nil {
		writeError(w, r, err)
		return
	}
	params, _ := json.Marshal(b)
	j := &store.Job{Vault: r.PathValue("vault"), Type: store.JobRestore, State: store.JobQueued, Params: params}
	if err := s.Store.CreateJob(ctx, j); err != nil {
		writeError(w, r, err)
		return
	}
	s.JobCreated(j)
	w.Header().Set("Location", fmt.Sprintf("/api/v1/vaults/%s/jobs/%s", j.Vault, j.ID))
	writeJSON(w, http.StatusAccepted, j)
}

// ---- jobs ----

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	if _, err := s.vault(r); err != nil {
		writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	f := store.JobFilter{Vault: r.PathValue("vault"), Instance: q.Get("instance"), Type: q.Get("type"), State: q.Get("state"), Limit: 1000}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, r, apiErr(http.StatusBadRequest, "InvalidValue", "limit %q: want 1-1000", l))
			return
		}
		f.Limit = n
	}
	js, err := s.Store.ListJobs(r.Context(), f)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, items(js))
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	j, err := s.Store.GetJob(r.Context(), r.PathValue("vault"), r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeVersioned(w, http.StatusOK, j.Version, j)
}

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request) {
	j, err := s.Store.GetJob(r.Context(), r.PathValue("vault"), r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	if store.JobStateTerminal(j.State) {
		writeError(w, r, apiErr(http.StatusConflict, "JobFinished", "job %s is already %s", j.ID, j.State))
		return
	}
	if err := s.Runner.Cancel(r.Context(), j); err != nil {
		writeError(w, r, err)
		return
	}
	s.JobFinished(j)
	writeVersioned(w, http.StatusOK, j.Version, j)
}

// ---- tokens ----

type tokenBody struct {
	Name      string `json:"name"`
	Principal string `json:"principal"`
	ExpiresIn string `json:"expiresIn,omitempty"` // ISO 8601 duration
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	ts, err := s.Store.ListTokens(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, items(ts))
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	var b tokenBody
	if err := decode(w, r, &b); err != nil {
		writeError(w, r, err)
		return
	}
	if err := validName("name", b.Name); err != nil {
		writeError(w, r, err)
		return
	}
	if b.Principal == "" {
		b.Principal = b.Name
	}
	if err := rbac.ValidPrincipal(b.Principal); err != nil {
		writeError(w, r, apiErr(http.StatusBadRequest, "InvalidPrincipal", "%v", err))
		return
	}
	var expires *time.Time
	if b.ExpiresIn != "" {
		d, err := policy.ParseDuration(b.ExpiresIn)
		if err != nil {
			writeError(w, r, &policy.FieldError{Field: "expiresIn", Value: b.ExpiresIn, Reason: err.Error()})
			return
		}
		t := d.AddTo(s.Clock.Now())
		expires = &t
	}
	tok, t, err := CreateToken(r.Context(), s.Store, b.Name, b.Principal, expires)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"token": tok, "id": t.ID, "name": t.Name, "principal": t.Principal, "expiresAt": t.ExpiresAt})
}

func (s *Server) deleteToken(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ts, err := s.Store.ListTokens(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	for _, t := range ts {
		if t.ID == id {
			if err := s.keepRootAdmin(r.Context(), "", id); err != nil {
				writeError(w, r, err)
				return
			}
		}
	}
	if err := s.Store.DeleteToken(r.Context(), id); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

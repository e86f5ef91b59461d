// Package jobs runs the vault's jobs: it hands Queued backup and restore
// jobs to the ClusterDriver of the job's cluster, follows them to a
// terminal state, and records the recovery point of a finished backup.
//
// Several runners (vault replicas) may work on one store: taking a job
// (Queued → InProgress) and finishing it are version-checked updates, so
// exactly one runner wins each transition; the recovery point of a backup
// job has an ID derived from the job, so it is recorded once.
package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/arca-backup/arca/internal/vault/clock"
	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/retention"
	"github.com/arca-backup/arca/internal/vault/store"
)

// Stable job error codes.
const (
	CodeClusterNotConnected = "ClusterNotConnected" // no driver for the cluster
	CodeClusterUnreachable  = "ClusterUnreachable"  // driver errors for longer than the bounded wait
	CodeStartFailed         = "ClusterJobStartFailed"
	CodeInstanceNotFound    = "InstanceNotFound"
	CodePolicyInvalid       = "PolicyInvalid"
	CodeCancelled           = "CancelledByUser"
	CodeRecoveryPointGone   = "RecoveryPointNotFound"
	CodeProtectionStopped   = "ProtectionStopped"
	CodeStartLost           = "ClusterJobStartLost"
)

// BackupRequest is what a driver needs to start a backup in a cluster.
type BackupRequest struct {
	Vault, Instance, JobID string
	Cluster                string
	Config                 json.RawMessage // the instance's backup configuration
	StorageLocation        string
	SnapshotLocation       string
	// VaultTier asks for the volumes' data in the repository (BackupJob
	// spec.vaultTier): the first backup of a vault rule's period, or an
	// on-demand backup to the vault tier.
	VaultTier bool
	// CopyTo, with VaultTier, names the secondary storage location of the
	// instance's policy (BackupJob spec.copyTo).
	CopyTo string
}

// RestoreRequest is what a driver needs to start a restore in a cluster.
type RestoreRequest struct {
	Vault, JobID    string
	TargetCluster   string
	RecoveryPoint   *store.RecoveryPoint
	StorageLocation string
	Criteria        json.RawMessage // restore criteria (api/v1alpha1 vocabulary)
	// FallbackStorageLocation holds a copy of the point (policy copyTo):
	// the cluster reads it when StorageLocation's repository is
	// unreachable (RestoreJob spec.fallbackStorageLocation).
	FallbackStorageLocation string
	// Verification, when set, makes the restore a verification of the
	// point (sandbox namespaces, comparison, verdict, cleanup).
	Verification *VerificationOptions
}

// VerificationOptions tune a verification (api/v1alpha1 VerificationSpec).
type VerificationOptions struct {
	ReadDataPercent int  `json:"readDataPercent,omitempty"`
	SkipVolumes     bool `json:"skipVolumes,omitempty"`
}

// RecoveryPointInfo describes the recovery point a finished backup wrote.
type RecoveryPointInfo struct {
	RepoID string
	Time   time.Time
	Items  int64
	Bytes  int64
	// StoredBytes is what the backup added to the repository after dedup
	// and compression (0: unknown).
	StoredBytes int64
	// CopyRepoID is the ID of the point's copy in the request's CopyTo.
	CopyRepoID string
}

// Status is a driver's view of a job in the cluster.
type Status struct {
	State    string // one of the store.Job* states except Queued
	SubTasks []store.SubTask
	Warnings []store.Issue
	Errors   []store.Issue
	// Progress is the cluster job's progress, when it reports any.
	Progress *store.JobProgress
	// RecoveryPoint is set when a backup completed.
	RecoveryPoint *RecoveryPointInfo
	// Verification is set when a verification reached a verdict.
	Verification *store.Verification
}

// ClusterDriver starts and follows jobs in one cluster. The extension
// (through trusted access) will implement it; the vault never touches a
// cluster any other way. Implementations should name the cluster-side job
// after the request's JobID, so that starting twice is harmless.
type ClusterDriver interface {
	StartBackup(ctx context.Context, req BackupRequest) (ref string, err error)
	StartRestore(ctx context.Context, req RestoreRequest) (ref string, err error)
	JobStatus(ctx context.Context, ref string) (*Status, error)
}

// CodedError is an error a driver returns with a stable job error code
// (e.g. TrustedAccessRevoked). Permanent ones fail the job at once instead
// of being retried until the bounded wait.
type CodedError interface {
	error
	JobCode() string
	Permanent() bool
}

// codeOf returns the code of a CodedError in err's chain, or def.
func codeOf(err error, def string) (code string, permanent bool) {
	var ce CodedError
	if errors.As(err, &ce) {
		return ce.JobCode(), ce.Permanent()
	}
	return def, false
}

// Canceller is implemented by drivers that can stop a running job.
type Canceller interface {
	CancelJob(ctx context.Context, ref string) error
}

// ForgetRequest asks a cluster to expire recovery points: delete their
// retained volume snapshots and forget them in the repository.
type ForgetRequest struct {
	Key             string // names the cluster job: the same key, the same job
	StorageLocation string
	RepoIDs         []string
	Prune           bool // prune the repository after forgetting
	// SnapshotsOnly deletes the points' snapshots (operational tier)
	// and keeps the points (BackupJob spec.expireSnapshotsOf).
	SnapshotsOnly bool
}

// Forgetter is implemented by drivers that can expire recovery points in
// the cluster; the job's progress is read with JobStatus.
type Forgetter interface {
	StartForget(ctx context.Context, req ForgetRequest) (ref string, err error)
}

// Drivers finds the driver of a cluster.
type Drivers interface {
	Driver(cluster string) (ClusterDriver, bool)
}

// Authorizer re-checks, when a job is about to act, that the principals
// it acts for still hold what it needs (the vault's service implements
// it): a role removed after the job was queued stops it.
type Authorizer interface {
	AuthorizeBackup(ctx context.Context, j *store.Job, in *store.Instance) error
	AuthorizeRestore(ctx context.Context, j *store.Job, in *store.Instance, target string) error
}

// DriverMap is a fixed set of drivers by cluster name.
type DriverMap map[string]ClusterDriver

// Driver implements Drivers.
func (m DriverMap) Driver(c string) (ClusterDriver, bool) { d, ok := m[c]; return d, ok }

// RestoreParams are the parameters of a Restore job.
type RestoreParams struct {
	RecoveryPoint string          `json:"recoveryPoint"`
	TargetCluster string          `json:"targetCluster"`
	Criteria      json.RawMessage `json:"restoreCriteria,omitempty"`
}

// VerificationParams are the parameters of a Verification job; Result is
// set when it finished with a verdict.
type VerificationParams struct {
	RecoveryPoint string `json:"recoveryPoint"`
	TargetCluster string `json:"targetCluster"`
	VerificationOptions
	// Criteria: only restoreHookReferences (smoke tests) and the
	// namespace and type filters are used.
	Criteria json.RawMessage     `json:"restoreCriteria,omitempty"`
	Result   *store.Verification `json:"result,omitempty"`
	// RequestedBy is who asked (kept when the result is recorded; the
	// runner re-checks their roles when the job starts).
	RequestedBy string `json:"requestedBy,omitempty"`
}

// BackupParams are the parameters of an OnDemandBackup job, and what the
// runner decided when a backup started.
type BackupParams struct {
	Retention string `json:"retention,omitempty"` // ISO 8601 duration; empty: policy default
	// VaultTier asks an on-demand backup to move volume data into the
	// repository too (kept as long as the point).
	VaultTier bool `json:"vaultTier,omitempty"`
	// VaultRule is set by the runner when a scheduled backup starts as
	// the first of a vault rule's period: the rule's name.
	VaultRule string `json:"vaultRule,omitempty"`
	// CopyTo is set by the runner when the backup's vault-tier point is
	// to be copied to the policy's secondary storage location.
	CopyTo string `json:"copyTo,omitempty"`
}

// Store is the part of the vault's store the job runner uses: jobs, the
// instances and policies they run for, and the recovery points they add.
type Store interface {
	store.JobStore
	store.InstanceStore
	store.PolicyStore
	store.RecoveryPointStore
}

// RetentionParams are the parameters of a Retention job the vault queues
// (the retention loop records its own after the fact).
type RetentionParams struct {
	// DeleteAll removes every recovery point of the instance, the newest
	// included: stop protection with delete-data. The job is cancelled if
	// protection was resumed before it ran.
	DeleteAll bool `json:"deleteAll,omitempty"`
	// DeleteInstance, with DeleteAll, then deletes the instance itself
	// when every point is gone: delete an instance with its data.
	DeleteInstance bool `json:"deleteInstance,omitempty"`
	// RecoveryPoints removes these points of the instance (data, then
	// catalog entry): soft-deleted points purged after their period, or
	// points deleted in a vault without soft delete.
	RecoveryPoints []string `json:"recoveryPoints,omitempty"`
}

// Runner moves jobs forward.
type Runner struct {
	Store     Store
	Clock     clock.Clock
	Drivers   Drivers
	Retention *retention.Engine
	// Authorize, when set, is asked before a backup or restore starts in
	// its cluster; a refusal fails the job with the refusal's message.
	Authorize Authorizer
	// UnreachableAfter bounds how long status errors are tolerated before
	// the job fails with ClusterUnreachable (default 10 minutes).
	UnreachableAfter time.Duration
	Log              *slog.Logger
	// OnFinish, when set, is called for every job reaching a terminal state.
	OnFinish func(*store.Job)

	failingSince map[string]time.Time
}

func (r *Runner) unreachableAfter() time.Duration {
	if r.UnreachableAfter == 0 {
		return 10 * time.Minute
	}
	return r.UnreachableAfter
}

func (r *Runner) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}

// Tick starts Queued jobs and polls InProgress ones once.
func (r *Runner) Tick(ctx context.Context) error {
	queued, err := r.Store.ListJobs(ctx, store.JobFilter{State: store.JobQueued})
	if err != nil {
		return err
	}
	for i := len(queued) - 1; i >= 0; i-- { // oldest first
		if err := r.start(ctx, queued[i]); err != nil {
			return err
		}
	}
	running, err := r.Store.ListJobs(ctx, store.JobFilter{State: store.JobInProgress})
	if err != nil {
		return err
	}
	for _, j := range running {
		if err := r.poll(ctx, j); err != nil {
			return err
		}
	}
	return nil
}

// Run ticks every interval until ctx ends.
func (r *Runner) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := r.Tick(ctx); err != nil && ctx.Err() == nil {
			r.log().Error("job runner tick", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// save writes j; a conflict means another runner moved it first, reported
// as false.
func (r *Runner) save(ctx context.Context, j *store.Job) (bool, error) {
	err := r.Store.UpdateJob(ctx, j)
	if errors.Is(err, store.ErrConflict) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if store.JobStateTerminal(j.State) && r.OnFinish != nil {
		r.OnFinish(j)
	}
	return true, nil
}

func (r *Runner) fail(ctx context.Context, j *store.Job, code, msg string) error {
	now := r.Clock.Now()
	j.State, j.EndedAt = store.JobFailed, &now
	if j.StartedAt == nil {
		j.StartedAt = &now
	}
	j.Errors = append(j.Errors, store.Issue{Code: code, Message: msg})
	r.log().Warn("job failed", "vault", j.Vault, "job", j.ID, "type", j.Type, "code", code, "msg", msg)
	_, err := r.save(ctx, j)
	return err
}

func (r *Runner) start(ctx context.Context, j *store.Job) error {
	now := r.Clock.Now()
	j.State, j.StartedAt = store.JobInProgress, &now
	if ok, err := r.save(ctx, j); err != nil || !ok {
		return err // !ok: another runner took it
	}
	switch j.Type {
	case store.JobOnDemandBackup, store.JobScheduledBackup:
		return r.startBackup(ctx, j)
	case store.JobRestore, store.JobVerification:
		return r.startRestore(ctx, j)
	case store.JobRetention:
		return r.runRetention(ctx, j)
	}
	return r.fail(ctx, j, "UnknownJobType", fmt.Sprintf("job type %q is not supported", j.Type))
}

func (r *Runner) driver(cluster string) (ClusterDriver, bool) {
	if r.Drivers == nil {
		return nil, false
	}
	return r.Drivers.Driver(cluster)
}

func notConnected(cluster string) string {
	return fmt.Sprintf("cluster %[1]q has no connection to this vault: install the extension and enable trusted access (arca trusted-access enable --cluster-name %[1]s)", cluster)
}

func (r *Runner) startBackup(ctx context.Context, j *store.Job) error {
	in, err := r.Store.GetInstance(ctx, j.Vault, j.Instance)
	if errors.Is(err, store.ErrNotFound) {
		return r.fail(ctx, j, CodeInstanceNotFound, fmt.Sprintf("backup instance %q no longer exists", j.Instance))
	}
	if err != nil {
		return err
	}
	if j.Type == store.JobScheduledBackup && in.ProtectionState != store.ProtectionConfigured {
		now := r.Clock.Now()
		j.State, j.EndedAt = store.JobCancelled, &now
		j.Warnings = append(j.Warnings, store.Issue{Code: CodeProtectionStopped, Message: "protection was stopped before the scheduled backup started"})
		_, err := r.save(ctx, j)
		return err
	}
	// The tiers first: a copy to the policy's secondary location is
	// authorized with the rest.
	bp, err := r.tiersOf(ctx, j, in)
	if ve := (*policy.ValidationError)(nil); errors.As(err, &ve) {
		return r.fail(ctx, j, CodePolicyInvalid, err.Error())
	}
	if err != nil {
		return err
	}
	if r.Authorize != nil {
		if err := r.Authorize.AuthorizeBackup(ctx, j, in); err != nil {
			return r.refused(ctx, j, err)
		}
	}
	d, ok := r.driver(in.Cluster)
	if !ok {
		return r.fail(ctx, j, CodeClusterNotConnected, notConnected(in.Cluster))
	}
	ref, err := d.StartBackup(ctx, BackupRequest{Vault: j.Vault, Instance: in.Name, JobID: j.ID, Cluster: in.Cluster,
		Config: in.Config, StorageLocation: in.StorageLocation, SnapshotLocation: in.SnapshotLocation,
		VaultTier: bp.VaultTier || bp.VaultRule != "", CopyTo: bp.CopyTo})
	if err != nil {
		code, _ := codeOf(err, CodeStartFailed)
		return r.fail(ctx, j, code, err.Error())
	}
	j.ExternalRef = ref
	_, err = r.save(ctx, j)
	return err
}

// refused fails a job its Authorizer refused; an error that is not a
// refusal (the store failing) is returned to be retried.
func (r *Runner) refused(ctx context.Context, j *store.Job, err error) error {
	var coded interface{ JobCode() string }
	if !errors.As(err, &coded) {
		return err
	}
	return r.fail(ctx, j, coded.JobCode(), err.Error())
}

// startRestore starts a Restore job, or a Verification job (a restore
// into sandbox namespaces with a verdict).
func (r *Runner) startRestore(ctx context.Context, j *store.Job) error {
	var p RestoreParams
	var verify *VerificationOptions
	if j.Type == store.JobVerification {
		var vp VerificationParams
		if err := json.Unmarshal(j.Params, &vp); err != nil {
			return r.fail(ctx, j, "InvalidParameters", err.Error())
		}
		p = RestoreParams{RecoveryPoint: vp.RecoveryPoint, TargetCluster: vp.TargetCluster, Criteria: vp.Criteria}
		verify = &vp.VerificationOptions
	} else if err := json.Unmarshal(j.Params, &p); err != nil {
		return r.fail(ctx, j, "InvalidParameters", err.Error())
	}
	rp, err := r.Store.GetRecoveryPoint(ctx, j.Vault, p.RecoveryPoint)
	if errors.Is(err, store.ErrNotFound) {
		return r.fail(ctx, j, CodeRecoveryPointGone, fmt.Sprintf("recovery point %q no longer exists", p.RecoveryPoint))
	}
	if err != nil {
		return err
	}
	storage := ""
	in, err := r.Store.GetInstance(ctx, j.Vault, rp.Instance)
	switch {
	case err == nil:
		storage = in.StorageLocation
	case !errors.Is(err, store.ErrNotFound):
		return err
	case r.Authorize != nil:
		// Without its instance nobody can say where the point may go.
		return r.fail(ctx, j, CodeInstanceNotFound, fmt.Sprintf("backup instance %q of recovery point %q no longer exists", rp.Instance, rp.ID))
	}
	if r.Authorize != nil {
		if err := r.Authorize.AuthorizeRestore(ctx, j, in, p.TargetCluster); err != nil {
			return r.refused(ctx, j, err)
		}
	}
	d, ok := r.driver(p.TargetCluster)
	if !ok {
		return r.fail(ctx, j, CodeClusterNotConnected, notConnected(p.TargetCluster))
	}
	fallback := ""
	if verify == nil { // a verification checks the point's own storage location, never a copy
		if fallback, err = r.fallback(ctx, j, in, p.TargetCluster, rp); err != nil {
			return err
		}
	}
	ref, err := d.StartRestore(ctx, RestoreRequest{Vault: j.Vault, JobID: j.ID, TargetCluster: p.TargetCluster,
		RecoveryPoint: rp, StorageLocation: storage, Criteria: p.Criteria, FallbackStorageLocation: fallback, Verification: verify})
	if err != nil {
		code, _ := codeOf(err, CodeStartFailed)
		return r.fail(ctx, j, code, err.Error())
	}
	j.ExternalRef = ref
	_, err = r.save(ctx, j)
	return err
}

func (r *Runner) runRetention(ctx context.Context, j *store.Job) error {
	var p RetentionParams
	if len(j.Params) > 0 {
		_ = json.Unmarshal(j.Params, &p)
	}
	var res *retention.Result
	var err error
	if p.DeleteAll {
		in, gerr := r.Store.GetInstance(ctx, j.Vault, j.Instance)
		if gerr != nil {
			return r.fail(ctx, j, "InstanceNotFound", gerr.Error())
		}
		if in.ProtectionState != store.ProtectionStopped || in.StopMode != store.StopDeleteData {
			now := r.Clock.Now()
			j.State, j.EndedAt = store.JobCancelled, &now
			j.Warnings = append(j.Warnings, store.Issue{Code: "ProtectionChanged",
				Message: fmt.Sprintf("protection of %q is no longer stopped with delete-data: nothing deleted", in.Name)})
			_, err := r.save(ctx, j)
			return err
		}
		res, err = r.Retention.DeleteAll(ctx, j.Vault, j.Instance)
		if err == nil && p.DeleteInstance && len(res.Errors) == 0 {
			err = r.deleteInstance(ctx, in)
		}
	} else if len(p.RecoveryPoints) > 0 {
		res, err = r.Retention.DeletePoints(ctx, j.Vault, p.RecoveryPoints)
	} else {
		res, err = r.Retention.ExpireInstance(ctx, j.Vault, j.Instance)
	}
	if err != nil {
		return r.fail(ctx, j, "RetentionFailed", err.Error())
	}
	now := r.Clock.Now()
	j.Params, _ = json.Marshal(res)
	j.State, j.EndedAt = store.JobCompleted, &now
	if len(res.Errors) > 0 {
		j.State, j.Warnings = store.JobCompletedWithWarnings, append(j.Warnings, res.Errors...)
	}
	_, err = r.save(ctx, j)
	return err
}

// deleteInstance deletes a stopped instance whose points are all gone.
func (r *Runner) deleteInstance(ctx context.Context, in *store.Instance) error {
	rps, err := r.Store.ListRecoveryPoints(ctx, store.RecoveryPointFilter{Vault: in.Vault, Instance: in.Name, IncludeDeleted: true})
	if err != nil {
		return err
	}
	if len(rps) > 0 {
		return fmt.Errorf("backup instance %q still has %d recovery point(s); it is kept", in.Name, len(rps))
	}
	return r.Store.DeleteInstance(ctx, in.Vault, in.Name, 0) // its trigger went with the stop
}

func (r *Runner) cluster(ctx context.Context, j *store.Job) (string, error) {
	if j.Type == store.JobRestore || j.Type == store.JobVerification {
		var p RestoreParams // a VerificationParams has the same targetCluster
		_ = json.Unmarshal(j.Params, &p)
		return p.TargetCluster, nil
	}
	in, err := r.Store.GetInstance(ctx, j.Vault, j.Instance)
	if err != nil {
		return "", err
	}
	return in.Cluster, nil
}

func (r *Runner) poll(ctx context.Context, j *store.Job) error {
	if j.ExternalRef == "" {
		// Being started by a runner right now — or that runner died
		// between taking the job and recording the cluster job. After the
		// bounded wait the job fails rather than staying InProgress.
		if j.Type != store.JobRetention && j.StartedAt != nil && r.Clock.Now().Sub(*j.StartedAt) >= r.unreachableAfter() {
			return r.fail(ctx, j, CodeStartLost, "the vault stopped while starting this job; the cluster job (named after the job ID) may exist: start a new backup if needed")
		}
		return nil
	}
	cl, err := r.cluster(ctx, j)
	if errors.Is(err, store.ErrNotFound) {
		return r.fail(ctx, j, CodeInstanceNotFound, fmt.Sprintf("backup instance %q no longer exists", j.Instance))
	}
	if err != nil {
		return err
	}
	d, ok := r.driver(cl)
	if !ok {
		return r.fail(ctx, j, CodeClusterNotConnected, notConnected(cl))
	}
	st, err := d.JobStatus(ctx, j.ExternalRef)
	if code, permanent := codeOf(err, ""); err != nil && permanent {
		delete(r.failingSince, j.ID)
		return r.fail(ctx, j, code, err.Error())
	}
	if err != nil {
		if r.failingSince == nil {
			r.failingSince = map[string]time.Time{}
		}
		since, seen := r.failingSince[j.ID]
		if !seen {
			r.failingSince[j.ID] = r.Clock.Now()
			return nil
		}
		limit := r.unreachableAfter()
		if r.Clock.Now().Sub(since) >= limit {
			delete(r.failingSince, j.ID)
			return r.fail(ctx, j, CodeClusterUnreachable, fmt.Sprintf("no status from cluster %q for %v: %v", cl, limit, err))
		}
		return nil
	}
	delete(r.failingSince, j.ID)
	j.SubTasks, j.Warnings = st.SubTasks, mergeIssues(j.Warnings, st.Warnings)
	if st.Progress != nil {
		j.Progress = st.Progress
	}
	if !store.JobStateTerminal(st.State) {
		_, err := r.save(ctx, j)
		return err
	}
	if (st.State == store.JobCompleted || st.State == store.JobCompletedWithWarnings) &&
		(j.Type == store.JobScheduledBackup || j.Type == store.JobOnDemandBackup) {
		if st.RecoveryPoint == nil {
			st.State = store.JobFailed
			st.Errors = append(st.Errors, store.Issue{Code: "NoRecoveryPoint", Message: "the cluster reported success without a recovery point"})
		} else if err := r.recordRecoveryPoint(ctx, j, st.RecoveryPoint); err != nil {
			return err
		}
	}
	now := r.Clock.Now()
	if j.Type == store.JobVerification && st.Verification != nil && st.State != store.JobCancelled {
		var vp VerificationParams
		if err := json.Unmarshal(j.Params, &vp); err == nil {
			v := *st.Verification
			v.JobID, v.Cluster, v.Time = j.ID, cl, now
			vp.Result = &v
			j.Params, _ = json.Marshal(vp)
		}
	}
	j.State, j.EndedAt, j.Errors = st.State, &now, append(j.Errors, st.Errors...)
	_, err = r.save(ctx, j)
	return err
}

// VerificationOf returns the outcome recorded in a finished Verification
// job, nil for other jobs and verifications without a verdict.
func VerificationOf(j *store.Job) *store.Verification {
	if j.Type != store.JobVerification || !store.JobStateTerminal(j.State) {
		return nil
	}
	var vp VerificationParams
	if err := json.Unmarshal(j.Params, &vp); err != nil {
		return nil
	}
	return vp.Result
}

func mergeIssues(have, add []store.Issue) []store.Issue {
	seen := map[store.Issue]bool{}
	for _, i := range have {
		seen[i] = true
	}
	for _, i := range add {
		if !seen[i] {
			have, seen[i] = append(have, i), true
		}
	}
	return have
}

// RecoveryPointID is the catalog ID of the recovery point written by a
// backup job: derived from the job so that recording is idempotent.
func RecoveryPointID(jobID string) string { return "rp-" + jobID }

func (r *Runner) recordRecoveryPoint(ctx context.Context, j *store.Job, info *RecoveryPointInfo) error {
	in, err := r.Store.GetInstance(ctx, j.Vault, j.Instance)
	if err != nil {
		return err
	}
	pol, err := r.Store.GetPolicy(ctx, j.Vault, in.Policy)
	if err != nil {
		return err
	}
	p, err := policy.ParseJSON(pol.Schedule, pol.Retention)
	if err != nil {
		return err
	}
	taken := info.Time
	if taken.IsZero() {
		taken = r.Clock.Now()
	}
	rp := &store.RecoveryPoint{Vault: j.Vault, ID: RecoveryPointID(j.ID), Instance: j.Instance, JobID: j.ID, Time: taken,
		RepoID: info.RepoID, Items: info.Items, Bytes: info.Bytes, StoredBytes: info.StoredBytes}
	var bp BackupParams
	_ = json.Unmarshal(j.Params, &bp)
	if j.Type == store.JobOnDemandBackup {
		var d *policy.Duration
		if bp.Retention != "" {
			if x, err := policy.ParseDuration(bp.Retention); err == nil {
				d = &x
			}
		}
		retention.ApplyOnDemand(p, d, rp, bp.VaultTier)
	} else if err := r.Retention.ApplyTiers(ctx, p, rp, vaultRuleNamed(p, bp.VaultRule)); err != nil {
		return err
	}
	if bp.CopyTo != "" && info.CopyRepoID != "" {
		rp.Copies = []store.Copy{{StorageLocation: bp.CopyTo, RepoID: info.CopyRepoID}}
	}
	if in.ProtectionState == store.ProtectionStopped && in.StopMode == store.StopRetainForever {
		rp.ExpiresAt = nil
	}
	err = r.Store.CreateRecoveryPoint(ctx, rp)
	if errors.Is(err, store.ErrAlreadyExists) {
		return nil // recorded by another runner
	}
	return err
}

// Cancel cancels a job that has not finished. A Queued job is cancelled at
// once; an InProgress job is cancelled in the vault, and in the cluster when
// its driver can (otherwise a CancelNotPropagated warning says the cluster
// job may still finish).
func (r *Runner) Cancel(ctx context.Context, j *store.Job) error {
	if store.JobStateTerminal(j.State) {
		return fmt.Errorf("job %s is already %s", j.ID, j.State)
	}
	if j.State == store.JobInProgress && j.ExternalRef != "" {
		propagated := false
		if cl, err := r.cluster(ctx, j); err == nil {
			if d, ok := r.driver(cl); ok {
				if c, ok := d.(Canceller); ok {
					if err := c.CancelJob(ctx, j.ExternalRef); err != nil {
						return fmt.Errorf("cancel in cluster: %w", err)
					}
					propagated = true
				}
			}
		}
		if !propagated {
			j.Warnings = append(j.Warnings, store.Issue{Code: "CancelNotPropagated", Message: "the cluster job could not be stopped; it may still run to completion, but the vault will not record its result"})
		}
	}
	now := r.Clock.Now()
	j.State, j.EndedAt = store.JobCancelled, &now
	if j.StartedAt == nil {
		j.StartedAt = &now
	}
	j.Errors = append(j.Errors, store.Issue{Code: CodeCancelled, Message: "cancelled by user"})
	return r.Store.UpdateJob(ctx, j)
}

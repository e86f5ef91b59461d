package operations

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/client-go/rest"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/modifiers"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/restore"
	"github.com/arca-backup/arca/internal/volume"
)

// RestoreOptions configure one restore.
type RestoreOptions struct {
	Criteria v1alpha1.RestoreCriteria
	// Modifiers overrides Criteria.ResourceModifiers when set.
	Modifiers *modifiers.Modifiers
	// Name labels the restored objects (arca.io/restore) and the
	// VolumeSnapshots made for their claims.
	Name string
	// Workers: objects written at once within a tier (engine default when 0).
	Workers  int
	Now      func() time.Time
	Hooks    RestoreHooks
	Progress ProgressFunc
	// Admit, when set, is shown what the restore may write (the recovery
	// point's target namespaces, cluster-scoped, RBAC and admission
	// objects) once it is prepared, before hooks run or anything is
	// written; its error stops the restore and is returned as is (the
	// extension's trust policy check).
	Admit func(ctx context.Context, t *restore.Targets) error
	// VolumePods, when set, runs the restore pods that write vault-tier
	// data into claims (the extension); RecoveryPoint is filled in. Without
	// it, a claim comes back from its snapshot or empty, and asking for
	// vault-tier data (volumeDataSource Vault) is a criteria error.
	VolumePods *RestorePods
	// NoVolumePods says why there are no VolumePods (the error when the
	// criteria ask for vault-tier data).
	NoVolumePods string
	// Before, when set, runs first under the restore's repository lock,
	// with the criteria, which it may change (the extension's verification
	// checks the repository's data and maps the point's namespaces into
	// its sandbox). Its error stops the restore and is returned as is.
	Before func(ctx context.Context, crit *v1alpha1.RestoreCriteria) error
	// After, when set, runs last, still under the lock, once the restore
	// ran (Before, when set, succeeded), with what Restore is about to
	// return and the criteria it used (the verification compares the
	// sandbox with the point).
	After func(ctx context.Context, crit v1alpha1.RestoreCriteria, res *restore.Result, err error)
}

// LockError: the restore could not take its shared lock (a prune held the
// exclusive one past the lock wait, or the storage failed).
type LockError struct{ Err error }

func (e *LockError) Error() string { return "lock the repository for the restore: " + e.Err.Error() }
func (e *LockError) Unwrap() error { return e.Err }

// JobCode is the job error code of a restore that could not lock.
func (e *LockError) JobCode() string { return v1alpha1.CodeRepositoryUnavailable }

// RestoreReader is what a restore reads: the recovery point's objects,
// and the repository's shared lock it holds meanwhile (repo.Reader is one).
type RestoreReader interface {
	restore.Reader
	LockShared(ctx context.Context) (*repo.SharedLock, error)
}

// RestorePods run the restore pods that write vault-tier data into claims
// (volume.RestorePods).
type RestorePods = volume.RestorePods

// RestoreHooks are a restore's application hooks. BeforeRestore runs once
// the restore is prepared and before anything is written; an error stops
// it (*PreHookError). AfterRestore runs with the result once the objects
// are written, also when some failed. Neither runs in a dry run.
type RestoreHooks interface {
	BeforeRestore(ctx context.Context) error
	AfterRestore(ctx context.Context, res *restore.Result)
}

// Restore restores rp, read from r, into the cluster of cfg: objects by
// dependency tier, claims from the snapshots the recovery point recorded
// (or empty, as the criteria say). Criteria that cannot work fail with
// *restore.CriteriaError before anything is written. When objects failed,
// the result comes with a *restore.ItemsFailedError; any other error comes
// without a result.
//
// The whole restore holds a shared lock on the repository, so that no
// prune removes data it reads: while a prune holds the exclusive lock it
// waits (as r's lock wait says) and then fails with repo.ErrLocked.
// Storage that refuses lock files (read-only credentials) gets no lock:
// the restore goes on with a RepositoryNotLocked warning, since reads are
// verified and a prune meanwhile can make it fail, never restore wrong data.
func Restore(ctx context.Context, cfg *rest.Config, r RestoreReader, rp *repo.RecoveryPoint, opts RestoreOptions) (*restore.Result, error) {
	lk, err := r.LockShared(ctx)
	var unlocked *restore.Warning
	switch {
	case errors.Is(err, repo.ErrLockNotWritable):
		unlocked = &restore.Warning{Code: v1alpha1.CodeRepositoryNotLocked, Message: fmt.Sprintf(
			"restored without a repository lock: %v; a prune running meanwhile would make the restore fail (never restore wrong data): "+
				"give the storage credentials write access to locks/ to hold one", err)}
	case err != nil:
		return nil, &LockError{Err: err}
	}
	defer func() { _ = lk.Release(context.WithoutCancel(ctx)) }()
	crit := opts.Criteria
	if opts.Before != nil {
		if err := opts.Before(ctx, &crit); err != nil {
			return nil, err
		}
	}
	res, err := restoreLocked(ctx, cfg, r, rp, crit, opts)
	if res != nil && unlocked != nil {
		res.Warnings = append(res.Warnings, *unlocked)
	}
	if opts.After != nil {
		opts.After(ctx, crit, res, err)
	}
	return res, err
}

// restoreLocked is Restore once the lock is held.
func restoreLocked(ctx context.Context, cfg *rest.Config, r restore.Reader, rp *repo.RecoveryPoint, crit v1alpha1.RestoreCriteria, opts RestoreOptions) (*restore.Result, error) {
	recs, err := volume.Decode(rp.Volumes)
	if err != nil {
		return nil, fmt.Errorf("volume records of recovery point %s: %w", rp.ID.Short(), err)
	}
	vopts := volume.RestoreOptions{Mode: crit.PersistentVolumeRestoreMode, NamespaceMappings: crit.NamespaceMappings,
		StorageClassMappings: crit.StorageClassMappings, RecoveryPoint: restore.RecoveryPointLabel(rp.ID.String()), RestoreName: opts.Name, DryRun: crit.DryRun,
		Source: crit.VolumeDataSource, Sources: crit.VolumeDataSources, Conflict: crit.Conflict(), VaultData: map[string]volume.VaultVolume{}}
	for _, vd := range rp.VolumeData {
		vopts.VaultData[vd.Name] = volume.VaultVolume{Name: vd.Name, Bytes: vd.Bytes, Block: vd.Block}
	}
	vopts.NoPods = opts.NoVolumePods
	// Progress: the engine's objects and the vault-tier bytes written by
	// restore pods, reported together.
	var progMu sync.Mutex
	var prog Progress
	report := func(update func(*Progress)) {
		progMu.Lock()
		defer progMu.Unlock()
		update(&prog)
		opts.Progress.report(prog)
	}
	vopts.Progress = func(v volume.VaultProgress) {
		report(func(p *Progress) {
			p.BytesDone, p.BytesTotal, p.BytesPerSecond, p.ETA = v.BytesDone, v.BytesTotal, v.BytesPerSecond, v.ETA
		})
	}
	if opts.VolumePods != nil {
		pods := *opts.VolumePods
		pods.RecoveryPoint = rp.ID.String()
		vopts.Pods = &pods
	}
	if err := crit.Validate(); err != nil {
		return nil, &restore.CriteriaError{Err: err}
	}
	if err := volume.CheckSources(recs, vopts.VaultData, vopts); err != nil {
		return nil, &restore.CriteriaError{Err: err}
	}
	vols, err := volume.NewRestorer(cfg, recs, vopts)
	if err != nil {
		return nil, fmt.Errorf("volume restorer: %w", err)
	}
	prep, err := restore.Prepare(ctx, cfg, rp, r, restore.Options{Criteria: crit, Modifiers: opts.Modifiers, Name: opts.Name, Workers: opts.Workers,
		Now: opts.Now, Volumes: vols,
		Progress: func(rp restore.Progress) { report(func(p *Progress) { p.ItemsDone, p.ItemsTotal = rp.Done, rp.Total }) }})
	if err != nil {
		var ce *restore.CriteriaError
		if errors.As(err, &ce) {
			return nil, err
		}
		return nil, fmt.Errorf("prepare restore: %w", err)
	}
	if opts.Admit != nil {
		tg, err := prep.Targets(ctx)
		if err != nil {
			return nil, fmt.Errorf("read recovery point %s: %w", rp.ID.Short(), err)
		}
		if err := opts.Admit(ctx, tg); err != nil {
			return nil, err
		}
	}
	hooks := opts.Hooks
	if crit.DryRun {
		hooks = nil
	}
	if hooks != nil {
		if err := hooks.BeforeRestore(ctx); err != nil {
			return nil, &PreHookError{Op: "restore", Err: err}
		}
	}
	res, err := prep.Run(ctx)
	var itemsFailed *restore.ItemsFailedError
	if err != nil && !errors.As(err, &itemsFailed) {
		return nil, fmt.Errorf("restore failed: %w", err)
	}
	if hooks != nil {
		hooks.AfterRestore(ctx, res)
	}
	return res, err
}

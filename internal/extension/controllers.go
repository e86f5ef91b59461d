package extension

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/backup"
	"github.com/arca-backup/arca/internal/operations"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/restore"
	"github.com/arca-backup/arca/internal/selection"
	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/location"
	"github.com/arca-backup/arca/internal/trustpolicy"
)

func (x *Extension) kinds() []*kind {
	return []*kind{
		{
			name: "backup", restartCode: v1alpha1.CodeExtensionRestartedDuringBackup,
			newObj: func() job { return &v1alpha1.BackupJob{} },
			list: func(ctx context.Context, c client.Client, ns string) ([]job, error) {
				l := &v1alpha1.BackupJobList{}
				if err := c.List(ctx, l, client.InNamespace(ns)); err != nil {
					return nil, err
				}
				out := make([]job, len(l.Items))
				for i := range l.Items {
					out[i] = &l.Items[i]
				}
				return out, nil
			},
			run: x.runBackup,
		},
		{
			name: "restore", restartCode: v1alpha1.CodeExtensionRestartedDuringRestore,
			newObj: func() job { return &v1alpha1.RestoreJob{} },
			list: func(ctx context.Context, c client.Client, ns string) ([]job, error) {
				l := &v1alpha1.RestoreJobList{}
				if err := c.List(ctx, l, client.InNamespace(ns)); err != nil {
					return nil, err
				}
				out := make([]job, len(l.Items))
				for i := range l.Items {
					out[i] = &l.Items[i]
				}
				return out, nil
			},
			run: x.runRestore,
		},
	}
}

func (x *Extension) setupControllers(mgr manager.Manager) error {
	inNS := predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetNamespace() == x.opts.Namespace })
	for _, k := range x.kinds() {
		k := k
		err := ctrl.NewControllerManagedBy(mgr).
			Named(k.name+"job").
			For(k.newObj(), builder.WithPredicates(inNS)).
			WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
			Complete(reconcileFunc(func(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
				return x.reconcileJob(ctx, k, req)
			}))
		if err != nil {
			return fmt.Errorf("set up %s job controller: %w", k.name, err)
		}
	}
	if err := x.setupQueryController(mgr); err != nil {
		return fmt.Errorf("set up recovery point query controller: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("storagelocation").
		For(&v1alpha1.StorageLocation{}, builder.WithPredicates(inNS, predicate.GenerationChangedPredicate{})).
		Complete(reconcileFunc(x.reconcileStorageLocation))
}

type reconcileFunc func(context.Context, ctrl.Request) (ctrl.Result, error)

func (f reconcileFunc) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return f(ctx, req)
}

func failedErr(err error, def string) result {
	return failed(codeOf(err, def), "%v", err)
}

// operationFailed is the result of an operation that failed: a
// configuration or criteria the cluster refuses is InvalidSpec, a pre
// hook's failure PreHookFailed; otherwise the error's own code (the
// repository's, the hooks') or def.
func operationFailed(err error, def string, hr *hookRunner) result {
	var ce *backup.ConfigError
	var cre *restore.CriteriaError
	var pre *operations.PreHookError
	var refused *trustpolicy.Refusal
	switch {
	case errors.As(err, &ce), errors.As(err, &cre):
		return failed(v1alpha1.CodeInvalidSpec, "%v", err)
	case errors.As(err, &pre):
		def = v1alpha1.CodePreHookFailed
	case errors.As(err, &refused):
		return *refusal(refused)
	}
	return failedErr(err, def).withHooks(hr)
}

func issues(ws []repo.Warning) []v1alpha1.JobIssue {
	var out []v1alpha1.JobIssue
	for _, w := range ws {
		out = append(out, v1alpha1.JobIssue{Code: w.Code, Message: w.Message, Object: w.Object})
	}
	return out
}

// runBackup validates the job and backs up into the storage location's
// repository; its hooks run around the volume snapshots (backupHooks).
func (x *Extension) runBackup(ctx context.Context, jj job, p *progress) result {
	j := jj.(*v1alpha1.BackupJob)
	use, refused := x.trustUse(ctx, j)
	if refused != nil {
		return *refused
	}
	if len(j.Spec.ForgetRecoveryPoints) > 0 {
		if use != nil {
			use.StorageLocation, use.Forget, use.Prune = j.Spec.StorageLocation, true, j.Spec.Prune
			if r := refusal(trustpolicy.Check(*use)); r != nil {
				return *r
			}
		}
		return x.runForget(ctx, j, p)
	}
	if len(j.Spec.ExpireSnapshotsOf) > 0 {
		if use != nil {
			use.StorageLocation, use.Forget = j.Spec.StorageLocation, true
			if r := refusal(trustpolicy.Check(*use)); r != nil {
				return *r
			}
		}
		return x.runExpireSnapshots(ctx, j, p)
	}
	cfg := j.Spec.BackupConfiguration
	if err := cfg.Validate(); err != nil {
		return failed(v1alpha1.CodeInvalidSpec, "invalid backup configuration: %v", err)
	}
	// The extension's namespace holds the storage credentials: left out
	// unless named (v1alpha1.DefaultExcludedNamespaces has the default one).
	if !slices.Contains(cfg.IncludedNamespaces, x.opts.Namespace) {
		cfg.ExcludedNamespaces = append(slices.Clone(cfg.ExcludedNamespaces), x.opts.Namespace)
	}
	sel, err := selection.ForBackup(&cfg)
	if err != nil {
		return failed(v1alpha1.CodeInvalidSpec, "invalid backup configuration: %v", err)
	}
	var allowNS func(string) bool
	if use != nil {
		nss, err := x.backupNamespaces(ctx, sel)
		if err != nil {
			return failed(v1alpha1.CodeBackupFailed, "%v", err)
		}
		use.StorageLocation, use.Hooks, use.Namespaces, use.VaultTier = j.Spec.StorageLocation, len(cfg.BackupHookReferences) > 0, nss, j.Spec.VaultTier
		if r := refusal(trustpolicy.Check(*use)); r != nil {
			return *r
		}
		// The copy's target is a storage location the job writes too:
		// the owner's policy bounds it like spec.storageLocation.
		if j.Spec.CopyTo != "" {
			cu := *use
			cu.StorageLocation = j.Spec.CopyTo
			if r := refusal(trustpolicy.Check(cu)); r != nil {
				return *r
			}
		}
		pol := &use.Policy.Spec
		allowNS = func(ns string) bool { return trustpolicy.NamespaceAllowed(pol, ns) }
	}
	sa, err := x.openStorage(ctx, j.Namespace, j.Spec.StorageLocation, true)
	if err != nil {
		return failedErr(err, v1alpha1.CodeRepositoryUnavailable)
	}
	defer sa.be.Close()
	name := j.Spec.RecoveryPointName
	if name == "" {
		name = j.Name
	}
	tags := map[string]string{v1alpha1.TagBackupJob: j.Namespace + "/" + j.Name}
	for k, v := range j.Spec.Tags {
		tags[k] = v
	}
	defs, hookWarnings, err := x.loadHooks(ctx, cfg.BackupHookReferences, false)
	if err != nil {
		return failedErr(err, v1alpha1.CodeBackupFailed)
	}
	hr := &hookRunner{ex: x.opts.Executor, now: x.clock.Now, warnings: hookWarnings}
	// Hooks run around the volume snapshots, in the pods whose claims they
	// cut; post hooks also when the job is stopped, to thaw what pre
	// hooks froze.
	bh := &backupHooks{run: hr, postCtx: context.WithoutCancel(ctx), resolve: func(ctx context.Context) ([]*backupTarget, []v1alpha1.JobIssue, error) {
		return x.backupTargets(ctx, defs, sel.Namespaces.Includes)
	}}
	opts := operations.BackupOptions{Config: cfg, Name: name, Tags: tags, Workers: x.opts.BackupWorkers, Now: x.clock.Now,
		SnapshotClasses: j.Spec.SnapshotClasses, Progress: p.report, AllowNamespace: allowNS,
		Logf: func(format string, args ...any) {
			x.log.Info(fmt.Sprintf(format, args...), "job", j.Namespace+"/"+j.Name)
		}}
	if len(defs) > 0 {
		opts.Hooks = bh
	}
	if j.Spec.VaultTier {
		holderJob, err := x.holderJob(ctx, j)
		if err != nil {
			return failed(v1alpha1.CodeBackupFailed, "%v", err)
		}
		m, refused := x.vaultMover(ctx, &cfg, sa.loc, p, holderJob)
		if refused != nil {
			return *refused
		}
		opts.Mover, opts.StrayHolders = m, x.strayHolders
	}
	open := func(ctx context.Context) (*repo.Repository, error) { return sa.openRepo(ctx, true) }
	bres, err := operations.Backup(ctx, x.cfg, open, opts)
	if err != nil {
		return operationFailed(err, v1alpha1.CodeBackupFailed, hr)
	}
	rp := bres.RecoveryPoint
	res := result{phase: v1alpha1.JobCompleted, warnings: issues(append(rp.Summary.Warnings, bres.Warnings...))}.withHooks(hr)
	res.message = fmt.Sprintf("recovery point %s: %d objects, %d bytes", v1alpha1.ShortID(bres.ID.String()), rp.Summary.Items, rp.Summary.Bytes)
	if len(res.warnings) > 0 {
		res.phase = v1alpha1.JobCompletedWithWarnings
		res.message += fmt.Sprintf(", %d warnings", len(res.warnings))
	}
	id := bres.ID.String()
	counts := map[string]int64{}
	for k, v := range rp.Summary.Counts {
		counts[k] = int64(v)
	}
	if len(rp.VolumeData) > 0 {
		// The vault tier: the volumes moved, their bytes and the bytes new
		// to the repository; progress counts the volume bytes too.
		var files, bytes, newBytes int64
		for _, vd := range rp.VolumeData {
			files, bytes, newBytes = files+vd.Files, bytes+vd.Bytes, newBytes+vd.NewBytes
		}
		counts[countVolumesMoved], counts[countVolumeFiles], counts[countVolumeBytes], counts[countVolumeNewBytes] = int64(len(rp.VolumeData)), files, bytes, newBytes
		p.bytesDone.Add(bytes)
		p.bytesTotal.Store(p.bytesDone.Load())
		p.etaSeconds.Store(0)
		res.message += fmt.Sprintf(", %d volumes moved to the vault tier (%d files, %d bytes, %d new)", len(rp.VolumeData), files, bytes, newBytes)
	}
	// What the backup added to the repository: the objects' packs, index
	// and manifest as the writer stored them, plus the volume data the
	// movers added. A mover reports only its new plaintext bytes (before
	// compression), so for vault-tier points the figure is an upper bound.
	var volBytes, volNew int64
	for _, vd := range rp.VolumeData {
		volBytes, volNew = volBytes+vd.Bytes, volNew+vd.NewBytes
	}
	counts[v1alpha1.CountStoredBytes] = bres.Stats.StoredBytes + volNew
	counts[v1alpha1.CountLogicalBytes] = rp.Summary.Bytes + volBytes
	copied := ""
	if j.Spec.CopyTo != "" {
		cid, cmsg, err := x.copyPoint(ctx, j, sa, bres.ID)
		if err != nil {
			res.phase = v1alpha1.JobCompletedWithWarnings
			res.warnings = append(res.warnings, v1alpha1.JobIssue{Code: v1alpha1.CodeCopyFailed, Object: j.Spec.CopyTo, Message: fmt.Sprintf(
				"recovery point %s is in storage location %q but its copy to %q failed: %v; repeat it with `arca repo copy --from <%s URL> --to <%s URL> --point %s`",
				v1alpha1.ShortID(id), j.Spec.StorageLocation, j.Spec.CopyTo, err, j.Spec.StorageLocation, j.Spec.CopyTo, id)})
			res.message += ", copy failed"
		} else {
			copied = cid.String()
			res.message += ", " + cmsg
		}
	}
	res.apply = func(jj job) {
		s := &jj.(*v1alpha1.BackupJob).Status
		s.RecoveryPointID = id
		s.Counts = counts
		s.CopiedRecoveryPointID = copied
	}
	return res
}

// copyPoint copies recovery point id from the job's storage location (sa)
// into the repository of spec.copyTo, which is created if it has none.
func (x *Extension) copyPoint(ctx context.Context, j *v1alpha1.BackupJob, sa *storageAccess, id repo.ID) (repo.ID, string, error) {
	src, err := sa.openRepo(ctx, false)
	if err != nil {
		return repo.ID{}, "", err
	}
	defer src.Close()
	ta, err := x.openStorage(ctx, j.Namespace, j.Spec.CopyTo, true)
	if err != nil {
		return repo.ID{}, "", err
	}
	defer ta.be.Close()
	dst, err := ta.openRepo(ctx, true)
	if err != nil {
		return repo.ID{}, "", err
	}
	defer dst.Close()
	rep, err := repo.Copy(ctx, src.ReadOnly(), dst, []repo.ID{id}, repo.CopyOptions{})
	if err != nil {
		return repo.ID{}, "", err
	}
	p := rep.Points[0]
	return p.Target, fmt.Sprintf("copied to %q as %s (%d new blobs, %d bytes stored)", j.Spec.CopyTo, v1alpha1.ShortID(p.Target.String()), p.NewBlobs, p.StoredBytes), nil
}

// runForget expires recovery points (spec.forgetRecoveryPoints): for each
// one the repository still has, it deletes the retained snapshot contents
// of its volumes, then forgets it; with spec.prune it then prunes the
// repository. Counts reports recoveryPoints (forgotten), alreadyGone,
// snapshotContents (deleted) and, with prune, prunedPacks and prunedBytes.
func (x *Extension) runForget(ctx context.Context, j *v1alpha1.BackupJob, p *progress) result {
	sa, err := x.openStorage(ctx, j.Namespace, j.Spec.StorageLocation, true)
	if err != nil {
		return failedErr(err, v1alpha1.CodeRepositoryUnavailable)
	}
	defer sa.be.Close()
	r, err := sa.openRepo(ctx, false)
	if err != nil {
		return failedErr(err, v1alpha1.CodeRepositoryUnavailable)
	}
	defer r.Close()
	snaps, err := operations.ClusterSnapshots(x.cfg)
	if err != nil {
		return failed(v1alpha1.CodeForgetFailed, "%v", err)
	}
	counts, warnings, failure := eachRecoveryPoint(ctx, r, "forgetRecoveryPoints", j.Spec.ForgetRecoveryPoints, p,
		func(rp *repo.RecoveryPoint) (*operations.Forgotten, error) {
			return operations.Forget(ctx, r, snaps, rp)
		})
	if failure != nil {
		return *failure
	}
	res := result{phase: v1alpha1.JobCompleted, warnings: warnings}
	res.message = fmt.Sprintf("%d recovery points forgotten (%d already gone), %d snapshot contents deleted",
		counts["recoveryPoints"], counts["alreadyGone"], counts["snapshotContents"])
	if j.Spec.Prune {
		rep, err := r.Prune(ctx, repo.PruneOptions{})
		if err != nil {
			return failed(v1alpha1.CodeForgetFailed, "%s; prune failed: %v", res.message, err)
		}
		counts["prunedPacks"] = int64(rep.PacksRemoved + rep.PacksRepacked)
		counts["prunedBytes"] = rep.BytesBefore - rep.BytesAfter
		res.message += fmt.Sprintf("; pruned %d bytes", rep.BytesBefore-rep.BytesAfter)
		if rep.PacksRetained > 0 {
			counts["retainedPacks"] = int64(rep.PacksRetained)
			res.message += fmt.Sprintf(" (%d unused packs left until their object lock passes, at the latest %s)", rep.PacksRetained, rep.RetainedUntil.UTC().Format(time.RFC3339))
		}
	}
	if len(warnings) > 0 {
		res.phase = v1alpha1.JobCompletedWithWarnings
	}
	res.apply = func(jj job) { jj.(*v1alpha1.BackupJob).Status.Counts = counts }
	return res
}

// runExpireSnapshots expires the operational tier of recovery points
// (spec.expireSnapshotsOf): the retained snapshot contents of the volumes
// each point also holds in the vault tier are deleted, the points are
// kept (operations.ExpireSnapshots). Counts reports recoveryPoints,
// alreadyGone and snapshotContents (deleted).
func (x *Extension) runExpireSnapshots(ctx context.Context, j *v1alpha1.BackupJob, p *progress) result {
	sa, err := x.openStorage(ctx, j.Namespace, j.Spec.StorageLocation, false)
	if err != nil {
		return failedErr(err, v1alpha1.CodeRepositoryUnavailable)
	}
	defer sa.be.Close()
	r, err := sa.openReader(ctx)
	if err != nil {
		return failedErr(err, v1alpha1.CodeRepositoryUnavailable)
	}
	defer r.Close()
	snaps, err := operations.ClusterSnapshots(x.cfg)
	if err != nil {
		return failed(v1alpha1.CodeForgetFailed, "%v", err)
	}
	counts, warnings, failure := eachRecoveryPoint(ctx, r, "expireSnapshotsOf", j.Spec.ExpireSnapshotsOf, p,
		func(rp *repo.RecoveryPoint) (*operations.Forgotten, error) {
			return operations.ExpireSnapshots(ctx, snaps, rp)
		})
	if failure != nil {
		return *failure
	}
	res := result{phase: v1alpha1.JobCompleted, warnings: warnings}
	res.message = fmt.Sprintf("snapshots of %d recovery points expired (%d already gone), %d snapshot contents deleted; the points are kept",
		counts["recoveryPoints"], counts["alreadyGone"], counts["snapshotContents"])
	if len(warnings) > 0 {
		res.phase = v1alpha1.JobCompletedWithWarnings
	}
	res.apply = func(jj job) { jj.(*v1alpha1.BackupJob).Status.Counts = counts }
	return res
}

// eachRecoveryPoint applies fn (a forget or a snapshot expiry) to each
// recovery point that ids names (full IDs from the spec field field),
// reporting progress per point. Its counts are recoveryPoints (done),
// alreadyGone (not in the repository) and snapshotContents (deleted). It
// stops at the first failure, which it returns as the job's result.
func eachRecoveryPoint(ctx context.Context, r repo.Reader, field string, ids []string, p *progress,
	fn func(*repo.RecoveryPoint) (*operations.Forgotten, error)) (map[string]int64, []v1alpha1.JobIssue, *result) {
	counts := map[string]int64{"recoveryPoints": 0, "alreadyGone": 0, "snapshotContents": 0}
	var warnings []v1alpha1.JobIssue
	fail := func(code, format string, args ...any) (map[string]int64, []v1alpha1.JobIssue, *result) {
		res := failed(code, format, args...)
		return nil, nil, &res
	}
	p.report(operations.Progress{ItemsTotal: int64(len(ids))})
	for i, ref := range ids {
		id, err := repo.ParseID(ref)
		if err != nil {
			return fail(v1alpha1.CodeInvalidSpec, "%s: %q is not a full recovery point ID", field, ref)
		}
		rp, err := r.FindRecoveryPoint(ctx, id.String())
		switch {
		case errors.Is(err, repo.ErrNotFound):
			counts["alreadyGone"]++
		case err != nil:
			return fail(v1alpha1.CodeForgetFailed, "recovery point %s: %v", id.Short(), err)
		default:
			f, err := fn(rp)
			counts["snapshotContents"] += int64(len(f.DeletedContents))
			warnings = append(warnings, issues(f.Warnings)...)
			if storage.IsRetained(err) {
				return fail(v1alpha1.CodeRecoveryPointRetained, "%v", err)
			}
			if err != nil {
				return fail(v1alpha1.CodeForgetFailed, "%v", err)
			}
			counts["recoveryPoints"]++
		}
		p.report(operations.Progress{ItemsDone: int64(i + 1), ItemsTotal: int64(len(ids))})
	}
	return counts, warnings, nil
}

// runRestore validates the job, finds the recovery point and restores it:
// pre hooks in the pods that exist before, post hooks in the restored pods.
func (x *Extension) runRestore(ctx context.Context, jj job, p *progress) result {
	j := jj.(*v1alpha1.RestoreJob)
	crit := j.Spec.RestoreCriteria
	vr := x.newVerification(j)
	if vr != nil {
		if r := vr.criteria(&crit); r != nil {
			return *r
		}
	}
	if err := crit.Validate(); err != nil {
		return failed(v1alpha1.CodeInvalidSpec, "invalid restore criteria: %v", err)
	}
	use, refused := x.trustUse(ctx, j)
	if refused != nil {
		return *refused
	}
	if use != nil {
		// What the job says; what the recovery point holds is checked
		// once it is read, before anything is written.
		use.StorageLocation, use.Hooks, use.ResourceModifiers = j.Spec.StorageLocation, len(crit.RestoreHookReferences) > 0, len(crit.ResourceModifiers) > 0
		use.Verification = vr != nil
		// Restore pods run when the criteria ask for vault-tier data; with
		// Auto they run only where the policy allows them (below).
		use.VaultTier = crit.PersistentVolumeRestoreMode != v1alpha1.RestoreWithoutVolumeData && crit.AsksForVaultData()
		if r := refusal(trustpolicy.Check(*use)); r != nil {
			return *r
		}
	}
	sa, r, rp, fallbackWarning, refused := x.openRestorePoint(ctx, j, use)
	if refused != nil {
		return *refused
	}
	defer sa.be.Close()
	defer r.Close()
	if err := checkVaultPoint(j.Spec.VaultPoint, rp, false, "recovery point"); err != nil {
		return failedErr(err, v1alpha1.CodeRecoveryPointOfAnotherInstance)
	}
	rpID := rp.ID.String()
	defs, hookWarnings, err := x.loadHooks(ctx, crit.RestoreHookReferences, true)
	if err != nil {
		return failedErr(err, v1alpha1.CodeRestoreFailed)
	}
	if fallbackWarning != nil {
		hookWarnings = append(hookWarnings, *fallbackWarning)
	}
	sel, err := selection.ForRestore(&crit)
	if err != nil {
		return failed(v1alpha1.CodeInvalidSpec, "invalid restore criteria: %v", err)
	}
	hr := &hookRunner{ex: x.opts.Executor, now: x.clock.Now, warnings: hookWarnings}
	opts := operations.RestoreOptions{Criteria: crit, Name: j.Name, Workers: x.opts.RestoreWorkers, Now: x.clock.Now, Progress: p.report}
	if use != nil {
		// What the recovery point would write, judged before anything is.
		opts.Admit = func(_ context.Context, tg *restore.Targets) error {
			use.Namespaces, use.ClusterScoped, use.RBAC, use.Admission = tg.Namespaces, tg.ClusterScoped, tg.RBAC, tg.Admission
			if r := trustpolicy.Check(*use); r != nil {
				return r
			}
			return nil
		}
	}
	if len(rp.VolumeData) > 0 && crit.PersistentVolumeRestoreMode != v1alpha1.RestoreWithoutVolumeData {
		// Vault-tier data is written by restore pods from the data mover image.
		img, err := x.dataMoverImage(ctx)
		if use != nil && !use.Policy.Spec.VaultTier {
			// Auto takes the snapshots (as a restore without restore pods).
			opts.NoVolumePods = fmt.Sprintf("ClusterTrustPolicy %q does not allow restore pods (spec.vaultTier; the owner allows them with "+
				"`arca trusted-access enable --vault %s --cluster-name C --allow-vault-tier`)", use.Vault, use.Vault)
		} else if l, perr := location.Parse(sa.loc.Spec.URL); perr == nil && l.Kind == location.File {
			opts.NoVolumePods = fmt.Sprintf("storage location %q is file storage (%s), which only the extension's pod mounts: restore pods cannot read it; "+
				"copy the recovery point to an object storage location (arca repo copy) and restore from there", sa.loc.Name, sa.loc.Spec.URL)
		} else if err != nil {
			opts.NoVolumePods = err.Error()
		} else {
			opts.VolumePods = &operations.RestorePods{Image: img, Location: sa.loc.Name, RepoURL: sa.loc.Spec.URL, SecretNamespace: sa.loc.Namespace,
				SecretName: sa.loc.Spec.CredentialsSecret, Timeout: x.opts.RestorePodTimeout, StorageRetry: x.opts.StorageRetry}
		}
	}
	if len(defs) > 0 {
		opts.Hooks = &restoreHooks{x: x, run: hr, defs: defs, sel: sel, crit: &crit, name: j.Name, rpLabel: restore.RecoveryPointLabel(rpID)}
	}
	// A verification's steps run under the restore's repository lock.
	var verdict *result
	if vr != nil {
		opts.Before = func(ctx context.Context, c *v1alpha1.RestoreCriteria) error {
			if err := vr.checkData(ctx, r, rp); err != nil {
				return coded(v1alpha1.CodeRepositoryUnavailable, "check the repository of storage location %q: %v", sa.loc.Name, err)
			}
			if err := vr.sandbox(ctx, r, rp, c); err != nil {
				vr.fail(v1alpha1.CodeVerificationRestoreFailed, v1alpha1.VerificationDifference{Object: "recovery point", Problem: err.Error()})
				out := vr.verdict(rpID, result{}, vr.cleanup(ctx)) // nothing to delete yet
				verdict = &out
				return err
			}
			crit.NamespaceMappings = c.NamespaceMappings // the hooks' view
			return nil
		}
		opts.After = func(ctx context.Context, _ v1alpha1.RestoreCriteria, rres *restore.Result, err error) {
			out := x.finishVerification(ctx, vr, r, rp, rres, err, &crit, hr)
			verdict = &out
		}
	}
	rres, err := operations.Restore(ctx, x.cfg, r, rp, opts)
	if verdict != nil {
		return *verdict
	}
	var itemsFailed *restore.ItemsFailedError
	var lockErr *operations.LockError
	if errors.As(err, &lockErr) {
		return failed(lockErr.JobCode(), "storage location %q: %v", sa.loc.Name, err)
	}
	if err != nil && !errors.As(err, &itemsFailed) {
		return operationFailed(err, v1alpha1.CodeRestoreFailed, hr)
	}
	res := result{phase: v1alpha1.JobCompleted}
	for _, w := range rres.Warnings {
		res.warnings = append(res.warnings, v1alpha1.JobIssue{Code: w.Code, Message: w.Message, Object: w.Object})
	}
	if itemsFailed != nil {
		res.warnings = append(res.warnings, v1alpha1.JobIssue{Code: v1alpha1.CodeItemsFailed,
			Message: fmt.Sprintf("%d objects failed; see status.items", len(itemsFailed.Items))})
	}
	res = res.withHooks(hr)
	results := map[string]int64{}
	for a, n := range rres.Summary {
		results[string(a)] = int64(n)
	}
	items := restoreItems(rres)
	res.message = fmt.Sprintf("restored recovery point %s: %d created, %d failed", v1alpha1.ShortID(rpID), rres.Summary[restore.Created], rres.Summary[restore.Failed])
	if rres.DryRun {
		res.message = "dry run (nothing written): " + res.message
	}
	if len(res.warnings) > 0 {
		res.phase = v1alpha1.JobCompletedWithWarnings
		res.message += fmt.Sprintf(", %d warnings", len(res.warnings))
	}
	res.apply = func(jj job) {
		s := &jj.(*v1alpha1.RestoreJob).Status
		s.RecoveryPointID = rpID
		s.Results = results
		s.Items = items
	}
	return res
}

// restoreItems lists the objects a restore did not simply create: failures
// first, at most MaxItemResults.
func restoreItems(res *restore.Result) []v1alpha1.RestoreItemResult {
	var out []v1alpha1.RestoreItemResult
	for _, failures := range []bool{true, false} {
		for it := range res.Items.All() {
			if len(out) == v1alpha1.MaxItemResults {
				return out
			}
			if it.Action == restore.Created || it.Action == restore.SkippedFiltered || (it.Action == restore.Failed) != failures {
				continue
			}
			out = append(out, v1alpha1.RestoreItemResult{Object: it.Ref(), Action: string(it.Action), Reason: it.Reason})
		}
	}
	return out
}

// reconcileStorageLocation probes a storage location: its Secret, its
// storage, and the repository in it (opened with the password, so a wrong
// password shows). A writable location without a repository is Available:
// the first backup creates it.
func (x *Extension) reconcileStorageLocation(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	loc := &v1alpha1.StorageLocation{}
	if err := x.client.Get(ctx, req.NamespacedName, loc); err != nil {
		if client.IgnoreNotFound(err) == nil {
			storageLocationAvailable.DeleteLabelValues(req.Namespace, req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	orig := loc.DeepCopy()
	st := &loc.Status
	now := metav1.NewTime(x.clock.Now())
	st.LastProbeTime = &now
	st.ObservedGeneration = loc.Generation
	st.Phase, st.Message, st.RecoveryPoints = x.probe(ctx, loc)
	if st.Phase == v1alpha1.StorageAvailable {
		storageLocationAvailable.WithLabelValues(loc.Namespace, loc.Name).Set(1)
	} else {
		storageLocationAvailable.WithLabelValues(loc.Namespace, loc.Name).Set(0)
	}
	if err := x.client.Status().Patch(ctx, loc, client.MergeFrom(orig)); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: x.opts.ProbeInterval}, nil
}

func (x *Extension) probe(ctx context.Context, loc *v1alpha1.StorageLocation) (v1alpha1.StorageLocationPhase, string, int) {
	sa, err := x.openLocation(ctx, loc, !loc.Spec.ReadOnly)
	if err != nil {
		return v1alpha1.StorageUnavailable, err.Error(), 0
	}
	defer sa.be.Close()
	r, err := repo.OpenReader(ctx, sa.be, sa.password)
	if errors.Is(err, repo.ErrNoRepository) && !loc.Spec.ReadOnly {
		return v1alpha1.StorageAvailable, "no repository yet: the first backup creates it", 0
	}
	if err != nil {
		return v1alpha1.StorageUnavailable, fmt.Sprintf("open repository at %s: %v", loc.Spec.URL, err), 0
	}
	defer r.Close()
	rps, err := r.ListRecoveryPoints(ctx)
	if err != nil {
		return v1alpha1.StorageUnavailable, fmt.Sprintf("list recovery points at %s: %v", loc.Spec.URL, err), 0
	}
	return v1alpha1.StorageAvailable, fmt.Sprintf("repository open, %d recovery points", len(rps)), len(rps)
}

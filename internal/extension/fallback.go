package extension

import (
	"context"
	"errors"
	"fmt"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/storage/retry"
	"github.com/arca-backup/arca/internal/trustpolicy"
)

// openRestorePoint opens the storage location holding a RestoreJob's
// recovery point and finds the point: in spec.storageLocation; or, when
// that repository cannot be opened or read and spec.fallbackStorageLocation
// names a secondary (a copy made by spec.copyTo or `arca repo copy`), in
// the secondary, found by its own ID or by the original's (tag
// arca.io/origin), with the warning RestoredFromSecondary naming both. A
// wrong password, a missing StorageLocation or Secret, or a point the
// readable primary does not have are the job's mistakes: no fallback.
// The caller closes sa.be and r.
func (x *Extension) openRestorePoint(ctx context.Context, j *v1alpha1.RestoreJob, use *trustpolicy.Use) (
	sa *storageAccess, r repo.Reader, rp *repo.RecoveryPoint, warn *v1alpha1.JobIssue, res *result) {
	fb := j.Spec.FallbackStorageLocation
	sa, r, err := x.openReadable(ctx, j.Namespace, j.Spec.StorageLocation, fb != "")
	if err == nil {
		rp, err := r.FindRecoveryPoint(ctx, j.Spec.RecoveryPoint)
		if err != nil {
			r.Close()
			sa.be.Close()
			f := failed(v1alpha1.CodeRecoveryPointNotFound, "recovery point %q in storage location %q: %v", j.Spec.RecoveryPoint, j.Spec.StorageLocation, err)
			return nil, nil, nil, nil, &f
		}
		return sa, r, rp, nil, nil
	}
	if fb == "" || codeOf(err, "") != v1alpha1.CodeRepositoryUnavailable || errors.Is(err, repo.ErrWrongPassword) || ctx.Err() != nil {
		f := failedErr(err, v1alpha1.CodeRepositoryUnavailable)
		return nil, nil, nil, nil, &f
	}
	primaryErr := err
	if use != nil {
		u := *use
		u.StorageLocation = fb
		if r := refusal(trustpolicy.Check(u)); r != nil {
			return nil, nil, nil, nil, r
		}
	}
	x.log.Info("primary storage location unreadable; restoring from the secondary", "job", j.Namespace+"/"+j.Name,
		"primary", j.Spec.StorageLocation, "secondary", fb, "err", primaryErr.Error())
	sa, r, err = x.openReadable(ctx, j.Namespace, fb, false)
	if err != nil {
		f := failed(codeOf(err, v1alpha1.CodeRepositoryUnavailable), "storage location %q cannot be read (%v), nor its secondary %q: %v",
			j.Spec.StorageLocation, primaryErr, fb, err)
		return nil, nil, nil, nil, &f
	}
	id, perr := repo.ParseID(j.Spec.RecoveryPoint)
	if perr == nil {
		rp, err = repo.FindOrigin(ctx, r, id)
	} else {
		rp, err = r.FindRecoveryPoint(ctx, j.Spec.RecoveryPoint)
	}
	if err != nil {
		r.Close()
		sa.be.Close()
		f := failed(v1alpha1.CodeRecoveryPointNotFound, "storage location %q cannot be read (%v), and its secondary %q has no copy of recovery point %q: %v",
			j.Spec.StorageLocation, primaryErr, fb, j.Spec.RecoveryPoint, err)
		return nil, nil, nil, nil, &f
	}
	warn = &v1alpha1.JobIssue{Code: v1alpha1.CodeRestoredFromSecondary, Object: fb, Message: fmt.Sprintf(
		"the repository of storage location %q could not be read (%v); restored the copy %s from the secondary storage location %q",
		j.Spec.StorageLocation, primaryErr, rp.ID.Short(), fb)}
	return sa, r, rp, warn, nil
}

// openReadable opens a storage location's repository for reading;
// hasFallback gives a store that does not answer a short retry budget.
func (x *Extension) openReadable(ctx context.Context, ns, name string, hasFallback bool) (*storageAccess, repo.Reader, error) {
	loc, err := x.storageLocation(ctx, ns, name)
	if err != nil {
		return nil, nil, err
	}
	ro := retry.Options{MaxElapsed: x.opts.StorageRetry}
	if hasFallback && (x.opts.StorageRetry == 0 || x.opts.StorageRetry > retry.PrimaryWithFallback.MaxElapsed) {
		ro = retry.PrimaryWithFallback
	}
	sa, err := x.openLocationRetry(ctx, loc, false, ro)
	if err != nil {
		return nil, nil, err
	}
	r, err := sa.openReader(ctx)
	if err != nil {
		sa.be.Close()
		return nil, nil, err
	}
	return sa, r, nil
}

package restore

import (
	"context"
	"errors"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/arca-backup/arca/internal/repo"
)

// SkippedVolume is the action of a PersistentVolume the volume layer leaves
// out: its claim gets a new volume (from a snapshot, or empty).
const SkippedVolume Action = "SkippedVolume"

// VolumeRestorer decides how PersistentVolumes and PersistentVolumeClaims
// are restored; internal/volume implements it. Both calls get the prepared
// object (stripped, namespaces mapped, resource modifiers applied) and may
// change it.
type VolumeRestorer interface {
	// RestoreVolume says whether a PersistentVolume is written; skip records
	// SkippedVolume with the reason.
	RestoreVolume(ctx context.Context, pv map[string]any) (skip bool, reason string, err error)
	// RestoreClaim rewrites a claim before it is written, and may create
	// what it needs first (a VolumeSnapshot and its content). sourceNamespace
	// is the claim's namespace in the recovery point. Warnings (the claim is
	// still written, but will not bind by itself, e.g. its CSI driver or
	// storage class is missing) go into Result.Warnings; an empty Object is
	// filled with the claim's reference.
	RestoreClaim(ctx context.Context, sourceNamespace string, pvc map[string]any) ([]Warning, error)
}

// ClaimFiller is implemented by a VolumeRestorer that writes data into
// claims once they are written (vault-tier data, through a restore pod).
// FillClaim is called for every claim the restore created or found
// (target namespace and name), after the write and before the claim's item
// is recorded; it returns when the data is in, so the workloads of later
// tiers that mount the claim start with it. Its error fails the claim's
// item. It is not called in a dry run.
type ClaimFiller interface {
	FillClaim(ctx context.Context, namespace, name string) error
}

// codedError is an error with a stable code (ErrorCode); a volume error
// that has one is also a restore warning with that code, naming the object.
type codedError interface {
	error
	ErrorCode() string
}

// volumeFailed records a failed volume or claim, with a warning when the
// error carries a code.
func (r *run) volumeFailed(it Item, what string, err error) {
	var ce codedError
	if errors.As(err, &ce) {
		r.mu.Lock()
		r.res.Warnings = append(r.res.Warnings, Warning{Code: ce.ErrorCode(), Message: err.Error(), Object: it.Ref()})
		r.mu.Unlock()
	}
	r.record(it, Failed, what+": "+err.Error())
}

// fillClaim runs the ClaimFiller after a claim was written with action a;
// it returns the action to record.
func (r *run) fillClaim(ctx context.Context, t repo.ResourceTree, it Item, a Action, reason string) (Action, string, error) {
	f, ok := r.opts.Volumes.(ClaimFiller)
	if !ok || r.crit.DryRun || t.Group != "" || t.Resource != "persistentvolumeclaims" {
		return a, reason, nil
	}
	switch a {
	case Created, Patched, Unchanged, SkippedExists:
	default:
		return a, reason, nil
	}
	if err := f.FillClaim(ctx, it.Namespace, it.Name); err != nil {
		return Failed, "volume data: " + err.Error(), err
	}
	return a, reason, nil
}

// volumeHook runs Options.Volumes on volumes and claims; false means the
// object was recorded (skipped or failed) and must not be written.
func (r *run) volumeHook(ctx context.Context, t repo.ResourceTree, u *unstructured.Unstructured, it Item, sourceNS string) bool {
	if r.opts.Volumes == nil || t.Group != "" {
		return true
	}
	switch t.Resource {
	case "persistentvolumes":
		skip, reason, err := r.opts.Volumes.RestoreVolume(ctx, u.Object)
		if err != nil {
			r.volumeFailed(it, "volume", err)
			return false
		}
		if skip {
			r.record(it, SkippedVolume, reason)
			return false
		}
	case "persistentvolumeclaims":
		warnings, err := r.opts.Volumes.RestoreClaim(ctx, sourceNS, u.Object)
		if err != nil {
			r.volumeFailed(it, "volume", err)
			return false
		}
		if len(warnings) > 0 {
			r.mu.Lock()
			for _, w := range warnings {
				if w.Object == "" {
					w.Object = it.Ref()
				}
				r.res.Warnings = append(r.res.Warnings, w)
			}
			r.mu.Unlock()
		}
	}
	return true
}

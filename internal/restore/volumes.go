package restore

import (
	"context"
	"fmt"

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
			r.record(it, Failed, fmt.Sprintf("volume: %v", err))
			return false
		}
		if skip {
			r.record(it, SkippedVolume, reason)
			return false
		}
	case "persistentvolumeclaims":
		warnings, err := r.opts.Volumes.RestoreClaim(ctx, sourceNS, u.Object)
		if err != nil {
			r.record(it, Failed, fmt.Sprintf("volume: %v", err))
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

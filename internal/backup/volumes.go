package backup

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/arca-backup/arca/internal/kube"
	"github.com/arca-backup/arca/internal/repo"
)

// VolumeSnapshotter takes the volume snapshots of a backup; internal/volume
// implements it. The engine calls it once, after every object is stored and
// before the manifest is written, with the PersistentVolumeClaims the
// backup included (only when the configuration's snapshotVolumes is on).
// The records go into RecoveryPoint.Volumes and the warnings into the
// summary; an error fails the backup.
//
// When the recovery point is not written after all (commit failed, or the
// backup was cancelled), DiscardSnapshots gets the records back to delete
// the snapshots no recovery point refers to.
type VolumeSnapshotter interface {
	SnapshotVolumes(ctx context.Context, claims []types.NamespacedName) (records json.RawMessage, warnings []repo.Warning, err error)
	DiscardSnapshots(ctx context.Context, records json.RawMessage) error
}

// VolumeDataMover is implemented by a VolumeSnapshotter that also moved
// the snapshotted volumes' data into the repository (the vault tier, issue
// 15): after SnapshotVolumes succeeded, the engine puts MovedVolumeData
// into RecoveryPoint.VolumeData. The trees were stored and committed by
// other writers (the data mover's pods); the engine's writer references
// them (repo.Writer.Reference) so that its commit checks they still exist.
type VolumeDataMover interface {
	MovedVolumeData() []repo.VolumeData
}

// noteClaim remembers an included claim for the volume snapshotter; the
// type's attempt hands it over when its list completes.
func (b *run) noteClaim(a *attempt, res kube.Resource, obj *kube.Object) {
	if b.opts.Volumes == nil || res.Group != "" || res.Resource != "persistentvolumeclaims" {
		return
	}
	a.claims = append(a.claims, types.NamespacedName{Namespace: obj.GetNamespace(), Name: obj.GetName()})
}

// snapshotVolumes runs the volume snapshotter, if any, and returns its
// records and the volume data it moved.
func (b *run) snapshotVolumes(ctx context.Context) (json.RawMessage, []repo.VolumeData, error) {
	if b.opts.Volumes == nil || !b.opts.Config.Snapshots() {
		return nil, nil, nil
	}
	recs, warnings, err := b.opts.Volumes.SnapshotVolumes(ctx, b.claims)
	if err != nil {
		return nil, nil, fmt.Errorf("snapshot volumes: %w", err)
	}
	b.warnings = append(b.warnings, warnings...)
	var data []repo.VolumeData
	if m, ok := b.opts.Volumes.(VolumeDataMover); ok {
		data = m.MovedVolumeData()
	}
	if len(data) > 0 {
		trees := make([]repo.Tree, len(data))
		for i, vd := range data {
			trees[i] = vd.Tree
		}
		if err := b.w.Reference(ctx, trees...); err != nil {
			return recs, nil, fmt.Errorf("moved volume data: %w", err)
		}
	}
	return recs, data, nil
}

// discardSnapshots deletes the snapshots of a backup that wrote no
// recovery point; it runs even when ctx is cancelled.
func (b *run) discardSnapshots(ctx context.Context, records json.RawMessage) error {
	if b.opts.Volumes == nil || len(records) == 0 {
		return nil
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	if err := b.opts.Volumes.DiscardSnapshots(dctx, records); err != nil {
		return fmt.Errorf("delete the volume snapshots of the unwritten recovery point: %w", err)
	}
	return nil
}

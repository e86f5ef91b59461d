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

// noteClaim remembers an included claim for the volume snapshotter; the
// type's attempt hands it over when its list completes.
func (b *run) noteClaim(a *attempt, res kube.Resource, obj *kube.Object) {
	if b.opts.Volumes == nil || res.Group != "" || res.Resource != "persistentvolumeclaims" {
		return
	}
	a.claims = append(a.claims, types.NamespacedName{Namespace: obj.GetNamespace(), Name: obj.GetName()})
}

// snapshotVolumes runs the volume snapshotter, if any.
func (b *run) snapshotVolumes(ctx context.Context) (json.RawMessage, error) {
	if b.opts.Volumes == nil || !b.opts.Config.Snapshots() {
		return nil, nil
	}
	recs, warnings, err := b.opts.Volumes.SnapshotVolumes(ctx, b.claims)
	if err != nil {
		return nil, fmt.Errorf("snapshot volumes: %w", err)
	}
	b.warnings = append(b.warnings, warnings...)
	return recs, nil
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

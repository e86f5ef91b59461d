package operations

import (
	"context"
	"fmt"

	"k8s.io/client-go/rest"

	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/volume"
)

// SnapshotCleaner deletes the retained volume snapshots that a recovery
// point's records name; *volume.Cleaner does it through the cluster's
// snapshot API.
type SnapshotCleaner interface {
	DeleteSnapshots(ctx context.Context, records *volume.Records) (deleted []string, warnings []repo.Warning, err error)
}

// ClusterSnapshots returns the SnapshotCleaner of the cluster of cfg.
func ClusterSnapshots(cfg *rest.Config) (SnapshotCleaner, error) {
	return volume.NewCleaner(cfg, volume.DeleteOptions{})
}

// Forgetter is what Forget needs of a repository.
type Forgetter interface {
	Forget(ctx context.Context, ids []repo.ID) error
}

// Forgotten is a recovery point forgotten (or, with an error, what was
// done before the error).
type Forgotten struct {
	ID repo.ID
	// DeletedContents are the VolumeSnapshotContents deleted.
	DeletedContents []string
	Warnings        []repo.Warning
}

// Forget forgets one recovery point: first the snapshots it retained are
// deleted (unless snaps is nil: the snapshots are kept), then the recovery
// point is forgotten in r. A recovery point whose snapshots could not all
// be deleted is not forgotten, so that it still names what is left to
// delete. Its data goes at the repository's next prune.
func Forget(ctx context.Context, r Forgetter, snaps SnapshotCleaner, rp *repo.RecoveryPoint) (*Forgotten, error) {
	out := &Forgotten{ID: rp.ID, DeletedContents: []string{}, Warnings: []repo.Warning{}}
	if snaps != nil {
		recs, err := volume.Decode(rp.Volumes)
		if err != nil {
			return out, fmt.Errorf("recovery point %s not forgotten: %w", rp.ID.Short(), err)
		}
		deleted, warnings, err := snaps.DeleteSnapshots(ctx, recs)
		out.DeletedContents = append(out.DeletedContents, deleted...)
		out.Warnings = append(out.Warnings, warnings...)
		if err != nil {
			return out, fmt.Errorf("recovery point %s not forgotten: delete its volume snapshots: %w", rp.ID.Short(), err)
		}
	}
	if err := r.Forget(ctx, []repo.ID{rp.ID}); err != nil {
		return out, fmt.Errorf("forget recovery point %s: %w", rp.ID.Short(), err)
	}
	return out, nil
}

// ExpireSnapshots expires the operational tier of a recovery point: the
// retained snapshots of the volumes whose data the point also holds in the
// vault tier (rp.VolumeData, named namespace/claim) are deleted, and the
// point is kept — its volumes are then restored from the vault tier. A
// snapshot of a volume without vault-tier data is kept, with warning
// SnapshotKeptNoVaultData: deleting it would lose the volume. Contents
// already gone are skipped, so repeating it is harmless.
func ExpireSnapshots(ctx context.Context, snaps SnapshotCleaner, rp *repo.RecoveryPoint) (*Forgotten, error) {
	out := &Forgotten{ID: rp.ID, DeletedContents: []string{}, Warnings: []repo.Warning{}}
	recs, err := volume.Decode(rp.Volumes)
	if err != nil {
		return out, fmt.Errorf("recovery point %s: %w", rp.ID.Short(), err)
	}
	moved := map[string]bool{}
	for _, vd := range rp.VolumeData {
		moved[vd.Name] = true
	}
	expire := *recs
	expire.Snapshots = nil
	for _, r := range recs.Snapshots {
		if moved[r.Key()] {
			expire.Snapshots = append(expire.Snapshots, r)
			continue
		}
		out.Warnings = append(out.Warnings, repo.Warning{Code: WarnSnapshotKeptNoVaultData, Object: r.Key(), Message: fmt.Sprintf(
			"recovery point %s has no vault-tier data of claim %s: its snapshot (content %s) is kept, since deleting it would lose the volume",
			rp.ID.Short(), r.Key(), r.Content)})
	}
	if len(expire.Snapshots) == 0 {
		return out, nil
	}
	deleted, warnings, err := snaps.DeleteSnapshots(ctx, &expire)
	out.DeletedContents = append(out.DeletedContents, deleted...)
	out.Warnings = append(out.Warnings, warnings...)
	if err != nil {
		return out, fmt.Errorf("recovery point %s: delete its volume snapshots: %w", rp.ID.Short(), err)
	}
	return out, nil
}

// WarnSnapshotKeptNoVaultData: ExpireSnapshots kept a snapshot because the
// point has no vault-tier data of its volume.
const WarnSnapshotKeptNoVaultData = "SnapshotKeptNoVaultData"

// VolumeRecords reads a recovery point's volume records (what its
// snapshots and skipped claims were at backup time), for callers that
// show them (the extension's Volumes query) without importing the volume
// layer.
func VolumeRecords(rp *repo.RecoveryPoint) (*volume.Records, error) {
	return volume.Decode(rp.Volumes)
}

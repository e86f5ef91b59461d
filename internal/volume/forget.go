package volume

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	snapclient "github.com/kubernetes-csi/external-snapshotter/client/v8/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/arca-backup/arca/internal/repo"
)

// DeleteOptions configure DeleteSnapshots.
type DeleteOptions struct {
	// Wait bounds the wait for each content to be gone (default 2 min):
	// the csi-snapshotter sidecar deletes the driver snapshot first.
	Wait time.Duration
	Poll time.Duration
}

// Cleaner deletes the retained snapshots of forgotten recovery points
// (operations.SnapshotCleaner) in one cluster.
type Cleaner struct {
	snaps snapclient.Interface
	opts  DeleteOptions
}

// NewCleaner returns a Cleaner for the cluster of cfg.
func NewCleaner(cfg *rest.Config, opts DeleteOptions) (*Cleaner, error) {
	sc, err := snapclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("volume snapshot client: %w", err)
	}
	return &Cleaner{snaps: sc, opts: opts}, nil
}

// DeleteSnapshots deletes what records retained (DeleteSnapshots).
func (c *Cleaner) DeleteSnapshots(ctx context.Context, records *Records) (deleted []string, warnings []repo.Warning, err error) {
	return DeleteSnapshots(ctx, c.snaps, records, c.opts)
}

// DeleteSnapshots deletes the driver snapshots of a forgotten recovery
// point: each recorded VolumeSnapshotContent is switched to deletionPolicy
// Delete and deleted, so that the CSI driver deletes the snapshot, and the
// call waits until the content is gone. A content that no longer exists
// gives the warning SnapshotContentNotFound. It returns the contents deleted.
//
// Call it before forgetting the recovery point in the repository: if it
// fails, the recovery point still names what is left to delete.
func DeleteSnapshots(ctx context.Context, sc snapclient.Interface, records *Records, opts DeleteOptions) (deleted []string, warnings []repo.Warning, err error) {
	if opts.Wait <= 0 {
		opts.Wait = 2 * time.Minute
	}
	if opts.Poll <= 0 {
		opts.Poll = 250 * time.Millisecond
	}
	contents := sc.SnapshotV1().VolumeSnapshotContents()
	for _, rec := range records.Snapshots {
		if rec.Content == "" {
			continue
		}
		content, err := contents.Get(ctx, rec.Content, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			warnings = append(warnings, repo.Warning{Code: WarnContentNotFound, Object: "volumesnapshotcontents.snapshot.storage.k8s.io " + rec.Content,
				Message: fmt.Sprintf("VolumeSnapshotContent %s (snapshot %s of %s) does not exist; its driver snapshot is not deleted by Arca", rec.Content, rec.SnapshotHandle, rec.Key())})
			continue
		}
		if err != nil {
			return deleted, warnings, fmt.Errorf("read VolumeSnapshotContent %s: %w", rec.Content, err)
		}
		if !owns(content, records.BackupID, rec) {
			warnings = append(warnings, repo.Warning{Code: WarnContentNotFound, Object: "volumesnapshotcontents.snapshot.storage.k8s.io " + rec.Content,
				Message: fmt.Sprintf("VolumeSnapshotContent %s now holds another snapshot than %s; left alone", rec.Content, rec.SnapshotHandle)})
			continue
		}
		if content.Spec.DeletionPolicy != snapv1.VolumeSnapshotContentDelete {
			patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"deletionPolicy": string(snapv1.VolumeSnapshotContentDelete)}})
			if _, err := contents.Patch(ctx, rec.Content, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "arca"}); err != nil {
				return deleted, warnings, fmt.Errorf("set deletionPolicy Delete on VolumeSnapshotContent %s: %w", rec.Content, err)
			}
		}
		if err := contents.Delete(ctx, rec.Content, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return deleted, warnings, fmt.Errorf("delete VolumeSnapshotContent %s: %w", rec.Content, err)
		}
		deadline := time.Now().Add(opts.Wait)
		for {
			_, err := contents.Get(ctx, rec.Content, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				break
			}
			if !time.Now().Before(deadline) {
				return deleted, warnings, fmt.Errorf("VolumeSnapshotContent %s still exists after %s (the CSI driver did not delete snapshot %s)", rec.Content, opts.Wait, rec.SnapshotHandle)
			}
			select {
			case <-ctx.Done():
				return deleted, warnings, ctx.Err()
			case <-time.After(opts.Poll):
			}
		}
		deleted = append(deleted, rec.Content)
	}
	return deleted, warnings, nil
}

// owns reports whether a content is still the one recorded: same driver and
// snapshot handle (a content name could in theory have been reused).
func owns(c *snapv1.VolumeSnapshotContent, backupID string, rec Record) bool {
	if c.Spec.Driver != rec.Driver {
		return false
	}
	if c.Status != nil && c.Status.SnapshotHandle != nil {
		return *c.Status.SnapshotHandle == rec.SnapshotHandle
	}
	if c.Spec.Source.SnapshotHandle != nil {
		return *c.Spec.Source.SnapshotHandle == rec.SnapshotHandle
	}
	return c.Labels[LabelBackupID] == backupID
}

// DiscardSnapshots deletes the snapshots of a backup whose recovery point
// was not written (backup.VolumeSnapshotter).
func (s *Snapshotter) DiscardSnapshots(ctx context.Context, records json.RawMessage) error {
	recs, err := Decode(records)
	if err != nil {
		return err
	}
	_, _, err = DeleteSnapshots(ctx, s.snaps, recs, DeleteOptions{})
	return err
}

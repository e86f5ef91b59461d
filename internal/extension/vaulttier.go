package extension

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/mover"
	"github.com/arca-backup/arca/internal/storage/location"
)

// Counts of a vault-tier backup in BackupJob status.counts.
const (
	countVolumesMoved   = "volumesMoved"
	countVolumeFiles    = "volumeFiles"
	countVolumeBytes    = "volumeBytes"
	countVolumeNewBytes = "volumeNewBytes"
)

// vaultMover is the data mover of a vault-tier backup (spec.vaultTier):
// pods from the extension's own image write each volume's files into the
// storage location's repository (internal/mover). It refuses, with
// VaultTierUnavailable, what cannot work: no snapshots to move, file
// storage, no image to run.
func (x *Extension) vaultMover(ctx context.Context, cfg *v1alpha1.BackupConfiguration, loc *v1alpha1.StorageLocation, p *progress, holderJob string) (*mover.Mover, *result) {
	refuse := func(format string, args ...any) (*mover.Mover, *result) {
		r := failed(v1alpha1.CodeVaultTierUnavailable, format, args...)
		return nil, &r
	}
	if !cfg.Snapshots() {
		return refuse("spec.vaultTier moves the data of the volume snapshots, but snapshotVolumes is false: turn snapshots on or leave vaultTier out")
	}
	if l, err := location.Parse(loc.Spec.URL); err == nil && l.Kind == location.File {
		return refuse("storage location %q is file storage (%s): the vault tier's data-mover pods run as root to read every file of a volume "+
			"and would leave repository files the extension's user cannot read; use an object storage location (s3://, azure://) for vault-tier backups", loc.Name, loc.Spec.URL)
	}
	image, err := x.dataMoverImage(ctx)
	if err != nil {
		return refuse("the vault tier runs data-mover pods from the extension's image: %v (out of the cluster: `arca extension run --mover-image IMAGE`)", err)
	}
	var pullSecrets []corev1.LocalObjectReference
	if x.opts.DataMoverImage == "" {
		// The image is the extension pod's own: so are its pull secrets.
		pod := &corev1.Pod{}
		if err := x.api.Get(ctx, types.NamespacedName{Namespace: x.opts.PodNamespace, Name: x.opts.PodName}, pod); err == nil {
			pullSecrets = pod.Spec.ImagePullSecrets
		}
	}
	m, err := mover.New(x.cfg, mover.Options{Location: loc, Image: image, ImagePullSecrets: pullSecrets, Concurrency: x.opts.MaxConcurrentMovers,
		MemoryLimit: x.opts.MoverMemoryLimit, StorageRetry: x.opts.StorageRetry, Progress: p.reportMover, HolderJob: holderJob,
		Logf: func(format string, args ...any) { x.log.Info(fmt.Sprintf(format, args...)) }})
	if err != nil {
		return refuse("%v", err)
	}
	return m, nil
}

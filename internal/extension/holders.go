package extension

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/repo"
)

// Holder points left by a crash (docs/volumes.md, Holder points). Each
// mover pod commits a holder point; the backup forgets its holders when it
// ends. An extension that dies in between leaves them: hidden data no
// retention ever prunes. Holders name their cluster and BackupJob
// (v1alpha1.TagVolumeHolderJob), so that this cluster's extension forgets
// those whose job has ended or is gone: at the end of every vault-tier
// backup (operations.BackupOptions.StrayHolders), and when a new leader
// fails a vault-tier backup the previous one left InProgress.

// clusterUID is the cluster's identity in holder tags: the UID of its
// kube-system namespace, which lives as long as the cluster.
func (x *Extension) clusterUID(ctx context.Context) (string, error) {
	x.mu.Lock()
	id := x.clusterID
	x.mu.Unlock()
	if id != "" {
		return id, nil
	}
	ns := &corev1.Namespace{}
	if err := x.api.Get(ctx, types.NamespacedName{Name: "kube-system"}, ns); err != nil {
		return "", fmt.Errorf("read namespace kube-system (the cluster's identity in holder tags): %w", err)
	}
	x.mu.Lock()
	x.clusterID = string(ns.UID)
	x.mu.Unlock()
	return string(ns.UID), nil
}

// holderJob is the TagVolumeHolderJob value of a BackupJob's holders.
func (x *Extension) holderJob(ctx context.Context, j *v1alpha1.BackupJob) (string, error) {
	id, err := x.clusterUID(ctx)
	if err != nil {
		return "", err
	}
	return id + "/" + string(j.UID), nil
}

// strayHolders returns the holders (of any backup) that belong to this
// cluster and whose BackupJob has ended or no longer exists. The jobs are
// read after the holders were listed: a job that commits a holder exists
// before its holder does, so a running job's holder is never returned.
// Holders of other clusters sharing the repository, and holders without
// TagVolumeHolderJob, are left alone.
func (x *Extension) strayHolders(ctx context.Context, holders []*repo.RecoveryPoint) ([]repo.ID, error) {
	cluster, err := x.clusterUID(ctx)
	if err != nil {
		return nil, err
	}
	jobs := &v1alpha1.BackupJobList{}
	if err := x.api.List(ctx, jobs); err != nil {
		return nil, fmt.Errorf("list BackupJobs: %w", err)
	}
	ended := map[types.UID]bool{}
	for _, j := range jobs.Items {
		ended[j.UID] = j.Status.Phase.Terminal()
	}
	var out []repo.ID
	for _, h := range holders {
		c, uid, ok := strings.Cut(h.Tags[v1alpha1.TagVolumeHolderJob], "/")
		if !ok || c != cluster {
			continue
		}
		if done, exists := ended[types.UID(uid)]; exists && !done {
			continue
		}
		out = append(out, h.ID)
	}
	return out, nil
}

// forgetStrayHolders forgets the stray holders (strayHolders) in one
// storage location's repository and returns how many. Their data goes with
// the repository's next prune.
func (x *Extension) forgetStrayHolders(ctx context.Context, ns, location string) (int, error) {
	sa, err := x.openStorage(ctx, ns, location, true)
	if err != nil {
		return 0, err
	}
	defer sa.be.Close()
	r, err := sa.openRepo(ctx, false)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	rps, err := r.ListRecoveryPoints(ctx)
	if err != nil {
		return 0, fmt.Errorf("list recovery points: %w", err)
	}
	var holders []*repo.RecoveryPoint
	for _, rp := range rps {
		if _, ok := rp.Tags[v1alpha1.TagVolumeHolder]; ok {
			holders = append(holders, rp)
		}
	}
	ids, err := x.strayHolders(ctx, holders)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	if err := r.Forget(ctx, ids); err != nil {
		return 0, fmt.Errorf("forget %d stray holder recovery points: %w", len(ids), err)
	}
	return len(ids), nil
}

// afterInterruptedBackup runs once a new leader has failed a vault-tier
// backup the previous leader left InProgress: that backup's holders (and
// any other stray one) are forgotten, in the background.
func (x *Extension) afterInterruptedBackup(j *v1alpha1.BackupJob) {
	x.mu.Lock()
	ctx := x.ctx
	x.mu.Unlock()
	if ctx == nil || !j.Spec.VaultTier {
		return
	}
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		n, err := x.forgetStrayHolders(cctx, j.Namespace, j.Spec.StorageLocation)
		if n > 0 || err != nil {
			x.log.Info("forgot the holder points of ended vault-tier backups", "job", j.Namespace+"/"+j.Name, "forgotten", n, "err", fmt.Sprint(err))
		}
	}()
}
